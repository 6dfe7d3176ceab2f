"""Pods as instances: create from the pure render, follow through the shared watch, reach
STDIO servers by attach (image PID 1) or exec (package/command in a runner pod)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from mcpctl.controllers.manifests import (
    CONTAINER,
    MANAGED_BY,
    REPLICA_LABEL,
    SERVER_LABEL,
    SPEC_HASH_ANNOTATION,
    PodEnv,
    PodOptions,
    render_pod,
    uses_exec,
)
from mcpctl.controllers.workload import Workload
from mcpctl.models.server import Transport
from mcpctl.orchestrators.base import Channel, Exit, Handle, Orchestrator, StartError
from mcpctl.orchestrators.kubernetes.channel import WebSocketChannel
from mcpctl.orchestrators.kubernetes.connection import api_client
from mcpctl.orchestrators.kubernetes.watcher import PodWatcher

log = logging.getLogger(__name__)
T = TypeVar("T")
FAILED_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
}


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str = "mcpctl-servers"
    context: str | None = None
    kubeconfig: str | None = None
    runner_image: str = "ghcr.io/mcpctl/runner:0.1.0"
    node_selector: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 300.0


@dataclass
class _Placed:
    restarts: int = 0  # the container's restartCount when mcpd took the pod


def _container_status(pod: Any) -> Any:
    statuses = pod.status.container_statuses or [] if pod.status else []
    return next((s for s in statuses if s.name == CONTAINER), None)


def _failure(pod: Any, restarts_before: int) -> str | None:
    """Why this pod is no longer a healthy instance, or None while it is (or may become) one."""
    if pod.metadata.deletion_timestamp is not None:
        return "pod deleted"
    if pod.status and pod.status.phase in ("Failed", "Succeeded"):
        detail = pod.status.reason or pod.status.message or ""
        return f"pod {pod.status.phase.lower()}" + (f": {detail}" if detail else "")
    status = _container_status(pod)
    if status is None:
        return None
    waiting = status.state.waiting if status.state else None
    if waiting is not None and waiting.reason in FAILED_WAITING:
        return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    if status.restart_count > restarts_before:
        last = status.last_state.terminated if status.last_state else None
        detail = (
            f"exited with code {last.exit_code}" + (f" ({last.reason})" if last.reason else "")
            if last
            else ""
        )
        return f"container restarted (restartCount {status.restart_count}) {detail}".strip()
    return None


def _running(pod: Any) -> bool:
    status = _container_status(pod)
    return bool(status and status.state and status.state.running and status.ready is not False)


class KubernetesOrchestrator(Orchestrator):
    instances_outlive_mcpd = True

    def __init__(self, config: KubernetesConfig) -> None:
        self.config = config
        self.api = api_client(config.kubeconfig, config.context)
        self.core: Any = client.CoreV1Api(self.api)  # its stubs make every field Optional
        self.options = PodOptions(
            namespace=config.namespace,
            runner_image=config.runner_image,
            node_selector=config.node_selector,
        )
        self.watcher = PodWatcher(self.core, config.namespace, f"{MANAGED_BY}=mcpd")
        self._placed: dict[str, _Placed] = {}
        self._started = False
        # Its own threads: blocking client calls (an attach can wait long) must never starve
        # the event loop's default executor, which the store and the watch also use.
        self._executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="k8s-api")

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def _ensure_watching(self) -> None:
        if not self._started:
            self._started = True
            self.watcher.start(asyncio.get_running_loop())
        await self.watcher.synced()

    async def start(self, workload: Workload) -> Handle:
        await self._ensure_watching()
        manifest = render_pod(
            workload,
            self.options,
            PodEnv(values=workload.env, secret_refs=workload.secret_refs),
            resources=workload.resources,
            extra_labels=workload.labels,
            node_selector=workload.node_selector,
        )
        try:
            created = await self._call(
                self.core.create_namespaced_pod, self.config.namespace, manifest
            )
        except ApiException as error:
            raise StartError(f"cannot create pod: {error.status} {error.reason}") from None
        name = created.metadata.name
        self._placed[name] = _Placed()

        def settled(pods: dict[str, Any]) -> tuple[str, Any] | None:
            pod = pods.get(name)
            if pod is None:
                return None
            failure = _failure(pod, 0)
            if failure is not None:
                return ("failed", failure)
            return ("running", pod) if _running(pod) else None

        try:
            outcome, detail = await self.watcher.wait_for(settled, self.config.start_timeout)
        except TimeoutError:
            outcome, detail = "failed", f"pod not running after {self.config.start_timeout:g} s"
        except asyncio.CancelledError:  # stopped while starting: leave no pod behind
            await asyncio.shield(self._delete(name))
            self._placed.pop(name, None)
            raise
        if outcome == "failed":
            await self._delete(name)
            self._placed.pop(name, None)
            raise StartError(str(detail))
        pod = detail
        address = None
        if workload.transport is not Transport.STDIO and workload.port is not None:
            address = f"http://{pod.status.pod_ip}:{workload.port}{workload.path}"
        return Handle(
            name, workload.server, workload.replica, workload.spec_hash, address, pod=name
        )

    async def _delete(self, name: str) -> None:
        try:
            await self._call(
                self.core.delete_namespaced_pod, name, self.config.namespace, grace_period_seconds=5
            )
        except ApiException as error:
            if error.status != 404:
                log.warning("deleting pod %s failed: %s %s", name, error.status, error.reason)

    async def stop(self, handle: Handle) -> None:
        assert handle.pod is not None
        await self._ensure_watching()
        await self._delete(handle.pod)
        self._placed.pop(handle.pod, None)
        with contextlib.suppress(TimeoutError):
            await self.watcher.wait_for(lambda pods: True if handle.pod not in pods else None, 30)

    async def wait(self, handle: Handle) -> Exit:
        name = handle.pod
        assert name is not None
        await self._ensure_watching()
        placed = self._placed.get(name)
        before = placed.restarts if placed else 0

        def ended(pods: dict[str, Any]) -> str | None:
            pod = pods.get(name)
            return "pod gone" if pod is None else _failure(pod, before)

        return Exit(None, await self.watcher.wait_for(ended))

    async def open_stdio(self, handle: Handle, workload: Workload) -> Channel:
        assert handle.pod is not None
        # `stream()` swaps the request method of the ApiClient it is given while it runs, so a
        # shared client would send concurrent calls over websocket: each session gets its own.
        core = client.CoreV1Api(client.ApiClient(self.api.configuration))
        connect: Callable[..., Any]
        extra: dict[str, Any]
        if uses_exec(workload):  # a runner pod: start the server in it
            connect, extra = core.connect_get_namespaced_pod_exec, {"command": list(workload.argv)}
        else:  # the image's PID 1 is the server
            connect, extra = core.connect_get_namespaced_pod_attach, {}
        try:
            ws = await self._call(
                stream,
                connect,
                handle.pod,
                self.config.namespace,
                container=CONTAINER,
                stdin=True,
                stdout=True,
                stderr=False,
                tty=False,
                _preload_content=False,
                **extra,
            )
        except ApiException as error:
            raise StartError(
                f"cannot open a session to pod {handle.pod}: {error.status} {error.reason}"
            ) from None
        return WebSocketChannel(ws, asyncio.get_running_loop(), self._executor)

    async def adopt(self, server: str) -> list[Handle]:
        """Running pods of `server` are taken over (newest per replica); the rest are deleted."""
        await self._ensure_watching()
        newest: dict[int, Any] = {}
        for pod in list(self.watcher.pods.values()):
            labels = pod.metadata.labels or {}
            if labels.get(SERVER_LABEL) != server:
                continue
            replica = int(labels.get(REPLICA_LABEL, "-1"))
            keep = newest.get(replica)
            healthy = _running(pod) and _failure(pod, _restarts(pod)) is None
            if not healthy:
                await self._delete(pod.metadata.name)
            elif keep is None or pod.metadata.creation_timestamp > keep.metadata.creation_timestamp:
                if keep is not None:
                    await self._delete(keep.metadata.name)
                newest[replica] = pod
            else:
                await self._delete(pod.metadata.name)
        handles = []
        for replica, pod in sorted(newest.items()):
            name = pod.metadata.name
            annotations = pod.metadata.annotations or {}
            # A runner pod is kept and its server exec'd anew; an image's PID 1 is reattached.
            self._placed[name] = _Placed(_restarts(pod))
            handles.append(
                Handle(name, server, replica, annotations.get(SPEC_HASH_ANNOTATION, ""), pod=name)
            )
        return handles

    async def stop_orphans(self, known_servers: set[str]) -> int:
        await self._ensure_watching()
        orphans = [
            pod.metadata.name
            for pod in list(self.watcher.pods.values())
            if (pod.metadata.labels or {}).get(SERVER_LABEL) not in known_servers
        ]
        for name in orphans:
            await self._delete(name)
        return len(orphans)

    async def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncIterator[str]:
        if pod is None:
            return
        try:
            response = await self._call(
                self.core.read_namespaced_pod_log,
                pod,
                self.config.namespace,
                container=CONTAINER,
                follow=follow,
                tail_lines=tail,
                _preload_content=False,
            )
        except ApiException as error:
            raise StartError(
                f"cannot read the log of pod {pod}: {error.status} {error.reason}"
            ) from None
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            try:
                for line in response.stream(decode_content=True):
                    loop.call_soon_threadsafe(lines.put_nowait, line.decode(errors="replace"))
            finally:
                loop.call_soon_threadsafe(lines.put_nowait, None)

        loop.run_in_executor(self._executor, pump)
        try:
            while (line := await lines.get()) is not None:
                yield line
        finally:
            response.release_conn()

    async def close(self) -> None:
        self.watcher.stop()
        await self._call(self.api.close)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _restarts(pod: Any) -> int:
    status = _container_status(pod)
    return int(status.restart_count) if status else 0
