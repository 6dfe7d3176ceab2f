"""The audit trail: every `tools/call`, `prompts/get` and `resources/read`, and every denied
request, recorded in the store with who, where, what, the outcome and how long it took.

Arguments are never kept: only the sha256 of their canonical JSON (sorted keys, no spaces), so
two identical calls can be matched without anyone reading what was passed.

The request never waits for the store: a record goes into a bounded in-memory queue (a full
queue drops it and counts it in `mcpctl_audit_dropped_total`), and a background task writes the
queue in batches, many rows per transaction, every `flush_seconds` or as soon as a batch is
full. Rows older than the retention are deleted periodically. The task starts with the first
record and the app's shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import Counter
from sqlalchemy import delete
from starlette.requests import HTTPConnection

from mcpctl.mcp.jsonrpc import Message
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database
from mcpctl.store.tables import AuditEventRow

log = logging.getLogger(__name__)
AUDITED = frozenset({"tools/call", "prompts/get", "resources/read"})
OUTCOMES = ("ok", "tool_error", "protocol_error", "denied", "timeout")
# Reasons of denials as metric labels (bounded); anything else is counted as "other".
DENIALS = frozenset(
    {
        "unauthenticated",  # no token
        "invalid_token",  # a token refused (mcpctl_auth_failures_total says why)
        "forbidden",  # 403: e.g. a member on a server endpoint
        "not_found",  # 404 for a project the principal is not in
        "rate_limited",  # 429
        "tool_denied",  # per-tool access (gateway/targets.py)
        "policy",  # any other policy denial
    }
)
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
SEPARATOR = "__"  # gateway/targets.py: a project names its servers' tools `server__tool`
ROUTE_KEY = "mcpd/server"  # gateway/targets.py: a message mcpd made for one member server
ANONYMOUS = "-"
AUDIT_EVENTS = AuditEventRow.metadata.tables[AuditEventRow.__tablename__]  # its Core table


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = True
    retention_days: float = 30.0  # 0: kept for ever
    queue_size: int = 10_000  # records waiting for the store; more are dropped (and counted)
    batch_size: int = 1000  # rows per transaction
    flush_seconds: float = 0.5  # a partly filled batch waits at most this long
    purge_seconds: float = 3600.0  # how often rows past the retention are deleted


def arguments_hash(arguments: Any) -> str | None:
    """sha256 of the canonical JSON of `arguments` (None when there are none)."""
    if arguments is None:
        return None
    try:
        canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer past 64 bits: orjson refuses it, json does not
        text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = text.encode()
    return hashlib.sha256(canonical).hexdigest()


def trace_id(request: HTTPConnection, message: Message | None) -> str | None:
    """The W3C trace id of `_meta.traceparent`, else of the `traceparent` header."""
    params = message.get("params") if message else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    value = meta.get("traceparent") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        value = _header(request, b"traceparent")
    match = TRACEPARENT.match(value.strip().lower()) if value else None
    return match.group(1) if match else None


def _header(request: HTTPConnection, name: bytes) -> str | None:
    """A request header by its lower-case name, read from the scope (`request.headers.get`
    raises and catches a KeyError inside for every header that is absent, the usual case)."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def outcome_of(response: Message | None) -> str:
    if response is None:
        return "timeout"
    if "error" in response:
        return "protocol_error"
    result = response.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        return "tool_error"
    return "ok"


def _endpoint(request: HTTPConnection) -> tuple[str, str | None, str | None]:
    """(endpoint, project, server) from the path: `projects/dev`, `servers/time`."""
    parts = request.scope["path"].split("/")
    if len(parts) >= 4 and parts[1] == "mcp" and parts[2] in ("servers", "projects"):
        name = parts[3][:63]
        endpoint = f"{parts[2]}/{name}"
        return (endpoint, name, None) if parts[2] == "projects" else (endpoint, None, name)
    return request.scope["path"][:80], None, None


