"""Restart back-off and crash loops (pure logic): delays, when the back-off resets, when a
replica shows ERROR, and that the statuses it goes through are legal transitions."""

from __future__ import annotations

from mcpctl.controllers.backoff import Backoff, Restart
from mcpctl.controllers.status import Phase, shown, transition
from mcpctl.models.instance import InstanceStatus as S


def crash_after_handshake(backoff: Backoff, at: float, handshake: float = 0.2) -> Restart:
    """A life that starts at `at`, answers its handshake and crashes 0.3 s later."""
    return backoff.ended(at, at + handshake, at + handshake + 0.3)


def test_short_lives_back_off_from_half_a_second_doubling_to_thirty() -> None:
    backoff = Backoff()
    delays = [crash_after_handshake(backoff, 100.0 * i).delay for i in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_failed_starts_back_off_too() -> None:
    backoff = Backoff()
    assert [backoff.ended(i, None, i + 0.1).delay for i in range(3)] == [0.5, 1, 2]


def test_only_a_life_that_stayed_running_resets_the_back_off() -> None:
    backoff = Backoff()
    for i in range(3):
        crash_after_handshake(backoff, i)
    # Up for a minute, but RUNNING for only 5 s of it (a slow handshake): still a short life.
    slow = backoff.ended(10.0, 65.0, 70.0)
    assert (slow.delay, slow.failures) == (4, 4)
    healthy = backoff.ended(100.0, 100.5, 110.5)  # RUNNING for 10 s
    assert healthy == Restart(delay=0.0, failures=0, window=0.0, crash_loop=False)
    assert crash_after_handshake(backoff, 200.0).delay == 0.5
    assert backoff.healthy(ready=300.0, now=309.9) is False
    assert backoff.healthy(ready=300.0, now=310.0) is True


def test_five_short_lives_in_a_row_are_a_crash_loop_with_its_reason() -> None:
    backoff = Backoff()
    starts = [0.0, 1.0, 2.5, 5.0, 9.5]  # each life: 0.5 s, then the back-off
    restarts = [crash_after_handshake(backoff, at) for at in starts]
    assert [r.crash_loop for r in restarts] == [False, False, False, False, True]
    assert restarts[3].last_error("exited with code 3: boom") == "exited with code 3: boom"
    assert restarts[4].last_error("exited with code 3: boom") == (
        "crash loop: exited with code 3: boom (5 restarts in 10 s); next start in 8 s"
    )
    assert backoff.crash_loop
    more = crash_after_handshake(backoff, 30.0)
    assert more.crash_loop and more.delay == 16 and more.failures == 6
    assert more.last_error("x").endswith("(6 restarts in 30 s); next start in 16 s")
    backoff.reset()  # a life stayed up, or a new spec
    assert not backoff.crash_loop
    again = crash_after_handshake(backoff, 50.0)
    assert (again.delay, again.failures, again.window, again.crash_loop) == (0.5, 1, 0.5, False)


def test_the_delay_stays_finite_however_long_it_keeps_failing() -> None:
    backoff = Backoff()
    for i in range(5000):
        last = backoff.ended(i, None, i)
    assert last.delay == 30 and last.failures == 5000


def test_a_crash_loop_shows_error_until_a_life_stays_up() -> None:
    assert [shown(p, crash_loop=False) for p in Phase] == [
        S.STARTING,  # starting
        S.RUNNING,  # ready
        S.RUNNING,  # healthy
        S.ERROR,  # failed
        S.STARTING,  # crashed: a replacement follows
    ]
    assert [shown(p, crash_loop=True) for p in Phase] == [
        S.ERROR,
        S.ERROR,
        S.RUNNING,
        S.ERROR,
        S.ERROR,
    ]


def test_the_statuses_of_a_crash_loop_and_its_recovery_are_legal_transitions() -> None:
    backoff = Backoff()
    status = S.PENDING

    def to(phase: Phase) -> None:
        nonlocal status
        status = transition(status, shown(phase, backoff.crash_loop))

    seen = []
    for i in range(7):  # five crashes make a crash loop, two more keep it
        to(Phase.STARTING)
        to(Phase.READY)
        seen.append(status)
        restart = crash_after_handshake(backoff, 100.0 * i)
        status = transition(status, shown(Phase.CRASHED, restart.crash_loop))
        seen.append(status)
    assert seen[:10] == [S.RUNNING, S.STARTING] * 4 + [S.RUNNING, S.ERROR]
    assert seen[10:] == [S.ERROR] * 4
    to(Phase.STARTING)
    to(Phase.READY)
    assert status is S.ERROR  # up again, but not for long enough yet
    backoff.reset()  # it stayed up
    to(Phase.HEALTHY)
    assert status is S.RUNNING
    to(Phase.STARTING)  # a failed start after a crash loop's end is an ordinary one
    status = transition(status, shown(Phase.FAILED, backoff.crash_loop))
    assert status is S.ERROR
