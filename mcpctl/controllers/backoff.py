"""Restart back-off: immediate after a long healthy run, exponential while it keeps failing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    healthy_after: float = 10.0  # running this long resets the back-off
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        """Seconds to wait before the next start, given how long the last one ran."""
        if ran_for >= self.healthy_after:
            self.failures = 0
            return 0.0
        delay = min(self.maximum, self.initial * (2**self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
