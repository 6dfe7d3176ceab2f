"""The host's delivery queues (mcpctl/dataplane/deliveries.py), with a backend played by the
test: one that never takes a message holds up only its own (server, caller) queue, up to its
bound; the rest is dropped and counted; a stalled write is counted; nothing is left behind."""

from __future__ import annotations

import asyncio

from mcpctl.dataplane.deliveries import MAX_QUEUED, MAX_QUEUED_TOTAL, Deliveries
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Stalled

ALICE = Caller("s-alice", "alice@example.com", "servers/a")
BOB = Caller("s-bob", "bob@example.com", "servers/a")
NOTE = jsonrpc.notification("notifications/roots/list_changed")


class Backends:
    """`stuck` never takes a message; `stalled` refuses each as a stalled write would."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, Caller, Message]] = []
        self.never = asyncio.Event()

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        if server == "stuck":
            await self.never.wait()
        if server == "stalled":
            raise Stalled("the server has not read its input for 10 s")
        self.delivered.append((server, caller, message))


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_stuck_backend_holds_up_only_its_own_queue_up_to_its_bound() -> None:
    backends = Backends()
    deliveries = Deliveries(backends.deliver)
    for _ in range(MAX_QUEUED + 10):
        deliveries.offer("stuck", ALICE, NOTE)
    deliveries.offer("stuck", BOB, NOTE)  # another caller's queue for the same backend
    deliveries.offer("quick", ALICE, NOTE)
    await settled()
    assert deliveries.dropped == {("stuck", "delivery_queue_full"): 10}
    assert backends.delivered == [("quick", ALICE, NOTE)]
    await deliveries.close()
    assert deliveries._queued == 0 and not deliveries._queues


async def test_all_queues_together_are_bounded() -> None:
    deliveries = Deliveries(Backends().deliver)
    callers = [Caller(f"s-{n}", f"u{n}@example.com", "servers/a") for n in range(100)]
    for caller in callers:
        for _ in range(MAX_QUEUED):
            deliveries.offer("stuck", caller, NOTE)
    await settled()
    assert deliveries._queued == MAX_QUEUED_TOTAL  # being written counts as held
    dropped = 100 * MAX_QUEUED - MAX_QUEUED_TOTAL
    assert deliveries.dropped == {("stuck", "delivery_queue_full"): dropped}
    await deliveries.close()
    assert deliveries._queued == 0 and not deliveries._queues


async def test_stalled_writes_are_counted_and_the_queue_goes_away() -> None:
    deliveries = Deliveries(Backends().deliver)
    for _ in range(3):
        deliveries.offer("stalled", ALICE, NOTE)
    await settled()
    assert deliveries.dropped == {("stalled", "delivery_stalled"): 3}
    assert deliveries._queued == 0 and not deliveries._queues
