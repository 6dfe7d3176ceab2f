"""Checks a client's JSON-RPC message before it may reach a shared backend.

The envelope is JSON-RPC 2.0 as MCP uses it; the params of a known method are checked with
the official schema of the client's revision (`mcp_types.methods`). Unknown methods pass:
the backend answers them itself.
"""

from __future__ import annotations

from typing import Any

from mcp_types import methods
from pydantic import ValidationError

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message

JSONRPC_KEYS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
RESERVED_PREFIX = "mcpd/"  # mcpd's own messages between gateway and hosts


class Invalid(ValueError):
    def __init__(self, code: int, text: str, request_id: Any = None) -> None:
        super().__init__(text)
        self.code = code
        self.request_id = request_id

    def response(self) -> Message:
        return jsonrpc.error(self.request_id, self.code, str(self))


def _valid_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def check(message: Any, version: str) -> Message:
    """The message when it is well-formed for `version` (only its JSON-RPC members); raise
    Invalid otherwise."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise Invalid(jsonrpc.INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object")
    if not message.keys() <= JSONRPC_KEYS:
        message = {key: value for key, value in message.items() if key in JSONRPC_KEYS}
    has_id = "id" in message
    if has_id and not _valid_id(message["id"]):
        raise Invalid(jsonrpc.INVALID_REQUEST, "Invalid Request: id must be a string or integer")
    request_id = message.get("id") if has_id else None
    if "method" not in message:
        if not has_id or ("result" in message) == ("error" in message):
            raise Invalid(
                jsonrpc.INVALID_REQUEST,
                "Invalid Request: a response needs an id and exactly one of result, error",
                request_id,
            )
        if "result" in message and not isinstance(message["result"], dict):
            raise Invalid(jsonrpc.INVALID_REQUEST, "Invalid Request: result must be an object")
        if "error" in message and not isinstance(message["error"], dict):
            raise Invalid(jsonrpc.INVALID_REQUEST, "Invalid Request: error must be an object")
        return message
    method = message["method"]
    if not isinstance(method, str) or not method:
        raise Invalid(
            jsonrpc.INVALID_REQUEST, "Invalid Request: method must be a string", request_id
        )
    if method.startswith(RESERVED_PREFIX):
        raise Invalid(jsonrpc.METHOD_NOT_FOUND, f"Method not found: {method}", request_id)
    params = message.get("params")
    if "params" in message and not isinstance(params, dict):
        raise Invalid(
            jsonrpc.INVALID_PARAMS, "Invalid params: params must be an object", request_id
        )
    validate = methods.validate_client_request if has_id else methods.validate_client_notification
    try:
        validate(method, version, params)
    except (KeyError, ValueError) as error:
        if isinstance(error, ValidationError):
            detail = error.errors()[0]
            where = ".".join(str(part) for part in detail["loc"])
            raise Invalid(
                jsonrpc.INVALID_PARAMS, f"Invalid params: {where}: {detail['msg']}", request_id
            ) from None
        # not a method of this revision: the backend says what it makes of it
    return message
