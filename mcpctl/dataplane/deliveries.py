"""What clients send to backends outside a request (DELIVER frames: notifications, answers to a
server's questions), taken off the loop that reads the gateway's connection.

Each (server, caller) has a bounded queue drained by a task of its own, so a backend that
stops reading its input holds up only what is on its way to it, and a caller's flood fills
only its own queue: what does not fit is dropped and counted, never waited for. A queue and
its task go away when it is empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Stalled

log = logging.getLogger(__name__)
Deliver = Callable[[str, Caller, Message], Awaitable[None]]
MAX_QUEUED = 32  # messages waiting for (or being written to) one (server, caller)
MAX_QUEUED_TOTAL = 1024  # for all of them together: the memory they hold is bounded


class Deliveries:
    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._queues: dict[tuple[str, Caller], deque[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued = 0
        self.dropped: Counter[tuple[str, str]] = Counter()  # by server and reason

    def offer(self, server: str, caller: Caller, message: Message) -> None:
        """Queue `message` for its backend, or drop it (and count it) when that is full."""
        key = (server, caller)
        queue = self._queues.get(key)
        if self._queued >= MAX_QUEUED_TOTAL or (queue is not None and len(queue) >= MAX_QUEUED):
            self.dropped[(server, "delivery_queue_full")] += 1
            return
        if queue is None:
            queue = self._queues[key] = deque()
            task = asyncio.get_running_loop().create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(message)
        self._queued += 1

    async def _drain(self, key: tuple[str, Caller], queue: deque[Message]) -> None:
        server, caller = key
        try:
            while queue:
                try:
                    await self._deliver(server, caller, queue[0])
                except Stalled:  # the backend has not read its input for the write deadline
                    self.dropped[(server, "delivery_stalled")] += 1
                except Exception:  # one client's message never stops the others
                    log.exception("delivering a client message to %s failed", server)
                finally:  # counted until delivered: what is being written is held too
                    queue.popleft()
                    self._queued -= 1
        finally:
            self._queued -= len(queue)  # what a cancelled task leaves
            del self._queues[key]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
