"""Restart back-off and crash-loop detection, as plain data.

A *life* is one process (or pod) from its start to its end. It was healthy when it stayed
RUNNING (its handshake answered) for `healthy_after` seconds: that resets the back-off, and
the next start is immediate. Any other life — a start that failed, a crash soon after the
handshake — is short: the next start waits `initial` seconds, doubling up to `maximum` while
it keeps happening. `crash_loop_after` short lives in a row are a crash loop (Kubernetes'
CrashLoopBackOff): the replica keeps restarting with back-off and shows ERROR until one life
stays RUNNING for `healthy_after` seconds again.

Times are plain numbers from one monotonic clock, passed in, so the logic is pure.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAX_DOUBLINGS = 32  # 2**32 * initial is past any sane maximum; keeps the float finite


@dataclass(frozen=True)
class Restart:
    """What follows a life that ended: wait `delay` seconds, then start again."""

    delay: float
    failures: int  # short lives in a row, the one that just ended included; 0 after a healthy one
    window: float  # seconds from the start of the first of them to the end of the last
    crash_loop: bool

    def last_error(self, reason: str) -> str:
        """The instance's last error: why the life ended, and the crash loop when it is one."""
        if not self.crash_loop:
            return reason
        return (
            f"crash loop: {reason} ({self.failures} restarts in {self.window:.0f} s); "
            f"next start in {self.delay:g} s"
        )


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    healthy_after: float = 10.0  # staying RUNNING this long resets the back-off
    crash_loop_after: int = 5  # this many short lives in a row are a crash loop
    failures: int = 0
    since: float | None = None  # when the first of the current short lives started

    @property
    def crash_loop(self) -> bool:
        return self.failures >= self.crash_loop_after

    def healthy(self, ready: float, now: float) -> bool:
        """Whether a life RUNNING since `ready` has now stayed up long enough."""
        return now - ready >= self.healthy_after

    def ended(self, started: float, ready: float | None, ended: float) -> Restart:
        """A life that started at `started`, became RUNNING at `ready` (None: never) and ended
        at `ended`: how long to wait before the next start, and whether it is a crash loop."""
        if ready is not None and self.healthy(ready, ended):
            self.reset()
            return Restart(delay=0.0, failures=0, window=0.0, crash_loop=False)
        if self.since is None:
            self.since = started
        delay = min(self.maximum, self.initial * 2 ** min(self.failures, _MAX_DOUBLINGS))
        self.failures += 1
        return Restart(delay, self.failures, ended - self.since, self.crash_loop)

    def reset(self) -> None:
        """A healthy run (or a fresh start: a new spec, a replaced instance)."""
        self.failures = 0
        self.since = None
