"""Hostile strings against a real mcpd on each database (SQLite, PostgreSQL), in front of real
servers: NUL, lone surrogates, right-to-left marks, 1 MiB names and digits of other scripts in
every REST operation's path, query and body and in the MCP endpoints (paths, JSON-RPC fields,
headers). No 5xx, no traceback in mcpd's log, and no audit row lost: every record mcpd queued
is in the store. With them, the cases of the report on the real thing: an anonymous
`POST /mcp/projects/%00` among good calls, a member's NUL tool name and request id, a server
whose stderr carries a NUL, and a secret in a URI's query, in arguments and in ids that no
stored column keeps."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import ray
from sqlalchemy import create_engine, make_url, text

from mcpctl.store.tables import Base
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.e2e.test_audit import INIT, MCP, answer_of, own_database, until

SERVERS = Path(__file__).parents[1] / "servers"
MARKER = "mk-0a7c55-secret"
HOSTILE = {
    "nul": "\x00",
    "nul-inside": "a\x00b",
    "lone-surrogate": "\ud800",
    "rtl": "\u202eevil\u200f",
    "superscript-two": "²",
    "arabic-indic-three": "٣",
    "fullwidth-digits": "\uff11\uff12",
    "newline": "a\nb",
    "negative": "-1",
    "mebibyte": "n" * (1 << 20),
}
JSON = {"Content-Type": "application/json"}
# What stderr of this server says before it exits: a NUL in the middle.
STDERR_NUL = "import sys; sys.stderr.write('boom\\x00after\\n'); sys.stderr.flush(); sys.exit(3)"


@dataclass
class World:
    mcpd: Mcpd
    tokens: dict[str, str]
    database_url: str
    log: Path

    def client(self, user: str | None = "admin", **headers: str) -> httpx.Client:
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.Client(base_url=self.mcpd.url, headers=headers, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        body = self.client().get("/metrics").text
        total = 0.0
        for line in body.splitlines():
            if re.match(rf"{name}(\{{| )", line) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rows(self, where: str = "TRUE") -> list[Any]:
        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            rows = list(connection.execute(text(f"SELECT * FROM audit_events WHERE {where}")))
        engine.dispose()
        return rows

    def all_written(self) -> bool:
        """Every audit record mcpd queued is in the store (none dropped, none waiting)."""
        queued = self.metric("mcpctl_audit_records_total")
        return queued > 0 and len(self.rows()) == queued

    def settle(self) -> None:
        """Wait until the records of what was sent are all stored: past the window that
        aggregates unauthenticated denials (AuditConfig.anonymous_window_seconds), then until
        every queued record is in the store."""
        time.sleep(5.5)
        deadline = time.monotonic() + 60
        while not self.all_written():
            assert time.monotonic() < deadline, f"not all stored: {self.audit_counts()}"
            time.sleep(0.2)

    def audit_counts(self) -> str:
        body = self.client().get("/metrics").text
        lines = [line for line in body.splitlines() if line.startswith("mcpctl_audit_")]
        return f"{len(self.rows())} rows stored; " + "; ".join(lines)

    def tracebacks(self) -> list[str]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [
            lines[max(0, i - 3) : i + 25] for i, line in enumerate(lines) if "Traceback" in line
        ]


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of this run alone (others may run the same tests on the same
    server at once), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = own_database(name)
    try:
        yield url
    finally:
        engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    start_ray()
    root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    data = root / "data"
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_REQUEST_TIMEOUT": "5",
        "MCPD_ACTOR_HOSTS": "1",
    }
    stack = contextlib.ExitStack()
    if request.param == "postgresql":
        database_url = stack.enter_context(scratch_database("mcpctl_hostile"))
        env["MCPD_DATABASE_URL"] = database_url
    else:
        database_url = f"sqlite:///{data}/mcpd.db"
    daemon = start_mcpd(data, env)
    world = World(daemon, {"admin": daemon.token}, database_url, root / "data.log")
    api = world.client()
    servers = {
        "echoing": [str(SERVERS / "echoing.py")],
        "stderr": ["-c", STDERR_NUL],
    }
    for name, args in servers.items():
        spec = {"command": sys.executable, "args": args}
        created = api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec})
        assert created.status_code == 201, created.text
    email = "alice@example.com"
    api.post("/api/v1/users", json={"metadata": {"name": email}, "spec": {"role": "member"}})
    world.tokens["alice"] = api.post(f"/api/v1/users/{email}/tokens", json={}).json()["token"]
    project = {"servers": ["echoing"], "members": [email]}
    created = api.post("/api/v1/projects", json={"metadata": {"name": "p-alice"}, "spec": project})
    assert created.status_code == 201, created.text

    def running() -> bool:
        items = api.get("/api/v1/instances", params={"server": "echoing"}).json()["items"]
        return any(i["status"] == "RUNNING" for i in items)

    until(running, what="echoing never ran")
    with stack:
        yield world
        stop_mcpd(daemon)


class Session:
    """An MCP session of `user` on `path`; `send` posts any JSON-RPC body."""

    def __init__(self, world: World, user: str, path: str) -> None:
        self.http = world.client(user, **MCP)
        self.path = path
        opened = self.http.post(path, json=INIT)
        assert opened.status_code == 200, opened.text
        self.http.headers["Mcp-Session-Id"] = opened.headers["Mcp-Session-Id"]

    def send(self, body: Any, **headers: str) -> httpx.Response:
        return self.http.post(self.path, content=json.dumps(body), headers=headers)

    def request(self, method: str, request_id: Any = 1, **params: Any) -> httpx.Response:
        return self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def test_anonymous_nul_and_a_members_nul_names_cost_no_row(world: World) -> None:
    """The trial of the report: `POST /mcp/projects/%00` without a token among 40 calls, and a
    member's NUL tool name and request id. Every record is stored, escaped."""
    alice = Session(world, "alice", "/mcp/projects/p-alice")
    anonymous = world.client(None, **MCP)
    for i in range(40):
        assert alice.request("tools/call", i, name="echoing__echo", arguments={}).status_code == 200
        if i % 10 == 0:
            assert anonymous.post("/mcp/projects/%00", json=INIT).status_code == 401
    answer = answer_of(alice.request("tools/call", "r\x00", name="echoing__x\x00", arguments={}))
    assert answer["id"] == "r\x00"  # answered (the server echoes any tool name)

    world.settle()
    assert world.metric("mcpctl_audit_dropped_total") == 0
    [stranger] = world.rows("principal = '-' AND project = '\\x00'")
    assert (stranger.endpoint, stranger.status, stranger.count) == ("projects/\\x00", 401, 4)
    [member] = world.rows("request_id = 'r\\x00'")
    assert (member.name, member.principal) == ("echoing__x\\x00", "alice@example.com")
    assert len(world.rows("name = 'echoing__echo'")) == 40


