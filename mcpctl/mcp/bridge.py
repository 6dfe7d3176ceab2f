"""Shaping messages for the client's protocol revision, whatever the backend speaks.

Results are filled with what 2026-07-28 requires (`resultType`, cache hints) and then shaped
by the official schema of the client's revision (`mcp_types.methods`), which drops what that
revision does not know. Anything the schema cannot shape passes through unchanged.
"""

from __future__ import annotations

from typing import Any

from mcp_types import methods
from pydantic import ValidationError

from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.versions import SINGLE_EXCHANGE_REVISIONS

ENVELOPE_PREFIX = "io.modelcontextprotocol/"
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
CACHEABLE = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)


def envelope(message: Message) -> dict[str, Any] | None:
    """The 2026-07-28 per-request envelope (`params._meta`), if the message carries one."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta:
        return meta
    return None


def without_envelope(message: Message) -> Message:
    """The request as a handshake-era backend expects it: no per-request envelope keys."""
    meta = envelope(message)
    if meta is None:
        return message
    # The log level stays: the hosts filter each request's log lines by it.
    kept = {k: v for k, v in meta.items() if not k.startswith(ENVELOPE_PREFIX) or k == LOG_LEVEL}
    params = {k: v for k, v in message["params"].items() if k != "_meta"}
    if kept:
        params["_meta"] = kept
    return {**message, "params": params}


def with_envelope(
    message: Message, version: str, capabilities: dict[str, Any], client_info: dict[str, Any]
) -> Message:
    """The request as a 2026-07-28 backend expects it."""
    params = dict(message.get("params") or {})
    extensions = {**(capabilities.get("extensions") or {}), TASKS_EXTENSION: {}}
    params["_meta"] = {
        **(params.get("_meta") or {}),
        PROTOCOL_VERSION_KEY: version,
        # mcpd takes tasks: it hands them to clients that do, and polls for those that do not
        CLIENT_CAPABILITIES_KEY: {**capabilities, "extensions": extensions},
        CLIENT_INFO_KEY: client_info,
    }
    return {**message, "params": params}


def result_for(
    method: str, version: str, result: dict[str, Any], server_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    if result.get("resultType") == "task":  # an extension's shape: the core schema drops it
        return result
    if version in SINGLE_EXCHANGE_REVISIONS:
        result = {"resultType": "complete", **result}
        if method in CACHEABLE:
            result.setdefault("cacheScope", "private")
            result.setdefault("ttlMs", 0)
        if server_info:
            meta = result.get("_meta")
            result["_meta"] = {
                SERVER_INFO_KEY: server_info,
                **(meta if isinstance(meta, dict) else {}),
            }
    try:
        return methods.serialize_server_result(method, version, result)
    except (KeyError, ValueError, ValidationError):
        return result


def response_for(
    method: str, version: str, response: Message, server_info: dict[str, Any] | None = None
) -> Message:
    if isinstance(response.get("result"), dict):
        return {**response, "result": result_for(method, version, response["result"], server_info)}
    return response
