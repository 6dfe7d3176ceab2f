"""Tracing on the real thing: mcpd as a process with the standard OTEL_* variables pointing at a
real Jaeger (scripts/jaeger.sh: all-in-one from Go modules, in-memory storage), a `command:
python` backend (tests/servers/misbehaving.py, whose `meta` tool answers its request's
`_meta`), calls through a server and a project endpoint; then Jaeger's query API must hold one
trace per call: the gateway's span, the host's under it and the backend call's under that, with
method, server, tool and principal, and no argument value. An mcpd without the variables
exports nothing and passes the client's trace context on untouched."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from mcpctl.models.user import SYSTEM_USER_EMAIL
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers import jsonrpc
from tests.helpers.jsonrpc import ACCEPT, initialize
from tests.helpers.mcpd import add_member, bearer, wait_running
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING

REPO = Path(__file__).resolve().parents[2]
MEMBER = "tracy@example.com"
SECRET_ARGUMENT = "argument-value-that-must-never-be-traced"


@dataclass
class Jaeger:
    otlp: str  # OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)
    query: str  # the query API (/api/traces)


@dataclass
class Deployment:
    mcpd: Mcpd
    member_token: str


@pytest.fixture(scope="module")
def jaeger() -> Jaeger:
    """The Jaeger scripts/test.sh started, or one started here (built once, cached)."""
    if query := os.environ.get("MCPCTL_TEST_JAEGER_QUERY"):
        return Jaeger(os.environ["MCPCTL_TEST_OTLP_ENDPOINT"], query)
    out = subprocess.run(
        [str(REPO / "scripts" / "jaeger.sh"), "start"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    values = dict(re.findall(r"export (MCPCTL_TEST_\w+)=(\S+)", out))
    return Jaeger(values["MCPCTL_TEST_OTLP_ENDPOINT"], values["MCPCTL_TEST_JAEGER_QUERY"])


def deploy(workdir: Path, env: dict[str, str]) -> Iterator[Deployment]:
    """An mcpd on the suite's Ray (so its host actors do not inherit its environment: the
    OTEL_* variables must reach them through mcpd), a backend, a project with a member."""
    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "MCPD_ACTOR_HOSTS": "1", **env}
    daemon = start_mcpd(workdir / "data", env)
    api = httpx.Client(base_url=daemon.url, headers=bearer(daemon.token), timeout=30)
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(workdir)]}
    created = api.post("/api/v1/servers", json={"metadata": {"name": "tools"}, "spec": spec})
    assert created.status_code == 201, created.text
    token = add_member(api, MEMBER)
    project = {"servers": ["tools"], "members": [MEMBER]}
    created = api.post("/api/v1/projects", json={"metadata": {"name": "team"}, "spec": project})
    assert created.status_code == 201, created.text
    wait_running(daemon, "tools", timeout=60)
    yield Deployment(daemon, token)
    api.close()
    stop_mcpd(daemon)


@pytest.fixture(scope="module")
def service() -> str:
    return f"mcpd-test-{uuid.uuid4().hex[:8]}"  # this run's, in a Jaeger others may share


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, jaeger: Jaeger, service: str
) -> Iterator[Deployment]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s (the default is 5 s)
    }
    yield from deploy(tmp_path_factory.mktemp("traced"), env)


@pytest.fixture(scope="module")
def untraced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy(tmp_path_factory.mktemp("untraced"), {})


def call_meta(
    deployment: Deployment,
    path: str,
    tool: str,
    meta: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """tools/call of `meta` in a 2025-11-25 session: the `_meta` the backend got."""
    member = "projects" in path
    token = deployment.member_token if member else deployment.mcpd.token
    base = {**bearer(token), **ACCEPT}
    url = f"{deployment.mcpd.url}{path}"
    opened = httpx.post(url, json=initialize(client="tracing-test"), headers=base, timeout=30)
    assert opened.status_code == 200, opened.text
    session = {**base, "Mcp-Session-Id": opened.headers["Mcp-Session-Id"]}
    body = jsonrpc.call(7, tool, meta=meta, text=SECRET_ARGUMENT)
    answered = httpx.post(url, json=body, headers={**session, **(headers or {})}, timeout=30)
    assert answered.status_code == 200, answered.text
    result = answered.json()["result"]
    assert not result.get("isError"), result
    seen: dict[str, str] = json.loads(result["content"][0]["text"])
    return seen


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


def span_id_of(traceparent: str) -> str:
    return traceparent.split("-")[2]


def fetch_trace(jaeger: Jaeger, trace_id: str, spans: int, timeout: float = 30) -> dict[str, Any]:
    """The trace from Jaeger's query API once it holds `spans` spans."""

    def spans_held(answer: httpx.Response) -> bool:
        found = answer.status_code == 200 and answer.json().get("data")
        return bool(found) and len(answer.json()["data"][0]["spans"]) >= spans

    answer = until(
        lambda: httpx.get(f"{jaeger.query}/api/traces/{trace_id}", timeout=10),
        spans_held,
        timeout=timeout,
        interval=0.2,
        what=lambda answer: f"trace {trace_id}: {answer.text[:500]}",
    )
    trace: dict[str, Any] = answer.json()["data"][0]
    return trace


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def parent_of(span: dict[str, Any]) -> str | None:
    refs = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0] if refs else None