def test_a_servers_stderr_with_a_nul_becomes_its_last_error_and_events(world: World) -> None:
    """A server that writes a NUL to stderr and exits: its last error and its lifecycle events
    (PostgreSQL refused both before) are stored escaped and shown."""
    api = world.client()

    def failed() -> Any:
        items = api.get("/api/v1/instances", params={"server": "stderr"}).json()["items"]
        return [i for i in items if "boom" in (i.get("lastError") or "")]

    [instance] = until(failed, 60, "the stderr server's error was never recorded")
    assert "boom\\x00after" in instance["lastError"]
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        reasons = connection.execute(
            text("SELECT reason FROM instance_events WHERE server = 'stderr'")
        ).scalars()
        assert any("boom\\x00after" in (r or "") for r in reasons)
    engine.dispose()
    history = api.get("/api/v1/analytics/history", params={"since": "1h"})
    assert history.status_code == 200, history.text
    assert not world.tracebacks()


def test_a_secret_in_uris_arguments_and_ids_reaches_no_stored_column(world: World) -> None:
    """A server that echoes everything it is sent, in results and in error messages; a client
    that puts a secret in URIs' queries, fragments and credentials, in arguments (values and
    names), in `_meta`, task ids and completion values, over every audited method. The audit
    keeps the method, the names and the URI without what follows `?`, and nothing else."""
    uri = f"mem://docs/a?token={MARKER}#{MARKER}"
    meta = {"progressToken": MARKER, "note": MARKER}
    arguments = {"text": MARKER, MARKER: [MARKER]}
    alice = Session(world, "alice", "/mcp/projects/p-alice")
    admin = Session(world, "admin", "/mcp/servers/echoing")
    for session, prefix in ((alice, "echoing__"), (admin, "")):
        for tool in ("echo", "fail", "nothing"):
            session.request("tools/call", name=prefix + tool, arguments=arguments, _meta=meta)
        session.request("prompts/get", name=prefix + "greet", arguments={"who": MARKER})
        for method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            session.request(method, uri=uri, _meta=meta)
        ref = {"type": "ref/resource", "uri": uri}
        session.request("completion/complete", ref=ref, argument={"name": "n", "value": MARKER})
        ref = {"type": "ref/prompt", "name": prefix + "greet"}
        session.request("completion/complete", ref=ref, argument={"name": "n", "value": MARKER})
        session.request("tasks/get", taskId=MARKER)
        session.request("tools/list", cursor=MARKER)

    world.settle()
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            dump = repr(connection.execute(table.select()).all())
            assert MARKER not in dump, table.name
    engine.dispose()
    reads = world.rows("method = 'resources/read'")
    assert {r.name for r in reads} == {"mem://docs/a"}
    assert {r.reason for r in world.rows("outcome = 'protocol_error'")} <= {
        "error -32602",
        "error -32601",
        "error -32002",
    }