def _what(message: Message | None) -> tuple[str, str, Any]:
    """(method, name, arguments) of a request."""
    if not message:
        return "", "", None
    method = str(message.get("method") or "")
    params = message.get("params")
    if not isinstance(params, dict):
        return method, "", None
    if method == "resources/read":
        return method, str(params.get("uri") or ""), None
    return method, str(params.get("name") or ""), params.get("arguments")


def _principal_of(request: HTTPConnection) -> str:
    user = request.scope.get("user")
    email = getattr(user, "email", None) if getattr(user, "is_authenticated", False) else None
    return str(email) if email else ANONYMOUS


class AuditLog:
    def __init__(self, database: Database, metrics: Metrics, config: AuditConfig) -> None:
        self.database = database
        self.metrics = metrics
        self.config = config
        self._pending: list[dict[str, Any]] = []
        self._recorded: dict[str, Counter] = {}  # outcome -> its mcpctl_audit_records_total
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0

    # -- recording (the hot path: no I/O, no waiting) ---------------------------------------

    def observed(
        self,
        request: HTTPConnection,
        principal: str,
        message: Message,
        response: Message | None,
        started: float,
        method: str | None = None,
    ) -> None:
        """A request's answer (None: no answer within the deadline)."""
        if not self.config.enabled:
            return
        method = method or str(message.get("method"))
        if method not in AUDITED:
            return
        _, name, arguments = _what(message)
        endpoint, project, server = _endpoint(request)
        if server is None:
            server = self._server(request, project, message, method, name)
        outcome = outcome_of(response)
        reason = None
        if response is not None and isinstance(response.get("error"), dict):
            reason = str(response["error"].get("message", ""))[:512]
        duration = time.perf_counter() - started
        self._add(
            {
                "at": datetime.fromtimestamp(time.time() - duration, UTC),
                "principal": principal[:320],
                "endpoint": endpoint,
                "project": project,
                "server": server,
                "method": method,
                "name": name[:512],
                "outcome": outcome,
                "status": None,
                "reason": reason,
                "duration_ms": round(duration * 1000, 3),
                "request_id": _request_id(message),
                "trace_id": trace_id(request, message),
                "args_hash": arguments_hash(arguments),
            }
        )

    def denied(
        self,
        request: HTTPConnection,
        reason: str,
        detail: str = "",
        *,
        status: int = 403,
        principal: str | None = None,
        message: Message | None = None,
        server: str | None = None,
    ) -> None:
        """A request refused: counted in `mcpctl_mcp_denied_total{kind, reason}` and recorded.
        `reason` is one of DENIALS (others are counted as "other"); `detail` is kept in the
        record's reason column."""
        endpoint, project, server_of_path = _endpoint(request)
        kind = endpoint.split("/", 1)[0] if "/" in endpoint else "api"
        self.metrics.denied.labels(kind, reason if reason in DENIALS else "other").inc()
        if not self.config.enabled:
            return
        method, name, arguments = _what(message)
        if not method:  # not read yet: what the 2026-07-28 headers say, if anything
            method = request.headers.get("mcp-method", "")[:64]
            name = request.headers.get("mcp-name", "")
        text = f"{reason}: {detail}" if detail else reason
        self._add(
            {
                "at": datetime.now(UTC),
                "principal": (principal or _principal_of(request))[:320],
                "endpoint": endpoint,
                "project": project,
                "server": server or server_of_path,
                "method": method[:64],
                "name": name[:512],
                "outcome": "denied",
                "status": status,
                "reason": text[:512],
                "duration_ms": 0.0,
                "request_id": _request_id(message),
                "trace_id": trace_id(request, message),
                "args_hash": arguments_hash(arguments),
            }
        )

    def _server(
        self,
        request: HTTPConnection,
        project: str | None,
        message: Message,
        method: str,
        name: str,
    ) -> str | None:
        if ROUTE_KEY in message:
            return str(message[ROUTE_KEY])
        if method == "resources/read":
            owners = request.app.state.context.resource_owners.get(project or "", {})
            owner = owners.get(name)
            return str(owner) if owner else None
        server, separator, _ = name.partition(SEPARATOR)
        return server[:63] if separator else None

    def _add(self, row: dict[str, Any]) -> None:
        if len(self._pending) >= self.config.queue_size:
            self.metrics.audit_dropped.inc()
            return
        self._pending.append(row)
        recorded = self._recorded.get(row["outcome"])
        if recorded is None:  # labels() costs a lock and a lookup: once per outcome
            recorded = self._recorded[row["outcome"]] = self.metrics.audit_records.labels(
                row["outcome"]
            )
        recorded.inc()
        if self._task is None:
            self._start()
        if len(self._pending) >= self.config.batch_size and self._wake is not None:
            self._wake.set()

    # -- writing (a background task) --------------------------------------------------------

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # recorded outside the event loop (a test): written by flush()
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                if time.monotonic() - self._last_purge >= self.config.purge_seconds:
                    self._last_purge = time.monotonic()
                    await asyncio.to_thread(self.purge)
            except Exception:
                log.exception("writing the audit trail failed")

    async def flush(self) -> None:
        """Write what was recorded before this call, a batch per transaction (what arrives
        meanwhile waits for the next turn, so a slow store means bigger batches, not more)."""
        waiting = len(self._pending)
        while waiting > 0:
            size = min(waiting, self.config.batch_size)
            batch = self._pending[:size]
            del self._pending[:size]
            waiting -= size
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                self.metrics.audit_dropped.inc(len(batch))
                raise

    def _write(self, rows: list[dict[str, Any]]) -> None:
        # Into the table (Core), not the mapped class: the ORM's bulk insert costs more per
        # row for the same executemany.
        with self.database.transaction() as session:
            session.execute(AUDIT_EVENTS.insert(), rows)
        self.metrics.audit_batches.inc()

    def purge(self, now: datetime | None = None) -> int:
        """Delete the rows older than the retention; how many went."""
        if self.config.retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.config.retention_days)
        with self.database.transaction() as session:
            result = session.execute(delete(AuditEventRow).where(AuditEventRow.at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        """Stop the writer and write what is left (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            while self._pending:
                await self.flush()
        except Exception:
            log.exception("writing the audit trail at shutdown failed")

    def around(
        self, lifespan: Callable[[Any], AbstractAsyncContextManager[None]] | None
    ) -> Callable[[Any], AbstractAsyncContextManager[None]]:
        """The app's lifespan, then the last records written when it ends."""

        @contextlib.asynccontextmanager
        async def lifespan_with_audit(app: Any) -> AsyncIterator[None]:
            try:
                if lifespan is None:
                    yield
                else:
                    async with lifespan(app):
                        yield
            finally:
                await self.close()

        return lifespan_with_audit


def _request_id(message: Message | None) -> str | None:
    if not message or message.get("id") is None:
        return None
    return str(message["id"])[:128]


def log_of(request: HTTPConnection) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


def observed(
    request: HTTPConnection,
    principal: str,
    message: Message,
    response: Message | None,
    started: float,
    method: str | None = None,
) -> None:
    """The hook of mcp_endpoint._observed: a request's answer, or None past its deadline."""
    log_of(request).observed(request, principal, message, response, started, method)


def denied(
    request: HTTPConnection,
    reason: str,
    detail: str = "",
    *,
    status: int = 403,
    principal: str | None = None,
    message: Message | None = None,
    server: str | None = None,
) -> None:
    """Record a refused request (see AuditLog.denied); never blocks, never raises."""
    try:
        log_of(request).denied(
            request,
            reason,
            detail,
            status=status,
            principal=principal,
            message=message,
            server=server,
        )
    except Exception:  # the audit must never turn a refusal into a 500
        log.exception("recording a denied request failed")
