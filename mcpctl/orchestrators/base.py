"""The orchestrator interface: the one seam between reconcile logic and the world.

Plain data crosses it: a `Workload` goes in, a `Handle` comes out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mcpctl.controllers.workload import Workload


class StartError(RuntimeError):
    """The workload could not be started; the message is the instance's last error."""


@dataclass(frozen=True)
class Handle:
    id: str  # pid (local) or pod name (kubernetes)
    server: str
    replica: int
    spec_hash: str
    address: str | None = None  # URL of an HTTP server's MCP endpoint
    pid: int | None = None
    pod: str | None = None


@dataclass(frozen=True)
class Exit:
    code: int | None
    reason: str


class Channel(ABC):
    """A byte stream to a STDIO server: its stdin and stdout (pipes, exec or attach)."""

    @abstractmethod
    async def readline(self) -> bytes:
        """One line, or b'' at end of stream."""

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class Orchestrator(ABC):
    # Whether instances keep running when mcpd stops, to be adopted by the next mcpd (pods),
    # or stop with it (local processes).
    instances_outlive_mcpd = False

    @abstractmethod
    async def start(self, workload: Workload) -> Handle:
        """Start one instance; raise StartError with a reason when it cannot start."""

    @abstractmethod
    async def stop(self, handle: Handle) -> None:
        """Stop it and wait until it is gone."""

    @abstractmethod
    async def wait(self, handle: Handle) -> Exit:
        """Return when the instance ends (event-driven, never polling)."""

    @abstractmethod
    async def open_stdio(self, handle: Handle, workload: Workload) -> Channel:
        """The STDIO session to the instance's server process."""

    @abstractmethod
    async def adopt(self, server: str) -> list[Handle]:
        """Instances of `server` left by an earlier run that can be taken over."""

    @abstractmethod
    async def stop_orphans(self, known_servers: set[str]) -> int:
        """Stop what this orchestrator started for servers that no longer exist."""

    @abstractmethod
    def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncIterator[str]:
        """The instance's output (stderr of a process, a pod's log), line by line."""

    @abstractmethod
    async def close(self) -> None:
        """Release clients and connections (not the instances)."""
