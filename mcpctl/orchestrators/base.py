"""The orchestrator interface: the one seam between reconcile logic and the world.

Plain data crosses it: a `Workload` goes in, a `Handle` comes out.
"""

from __future__ import annotations

import asyncio
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


MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON-RPC message per line; tool results can be large


class LineTooLong(Exception):
    """A line over MAX_LINE_BYTES was skipped; `prefix` is its start (it may name an id)."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__(f"a line longer than {MAX_LINE_BYTES} bytes")
        self.prefix = prefix


async def read_line(reader: asyncio.StreamReader) -> bytes:
    """One line from `reader` (b'' at its end); a line over MAX_LINE_BYTES is skipped
    whole and reported as LineTooLong, so the stream stays usable."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        return error.partial
    except asyncio.LimitOverrunError as error:
        prefix = await reader.read(256)
        remaining = error.consumed - len(prefix)
        while True:
            if remaining > 0:
                await reader.readexactly(remaining)
            try:
                await reader.readuntil(b"\n")
                break
            except asyncio.IncompleteReadError:
                break
            except asyncio.LimitOverrunError as more:
                remaining = more.consumed
        raise LineTooLong(prefix) from None


class Channel(ABC):
    """A byte stream to a STDIO server: its stdin and stdout (pipes, exec or attach)."""

    @abstractmethod
    async def readline(self) -> bytes:
        """One line, or b'' at end of stream; LineTooLong for one over MAX_LINE_BYTES."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Raises ConnectionError (an OSError) once the stream is closed."""

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
