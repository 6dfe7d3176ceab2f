"""One list+watch of mcpd's pods per orchestrator; waiters are woken by events, never by polls.

The watch resumes from the last resourceVersion; a 410 Gone (compacted history) relists;
any other failure reconnects with back-off. A relist replaces the cache, so nothing is
missed and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)
T = TypeVar("T")
WATCH_SECONDS = 240


class PodWatcher:
    def __init__(self, core: Any, namespace: str, selector: str) -> None:
        self.core = core
        self.namespace = namespace
        self.selector = selector
        self.pods: dict[str, Any] = {}
        self.relists = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._synced: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._resume_from: str | None = None

    def start(self, loop: asyncio.AbstractEventLoop, resume_from: str | None = None) -> None:
        """Begin with a list, or resume a watch from `resume_from` (a resourceVersion)."""
        self._resume_from = resume_from
        self._loop = loop
        self._changed = asyncio.Condition()
        self._synced = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()

    async def synced(self, timeout: float = 60) -> None:
        assert self._synced is not None
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            raise TimeoutError("no pod list from the API server") from None

    def _run(self) -> None:
        delay = 0.2
        version: str | None = self._resume_from
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._follow(version)
                delay = 0.2
            except ApiException as error:
                if error.status == 410:
                    log.info("pod watch expired (410 Gone); relisting")
                    version = None
                    continue
                log.warning("pod watch failed (HTTP %s); retrying in %.1f s", error.status, delay)
            except Exception as error:
                log.warning(
                    "pod watch failed (%s); retrying in %.1f s", type(error).__name__, delay
                )
            if self._stopped.wait(delay):
                return
            delay = min(delay * 2, 10.0)
            version = None  # after a break, relist: events may have been missed

    def _relist(self) -> str:
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        self.relists += 1
        pods = {pod.metadata.name: pod for pod in listed.items}
        self._publish(lambda: self._replace(pods))
        return str(listed.metadata.resource_version)

    def _follow(self, version: str) -> str:
        self._watch = watch.Watch()
        for event in self._watch.stream(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
        ):
            if self._stopped.is_set():
                break
            kind, pod = event["type"], event["object"]
            if kind == "ERROR":
                status = getattr(pod, "code", None) or (
                    pod.get("code") if isinstance(pod, dict) else None
                )
                raise ApiException(status=status or 500, reason="watch error event")
            version = pod.metadata.resource_version
            if kind == "BOOKMARK":
                continue
            self._publish(functools.partial(self._apply, kind, pod))
        return version

    def _replace(self, pods: dict[str, Any]) -> None:
        self.pods = pods
        assert self._synced is not None
        self._synced.set()

    def _apply(self, kind: str, pod: Any) -> None:
        if kind == "DELETED":
            self.pods.pop(pod.metadata.name, None)
        else:
            self.pods[pod.metadata.name] = pod

    def _publish(self, change: Callable[[], None]) -> None:
        loop, condition = self._loop, self._changed
        assert loop is not None and condition is not None

        async def notify() -> None:
            async with condition:
                change()
                condition.notify_all()

        asyncio.run_coroutine_threadsafe(notify(), loop)

    async def wait_for(
        self, check: Callable[[dict[str, Any]], T | None], timeout: float | None = None
    ) -> T:
        """Wait until `check(pods)` returns something other than None; return it."""
        assert self._changed is not None
        found: list[T] = []

        def ready() -> bool:
            value = check(self.pods)
            if value is None:
                return False
            found.append(value)
            return True

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        return found[0]
