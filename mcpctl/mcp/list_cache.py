"""Lists a backend gave, shared by its clients for a while.

2026-07-28 lists do not vary per client, and mcpd has one backend session for all of them
anyway, so a burst of clients listing tools costs the backend one `tools/list` (concurrent
asks share the one in flight). An entry lives for the backend's `ttlMs` hint, else
DEFAULT_TTL, and goes at once when the backend says that list changed or is replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mcpctl.mcp.jsonrpc import Message

CACHED = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list"})
INVALIDATES = {
    "notifications/tools/list_changed": ("tools/list",),
    "notifications/prompts/list_changed": ("prompts/list",),
    "notifications/resources/list_changed": ("resources/list", "resources/templates/list"),
}
DEFAULT_TTL = 10.0  # seconds, for backends that give no hint
MAX_TTL = 300.0
MAX_ENTRIES = 256  # pages kept per backend

Key = tuple[str, str]  # method, cursor


def key_of(message: Message) -> Key:
    params = message.get("params") or {}
    return (str(message.get("method")), str(params.get("cursor") or ""))


@dataclass
class _Entry:
    response: Message
    expires: float


class ListCache:
    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._loading: dict[Key, asyncio.Future[Message | None]] = {}
        self._generation: Counter[str] = Counter()  # per method: bumped by each change
        self.counts: Counter[str] = Counter()  # hit, shared, miss

    def fresh(self, key: Key) -> Message | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires < time.monotonic():
            return None
        self.counts["hit"] += 1
        return entry.response

    def loading(self, key: Key) -> asyncio.Future[Message | None] | None:
        return self._loading.get(key)

    def begin(self, key: Key) -> tuple[asyncio.Future[Message | None], int]:
        self.counts["miss"] += 1
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        return future, self._generation[key[0]]

    def finish(
        self, key: Key, began: tuple[asyncio.Future[Message | None], int], response: Message | None
    ) -> None:
        """Share the outcome with whoever waited; keep a result unless the list changed since."""
        future, generation = began
        if self._loading.get(key) is future:
            del self._loading[key]
        if not future.done():
            future.set_result(response)
        if response is None or generation != self._generation[key[0]]:
            return
        result: Any = response.get("result")
        if not isinstance(result, dict):
            return
        hint = result.get("ttlMs")
        ttl = min(hint / 1000, MAX_TTL) if isinstance(hint, int | float) else DEFAULT_TTL
        if ttl > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = _Entry(response, time.monotonic() + ttl)

    def changed(self, notification: str) -> None:
        for method in INVALIDATES.get(notification, ()):
            self._generation[method] += 1
            for key in [k for k in self._entries if k[0] == method]:
                del self._entries[key]

    def clear(self) -> None:
        for method in CACHED:
            self._generation[method] += 1
        self._entries.clear()
