"""The runtime in mcpd's process: starts or joins Ray, keeps the pool of host actors, places
each server's supervisor on a host and routes the gateway's MCP traffic to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import ray

from mcpctl.actors.host import Host, HostConfig
from mcpctl.actors.ray_cluster import init_ray
from mcpctl.controllers.placement import host_for, pool_size
from mcpctl.dataplane.client import HostLink, HostLost
from mcpctl.dataplane.frames import token_for
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.models.kinds import SERVER, Kind
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories.specs import SERVERS
from mcpctl.store.tables import ServerRow

log = logging.getLogger(__name__)
HostActor: Any = ray.remote(Host)  # Ray handles are untyped


async def remote_items(stream: Any) -> AsyncGenerator[Any, None]:
    """The items of a remote generator; when the consumer stops early (a client went away),
    the remote side is cancelled too."""
    finished = False
    try:
        async for ref in stream:
            yield await ref
        finished = True
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                ray.cancel(stream)


class Runtime:
    def __init__(
        self,
        database: Database,
        host_config: HostConfig,
        resync_seconds: float = 30.0,
        hosts: int | None = None,
        namespace: str = "mcpd",
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.host_config = host_config
        self.resync_seconds = resync_seconds
        self.configured_hosts = hosts
        self.namespace = namespace
        self.metrics = metrics
        self.hosts: list[Any] = []
        self._placed: dict[str, int] = {}  # server -> host index it runs on
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._links: dict[int, HostLink] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        init_ray()
        await self.sync()
        if self.hosts:
            stopped = await self.hosts[0].stop_orphans.remote(list(self._placed))
            if stopped:
                log.info("stopped %d processes left by an earlier mcpd", stopped)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._resync_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(h.shutdown.remote() for h in self.hosts))
        for link in self._links.values():
            await link.close()
        self._links.clear()
        for host in self.hosts:
            ray.kill(host)
        self.hosts.clear()

    def _desired(self) -> dict[str, dict[str, Any]]:
        with self.database.transaction() as session:
            return {r.metadata.name: r.spec.model_dump(mode="json") for r in SERVERS.list(session)}

    async def _grow_pool(self, servers: int) -> None:
        cpus = ray.cluster_resources().get("CPU", 2)
        wanted = pool_size(cpus, servers, self.configured_hosts)
        while len(self.hosts) < wanted:
            index = len(self.hosts)
            config = HostConfig(**{**self.host_config.__dict__, "index": index})
            host: Any = HostActor.options(
                name=f"{self.namespace}-host-{index}",
                max_restarts=-1,
                max_task_retries=0,
                num_cpus=0,
                max_concurrency=10_000,
            ).remote(config)
            await host.ready.remote()
            self.hosts.append(host)
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch(index)))

    async def sync(self) -> None:
        """Make every host run exactly the servers placed on it (the resync backstop)."""
        started = time.perf_counter()
        async with self._lock:
            desired = await asyncio.to_thread(self._desired)
            await self._grow_pool(len(desired))
            calls: list[Any] = []
            for name in [n for n in self._placed if n not in desired]:
                calls.append(self.hosts[self._placed.pop(name)].remove.remote(name))
            for name, spec in desired.items():
                index = host_for(name, len(self.hosts))
                previous = self._placed.get(name)
                self._placed[name] = index
                if previous is not None and previous != index:
                    calls.append(self._move(name, spec, previous, index))
                else:
                    calls.append(self.hosts[index].ensure.remote(name, spec))
            await asyncio.gather(*calls)
        if self.metrics is not None:
            self.metrics.reconcile.observe(time.perf_counter() - started)

    async def _move(self, name: str, spec: dict[str, Any], old: int, new: int) -> None:
        """A grown pool moved this server: the old host lets go (pods stay, to be adopted;
        local processes cannot move and stop), then the new host takes it."""
        await self.hosts[old].release.remote(name)
        await self.hosts[new].ensure.remote(name, spec)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            try:
                await self.sync()
            except Exception:
                log.exception("resync failed")

    async def _watch(self, index: int) -> None:
        """A host that dies fails its pending `wait_forever` at once; hand it its servers again."""
        while True:
            host = self.hosts[index]
            try:
                await host.wait_forever.remote()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("host %d died; waiting for Ray to restart it", index)
            while True:
                try:
                    await host.ready.remote()
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            log.info("host %d is back; re-adopting its servers", index)
            await self.sync()

    # -- changes from the API ----------------------------------------------------------

    def on_change(self, kind: Kind, name: str) -> None:
        if kind is SERVER:
            asyncio.get_running_loop().create_task(self._apply(name))

    async def _apply(self, name: str) -> None:
        """Hand one changed server to its host (a full sync only when the pool must grow)."""
        try:
            async with self._lock:
                spec, count = await asyncio.to_thread(self._one, name)
                wanted = pool_size(
                    ray.cluster_resources().get("CPU", 2), count, self.configured_hosts
                )
            if wanted > len(self.hosts):
                await self.sync()
                return
            async with self._lock:
                previous = self._placed.get(name)
                if spec is None:
                    if previous is not None:
                        del self._placed[name]
                        await self.hosts[previous].remove.remote(name)
                    return
                index = host_for(name, len(self.hosts))
                self._placed[name] = index
                if previous is not None and previous != index:
                    await self._move(name, spec, previous, index)
                else:
                    await self.hosts[index].ensure.remote(name, spec)
        except Exception:
            log.exception("applying server %s failed", name)

    def _one(self, name: str) -> tuple[dict[str, Any] | None, int]:
        with self.database.transaction() as session:
            try:
                spec = SERVERS.get(session, name).spec.model_dump(mode="json")
            except NotFound:
                spec = None
            return spec, session.query(ServerRow).count()

    def on_instance_deleted(self, server: str, replica: int) -> None:
        index = self._placed.get(server)
        if index is not None:
            self.hosts[index].restart_replica.remote(server, replica)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Starlette lifespan: the runtime lives as long as the app serves."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- MCP traffic -------------------------------------------------------------------

    def _host(self, server: str) -> Any:
        index = self._placed.get(server)
        return None if index is None else self.hosts[index]

    def _link(self, server: str) -> HostLink | None:
        """The data-plane connection to the host that runs `server` (made on first use)."""
        index = self._placed.get(server)
        if index is None:
            return None
        link = self._links.get(index)
        if link is None:
            host = self.hosts[index]
            node = ray.get_runtime_context().get_node_id()

            async def resolve() -> dict[str, Any]:
                address: dict[str, Any] = await host.dataplane_address.remote()
                self._links[index].local = address["node"] == node
                return address

            token = token_for(self.host_config.secret_key)
            link = self._links[index] = HostLink(f"host {index}", resolve, token)
        return link

    async def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        """What the server sends for one request, ending with the response, over the data
        plane (no Ray call per message)."""
        link = self._link(server)
        request_id = message.get("id")
        if link is None:
            yield jsonrpc.error(
                request_id, jsonrpc.BACKEND_UNAVAILABLE, f"server {server!r} is not running"
            )
            return
        try:
            async for item in link.stream(server, caller, message):
                yield item
        except (HostLost, OSError, ray.exceptions.RayError) as error:
            yield jsonrpc.error(
                request_id,
                jsonrpc.BACKEND_UNAVAILABLE,
                f"server {server}: the host that runs it went away ({error}); "
                f"{message.get('method')} may or may not have run",
            )

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        link = self._link(server)
        if link is not None:
            with contextlib.suppress(HostLost, OSError, ray.exceptions.RayError):
                await link.deliver(server, caller, message)

    async def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        link = self._link(server)
        if link is None:
            return
        with contextlib.suppress(HostLost, OSError, ray.exceptions.RayError):
            async for item in link.stream(server, caller, None):
                yield item

    async def dropped(self) -> dict[str, dict[str, int]]:
        """Messages from backends that no client could be given, per server and reason."""
        counts: dict[str, dict[str, int]] = {}
        with contextlib.suppress(ray.exceptions.RayError):
            for per_host in await asyncio.gather(*(h.dropped.remote() for h in self.hosts)):
                counts.update(per_host)
        return counts

    async def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncGenerator[str, None]:
        host = (
            self._host(server)
            if server in self._placed
            else (self.hosts[0] if self.hosts else None)
        )
        if host is None:
            return
        async for line in remote_items(host.logs.remote(server, replica, pod, follow, tail)):
            yield line

    async def describe(self, server: str, caller: Caller | None = None) -> dict[str, Any] | None:
        host = self._host(server)
        if host is None:
            return None
        result: dict[str, Any] | None = await host.describe.remote(server, caller)
        return result
