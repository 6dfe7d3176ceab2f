"""The tasks extension (`io.modelcontextprotocol/tasks`) through mcpd.

mcpd tells 2026-07-28 backends it takes tasks, so a backend may answer a long `tools/call`
with a task handle. A client that declared the extension gets the handle, its `taskId`
sealed with the cluster key and bound to the principal and endpoint that created it: any
gateway replica routes its `tasks/get|update|cancel` to the right server, and nobody else can
reach the task (DESIGN: tenants never meet). A client that did not declare it (every 2025-era
client) gets the final result: mcpd polls the task for it, within the request deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.fernet import InvalidToken

from mcpctl.gateway.sessions import fernet_for
from mcpctl.mcp import bridge, jsonrpc
from mcpctl.mcp.jsonrpc import Message

EXTENSION = bridge.TASKS_EXTENSION
METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
TASK_ID_PREFIX = "mcpd-task."
MAX_AGE = 30 * 86400  # seconds a sealed task id is honored (backends' ttlMs are shorter)
POLL_SECONDS = (0.05, 5.0)  # bounds on the backend's pollIntervalMs when mcpd polls


class UnknownTask(ValueError):
    pass


@dataclass(frozen=True)
class TaskRef:
    server: str
    task_id: str


def takes_tasks(capabilities: dict[str, Any]) -> bool:
    extensions = capabilities.get("extensions")
    return isinstance(extensions, dict) and EXTENSION in extensions


def is_task(response: Message) -> bool:
    result = response.get("result")
    return isinstance(result, dict) and result.get("resultType") == "task"


class TaskIds:
    def __init__(self, cluster_key: bytes) -> None:
        self._fernet = fernet_for(cluster_key, b"mcpd-task-ids-v1")

    def seal(self, principal: str, endpoint: str, server: str, task_id: str) -> str:
        sealed = orjson.dumps({"p": principal, "e": endpoint, "s": server, "t": task_id})
        return TASK_ID_PREFIX + self._fernet.encrypt(sealed).decode()

    def open(self, task_id: object, principal: str, endpoint: str) -> TaskRef:
        """The task a client's id names, if it is this principal's on this endpoint; the same
        error otherwise, so nobody learns whether another's task exists."""
        unknown = UnknownTask(f"Invalid params: unknown task {str(task_id)[:80]!r}")
        if not isinstance(task_id, str) or not task_id.startswith(TASK_ID_PREFIX):
            raise unknown
        try:
            sealed = orjson.loads(
                self._fernet.decrypt(task_id.removeprefix(TASK_ID_PREFIX), ttl=MAX_AGE)
            )
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            raise unknown from None
        if (sealed["p"], sealed["e"]) != (principal, endpoint):
            raise unknown
        return TaskRef(sealed["s"], sealed["t"])


def with_task_id(response: Message, task_id: str) -> Message:
    result = response.get("result")
    if not isinstance(result, dict) or "taskId" not in result:
        return response
    return {**response, "result": {**result, "taskId": task_id}}


Ask = Callable[[Message], Any]  # sends one request for the task's server; awaits its response


async def until_done(response: Message, ask: Ask) -> Message:
    """The final result of the task `response` created, polled for a client that cannot take
    a task handle. The caller bounds the wait (the request deadline)."""
    task: dict[str, Any] = response["result"]
    request_id = response.get("id")
    while task.get("status") not in TERMINAL:
        if task.get("status") == "input_required":
            return jsonrpc.error(
                request_id,
                jsonrpc.INTERNAL_ERROR,
                "the server's task needs input, which this client cannot give through a task "
                f"({EXTENSION}); the task is cancelled",
            )
        interval = task.get("pollIntervalMs")
        seconds = interval / 1000 if isinstance(interval, int | float) else 1.0
        await asyncio.sleep(min(max(seconds, POLL_SECONDS[0]), POLL_SECONDS[1]))
        polled = await ask(_request("tasks/get", task["taskId"]))
        if "error" in polled:
            return {**polled, "id": request_id}
        task = polled.get("result") or {}
    if task["status"] == "completed":
        return jsonrpc.result(request_id, task.get("result") or {})
    if task["status"] == "failed" and isinstance(task.get("error"), dict):
        return {"jsonrpc": "2.0", "id": request_id, "error": task["error"]}
    return jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, f"the server's task {task['status']}")


def cancel_request(task_id: str) -> Message:
    return _request("tasks/cancel", task_id)


def _request(method: str, task_id: str) -> Message:
    return {
        "jsonrpc": "2.0",
        "id": f"mcpd-{method}",
        "method": method,
        "params": {"taskId": task_id},
    }
