"""A Streamable HTTP MCP server that can stop answering and reading (standard library only,
asyncio, run in the test's own process).

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) and MCP for mcpd's
handshake and `tools/call echo`: `initialize` gets a session id, notifications and answers
202, `GET` (the server's stream) 405. Once `stall()` is called it reads nothing more and
answers nothing, on the connections it has and on every new one it accepts: a server that
hangs while its TCP port still takes connections. What it was sent before is counted by
JSON-RPC method in `received`; the connections it holds, in `held`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

PROTOCOL = "2025-11-25"
SESSION = "stalling-session"


class StallingHttpServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.received: Counter[str] = Counter()
        self.held = 0  # connections it stopped reading
        self._stalled = asyncio.Event()
        self._closed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"

    async def __aenter__(self) -> StallingHttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._connections):
            writer.close()

    def stall(self) -> None:
        self._stalled.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while not self._stalled.is_set():
                head = await reader.readuntil(b"\r\n\r\n")
                method, headers = _parse(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if self._stalled.is_set():
                    break  # read, never answered
                writer.write(self._answer(method, body))
                await writer.drain()
            self.held += 1
            await self._closed.wait()  # neither reads nor answers, until the test ends
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, method: str, body: bytes) -> bytes:
        if method == "DELETE":
            return _response(200, b"")
        if method != "POST":
            return _response(405, b"")
        message: dict[str, Any] = json.loads(body)
        self.received[str(message.get("method", "answer"))] += 1
        if "id" not in message or "method" not in message:  # a notification or an answer
            return _response(202, b"")
        result: dict[str, Any] = {}
        if message["method"] == "initialize":
            result = {
                "protocolVersion": PROTOCOL,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": self.name, "version": "1"},
            }
        elif message["method"] == "tools/list":
            result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
        elif message["method"] == "tools/call":
            text = (message.get("params") or {}).get("arguments", {}).get("text", "")
            result = {"content": [{"type": "text", "text": f"echo: {text}"}], "isError": False}
        answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        return _response(200, answer.encode(), json=True)


def _parse(head: bytes) -> tuple[str, dict[str, str]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return request_line.split(" ", 1)[0], headers


def _response(status: int, body: bytes, json: bool = False) -> bytes:
    reason = {200: "OK", 202: "Accepted", 405: "Method Not Allowed"}[status]
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    if json:
        head += ["Content-Type: application/json", f"Mcp-Session-Id: {SESSION}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