def encoded(value: str) -> str:
    """A path segment or query value as a client puts it on the wire (a lone surrogate as the
    bytes UTF-8 would give it: ED A0 80)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def hostile_body(
    schema: dict[str, Any], components: dict[str, Any], value: str, depth: int = 0
) -> Any:
    """A body of the operation's schema with every string `value` (required fields filled)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return hostile_body(schema[key][0], components, value, depth)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        properties = schema.get("properties", {})
        body = {k: hostile_body(s, components, value, depth + 1) for k, s in properties.items()}
        if not properties and schema.get("additionalProperties") is not False:
            body = {value: value}
        return body
    if kind == "array":
        return [hostile_body(schema.get("items", {}), components, value, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return False
    return value


def valid_but_for(value: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body) of writes that are valid but for `value` in their free text: what
    the schema-wide bodies of `fuzz_rest` never reach (their names are hostile too)."""
    server = {"command": "true", "replicas": 0, "description": value, "args": [value]}
    server["env"] = [{"name": "FUZZ", "value": value}]
    prompt = {"text": value, "description": value, "arguments": [{"name": "a"}]}
    return [
        ("PUT", "/api/v1/servers/fz-s", {"metadata": {"name": "fz-s"}, "spec": server}),
        (
            "PUT",
            "/api/v1/projects/fz-p",
            {"metadata": {"name": "fz-p"}, "spec": {"description": value}},
        ),
        (
            "PUT",
            "/api/v1/templates/fz-t",
            {
                "metadata": {"name": "fz-t"},
                "spec": {"description": value, "server": {"command": value}},
            },
        ),
        (
            "PUT",
            "/api/v1/projects/p-alice/prompts/fz-pr",
            {"metadata": {"name": "fz-pr"}, "spec": prompt},
        ),
        (
            "PUT",
            "/api/v1/secrets/fz-sec",
            {"metadata": {"name": "fz-sec"}, "spec": {"data": {"k": value}}},
        ),
        (
            "PUT",
            "/api/v1/users/fz@example.com",
            {"metadata": {"name": "fz@example.com"}, "spec": {"displayName": value[:256]}},
        ),
        ("POST", "/api/v1/users/fz@example.com/tokens", {"name": value[:128]}),
        (
            "POST",
            "/api/v1/templates/fz-t/instantiate",
            {"name": "fz-i", "parameters": {"p": value}},
        ),
    ]


def fuzz_rest(world: World) -> list[str]:
    """Every operation of the OpenAPI document, each hostile string in each path parameter, each
    query parameter and every string of the body; what answered 5xx."""
    document = world.client().get("/api/v1/openapi.json").json()
    components = document.get("components", {}).get("schemas", {})
    api = world.client()
    failures = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            parameters = operation.get("parameters", [])
            queries = [p["name"] for p in parameters if p.get("in") == "query"]
            schema = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            for label, value in HOSTILE.items():
                url = re.sub(r"\{[^}]+\}", encoded(value), path)
                if len(url) > 64 * 1024:  # h11 refuses request lines this long (400)
                    url = re.sub(r"\{[^}]+\}", "x", path)
                tries = [(url, {})]
                tries += [(url, {q: value}) for q in queries if len(value) < 64 * 1024]
                for target, query in tries:
                    body = hostile_body(schema, components, value) if schema else None
                    try:
                        answer = api.request(
                            method.upper(),
                            target,
                            params={
                                k: v.encode("utf-8", "surrogatepass") for k, v in query.items()
                            },
                            content=json.dumps(body) if body is not None else None,
                            headers={"Content-Type": "application/json"} if body else {},
                        )
                    except httpx.HTTPError as error:
                        failures.append(f"{method.upper()} {path} {label} {query}: {error!r}")
                        continue
                    if answer.status_code >= 500:
                        failures.append(
                            f"{method.upper()} {path} {label} {list(query)}: "
                            f"{answer.status_code} {answer.text[:200]}"
                        )
    for label, value in HOSTILE.items():
        for method, path, body in valid_but_for(value):
            answer = api.request(method, path, content=json.dumps(body), headers=JSON)
            if answer.status_code >= 500:
                failures.append(
                    f"{method} {path} {label}: {answer.status_code} {answer.text[:200]}"
                )
            storable = "\x00" not in value and "\ud800" not in value
            if not storable and answer.status_code != 422:  # refused, naming the field
                failures.append(f"{method} {path} {label}: {answer.status_code}, not 422")
    return failures


def fuzz_mcp(world: World) -> list[str]:
    """The MCP endpoints: hostile endpoint names (anonymous, member, admin), JSON-RPC methods,
    ids, names, URIs, arguments, cursors and notifications in a session, and hostile headers."""
    failures: list[str] = []

    def check(what: str, send: Callable[..., httpx.Response], *args: Any, **kwargs: Any) -> None:
        try:
            answer = send(*args, **kwargs)
        except httpx.HTTPError as error:  # a dropped connection is a failure too
            failures.append(f"{what}: {error!r}")
            return
        if answer.status_code >= 500:
            failures.append(f"{what}: {answer.status_code} {answer.text[:200]}")

    anonymous, alice = world.client(None, **MCP), world.client("alice", **MCP)
    admin = world.client("admin", **MCP)
    session = Session(world, "alice", "/mcp/projects/p-alice")
    server = Session(world, "admin", "/mcp/servers/echoing")
    for label, value in HOSTILE.items():
        segment = encoded(value) if len(value) < 64 * 1024 else "x" * 1000
        for client, who in ((anonymous, "anonymous"), (alice, "alice"), (admin, "admin")):
            for path in (f"/mcp/projects/{segment}", f"/mcp/servers/{segment}",
                         f"/mcp/projects/p-alice/views/{segment}"):  # fmt: skip
                check(f"{who} POST {path[:60]} {label}", client.post, path, json=INIT)
                check(f"{who} GET {path[:60]} {label}", client.get, path)
                check(f"{who} DELETE {path[:60]} {label}", client.delete, path)
        for mcp in (session, server):
            prefix = "echoing__" if mcp is session else ""
            for method, params in (
                (value, {}),
                ("tools/call", {"name": value, "arguments": {value: value}}),
                ("tools/call", {"name": prefix + "echo", "arguments": {value: value}}),
                ("prompts/get", {"name": value, "arguments": {"a": value}}),
                ("resources/read", {"uri": value}),
                ("resources/read", {"uri": f"mem://docs/{value}?q={value}"}),
                ("resources/subscribe", {"uri": value}),
                ("completion/complete", {"ref": {"type": "ref/prompt", "name": value}}),
                ("completion/complete", {"ref": {"type": "ref/resource", "uri": value}}),
                ("tools/list", {"cursor": value}),
                ("tasks/get", {"taskId": value}),
                ("logging/setLevel", {"level": value}),
            ):
                body = {"jsonrpc": "2.0", "id": value, "method": method, "params": params}
                check(f"{mcp.path} {method[:40]} {label}", mcp.send, body)
                notification = {"jsonrpc": "2.0", "method": method, "params": params}
                check(f"{mcp.path} notification {label}", mcp.send, notification)
            batch = [{"jsonrpc": "2.0", "id": value}] * 3
            check(f"{mcp.path} batch {label}", mcp.send, batch)
    for header in ("Mcp-Session-Id", "Mcp-Method", "Mcp-Name", "MCP-Protocol-Version"):
        for raw in (b"\x7f", "ÿ\u00a0".encode("latin-1"), "²\u202e".encode(), b"%00", b"x" * 8000):
            what = f"header {header} {raw[:10]!r}"
            check(what, session.http.post, session.path, json=INIT, headers={header: raw})
    return failures


def test_hostile_strings_everywhere_no_5xx_no_traceback_no_lost_row(world: World) -> None:
    failures = fuzz_rest(world) + fuzz_mcp(world)
    assert not failures, "\n".join(failures[:40])
    world.settle()
    assert world.metric("mcpctl_audit_dropped_total") == 0
    assert world.metric("mcpctl_audit_records_total") >= 100
    assert not world.tracebacks(), "\n".join("\n".join(t) for t in world.tracebacks()[:3])
