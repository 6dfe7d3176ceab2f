"""A STDIO MCP server whose tools misbehave on purpose (standard library only).

Started the way users start servers: `command: python`, `args: [this file, STATE_DIR]`.
Every side effect and every cancellation it receives is appended to files in STATE_DIR,
so a test can count how often a call really ran.

Tools:
  echo {text}               answers at once
  append {text}             appends to STATE_DIR/appended, answers "appended N"
  crash {text}              appends, then exits without answering (a crash after a side effect)
  vanish {}                 exits without answering, leaving a child that holds its stdout open
                            until killed: mcpd sees the process end (its stdin closed) while
                            its output has not ended
  hang {}                   logs to STATE_DIR/hanging, never answers (cancellations are
                            logged to STATE_DIR/cancelled)
  sample {text}             logs to STATE_DIR/sampled, asks the client
                            sampling/createMessage(text), answers its reply (and logs that
                            to STATE_DIR/sample_outcomes)
  elicit {text}             asks elicitation/create(text); answers the action
  log {text}                sends a log notification (no related request) and answers
  progress {text}           sends progress with the request's token, then answers
  flood {count, pad}        sends `count` progress notifications of `pad` bytes, then answers
  big {bytes}               answers with a text of that many bytes (one long line)
  remember {text} / recall  per-process memory: what a per-user server keeps
  pid                       the process id
  changed                   sends notifications/tools/list_changed, then answers
  meta                      answers with the request's params._meta as JSON
resources/read of mem://slow logs to STATE_DIR/reads and takes 1.5 s.
logging/setLevel is logged to STATE_DIR/levels, tools/list to STATE_DIR/lists.
Lists: resources/list pages forever (a new nextCursor each time); prompts/list repeats its cursor.
Flags: --crash-after-init exits 0.3 s after the handshake (a crash loop); --deaf-after-init
stops reading its stdin after the handshake (it stays up, and what it is sent piles up);
--duplicate-tool lists `echo` a second time, last, described "echo, listed again" (a broken
server: which one a call reaches is the server's business, and here both echo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

STATE = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
CRASH_AFTER_INIT = "--crash-after-init" in sys.argv
DEAF_AFTER_INIT = "--deaf-after-init" in sys.argv
DUPLICATE_TOOL = "--duplicate-tool" in sys.argv
_write = threading.Lock()
_answers: dict[str, dict[str, Any]] = {}
_answered = threading.Condition()
_memory: list[str] = []
_ids = iter(range(1, 1 << 60))

TOOLS = [
    "echo",
    "append",
    "crash",
    "vanish",
    "hang",
    "sample",
    "elicit",
    "log",
    "progress",
    "big",
    "flood",
    "remember",
    "recall",
    "pid",
    "changed",
    "meta",
]


def send(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _write:
        sys.stdout.write(line)
        sys.stdout.flush()


def record(name: str, text: str) -> int:
    if STATE is None:
        return 0
    path = STATE / name
    with path.open("a") as file:
        file.write(text + "\n")
    return len(path.read_text().splitlines())


def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
    request_id = f"srv-{next(_ids)}"
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    with _answered:
        _answered.wait_for(lambda: request_id in _answers)
        return _answers.pop(request_id)


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


def call_tool(request: dict[str, Any]) -> dict[str, Any] | None:
    params = request.get("params") or {}
    name = params.get("name")
    arguments = params.get("arguments") or {}
    text = str(arguments.get("text", ""))
    if name == "echo":
        return text_result(f"echo: {text}")
    if name == "append":
        return text_result(f"appended {record('appended', text)}")
    if name == "crash":
        record("appended", text)
        os._exit(1)
    if name == "vanish":
        stay = "import signal; signal.pause()"
        subprocess.Popen([sys.executable, "-c", stay], stdin=subprocess.DEVNULL)  # stdout: ours
        os._exit(1)
    if name == "hang":
        record("hanging", text)
        return None
    if name == "sample":
        record("sampled", text)
        answer = ask(
            "sampling/createMessage",
            {
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
                "maxTokens": 10,
            },
        )
        if "error" in answer:
            outcome = f"sampling refused: {answer['error'].get('message')}"
        else:
            outcome = f"sampled: {answer['result']['content']['text']}"
        record("sample_outcomes", outcome)
        return text_result(outcome)
    if name == "elicit":
        answer = ask(
            "elicitation/create",
            {"message": text, "requestedSchema": {"type": "object", "properties": {}}},
        )
        if "error" in answer:
            return text_result(f"elicitation refused: {answer['error'].get('message')}")
        return text_result(f"elicited: {answer['result'].get('action')}")
    if name == "meta":
        return text_result(json.dumps(params.get("_meta") or {}, sort_keys=True))
    if name == "changed":
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        return text_result("changed")
    if name == "log":
        send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {"level": "info", "logger": "misbehaving", "data": text},
            }
        )
        return text_result("logged")
    if name == "progress":
        token = (params.get("_meta") or {}).get("progressToken")
        if token is not None:
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1, "message": text},
                }
            )
        return text_result("progressed")
    if name == "flood":
        token = (params.get("_meta") or {}).get("progressToken")
        pad = "p" * int(arguments.get("pad", 0))
        for n in range(int(arguments.get("count", 0))):
            note = {"progressToken": token, "progress": n, "message": pad}
            send({"jsonrpc": "2.0", "method": "notifications/progress", "params": note})
        return text_result("flooded")
    if name == "big":
        return text_result("x" * int(arguments.get("bytes", 0)))
    if name == "remember":
        _memory.append(text)
        return text_result("remembered")
    if name == "recall":
        return text_result(",".join(_memory))
    if name == "pid":
        return text_result(str(os.getpid()))
    raise KeyError(name)


def answer(request: dict[str, Any]) -> None:
    method = request.get("method")
    request_id = request.get("id")
    try:
        if method == "initialize":
            result: dict[str, Any] | None = {
                "protocolVersion": request["params"].get("protocolVersion", "2025-06-18"),
                "capabilities": {
                    "tools": {},
                    "resources": {},
                    "prompts": {},
                    "logging": {},
                },
                "serverInfo": {"name": "misbehaving", "version": "1"},
            }
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            record("lists", method)
            tools = [
                {"name": t, "inputSchema": {"type": "object"}, "description": t} for t in TOOLS
            ]
            if DUPLICATE_TOOL:
                again = {"name": "echo", "description": "echo, listed again"}
                tools.append({**again, "inputSchema": {"type": "object"}})
            result = {"tools": tools}
        elif method == "tools/call":
            result = call_tool(request)
            if result is None:
                return
        elif method == "resources/list":
            page = int((request.get("params") or {}).get("cursor") or 0)
            result = {
                "resources": [{"uri": f"mem://page/{page}", "name": f"page-{page}"}],
                "nextCursor": str(page + 1),
            }
        elif method == "resources/read":
            uri = request["params"]["uri"]
            if uri == "mem://slow":
                record("reads", uri)
                time.sleep(1.5)  # long enough for a crash to overtake it
            result = {"contents": [{"uri": uri, "text": f"content of {uri}"}]}
        elif method == "prompts/list":
            result = {"prompts": [{"name": "again"}], "nextCursor": "same"}
        elif method == "logging/setLevel":
            record("levels", request["params"]["level"])
            result = {}
        else:
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": -32601, "message": f"no method {method}"},
                }
            )
            return
    except KeyError as error:
        send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32602, "message": f"unknown: {error}"},
            }
        )
        return
    send({"jsonrpc": "2.0", "id": request_id, "result": result})


def crash_soon() -> None:
    time.sleep(0.3)
    os._exit(3)


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if "method" not in message:  # an answer to one of our questions
            with _answered:
                _answers[str(message.get("id"))] = message
                _answered.notify_all()
            continue
        if "id" not in message:
            if message["method"] == "notifications/cancelled":
                record("cancelled", json.dumps(message.get("params")))
            if message["method"] == "notifications/initialized" and CRASH_AFTER_INIT:
                threading.Thread(target=crash_soon, daemon=True).start()
            if message["method"] == "notifications/initialized" and DEAF_AFTER_INIT:
                threading.Event().wait()  # never reads again
            continue
        if message["method"] == "initialize":
            answer(message)
        else:
            threading.Thread(target=answer, args=(message,), daemon=True).start()


if __name__ == "__main__":
    main()
