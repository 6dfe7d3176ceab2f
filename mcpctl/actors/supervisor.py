"""A supervisor actor per server: it compares desired replicas with the running ones and
creates, retires and rolls replica actors. An error in one never touches another. What to
start, keep and retire is decided as data (controllers/reconcile.py, controllers/isolation.py);
the supervisor carries it out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mcpctl.actors.replica import Record, Replica, Report
from mcpctl.controllers import isolation, reconcile
from mcpctl.controllers.workload import Workload, render, spec_hash
from mcpctl.mcp.caller import Caller
from mcpctl.models.instance import InstanceStatus
from mcpctl.models.server import Isolation, ServerSpec
from mcpctl.orchestrators.base import Handle, Orchestrator

log = logging.getLogger(__name__)

# Loads mcpd's secrets by name; None when the orchestrator resolves references itself.
Secrets = Callable[[set[str]], Awaitable[dict[str, dict[str, str]] | None]]
Forget = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class _Desired:
    spec: ServerSpec
    done: asyncio.Future[None]


@dataclass(frozen=True)
class _Restart:
    replica: int


@dataclass(frozen=True)
class _Reap:
    """Stop isolated backends that have been idle for the server's idleSeconds."""


@dataclass(frozen=True)
class _Stop:
    forget: bool
    keep_instances: bool


class NoReplica(LookupError):
    pass


