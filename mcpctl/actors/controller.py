"""The controller: a named, detached Ray actor, one per mcpd deployment, that owns placement.

It keeps the pool of host actors, places each server's supervisor on a host (rendezvous
hashing), hands every host its servers (at once on a change from the API, and in a full
resync every `resync_seconds`), and hands a host that Ray restarted its servers again. Where
servers go is decided as data (controllers/placement.py: plan); this actor makes the calls. Ray
restarts the controller itself when it dies; a new incarnation finds the hosts by name and
resyncs: hosts adopt what runs, nothing is duplicated. Every mcpd process is a gateway that
asks it where servers run (DESIGN: no home-made leader election).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mcpctl.actors.heap import settle_heap
from mcpctl.actors.host import Host, HostConfig
from mcpctl.controllers.placement import Placement, plan, pool_size
from mcpctl.store.database import Database
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories.specs import SERVERS
from mcpctl.store.tables import ServerRow

log = logging.getLogger(__name__)
HostActor: Any = ray.remote(Host)  # Ray handles are untyped
RAY_NAMESPACE = "mcpd"  # the Ray namespace of mcpd's named actors, shared by its gateways


def host_name(prefix: str, index: int) -> str:
    return f"{prefix}-host-{index}"


def controller_name(prefix: str) -> str:
    return f"{prefix}-controller"


def resource_sliver(resource: str | None) -> dict[str, float]:
    """What an actor asks of MCPD_RAY_HOST_RESOURCE: enough to be placed only where it is."""
    return {resource: 0.001} if resource else {}


class Controller:
    def __init__(
        self,
        host_config: HostConfig,
        resync_seconds: float = 30.0,
        hosts: int | None = None,
        prefix: str = "mcpd",
        detached: bool = False,
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        self.host_config = host_config
        self.database = Database(host_config.database_url)
        self.resync_seconds = resync_seconds
        self.configured_hosts = hosts
        self.prefix = prefix
        self.detached = detached  # hosts outlive this actor (gateway replicas on shared Ray)
        self.hosts: list[Any] = []
        self._placed: dict[str, int] = {}  # server -> host index it runs on
        self._lock: asyncio.Lock | None = None
        self._started: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.syncs = 0
        self.last_sync_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def ready(self) -> int:
        """Start once (the first caller, or the first after Ray restarted this actor), then
        answer how many hosts there are."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)
        return len(self.hosts)

    async def _start(self) -> None:
        self._lock = asyncio.Lock()
        await self.sync()
        if self.hosts:
            stopped = await self.hosts[0].stop_orphans.remote(list(self._placed))
            if stopped:
                log.info("stopped %d processes left by an earlier mcpd", stopped)
        self._tasks.append(asyncio.get_running_loop().create_task(self._resync_forever()))
        settle_heap()

    async def process_id(self) -> int:
        return os.getpid()

    async def shutdown(self) -> None:
        """The deployment is going away (not one gateway): stop hosts and what they run."""
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(h.shutdown.remote() for h in self.hosts))
        for host in self.hosts:
            ray.kill(host)
        self.hosts.clear()

    async def placement(self) -> dict[str, Any]:
        """Where each server runs, for the gateways' data plane; and the last resync's time."""
        await self.ready()
        return {
            "placed": dict(self._placed),
            # by name and incarnation: a gateway gets a new handle for a host started anew
            "hosts": [
                (host_name(self.prefix, i), h._actor_id.hex()) for i, h in enumerate(self.hosts)
            ],
            "syncs": self.syncs,
            "last_sync_seconds": self.last_sync_seconds,
        }

    # -- reconcile ---------------------------------------------------------------------

    def _desired(self) -> dict[str, dict[str, Any]]:
        with self.database.transaction() as session:
            return {r.metadata.name: r.spec.model_dump(mode="json") for r in SERVERS.list(session)}

    def _pool_wanted(self, servers: int) -> int:
        return pool_size(ray.cluster_resources().get("CPU", 2), servers, self.configured_hosts)

    async def _grow_pool(self, servers: int) -> None:
        wanted = self._pool_wanted(servers)
        while len(self.hosts) < wanted:
            index = len(self.hosts)
            self.hosts.append(await self._host(index))
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch(index)))

    async def _host(self, index: int) -> Any:
        """Host `index`: the one that runs (after a controller restart), or a new one on the
        index-th live node, round robin, so that hosts spread over the cluster."""
        wanted = self.host_config.host_resource
        nodes = sorted(
            n["NodeID"]
            for n in ray.nodes()
            if n["Alive"] and (wanted is None or n["Resources"].get(wanted, 0) > 0)
        )
        config = HostConfig(**{**self.host_config.__dict__, "index": index})
        host: Any = HostActor.options(
            name=host_name(self.prefix, index),
            namespace=RAY_NAMESPACE,
            get_if_exists=True,
            lifetime="detached" if self.detached else None,
            max_restarts=-1,
            max_task_retries=0,
            num_cpus=0,
            max_concurrency=10_000,
            resources=resource_sliver(wanted),
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], False),
        ).remote(config)
        await host.ready.remote()
        return host

    async def sync(self) -> None:
        """Make every host run exactly the servers placed on it (the resync backstop)."""
        assert self._lock is not None
        started = time.perf_counter()
        async with self._lock:
            desired = await asyncio.to_thread(self._desired)
            await self._grow_pool(len(desired))
            await self._carry_out(plan(desired, self._placed, len(self.hosts)), desired)
            await asyncio.gather(*(h.synced.remote() for h in self.hosts))
        self.syncs += 1
        self.last_sync_seconds = time.perf_counter() - started

    async def _carry_out(self, placement: Placement, specs: dict[str, dict[str, Any]]) -> None:
        """Record where servers run now, then make the hosts' calls (all at once)."""
        self._placed = placement.applied_to(self._placed)
        calls: list[Any] = [self.hosts[p.host].remove.remote(p.server) for p in placement.remove]
        calls += [self._move(m.server, specs[m.server], m.source, m.target) for m in placement.move]
        calls += [
            self.hosts[p.host].ensure.remote(p.server, specs[p.server]) for p in placement.ensure
        ]
        await asyncio.gather(*calls)

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
                except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnschedulableError):
                    # Its node is gone (a host is pinned to its node): a new one, elsewhere.
                    log.warning("host %d is gone with its node; starting it on another", index)
                    host = self.hosts[index] = await self._host(index)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            log.info("host %d is back; re-adopting its servers", index)
            await self.sync()

    # -- changes from the API ----------------------------------------------------------

    async def apply(self, name: str) -> None:
        """Hand one changed server to its host (a full sync only when the pool must grow)."""
        await self.ready()
        assert self._lock is not None
        try:
            async with self._lock:
                spec, count = await asyncio.to_thread(self._one, name)
                wanted = self._pool_wanted(count)
            if wanted > len(self.hosts):
                await self.sync()
                return
            async with self._lock:
                # The plan of this one server: as sync's, over it alone.
                desired = {name: spec} if spec is not None else {}
                placed = {name: self._placed[name]} if name in self._placed else {}
                await self._carry_out(plan(desired, placed, len(self.hosts)), desired)
        except Exception:
            log.exception("applying server %s failed", name)

    def _one(self, name: str) -> tuple[dict[str, Any] | None, int]:
        with self.database.transaction() as session:
            try:
                spec = SERVERS.get(session, name).spec.model_dump(mode="json")
            except NotFound:
                spec = None
            return spec, session.query(ServerRow).count()

    async def instance_deleted(self, server: str, replica: int) -> None:
        index = self._placed.get(server)
        if index is not None:
            await self.hosts[index].restart_replica.remote(server, replica)
