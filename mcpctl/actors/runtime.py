"""The runtime in a gateway process: starts or joins Ray, finds or creates the controller,
learns from it where each server runs, and carries the gateway's MCP traffic to those hosts
over the data plane. Any number of gateway processes share one controller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import ray

from mcpctl.actors.controller import (
    RAY_NAMESPACE,
    Controller,
    controller_name,
    resource_sliver,
)
from mcpctl.actors.host import HostConfig
from mcpctl.actors.ray_cluster import init_ray
from mcpctl.dataplane.client import HostLink, HostLost
from mcpctl.dataplane.frames import token_for
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.models.kinds import SERVER, Kind
from mcpctl.observability.metrics import Metrics

log = logging.getLogger(__name__)
ControllerActor: Any = ray.remote(Controller)  # Ray handles are untyped
PLACEMENT_SECONDS = 1.0  # how often a gateway asks the controller where servers run


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
        host_config: HostConfig,
        resync_seconds: float = 30.0,
        hosts: int | None = None,
        namespace: str = "mcpd",
        metrics: Metrics | None = None,
        shared: bool = False,
    ) -> None:
        self.host_config = host_config
        self.resync_seconds = resync_seconds
        self.configured_hosts = hosts
        self.namespace = namespace  # the prefix of this deployment's actor names
        self.metrics = metrics
        # One of several gateway replicas: the controller and hosts are detached, and outlive
        # any gateway (stopped or killed). Otherwise they live and die with this process.
        self.shared = shared
        self.controller: Any = None
        self.hosts: list[Any] = []
        self._incarnations: list[str] = []  # the actor id behind each host handle
        self._placed: dict[str, int] = {}  # server -> host index it runs on
        self._syncs = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._links: dict[int, HostLink] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, data_dir: Path | None = None) -> None:
        init_ray(data_dir)
        self.controller = ControllerActor.options(
            name=controller_name(self.namespace),
            namespace=RAY_NAMESPACE,
            get_if_exists=True,  # one per deployment: the first gateway creates it
            lifetime="detached" if self.shared else None,
            max_restarts=-1,
            max_task_retries=-1,  # its methods are safe to run again
            num_cpus=0,
            resources=resource_sliver(self.host_config.host_resource),
            max_concurrency=1000,
        ).remote(
            self.host_config,
            self.resync_seconds,
            self.configured_hosts,
            self.namespace,
            self.shared,
        )
        await self.controller.ready.remote()
        await self.refresh()
        self._tasks.append(asyncio.get_running_loop().create_task(self._follow()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for link in self._links.values():
            await link.close()
        self._links.clear()
        if not self.shared and self.controller is not None:
            with contextlib.suppress(Exception):
                await self.controller.shutdown.remote()
            ray.kill(self.controller, no_restart=True)
        self.hosts.clear()

    async def refresh(self) -> None:
        """Learn from the controller where servers run (and time its resyncs)."""
        placement = await self.controller.placement.remote()
        for index, (name, incarnation) in enumerate(placement["hosts"]):
            if index < len(self._incarnations) and self._incarnations[index] == incarnation:
                continue
            handle = ray.get_actor(name, namespace=RAY_NAMESPACE)
            if index < len(self.hosts):
                self.hosts[index] = handle
                self._incarnations[index] = incarnation
            else:
                self.hosts.append(handle)
                self._incarnations.append(incarnation)
        self._placed = placement["placed"]
        if self.metrics is not None and placement["syncs"] != self._syncs:
            self.metrics.reconcile.observe(placement["last_sync_seconds"])
        self._syncs = placement["syncs"]

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(PLACEMENT_SECONDS)
            try:
                await self.refresh()
            except Exception:
                log.warning("the controller did not answer; it is restarting", exc_info=True)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Starlette lifespan: the runtime lives as long as the app serves."""
        await self.start(Path(self.host_config.data_dir))
        try:
            yield
        finally:
            await self.stop()

    # -- changes from the API ----------------------------------------------------------

    def on_change(self, kind: Kind, name: str) -> None:
        if kind is SERVER:
            asyncio.get_running_loop().create_task(self._apply(name))

    async def _apply(self, name: str) -> None:
        try:
            await self.controller.apply.remote(name)
            await self.refresh()
        except Exception:
            log.exception("applying server %s failed", name)

    def on_instance_deleted(self, server: str, replica: int) -> None:
        self.controller.instance_deleted.remote(server, replica)

    # -- MCP traffic -------------------------------------------------------------------

    def _host(self, server: str) -> Any:
        index = self._placed.get(server)
        return None if index is None else self.hosts[index]

    async def _knows(self, server: str) -> bool:
        """Whether `server` is placed; a server this gateway has not heard of yet (created
        through another replica a moment ago) makes it ask the controller again."""
        if server not in self._placed:
            with contextlib.suppress(Exception):
                await self.refresh()
        return server in self._placed

    async def _placed_link(self, server: str) -> HostLink | None:
        return self._link(server) if await self._knows(server) else None

    def _link(self, server: str) -> HostLink | None:
        """The data-plane connection to the host that runs `server` (made on first use)."""
        index = self._placed.get(server)
        if index is None:
            return None
        link = self._links.get(index)
        if link is None:
            node = ray.get_runtime_context().get_node_id()

            async def resolve() -> dict[str, Any]:
                host = self.hosts[index]  # the handle of its current incarnation
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
        link = await self._placed_link(server)
        request_id = message.get("id")
        if link is None:
            yield jsonrpc.error(
                request_id, jsonrpc.BACKEND_UNAVAILABLE, f"server {server!r} is not running"
            )
            return
        try:
            # Closed here when this is (the gateway stops reading at the response), not
            # later by the event loop's async-generator finalizer: a task and a wake-up each.
            async with contextlib.aclosing(link.stream(server, caller, message)) as items:
                async for item in items:
                    yield item
        except (HostLost, OSError, ray.exceptions.RayError) as error:
            yield jsonrpc.error(
                request_id,
                jsonrpc.BACKEND_UNAVAILABLE,
                f"server {server}: the host that runs it went away ({error}); "
                f"{message.get('method')} may or may not have run",
            )

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        link = await self._placed_link(server)
        if link is not None:
            with contextlib.suppress(HostLost, OSError, ray.exceptions.RayError):
                await link.deliver(server, caller, message)

    async def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        link = await self._placed_link(server)
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

    async def dataplane_refused(self) -> dict[tuple[str, str], int]:
        """Data-plane connections closed before they showed the cluster token, by host index
        and reason (each host's counts since it started); a host that does not answer is left
        out."""
        calls = (h.dataplane_refused.remote() for h in self.hosts)
        counts: dict[tuple[str, str], int] = {}
        for index, per_host in enumerate(await asyncio.gather(*calls, return_exceptions=True)):
            if isinstance(per_host, dict):
                for reason, count in per_host.items():
                    counts[(str(index), reason)] = count
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
        host = self._host(server) if await self._knows(server) else None
        if host is None:
            return None
        result: dict[str, Any] | None = await host.describe.remote(server, caller)
        return result
