"""A STDIO MCP server that speaks only 2026-07-28 and answers long calls with tasks
(the `io.modelcontextprotocol/tasks` extension), standard library only.

Started as users start servers: `command: python`, `args: [this file, STATE_DIR]`. It refuses
`initialize`, serves `server/discover`, and its one tool, `build {text}`, becomes a task when
the request's client capabilities take tasks (else -32021, as the extension says): the task
works for `ticks` polls (default 2), then completes with "built: <text>". `tasks/cancel`
cancels it. Each build started is appended to STATE_DIR/builds, each cancel to
STATE_DIR/cancels.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

STATE = Path(sys.argv[1]) if len(sys.argv) > 1 else None
EXTENSION = "io.modelcontextprotocol/tasks"
VERSION = "2026-07-28"
_tasks: dict[str, dict[str, Any]] = {}


def record(name: str, text: str) -> None:
    if STATE is not None:
        with (STATE / name).open("a") as file:
            file.write(text + "\n")


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(request_id: Any, code: int, text: str) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}})


def result(request_id: Any, value: dict[str, Any]) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": {"resultType": "complete", **value}})


def view(task_id: str) -> dict[str, Any]:
    task = _tasks[task_id]
    shown = {"taskId": task_id, "status": task["status"], "ttlMs": 60000, "pollIntervalMs": 50}
    if task["status"] == "completed":
        shown["result"] = {"content": [{"type": "text", "text": f"built: {task['text']}"}]}
    return shown


def answer(request: dict[str, Any]) -> None:
    method, request_id = request.get("method"), request.get("id")
    params = request.get("params") or {}
    meta = params.get("_meta") or {}
    if method == "initialize":
        error(request_id, -32022, "Unsupported protocol version: this server speaks 2026-07-28")
        return
    if meta.get("io.modelcontextprotocol/protocolVersion") != VERSION:
        error(request_id, -32022, "Unsupported protocol version")
        return
    capabilities = meta.get("io.modelcontextprotocol/clientCapabilities") or {}
    if method == "server/discover":
        result(
            request_id,
            {
                "supportedVersions": [VERSION],
                "capabilities": {"tools": {}, "extensions": {EXTENSION: {}}},
                "serverInfo": {"name": "tasks", "version": "1"},
            },
        )
    elif method == "tools/list":
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        tool = {"name": "build", "description": "a long build", "inputSchema": schema}
        result(request_id, {"tools": [tool], "ttlMs": 0, "cacheScope": "public"})
    elif method == "tools/call":
        if EXTENSION not in (capabilities.get("extensions") or {}):
            error(request_id, -32021, f"Missing required client capability: {EXTENSION}")
            return
        arguments = params.get("arguments") or {}
        task_id = str(uuid.uuid4())
        ticks = int(arguments.get("ticks", 2))
        _tasks[task_id] = {"status": "working", "text": arguments.get("text"), "ticks": ticks}
        record("builds", str(arguments.get("text")))
        send(
            {"jsonrpc": "2.0", "id": request_id, "result": {"resultType": "task", **view(task_id)}}
        )
    elif method in ("tasks/get", "tasks/cancel", "tasks/update"):
        task = _tasks.get(str(params.get("taskId")))
        if task is None:
            error(request_id, -32602, "unknown task")
            return
        if method == "tasks/cancel":
            record("cancels", str(params.get("taskId")))
            if task["status"] == "working":
                task["status"] = "cancelled"
            result(request_id, {})
        elif method == "tasks/update":
            result(request_id, {})
        else:
            if task["status"] == "working":
                task["ticks"] -= 1
                if task["ticks"] < 0:
                    task["status"] = "completed"
            result(request_id, view(str(params["taskId"])))
    else:
        error(request_id, -32601, f"Method not found: {method}")


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            message = json.loads(line)
            if "method" in message and "id" in message:
                answer(message)


if __name__ == "__main__":
    main()
