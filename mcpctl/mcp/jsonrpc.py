"""JSON-RPC 2.0 message shapes as MCP uses them (plain dicts on the wire)."""

from __future__ import annotations

import json
from typing import Any

import orjson

Message = dict[str, Any]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
# On a server-to-client request a transport passes up: the (backend) id of the request it
# belongs to, when the transport knows it (never sent to a client).
RELATED_REQUEST_KEY = "mcpd/relatedRequest"
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000 to -32099).
BACKEND_UNAVAILABLE = -32001
REQUEST_TIMEOUT = -32001  # as the official SDK says it
REQUEST_CANCELLED = -32800


def dumps(value: Any) -> bytes:
    """Compact JSON, fast; integers past 64 bits (which orjson refuses) the slow way."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def is_request(message: Message) -> bool:
    return "method" in message and "id" in message


def is_notification(message: Message) -> bool:
    return "method" in message and "id" not in message


def is_response(message: Message) -> bool:
    return (
        "method" not in message and "id" in message and ("result" in message or "error" in message)
    )


def error(request_id: Any, code: int, text: str, data: Any = None) -> Message:
    body: dict[str, Any] = {"code": code, "message": text}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def result(request_id: Any, value: Any) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    message: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def progress_token(message: Message) -> Any:
    params = message.get("params")
    if isinstance(params, dict):
        meta = params.get("_meta")
        if isinstance(meta, dict):
            return meta.get("progressToken")
    return None