def chain(trace: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The gateway, host and backend-call spans, each the parent of the next."""
    by_kind = {
        tags(s).get("span.kind"): s for s in trace["spans"] if "host" not in s["operationName"]
    }
    gateway = by_kind["server"]
    backend = by_kind["client"]
    (host,) = [s for s in trace["spans"] if s["operationName"].startswith("host ")]
    assert parent_of(host) == gateway["spanID"]
    assert parent_of(backend) == host["spanID"]
    return gateway, host, backend


@pytest.mark.parametrize(
    ("path", "tool", "context"),
    [
        ("/mcp/servers/tools", "meta", "header"),
        ("/mcp/projects/team", "tools__meta", "meta"),
        ("/mcp/projects/team", "tools__meta", "none"),
    ],
)
def test_one_trace_per_call_from_gateway_through_host_to_backend(
    traced: Deployment, jaeger: Jaeger, service: str, path: str, tool: str, context: str
) -> None:
    client_trace, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traceparent = f"00-{client_trace}-{client_span}-01"
    other = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    if context == "header":
        seen = call_meta(traced, path, tool, headers={"traceparent": traceparent})
    elif context == "meta":  # _meta wins over the header
        meta = {"traceparent": traceparent, "tracestate": "vendor=opaque"}
        seen = call_meta(traced, path, tool, meta=meta, headers={"traceparent": other})
        assert seen["tracestate"] == "vendor=opaque"
    else:
        seen = call_meta(traced, path, tool)
    # The backend continues mcpd's trace: the client's (or a new one), parent: the backend call.
    trace_id = trace_id_of(seen["traceparent"])
    if context != "none":
        assert trace_id == client_trace
    trace = fetch_trace(jaeger, trace_id, 3)
    assert len(trace["spans"]) == 3, [s["operationName"] for s in trace["spans"]]
    gateway, host, backend = chain(trace)
    assert span_id_of(seen["traceparent"]) == backend["spanID"]
    assert parent_of(gateway) == (client_span if context != "none" else None)
    assert {p["serviceName"] for p in trace["processes"].values()} == {service}

    assert gateway["operationName"] == f"tools/call {tool}"
    said = tags(gateway)
    assert said["mcp.method.name"] == "tools/call"
    assert said["gen_ai.tool.name"] == tool
    assert said["mcpctl.server"] == "tools"
    assert said["mcpctl.endpoint"] == path.removeprefix("/mcp/")
    assert said["enduser.id"] == (MEMBER if "projects" in path else SYSTEM_USER_EMAIL)
    assert said["mcpctl.outcome"] == "ok"
    hosted = tags(host)
    assert hosted["mcpctl.server"] == "tools" and hosted["gen_ai.tool.name"] == "meta"
    assert hosted["enduser.id"] == said["enduser.id"]
    assert tags(backend)["mcpctl.replica"] == 0 and tags(backend)["mcpctl.outcome"] == "ok"
    # Each span ends with its answer: a parent outlasts its child.
    assert gateway["duration"] >= host["duration"] >= backend["duration"]
    # Secrets and argument values never reach a span.
    assert SECRET_ARGUMENT not in json.dumps(trace)
    assert traced.mcpd.token not in json.dumps(trace)


def test_without_otel_variables_nothing_is_traced(untraced: Deployment, jaeger: Jaeger) -> None:
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    seen = call_meta(
        untraced, "/mcp/projects/team", "tools__meta", meta={"traceparent": traceparent}
    )
    assert seen["traceparent"] == traceparent  # passed on as it came: no span of mcpd between
    time.sleep(1.0)  # a traced mcpd exports within 0.1 s
    answer = httpx.get(f"{jaeger.query}/api/traces/{trace_id_of(traceparent)}", timeout=10)
    assert answer.status_code == 404 or not answer.json().get("data")
