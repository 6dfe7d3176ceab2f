"""`requestState` of the `input_required` results mcpd gives 2026-07-28 clients.

It names the parked request at the host (server and ticket) and binds it as the spec asks:
to the principal, the endpoint, the request (method and a digest of its name and arguments)
and an expiry, encrypted and authenticated with a key derived from the cluster key, so any
gateway replica can continue the request and nobody can forge, read or replay it elsewhere.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.fernet import InvalidToken

from mcpctl.gateway.sessions import fernet_for
from mcpctl.mcp.jsonrpc import Message

MAX_STATE_BYTES = 4096
STATE_PREFIX = "mcpd1."  # tells mcpd's states from a 2026 backend's own, passed through


class InvalidState(ValueError):
    pass


@dataclass(frozen=True)
class Resumption:
    server: str
    ticket: str


def digest(message: Message) -> str:
    """What identifies a request across its retries: method, name or URI, arguments."""
    params = message.get("params") or {}
    salient = [
        message.get("method"),
        params.get("name", params.get("uri")),
        params.get("arguments"),
    ]
    return hashlib.sha256(orjson.dumps(salient, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class RequestStates:
    def __init__(self, cluster_key: bytes, ttl: float) -> None:
        self._fernet = fernet_for(cluster_key, b"mcpd-request-state-v1")
        self.ttl = ttl

    def seal(
        self, principal: str, endpoint: str, message: Message, server: str, ticket: str
    ) -> str:
        sealed: dict[str, Any] = {
            "p": principal,
            "e": endpoint,
            "d": digest(message),
            "s": server,
            "t": ticket,
            "x": time.time() + self.ttl,
        }
        return STATE_PREFIX + self._fernet.encrypt(orjson.dumps(sealed)).decode()

    def open(self, state: object, principal: str, endpoint: str, message: Message) -> Resumption:
        """The parked request a retry continues; InvalidState says why it may not."""
        if not isinstance(state, str) or len(state) > MAX_STATE_BYTES:
            raise InvalidState("requestState is not one mcpd gave")
        try:
            sealed = orjson.loads(self._fernet.decrypt(state.removeprefix(STATE_PREFIX)))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            raise InvalidState("requestState is not one mcpd gave (or was altered)") from None
        if sealed["p"] != principal or sealed["e"] != endpoint:
            raise InvalidState("requestState was given to another principal or endpoint")
        if sealed["d"] != digest(message):
            raise InvalidState("requestState belongs to another request (method, name, arguments)")
        if sealed["x"] < time.time():
            raise InvalidState("requestState expired: send the request again without it")
        return Resumption(sealed["s"], sealed["t"])
