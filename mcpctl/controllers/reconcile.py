"""Desired replicas versus what runs: the steps a supervisor takes (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    start: tuple[int, ...] = ()  # replica indexes to create
    stop: tuple[int, ...] = ()  # replica indexes to retire
    roll: tuple[int, ...] = ()  # replica indexes whose spec changed, replaced one at a time

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.roll)


def plan(desired: int, spec_hash: str, running: dict[int, str]) -> Plan:
    """`running` maps replica index to the spec hash it runs."""
    start = tuple(i for i in range(desired) if i not in running)
    stop = tuple(sorted(i for i in running if i >= desired))
    roll = tuple(sorted(i for i, h in running.items() if i < desired and h != spec_hash))
    return Plan(start, stop, roll)
