"""`subscriptions/listen` (2026-07-28): change notifications on one long-lived response stream.

Served from what the hosts already fan out to listeners (list changes, and `resources/updated`
for URIs the session subscribed to with `resources/subscribe`, which 2025-era backends speak),
filtered to what the client opted in to and tagged with the subscription id. A project
endpoint merges its servers' notifications. Only change notifications travel here: questions
and log lines belong to requests (the hosts never pick a per-request listener for them).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from mcpctl.gateway.sessions import ClientSession
from mcpctl.gateway.targets import Target
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message

SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
MAX_RESOURCE_SUBSCRIPTIONS = 100  # URIs one listen may ask for
# filter field -> (the notification it lets through, the capability that says it is served)
LIST_FILTERS = {
    "toolsListChanged": ("notifications/tools/list_changed", "tools"),
    "promptsListChanged": ("notifications/prompts/list_changed", "prompts"),
    "resourcesListChanged": ("notifications/resources/list_changed", "resources"),
}


class InvalidFilter(ValueError):
    pass


def requested(message: Message) -> dict[str, Any]:
    notifications = (message.get("params") or {}).get("notifications") or {}
    if not isinstance(notifications, dict):
        raise InvalidFilter("Invalid params: notifications must be an object")
    uris = notifications.get("resourceSubscriptions") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise InvalidFilter("Invalid params: resourceSubscriptions must be a list of URIs")
    if len(uris) > MAX_RESOURCE_SUBSCRIPTIONS:
        raise InvalidFilter(
            f"Invalid params: {len(uris)} resourceSubscriptions; "
            f"the limit is {MAX_RESOURCE_SUBSCRIPTIONS}"
        )
    return notifications


async def listen(
    target: Target, session: ClientSession, message: Message, capabilities: dict[str, Any]
) -> AsyncGenerator[Message, None]:
    """The subscription's stream: the acknowledgment, then its notifications."""
    subscription = message["id"]
    wanted = requested(message)
    stream = target.listen(session)
    try:
        honored: dict[str, Any] = {}
        methods = set()
        for field, (notification, capability) in LIST_FILTERS.items():
            if wanted.get(field) is True and capability in capabilities:
                honored[field] = True
                methods.add(notification)
        uris: set[str] = set()
        if wanted.get("resourceSubscriptions") and (capabilities.get("resources") or {}).get(
            "subscribe"
        ):
            for index, uri in enumerate(dict.fromkeys(wanted["resourceSubscriptions"])):
                subscribe = {
                    "jsonrpc": "2.0",
                    "id": f"mcpd-subscribe-{index}",
                    "method": "resources/subscribe",
                    "params": {"uri": uri},
                }
                async for item in target.handle(session, subscribe):
                    if jsonrpc.is_response(item) and "result" in item:
                        uris.add(uri)
            if uris:
                honored["resourceSubscriptions"] = sorted(uris)
        yield _tagged(
            subscription,
            jsonrpc.notification(
                "notifications/subscriptions/acknowledged", {"notifications": honored}
            ),
        )
        async for item in stream:
            kind, uri = item.get("method"), (item.get("params") or {}).get("uri")
            if kind in methods or (kind == "notifications/resources/updated" and uri in uris):
                yield _tagged(subscription, item)
    finally:
        await stream.aclose()


def _tagged(subscription: Any, notification: Message) -> Message:
    params = dict(notification.get("params") or {})
    params["_meta"] = {**(params.get("_meta") or {}), SUBSCRIPTION_ID_KEY: subscription}
    return {**notification, "params": params}
