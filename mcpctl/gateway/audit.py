"""The audit trail: every `tools/call`, `prompts/get` and `resources/read`, and every denied
request, recorded in the store with who, where, what, the outcome and how long it took.

What a request names is kept as tracing keeps it (observability/tracing.py): the method, the
tool or prompt name, the resource URI without its query, fragment or credentials, the JSON-RPC
id. Arguments are never kept: only the sha256 of their canonical JSON (sorted keys, no spaces),
so two identical calls can be matched without anyone reading what was passed; a protocol error
keeps its code, not its message (a server may echo what it was sent). Text is stored escaped
where a database could not take it (store/tables.py, SafeText: NUL, lone surrogates).

Requests without a valid token cost a row per source address and reason per
`anonymous_window_seconds` (with `count`), however many come: a flood of bad tokens writes a
bounded number of rows.

The request never waits for the store: a record (a tuple of the table's columns, FIELDS) goes
into a bounded in-memory queue (a full queue drops it and counts it in
`mcpctl_audit_dropped_total{reason="queue_full"}`), and a background task writes the queue in
batches, many rows per transaction, every `flush_seconds` or as soon as a batch is full. The
rows go to the driver as it takes them, many rows an INSERT (`_insert`): the ORM's and Core's
work per row and per value cost more than the insert itself, and a driver's executemany lets
the GIL go (and the event loop take it) between any two rows. A batch the store refuses is
written again in halves, so one bad row never costs the others; a row refused on its own is
dropped and counted (`reason="refused"`). Rows older than the retention are deleted
periodically. The task starts with the first record and the app's shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
from prometheus_client import Counter
from sqlalchemy import delete
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import HTTPConnection

from mcpctl.mcp.jsonrpc import Message
from mcpctl.observability.metrics import Metrics
from mcpctl.observability.redaction import resource_subject
from mcpctl.store.database import Database
from mcpctl.store.tables import AuditEventRow, SafeText, storable

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
# A record: a tuple of these columns, in this order (`at`: seconds since the epoch), its text
# already cut to the columns' sizes (`_stored` escapes, and cuts again, only when it must).
FIELDS = (
    "at",
    "principal",
    "endpoint",
    "project",
    "server",
    "method",
    "name",
    "outcome",
    "status",
    "reason",
    "duration_ms",
    "request_id",
    "trace_id",
    "args_hash",
    "source",
    "count",
)
AT, OUTCOME, REASON, SOURCE, COUNT = (
    FIELDS.index(name) for name in ("at", "outcome", "reason", "source", "count")
)
assert set(FIELDS) == {c.name for c in AUDIT_EVENTS.columns} - {"id"}, "FIELDS: the table's"
# The SafeText columns (position, length kept): what `_stored` escapes and cuts as SafeText does.
TEXTS = tuple(
    (i, kind.most if kind.cut else None)
    for i, kind in enumerate(AUDIT_EVENTS.c[name].type for name in FIELDS)
    if isinstance(kind, SafeText)
)
TEXT_VALUES = itemgetter(*(i for i, _ in TEXTS))
ROWS_PER_INSERT = 64  # rows of a multi-row INSERT (x 16 parameters: PostgreSQL takes 65,535)
SQLITE_ROWS = 1024  # rows of an INSERT on SQLite (x 17 parameters: it takes 32,766 since 3.32)
URI_METHODS = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
OTHER_SOURCES = "*"  # the aggregated row of addresses past `anonymous_sources` in a window
# Errors that say the store is not there (no connection, locked, pool exhausted), not that a
# row is bad: writing the batch again in halves would only fail more times.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = True
    retention_days: float = 30.0  # 0: kept for ever
    queue_size: int = 10_000  # records waiting for the store; more are dropped (and counted)
    batch_size: int = 1000  # rows per transaction
    flush_seconds: float = 0.5  # a partly filled batch waits at most this long
    purge_seconds: float = 3600.0  # how often rows past the retention are deleted
    # Requests without a valid token: one row per source address and reason per window...
    anonymous_window_seconds: float = 5.0
    # ...for at most this many (address, reason) pairs a window; the rest share one row a reason
    anonymous_sources: int = 1000


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
    """(method, name, arguments) of a request: `name` is the tool or prompt, or the resource
    as `resource_subject` keeps it; `arguments` are only ever hashed."""
    if not message:
        return "", "", None
    method = str(message.get("method") or "")[:64]
    params = message.get("params")
    if not isinstance(params, dict):
        return method, "", None
    if method in URI_METHODS:
        return method, resource_subject(str(params.get("uri") or "")[:4096])[:512], None
    if method == "completion/complete":  # names a prompt, or a resource (template) by URI
        ref = params.get("ref")
        ref = ref if isinstance(ref, dict) else {}
        subject = ref.get("name") or resource_subject(str(ref.get("uri") or "")[:4096])
        return method, str(subject)[:512], params.get("argument")
    return method, str(params.get("name") or "")[:512], params.get("arguments")


def _secrets_of(message: Message | None) -> list[str]:
    """Strings of a request the audit never keeps (argument values and keys, ids in `_meta`,
    task ids, states, URIs' queries): looked for in the texts of denials, which may echo one."""
    params = message.get("params") if message else None
    if not isinstance(params, dict):
        return []
    found: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            parts = _uri_secrets(value) if "://" in value else []
            found.extend(t for t in (value, *parts) if len(t) >= 4)
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(str(key))
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect({k: v for k, v in params.items() if k != "name"})  # the name is kept anyway
    return sorted(found, key=len, reverse=True)


def _uri_secrets(uri: str) -> list[str]:
    """What `resource_subject` drops of a URI: credentials, query (and each of its values),
    fragment."""
    rest, _, fragment = uri.partition("#")
    rest, _, query = rest.partition("?")
    authority = rest.partition("://")[2].partition("/")[0]
    credentials = authority.rpartition("@")[0]
    values = [item.partition("=")[2] for item in query.split("&")]
    return [credentials, *credentials.split(":"), query, *values, fragment]


def _scrubbed(text: str, message: Message | None) -> str:
    """`text` without any of the request's strings the audit never keeps (`_secrets_of`)."""
    for secret in _secrets_of(message):
        text = text.replace(secret, "…")
    return text


def _source(request: HTTPConnection) -> str | None:
    client = request.scope.get("client")
    return str(client[0])[:64] if client else None


def _principal_of(request: HTTPConnection) -> str:
    user = request.scope.get("user")
    email = getattr(user, "email", None) if getattr(user, "is_authenticated", False) else None
    return str(email) if email else ANONYMOUS


class AuditLog:
    def __init__(self, database: Database, metrics: Metrics, config: AuditConfig) -> None:
        self.database = database
        self.metrics = metrics
        self.config = config
        self._pending: list[tuple[Any, ...]] = []  # records (FIELDS), oldest first
        self._recorded: dict[str, Counter] = {}  # outcome -> its mcpctl_audit_records_total
        # This window's unauthenticated denials by (source address, reason), and its end.
        self._anonymous: dict[tuple[str | None, str], list[Any]] = {}
        self._window_ends: float | None = None
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
        if method not in AUDITED:  # so it is short: never cut
            return
        _, name, arguments = _what(message)
        endpoint, project, server = _endpoint(request)
        if server is None:
            server = self._server(request, project, message, method, name)
        outcome = outcome_of(response)
        reason = None
        if response is not None and isinstance(response.get("error"), dict):
            code = response["error"].get("code")  # never the message: it may echo the request
            reason = f"error {code if isinstance(code, int) else '?'}"[:512]
        duration = time.perf_counter() - started
        self._add(
            (
                time.time() - duration,
                principal[:320],
                endpoint,
                project,
                server,
                method,
                name,
                outcome,
                None,
                reason,
                round(duration * 1000, 3),
                _request_id(message),
                trace_id(request, message),
                arguments_hash(arguments),
                _source(request),
                1,
            )
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
        record's reason column (without any of the request's strings it may echo). Without a
        principal (401), the record is aggregated per source address and reason."""
        endpoint, project, server_of_path = _endpoint(request)
        kind = endpoint.split("/", 1)[0] if "/" in endpoint else "api"
        self.metrics.denied.labels(kind, reason if reason in DENIALS else "other").inc()
        if not self.config.enabled:
            return
        method, name, arguments = _what(message)
        if not method:  # not read yet: what the 2026-07-28 headers say, if anything
            method = request.headers.get("mcp-method", "")[:64]
            name = request.headers.get("mcp-name", "")[:4096]
            name = (resource_subject(name) if method in URI_METHODS else name)[:512]
        text = f"{reason}: {_scrubbed(detail[:4096], message)}" if detail else reason
        principal = (principal or _principal_of(request))[:320]
        row = (
            time.time(),
            principal,
            endpoint,
            project,
            chosen[:63] if (chosen := server or server_of_path) else chosen,
            method,
            name,
            "denied",
            status,
            text[:512],
            0.0,
            _request_id(message),
            trace_id(request, message),
            arguments_hash(arguments),
            _source(request),
            1,
        )
        if status == 401 and principal == ANONYMOUS:
            self._aggregate(list(row))
        else:
            self._add(row)

    def _server(
        self,
        request: HTTPConnection,
        project: str | None,
        message: Message,
        method: str,
        name: str,
    ) -> str | None:
        if ROUTE_KEY in message:
            return str(message[ROUTE_KEY])[:63]
        if method == "resources/read":  # the owner of the URI as it was read (query and all)
            params = message.get("params") or {}
            owners = request.app.state.context.resource_owners.get(project or "", {})
            owner = owners.get(params.get("uri")) if isinstance(params, dict) else None
            return str(owner)[:63] if owner else None
        server, separator, _ = name.partition(SEPARATOR)
        return server[:63] if separator else None

    def _aggregate(self, row: list[Any]) -> None:
        """An unauthenticated denial: counted into its window's row for its source address and
        reason (a new row for the first of them in the window)."""
        if self._window_ends is None:
            self._window_ends = time.monotonic() + self.config.anonymous_window_seconds
        reason = row[REASON]
        key = (row[SOURCE], reason)
        if key not in self._anonymous and len(self._anonymous) >= self.config.anonymous_sources:
            key = (OTHER_SOURCES, reason)
            row[SOURCE] = OTHER_SOURCES
        kept = self._anonymous.get(key)
        if kept is not None:
            kept[COUNT] += 1
            return
        self._anonymous[key] = row
        if self._task is None:
            self._start()

    def _close_window(self, now: float | None) -> None:
        """Queue the aggregated rows of a window that has ended (any window when `now` is
        None: at shutdown)."""
        if self._window_ends is None or (now is not None and now < self._window_ends):
            return
        rows, self._anonymous, self._window_ends = list(self._anonymous.values()), {}, None
        for row in rows:
            self._add(tuple(row))

    def _add(self, row: tuple[Any, ...]) -> None:
        if len(self._pending) >= self.config.queue_size:
            self._dropped("queue_full").inc(row[COUNT])
            return
        self._pending.append(row)
        outcome = row[OUTCOME]
        recorded = self._recorded.get(outcome)
        if recorded is None:  # labels() costs a lock and a lookup: once per outcome
            recorded = self._recorded[outcome] = self.metrics.audit_records.labels(outcome)
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
        meanwhile waits for the next turn, so a slow store means bigger batches, not more),
        with the aggregated rows of an unauthenticated-denial window that has ended."""
        self._close_window(time.monotonic())
        waiting = len(self._pending)
        while waiting > 0:
            size = min(waiting, self.config.batch_size)
            batch = self._pending[:size]
            del self._pending[:size]
            waiting -= size
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                self._dropped("store_unavailable").inc(len(batch))
                raise

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """Write `rows` in one transaction; rows the store refuses (a value it cannot take)
        are found by writing the batch again in halves, and only they are dropped."""
        try:
            self._insert(rows)
        except UNAVAILABLE:
            raise
        except Exception as error:
            if len(rows) > 1:
                middle = len(rows) // 2
                self._write(rows[:middle])
                self._write(rows[middle:])
                return
            self._dropped("refused").inc(rows[0][COUNT])
            why = str(error).splitlines()[0][:200] if str(error) else ""
            log.warning("the store refused an audit record: %s: %r", type(error).__name__, why)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """`rows` in one transaction, their values made as the table's column types would
        make them, once per row (not per value), and handed to the driver as it takes them.

        The driver lets the GIL go for each statement it runs, and each time this thread wants
        it back it waits for the event loop, which wakes it up every time it lets the GIL go
        itself, thousands of times a second: under load that cost more than the rows (a
        statement per row was ~0.1 ms of CPU per call). So as few statements as can be: on
        SQLite one per batch of up to `SQLITE_ROWS` (`_padded_sql`); on PostgreSQL
        `ROWS_PER_INSERT` rows per INSERT, then one per smaller power of two."""
        with self.database.transaction() as session:
            connection = session.connection()
            dialect = connection.dialect
            values = _stored(rows, as_text=dialect.name == "sqlite")
            if dialect.name == "sqlite":
                most = _sqlite_rows(connection.connection.driver_connection)
                for i in range(0, len(values), most):
                    chunk = values[i : i + most]
                    size = 1 << (len(chunk) - 1).bit_length()  # the power of two that holds it
                    parameters = [*chain.from_iterable((*row, 1) for row in chunk)]
                    parameters += [None] * ((len(FIELDS) + 1) * (size - len(chunk)))
                    connection.exec_driver_sql(_padded_sql(size), tuple(parameters))
            else:
                placeholder, per = "%s", ROWS_PER_INSERT  # psycopg's
                full = len(values) - len(values) % per
                if full:  # one executemany of full INSERTs
                    each = [tuple(chain(*values[i : i + per])) for i in range(0, full, per)]
                    connection.exec_driver_sql(_insert_sql(placeholder, per), each)
                start, size = full, per // 2
                while start < len(values):  # the rest: an INSERT per smaller power of two
                    if len(values) - start >= size:
                        rest = tuple(chain(*values[start : start + size]))
                        connection.exec_driver_sql(_insert_sql(placeholder, size), rest)
                        start += size
                    size //= 2
        self.metrics.audit_batches.inc()

    def _dropped(self, reason: str) -> Counter:
        return self.metrics.audit_dropped.labels(reason)

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
        self._close_window(None)
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


_INSERTS: dict[tuple[str, int], str] = {}


def _insert_sql(placeholder: str, rows: int) -> str:
    """INSERT INTO audit_events (FIELDS) VALUES (...), ... of `rows` rows (kept: a driver
    caches a statement by its text)."""
    sql = _INSERTS.get((placeholder, rows))
    if sql is None:
        row = f"({', '.join([placeholder] * len(FIELDS))})"
        values = ", ".join([row] * rows)
        sql = f"INSERT INTO {AUDIT_EVENTS.name} ({', '.join(FIELDS)}) VALUES {values}"
        _INSERTS[placeholder, rows] = sql
    return sql


def _sqlite_rows(driver: Any) -> int:
    """Rows of one INSERT on SQLite: SQLITE_ROWS, or the power of two whose parameters its
    build takes (999 before 3.32)."""
    most = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // (len(FIELDS) + 1)
    return min(SQLITE_ROWS, 1 << (most.bit_length() - 1))


def _padded_sql(rows: int) -> str:
    """An INSERT of up to `rows` rows (a power of two) for SQLite, one statement whatever
    their number: `rows` rows of parameters, each row's values and a 1, the rows past the
    batch's all NULL and left out by the WHERE (kept: sqlite3 caches a statement by its
    text)."""
    sql = _INSERTS.get(("padded", rows))
    if sql is None:
        row = f"({', '.join(['?'] * (len(FIELDS) + 1))})"
        values = ", ".join([row] * rows)
        columns = ", ".join(f"column{i + 1}" for i in range(len(FIELDS)))
        sql = (
            f"INSERT INTO {AUDIT_EVENTS.name} ({', '.join(FIELDS)}) SELECT {columns} "
            f"FROM (VALUES {values}) WHERE column{len(FIELDS) + 1} IS NOT NULL"
        )
        _INSERTS["padded", rows] = sql
    return sql


def _sqlite_time(at: float, seconds: dict[int, str]) -> str:
    """`datetime.fromtimestamp(at, UTC)` as SQLAlchemy stores it on SQLite: `2026-01-02
    03:04:05.000006`, the microseconds rounded as fromtimestamp rounds them (half to even),
    each second's date and time made once (`seconds`)."""
    second = int(at)
    micro = round((at - second) * 1e6)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    if at < 0 or micro < 0:  # before 1970: as datetime does it
        return datetime.fromtimestamp(at, UTC).isoformat(" ", "microseconds")[:26]
    text = seconds.get(second)
    if text is None:
        text = seconds[second] = datetime.fromtimestamp(second, UTC).isoformat(" ")[:19]
    return f"{text}.{micro:06d}"


def _stored(rows: list[tuple[Any, ...]], as_text: bool) -> list[tuple[Any, ...]]:
    """The rows' values as the table's column types would bind them: `at` as a datetime in
    UTC (on SQLite, the text SQLAlchemy stores), text escaped and cut (`_safe`), every other
    value as it is."""
    stored = []
    seconds: dict[int, str] = {}
    for row in rows:
        row = _safe(row)
        at = row[AT]
        if at is not None:
            at = _sqlite_time(at, seconds) if as_text else datetime.fromtimestamp(at, UTC)
        stored.append((at, *row[1:]))
    return stored


def _safe(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """`row` with its SafeText columns escaped and cut (`storable`) when one carries a NUL or
    any non-ASCII character (rare: one check of the row's text finds out); the record has cut
    them to their columns already."""
    text = "".join(map(str, TEXT_VALUES(row)))
    if text.isascii() and "\x00" not in text:
        return row
    values = list(row)
    for i, most in TEXTS:
        if values[i] is not None:
            value = storable(values[i])
            values[i] = value if most is None else value[:most]
    return tuple(values)


def _request_id(message: Message | None) -> str | None:
    if not message or message.get("id") is None:
        return None
    request_id = message["id"]
    return (request_id if isinstance(request_id, str) else str(request_id))[:128]


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
