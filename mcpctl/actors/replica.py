"""A replica actor: one instance of a server. It starts (or adopts) the process, holds the
one MCP session to it, and replaces the process when it ends, with the back-off and the
crash-loop status that `controllers.backoff` and `controllers.status` decide.

It is an in-process actor: an asyncio task that alone owns its state; the supervisor talks
to it through `update`, `restart` and `stop`, and it reports through `report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mcpctl.actors.sessions import open_transport
from mcpctl.controllers.backoff import Backoff
from mcpctl.controllers.status import Phase, shown, transition
from mcpctl.controllers.workload import Workload, WorkloadError
from mcpctl.mcp import modern
from mcpctl.mcp.handshake import CLIENT_CAPABILITIES, CLIENT_INFO, HandshakeError, handshake
from mcpctl.mcp.multiplexer import Multiplexer
from mcpctl.mcp.transports import Transport
from mcpctl.models.instance import EventKind, Instance, InstanceEvent, InstanceStatus
from mcpctl.orchestrators.base import Exit, Handle, Orchestrator, StartError

log = logging.getLogger(__name__)

Report = Callable[[Instance], Awaitable[None]]
Record = Callable[[InstanceEvent], Awaitable[None]]
Render = Callable[[int], Awaitable[Workload]]  # may raise WorkloadError


@dataclass(frozen=True)
class _Life:
    """One process from start to end, on the monotonic clock."""

    started: float
    ready: float | None  # when its handshake was answered; None if it never was
    ended: str | None  # why it ended on its own; None when mcpd stopped or replaced it

    @property
    def phase(self) -> Phase:
        return Phase.FAILED if self.ready is None else Phase.CRASHED


class Replica:
    def __init__(
        self,
        server: str,
        index: int,
        orchestrator: Orchestrator,
        render: Render,
        report: Report,
        startup_timeout: float = 120.0,
        adopted: Handle | None = None,
        record: Record | None = None,
        request_timeout: float = 300.0,
    ) -> None:
        self.server = server
        self.index = index
        self.orchestrator = orchestrator
        self.render = render
        self.report = report
        self.record = record
        self.startup_timeout = startup_timeout
        self.backoff = Backoff()
        self.multiplexer = Multiplexer(f"{server}-{index}", request_timeout=request_timeout)
        self.instance = Instance(server=server, replica=index)
        self.handle: Handle | None = adopted
        self.initialize_result: dict[str, Any] | None = None
        self.spec_hash: str | None = adopted.spec_hash if adopted else None
        self._restart = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running = asyncio.Event()
        self._keep_instance = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.multiplexer.name)

    @property
    def status(self) -> InstanceStatus:
        return self.instance.status

    async def wait_running(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._running.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def restart(self) -> None:
        """Replace the process (instance deleted, or its spec changed)."""
        self._restart.set()

    async def stop(self, grace: float = 2.0, keep_instance: bool = False) -> None:
        """A running replica stops at once; one still starting is cancelled after `grace`.
        With `keep_instance` its pod is left running for the next mcpd to adopt."""
        self._keep_instance = keep_instance
        self._stopping.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _event(self, kind: EventKind, reason: str | None = None) -> None:
        if self.record is not None:
            event = InstanceEvent(
                server=self.server,
                replica=self.index,
                kind=kind,
                reason=reason,
                at=datetime.now(UTC),
            )
            await self.record(event)

    async def _set(self, status: InstanceStatus, **changes: object) -> None:
        transition(self.instance.status, status)
        self.instance = self.instance.model_copy(update={"status": status, **changes})
        if status is InstanceStatus.RUNNING:
            self._running.set()
        else:
            self._running.clear()
        await self.report(self.instance)

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                life = await self._one_life()
                if self._stopping.is_set():
                    break
                if life.ended is not None:  # it failed or crashed: back off
                    restart = self.backoff.ended(life.started, life.ready, time.monotonic())
                    await self._set(
                        shown(life.phase, restart.crash_loop),
                        last_error=restart.last_error(life.ended),
                    )
                    await self._pause(restart.delay)
                if self._restart.is_set():  # replaced (new spec, instance deleted): start afresh
                    self._restart.clear()
                    self.backoff.reset()
        except Exception:
            log.exception("%s: replica failed", self.multiplexer.name)
        finally:
            await asyncio.shield(self._shutdown())

    async def _pause(self, seconds: float) -> None:
        """Wait out the back-off; a stop or a restart (a new spec) ends it at once."""
        if seconds <= 0:
            return
        waits = {
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._restart.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _one_life(self) -> _Life:
        """Start (or adopt) and serve until the process ends. In a crash loop the instance
        keeps showing ERROR until this life has stayed up long enough."""
        began = time.monotonic()
        looping = self.backoff.crash_loop
        await self._set(shown(Phase.STARTING, looping))
        try:
            workload = await self.render(self.index)
            if self.handle is None:
                self.spec_hash = workload.spec_hash
                self.handle = await self.orchestrator.start(workload)
                await self._event(EventKind.STARTED, self.handle.pod or f"pid {self.handle.pid}")
            else:
                await self._event(EventKind.ADOPTED, self.handle.pod or f"pid {self.handle.pid}")
            await self._set(
                shown(Phase.STARTING, looping),
                pid=self.handle.pid,
                pod=self.handle.pod,
                address=self.handle.address,
                started_at=datetime.now(UTC),
            )
            transport, self.initialize_result = await self._startup(workload, self.handle)
        except (WorkloadError, StartError, HandshakeError, OSError) as error:
            reason = str(error)
            if self.handle is not None:  # it started: how it ended says more than the symptom
                reason = await self._exit_reason(reason)
            await self._discard_process()
            # A failed start is a restart too (Kubernetes counts it): RESTARTS stayed 0 while
            # the crash loop's reason said "5 restarts in 8 s".
            self.instance = self.instance.model_copy(
                update={
                    "pid": None,
                    "pod": None,
                    "address": None,
                    "restart_count": self.instance.restart_count + 1,
                }
            )
            await self._event(EventKind.FAILED, reason)
            return _Life(began, None, reason)
        await self.multiplexer.attach(transport)
        ready = time.monotonic()
        await self._event(EventKind.READY)
        # A crash loop keeps its reason until the back-off resets; otherwise it is cleared.
        await self._set(shown(Phase.READY, looping), **({} if looping else {"last_error": None}))
        ended = await self._until_ended()
        await self.multiplexer.detach()
        with contextlib.suppress(Exception):
            await transport.close()
        if self._stopping.is_set():
            return _Life(began, ready, None)
        replaced = self._restart.is_set()
        await self._event(EventKind.REPLACED if replaced else EventKind.CRASHED, ended)
        await self._discard_process()
        self.instance = self.instance.model_copy(
            update={
                "restart_count": self.instance.restart_count + (0 if replaced else 1),
                "last_error": ended,
                "pid": None,
                "pod": None,
                "address": None,
            }
        )
        return _Life(began, ready, None if replaced else ended)

    async def _startup(
        self, workload: Workload, handle: Handle
    ) -> tuple[Transport, dict[str, Any]]:
        """Connect and initialize, unless the process ends first (then say why). A backend
        that speaks only 2026-07-28 is called through a transport that adds the envelope."""

        async def connect() -> tuple[Transport, dict[str, Any]]:
            transport = await open_transport(
                self.orchestrator, handle, workload, self.startup_timeout
            )
            result = await handshake(transport, self.startup_timeout)
            return modern.wrap(transport, result, CLIENT_INFO, CLIENT_CAPABILITIES), result

        startup = asyncio.ensure_future(connect())
        exited = asyncio.ensure_future(self.orchestrator.wait(handle))
        await asyncio.wait({startup, exited}, return_when=asyncio.FIRST_COMPLETED)
        if startup.done():
            exited.cancel()
            return startup.result()
        startup.cancel()
        raise StartError(exited.result().reason)

    async def _exit_reason(self, fallback: str) -> str:
        """Why a process failed its handshake: its exit status and stderr if it ended."""
        assert self.handle is not None
        try:
            exit_ = await asyncio.wait_for(self.orchestrator.wait(self.handle), 1.0)
        except TimeoutError:
            return fallback
        return exit_.reason

    async def _until_ended(self) -> str:
        """Serve until the process ends (or is stopped or replaced); say why. Once it has
        stayed up `healthy_after` seconds, the back-off resets and a crash loop is over."""
        assert self.handle is not None
        healthy = asyncio.ensure_future(asyncio.sleep(self.backoff.healthy_after))
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self.orchestrator.wait(self.handle)): "exit",
            asyncio.ensure_future(self.multiplexer.lost.wait()): "lost",
            asyncio.ensure_future(self._stopping.wait()): "stop",
            asyncio.ensure_future(self._restart.wait()): "restart",
            healthy: "healthy",
        }
        try:
            while True:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                ends = [task for task in done if task is not healthy]
                if ends:
                    break
                del waits[healthy]
                await self._healthy()
        finally:
            for task in waits:
                task.cancel()
        first = ends[0]
        kind = waits[first]
        if kind == "exit":
            result = first.result()
            assert isinstance(result, Exit)
            return result.reason
        if kind == "lost":  # stdout closed: the exit status, if it follows, says more
            return await self._exit_reason("the server closed its MCP session")
        return "restarted" if kind == "restart" else "stopped"

    async def _healthy(self) -> None:
        self.backoff.reset()
        if self.status is not InstanceStatus.RUNNING:  # the crash loop is over
            await self._set(shown(Phase.HEALTHY, self.backoff.crash_loop), last_error=None)

    async def _discard_process(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            await self.orchestrator.stop(handle)

    async def _shutdown(self) -> None:
        await self.multiplexer.close(f"{self.multiplexer.name} stopped")
        if self._keep_instance and self.status is InstanceStatus.RUNNING:
            self.handle = None  # left for the next mcpd; its status row stays as it is
            return
        await self._discard_process()
        await self._event(EventKind.STOPPED)
        with contextlib.suppress(Exception):
            await self._set(InstanceStatus.STOPPED)
