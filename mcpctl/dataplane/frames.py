"""The wire between a gateway and a host: length-prefixed JSON frames (orjson).

A frame is a JSON array `[kind, stream, ...]`. Gateway to host: HELLO (the first frame, with
the token), CALL and LISTEN open a stream, MORE grants it credit, CANCEL ends it, DELIVER
carries a client's notification or answer. Host to gateway: ITEM on a stream, END of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct
from typing import Any

import orjson

from mcpctl.mcp import jsonrpc

HELLO = "h"
CALL = "c"
LISTEN = "l"
MORE = "m"
CANCEL = "x"
DELIVER = "d"
ITEM = "i"
END = "e"

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # above the 16 MiB a backend message may take
MAX_HELLO = 256  # ["h", "<64 hex digits>"] is 73 bytes: nothing bigger is read before the token
WINDOW = 64  # items a stream may send before the gateway grants more


class FrameError(ConnectionError):
    pass


def encode(*frame: Any) -> bytes:
    body = jsonrpc.dumps(frame)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> list[Any] | None:
    """The next frame, or None when the peer closed the connection. A frame over `limit` is
    refused from its header, before its body is read."""
    try:
        header = await reader.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        if size > limit:
            raise FrameError(f"a frame of {size} bytes is over the limit of {limit}")
        frame = orjson.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        if isinstance(error, FrameError):
            raise
        return None
    except orjson.JSONDecodeError as error:
        raise FrameError(f"a frame is not JSON: {error}") from None
    if not isinstance(frame, list) or len(frame) < 2:
        raise FrameError("a frame must be [kind, stream, ...]")
    return frame


def token_for(secret_key: bytes) -> str:
    """The cluster's data-plane token, derived from the key every mcpd process shares."""
    return hmac.new(secret_key, b"mcpd-dataplane-v1", hashlib.sha256).hexdigest()
