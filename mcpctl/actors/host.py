"""A host actor: one Ray actor (a process) that runs many supervisors and their replicas.

Ray restarts a host that dies; the new incarnation adopts or replaces what ran (see the
orchestrators), once mcpd hands it its servers again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from mcpctl.actors.heap import settle_heap
from mcpctl.actors.replica import Replica
from mcpctl.actors.supervisor import NoReplica, Supervisor
from mcpctl.dataplane.frames import token_for
from mcpctl.dataplane.server import StreamServer
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.round_trips import CAPABILITIES_KEY, RESUME, RoundTrips
from mcpctl.models.instance import Instance, InstanceEvent
from mcpctl.models.server import ServerSpec
from mcpctl.observability import tracing
from mcpctl.orchestrators.base import Orchestrator
from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig
from mcpctl.store.database import Database
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories import instances
from mcpctl.store.repositories.events import record_event
from mcpctl.store.repositories.secrets import SecretRepository
from mcpctl.store.secretbox import SecretBox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostConfig:
    index: int
    database_url: str
    secret_key: bytes
    data_dir: str
    orchestrator: str = "local"
    startup_timeout: float = 120.0
    request_timeout: float = 300.0  # an MCP request's deadline at the backend
    # A Ray resource only the nodes meant for host actors advertise (the chart's workers):
    # hosts and the controller ask for a sliver of it, so they run there and nowhere else.
    host_resource: str | None = None
    kubernetes: KubernetesConfig | None = None
    # mcpd's OTEL_* variables (tracing), for hosts on nodes that do not share its environment
    telemetry: tuple[tuple[str, str], ...] = ()


def make_orchestrator(config: HostConfig) -> Orchestrator:
    if config.orchestrator == "local":
        from mcpctl.orchestrators.local import LocalOrchestrator

        return LocalOrchestrator(Path(config.data_dir))
    if config.orchestrator == "kubernetes":
        from mcpctl.orchestrators.kubernetes import KubernetesOrchestrator

        return KubernetesOrchestrator(config.kubernetes or KubernetesConfig())
    raise ValueError(f"unknown orchestrator {config.orchestrator!r}")


class Host:
    def __init__(self, config: HostConfig) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        self.config = config
        self.incarnation = uuid.uuid4().hex
        self.database = Database(config.database_url)
        self.secrets = SecretRepository(SecretBox(config.secret_key))
        self.orchestrator = make_orchestrator(config)
        self.supervisors: dict[str, Supervisor] = {}
        self._dataplane = StreamServer(self, token_for(config.secret_key))
        self._synced = asyncio.Event()  # until then, a server not here yet may be on its way
        self.round_trips = RoundTrips(config.request_timeout)
        tracing.configure("host", config.telemetry)  # tracing hook: OTEL_* as mcpd has them

    # -- lifecycle ---------------------------------------------------------------------

    async def ready(self) -> str:
        return self.incarnation

    async def dataplane_address(self) -> dict[str, Any]:
        """Where gateways reach this host's data plane (started on first ask): its Unix socket,
        TCP when mcpd joined a cluster of several nodes, and the Ray node it runs on."""
        if not self._dataplane.address:
            settle_heap()  # the host is set up: what it allocated so far lives as long as it
            # Gateways on other nodes come over TCP on this node's Ray address (loopback for
            # mcpd's own local Ray), the token guarding it.
            self._dataplane.tcp_host = ray.util.get_node_ip_address()
        address = await self._dataplane.start()
        return {**address, "node": ray.get_runtime_context().get_node_id()}

    async def synced(self) -> None:
        """The controller handed this host all its servers (after every full sync)."""
        self._synced.set()

    async def process_id(self) -> int:
        return os.getpid()

    async def wait_forever(self) -> None:
        """Never answers: its failure tells mcpd at once that this host died."""
        await asyncio.Event().wait()

    async def ensure(self, server: str, spec: dict[str, Any]) -> None:
        desired = ServerSpec.model_validate(spec)
        supervisor = self.supervisors.get(server)
        if supervisor is None:
            supervisor = Supervisor(
                server,
                self.orchestrator,
                self._load_secrets,
                self._report,
                self._forget,
                self.config.startup_timeout,
                self._record,
                self.config.request_timeout,
            )
            self.supervisors[server] = supervisor
            supervisor.start()
        await supervisor.desire(desired)

    async def remove(self, server: str) -> None:
        supervisor = self.supervisors.pop(server, None)
        if supervisor is not None:
            await supervisor.stop()

    async def release(self, server: str) -> None:
        """Hand the server to another host: stop its supervisor, keep what can be adopted."""
        supervisor = self.supervisors.pop(server, None)
        if supervisor is not None:
            keep = self.orchestrator.instances_outlive_mcpd
            await supervisor.stop(forget=False, keep_instances=keep)

    async def stop_orphans(self, known: list[str]) -> int:
        """Stop processes an earlier mcpd left for servers that no longer exist."""
        return await self.orchestrator.stop_orphans(set(known))

    async def servers(self) -> list[str]:
        return sorted(self.supervisors)

    async def restart_replica(self, server: str, replica: int) -> None:
        if server in self.supervisors:
            self.supervisors[server].restart(replica)

    async def shutdown(self) -> None:
        tracing.flush()  # tracing hook: what this host traced reaches the collector
        keep = self.orchestrator.instances_outlive_mcpd
        await self.round_trips.close()
        await asyncio.gather(
            *(s.stop(forget=False, keep_instances=keep) for s in self.supervisors.values())
        )
        self.supervisors.clear()
        await self.orchestrator.close()
        await self._dataplane.close()

    # -- MCP traffic -------------------------------------------------------------------

    def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        # -- tracing hook (mcpctl/observability/tracing.py): off, nothing more than this test --
        if tracing.enabled:
            index, principal, endpoint = self.config.index, caller.principal, caller.endpoint
            return tracing.host_exchange(
                server, index, principal, endpoint, message,
                lambda traced: self._exchange(server, caller, traced),
            )  # fmt: skip
        # -- end of the tracing hook --
        return self._exchange(server, caller, message)

    async def _exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        if message.get("method") == RESUME or CAPABILITIES_KEY in message:
            async for item in self._round_trip(server, caller, message):
                yield item
            return
        try:
            replica = await self._replica(server, caller)
        except NoReplica as error:
            yield jsonrpc.error(message.get("id"), jsonrpc.BACKEND_UNAVAILABLE, str(error))
            return
        async for item in self._backend(server, replica, caller, message):
            yield item

    def _backend(
        self, server: str, replica: Replica, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        """The replica's exchange with its backend (in a span of its own when tracing)."""
        if tracing.enabled:  # tracing hook
            return tracing.backend_call(
                server, replica.index, message,
                lambda traced: replica.multiplexer.exchange(caller, traced),
            )  # fmt: skip
        return replica.multiplexer.exchange(caller, message)

    async def _round_trip(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        """A 2026-07-28 client's request: a backend question parks it (see round_trips)."""
        replica: Replica | None = None
        if message.get("method") != RESUME:
            try:
                replica = await self._replica(server, caller)
            except NoReplica as error:
                yield jsonrpc.error(message.get("id"), jsonrpc.BACKEND_UNAVAILABLE, str(error))
                return
        multiplexer = replica.multiplexer if replica else None

        def open_stream(request: Message) -> AsyncGenerator[Message, None]:
            assert replica is not None
            return self._backend(server, replica, caller, request)

        async def deliver(asker: Caller, answer: Message) -> None:
            assert multiplexer is not None
            await multiplexer.deliver(asker, answer)

        async for item in self.round_trips.serve(server, caller, message, open_stream, deliver):
            yield item

    async def _replica(self, server: str, caller: Caller, wait: float = 30.0) -> Replica:
        """The replica for `caller`; right after this host (re)started, the controller is
        still handing it its servers: wait for that rather than fail."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                return self._supervisor(server).replica_for(caller)
            except NoReplica:
                supervisor = self.supervisors.get(server)
                final = (
                    supervisor is not None
                    and supervisor.spec is not None
                    and (supervisor.spec.replicas == 0 or supervisor.isolated)
                ) or (supervisor is None and self._synced.is_set())
                if final or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        try:
            replica = self._supervisor(server).replica_for(caller)
        except NoReplica:
            return  # nothing runs that could be told
        await replica.multiplexer.deliver(caller, message)

    async def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        replica = await self._replica(server, caller)
        async for item in replica.multiplexer.listen(caller):
            yield item

    async def dropped(self) -> dict[str, dict[str, int]]:
        """Messages no client could be given, and client messages no backend took, per server
        and reason (for /metrics)."""
        counts: dict[str, dict[str, int]] = {}
        for name, supervisor in self.supervisors.items():
            for replica in supervisor.replicas.values():
                for reason, count in replica.multiplexer.dropped.items():
                    counts.setdefault(name, {}).setdefault(reason, 0)
                    counts[name][reason] += count
        for (name, reason), count in self._dataplane.deliveries.dropped.items():
            counts.setdefault(name, {})[reason] = count
        return counts

    async def dataplane_refused(self) -> dict[str, int]:
        """Data-plane connections closed before they showed the cluster token, by reason."""
        return dict(self._dataplane.refused)

    async def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncGenerator[str, None]:
        async for line in self.orchestrator.logs(server, replica, pod, follow, tail):
            yield line

    async def describe(
        self, server: str, caller: Caller | None = None, timeout: float = 30.0
    ) -> dict[str, Any] | None:
        """The server's cached InitializeResult, waiting up to `timeout` for a replica to run;
        for an isolated server, the caller's own (started now if it has none)."""
        supervisor = self.supervisors.get(server)
        if supervisor is None:
            return None
        if caller is not None and supervisor.isolated:
            try:
                own = supervisor.replica_for(caller)
            except NoReplica:
                return None
            await own.wait_running(self.config.startup_timeout)
            return own.initialize_result
        if not supervisor.replicas:
            return None
        replicas = list(supervisor.replicas.values())
        for replica in replicas:
            if replica.initialize_result is not None:
                return replica.initialize_result
        waits = [asyncio.ensure_future(r.wait_running(timeout)) for r in replicas]
        for finished in asyncio.as_completed(waits):
            if await finished:
                break
        for wait in waits:
            wait.cancel()
        return next((r.initialize_result for r in replicas if r.initialize_result), None)

    async def instances(self) -> list[dict[str, Any]]:
        return [
            replica.instance.model_dump(mode="json")
            for supervisor in self.supervisors.values()
            for replica in supervisor.replicas.values()
        ]

    def _supervisor(self, server: str) -> Supervisor:
        supervisor = self.supervisors.get(server)
        if supervisor is None:
            raise NoReplica(f"server {server!r} is not running here")
        return supervisor

    # -- store -------------------------------------------------------------------------

    async def _report(self, instance: Instance) -> None:
        def write() -> None:
            with self.database.transaction() as session:
                instances.record(session, instance)

        try:
            await asyncio.to_thread(write)
        except Exception:
            log.exception("recording %s failed", instance.name)

    async def _record(self, event: InstanceEvent) -> None:
        def write() -> None:
            with self.database.transaction() as session:
                record_event(session, event)

        try:
            await asyncio.to_thread(write)
        except Exception:
            log.exception("recording an event of %s-%d failed", event.server, event.replica)

    async def _forget(self, server: str, keep_below: int) -> None:
        def write() -> None:
            with self.database.transaction() as session:
                instances.forget(session, server, keep_below)

        await asyncio.to_thread(write)

    async def _load_secrets(self, names: set[str]) -> dict[str, dict[str, str]] | None:
        if self.config.orchestrator != "local":
            return None  # Kubernetes resolves secretKeyRefs from its own Secrets

        def read() -> dict[str, dict[str, str]]:
            found = {}
            with self.database.transaction() as session:
                for name in names:
                    try:
                        found[name] = self.secrets.values(session, name)
                    except NotFound:
                        continue
            return found

        return await asyncio.to_thread(read) if names else {}