class Supervisor:
    def __init__(
        self,
        name: str,
        orchestrator: Orchestrator,
        secrets: Secrets,
        report: Report,
        forget: Forget,
        startup_timeout: float = 120.0,
        record: Record | None = None,
        request_timeout: float = 300.0,
    ) -> None:
        self.name = name
        self.orchestrator = orchestrator
        self.secrets = secrets
        self.report = report
        self.forget = forget
        self.startup_timeout = startup_timeout
        self.record = record
        self.request_timeout = request_timeout
        self.spec: ServerSpec | None = None
        self.replicas: dict[int, Replica] = {}
        self._mailbox: asyncio.Queue[_Desired | _Restart | _Reap | _Stop] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._adoptable: dict[int, Handle] = {}
        self._owners: dict[str, int] = {}  # isolated backends: owner key -> replica index
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"supervisor:{self.name}")
        self._reaper = loop.create_task(self._reap_forever(), name=f"reaper:{self.name}")

    async def desire(self, spec: ServerSpec) -> None:
        """Hand over the desired spec; return once the replicas it needs exist."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._mailbox.put_nowait(_Desired(spec, done))
        await done

    def restart(self, replica: int) -> None:
        self._mailbox.put_nowait(_Restart(replica))

    async def stop(self, forget: bool = True, keep_instances: bool = False) -> None:
        """Stop every replica; `forget` drops their rows (the server is gone, not mcpd);
        `keep_instances` leaves pods running for the next mcpd."""
        self._mailbox.put_nowait(_Stop(forget, keep_instances))
        if self._reaper is not None:
            self._reaper.cancel()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        self._adoptable = {h.replica: h for h in await self.orchestrator.adopt(self.name)}
        while True:
            message = await self._mailbox.get()
            try:
                if isinstance(message, _Stop):
                    await self._retire(list(self.replicas), message.forget, message.keep_instances)
                    return
                if isinstance(message, _Restart):
                    if message.replica in self.replicas:
                        self.replicas[message.replica].restart()
                    continue
                if isinstance(message, _Reap):
                    await self._reap()
                    continue
                self.spec = message.spec
                try:
                    await self._reconcile()
                finally:
                    if not message.done.done():
                        message.done.set_result(None)
            except Exception:
                log.exception("supervisor %s: reconcile failed", self.name)

    async def _render(self, replica: int) -> Workload:
        assert self.spec is not None
        return render(self.name, replica, self.spec, await self.secrets(self.spec.secret_names()))

    def _new_replica(self, index: int, adopted: Handle | None = None) -> Replica:
        replica = Replica(
            self.name,
            index,
            self.orchestrator,
            self._render,
            self.report,
            self.startup_timeout,
            adopted=adopted,
            record=self.record,
            request_timeout=self.request_timeout,
        )
        self.replicas[index] = replica
        replica.start()
        return replica

    async def _reconcile(self) -> None:
        assert self.spec is not None
        retirement = isolation.on_spec(self.spec, self._owners, self.replicas)
        self._owners = dict(retirement.owners)
        if retirement.retire:
            await self._retire(list(retirement.retire), forget=retirement.forget)
        current = spec_hash(self.spec)
        if self.spec.isolation is Isolation.SHARED:
            await self._scale(current)
        else:
            # Isolated backends start on first use (replica_for); owners' ones roll here.
            running = {i: r.spec_hash for i, r in self.replicas.items()}
            for index in isolation.stale(running, current):
                self.replicas[index].restart()
                self.replicas[index].spec_hash = current
        for stale in list(self._adoptable.values()):
            # adopted, but no replica took it (isolated: nobody can be told whose it was)
            await self.orchestrator.stop(stale)
        self._adoptable.clear()

    async def _scale(self, current: str) -> None:
        """Shared: as many replicas as the spec says, rolled one at a time to a new spec."""
        assert self.spec is not None
        running = {i: r.spec_hash or current for i, r in self.replicas.items()}
        plan = reconcile.plan(self.spec.replicas, current, running)
        if plan.stop:
            await self._retire(list(plan.stop))
        for index in plan.start:
            self._new_replica(index, self._adoptable.pop(index, None))
        for index in plan.roll:
            # One at a time, so a server with several replicas keeps serving while it rolls.
            replica = self.replicas[index]
            replica.restart()
            replica.spec_hash = current
            if len(plan.roll) > 1:
                await replica.wait_running(self.startup_timeout)

    async def _reap_forever(self) -> None:
        while True:
            idle_seconds = self.spec.idle_seconds if self.spec else 300
            await asyncio.sleep(max(0.2, min(idle_seconds / 4, 10.0)))
            if self._owners:
                self._mailbox.put_nowait(_Reap())

    async def _reap(self) -> None:
        assert self.spec is not None
        idle_for = {i: r.multiplexer.idle_for() for i, r in self.replicas.items()}
        retirement = isolation.reap(self._owners, idle_for, self.spec.idle_seconds)
        if not retirement.retire:
            return
        self._owners = dict(retirement.owners)
        log.info("%s: stopping %d idle isolated backends", self.name, len(retirement.retire))
        await self._retire(list(retirement.retire), forget=retirement.forget)

    async def _retire(self, indexes: list[int], forget: bool = True, keep: bool = False) -> None:
        replicas = [self.replicas.pop(i) for i in indexes if i in self.replicas]
        await asyncio.gather(*(r.stop(keep_instance=keep) for r in replicas))
        if indexes and forget:
            await self.forget(self.name, min(indexes))

    @property
    def isolated(self) -> bool:
        return self.spec is not None and self.spec.isolation is not Isolation.SHARED

    def replica_for(self, caller: Caller) -> Replica:
        """The replica that serves a client: its own when the server is isolated (started on
        first use), else sticky by hash among the running ones."""
        key = None
        if self.spec is not None:
            session = None if caller.per_request else caller.session
            key = isolation.owner_key(self.spec.isolation, caller.principal, session)
        if key is not None:
            return self._isolated_for(key)
        if not self.replicas:
            raise NoReplica(f"server {self.name!r} has no replicas (it is scaled to 0)")
        ready = [r for _, r in sorted(self.replicas.items()) if r.status is InstanceStatus.RUNNING]
        pool = ready or [r for _, r in sorted(self.replicas.items())]
        return pool[hash(caller.session) % len(pool)]

    def _isolated_for(self, key: str) -> Replica:
        assert self.spec is not None
        backend = isolation.backend_for(self.name, self.spec, key, self._owners, self.replicas)
        if isinstance(backend, isolation.Refuse):
            raise NoReplica(backend.reason)
        if not backend.start:
            return self.replicas[backend.index]
        index = backend.index
        self._owners[key] = index
        replica = self._new_replica(index)
        replica.multiplexer.attach_timeout = self.startup_timeout  # its first request waits
        log.info("%s: started backend %d for %s", self.name, index, key.split(":", 1)[0])
        return replica
