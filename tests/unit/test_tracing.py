"""Tracing without I/O: when it is on, what spans say, and how context travels in `_meta`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcpctl.mcp.jsonrpc import Message
from mcpctl.observability import tracing
from tests.helpers.jsonrpc import call

CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADER = "00-11111111111111111111111111111111-2222222222222222-01"


def test_on_only_when_an_exporter_is_named() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "mcpd", "OTEL_TRACES_SAMPLER": "always_on"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert not tracing.wanted({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert tracing.environment({"OTEL_A": "1", "PATH": "/bin"}) == (("OTEL_A", "1"),)


def test_off_unless_configured() -> None:
    assert tracing.enabled is False and tracing._tracer is None  # nothing set it up here


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_propagator", TraceContextTextMapPropagator())
    monkeypatch.setattr(tracing, "enabled", True)
    yield exporter


def get(meta: dict[str, Any] | None = None) -> Message:
    """The call the tests trace: a secret among its arguments."""
    return call(3, "t__get", meta=meta, secret="hunter2")


async def gateway_to_backend(
    message: Message, headers: dict[str, str], answer: dict[str, Any]
) -> list[Message]:
    """The three spans nested as mcpd nests them; the backend answers `answer`."""
    reached: list[Message] = []

    async def backend(sent: Message) -> AsyncGenerator[Message, None]:
        reached.append(sent)
        yield {"jsonrpc": "2.0", "id": sent["id"], **answer}

    def backend_call(routed: Message) -> AsyncGenerator[Message, None]:
        return tracing.backend_call("t", 0, routed, backend)

    def host(sent: Message) -> AsyncGenerator[Message, None]:
        routed = {**sent, "params": {**sent["params"], "name": "get"}}
        return tracing.host_exchange("t", 1, "a@example.com", "projects/p", routed, backend_call)

    attributes = {"enduser.id": "a@example.com", "mcpctl.server": "t"}
    items = tracing.gateway_request(message, "tools/call", headers, attributes, host)
    assert [item async for item in items] == [{"jsonrpc": "2.0", "id": 3, **answer}]
    return reached


async def test_one_trace_gateway_host_backend(spans: InMemorySpanExporter) -> None:
    meta = {"traceparent": CLIENT, "tracestate": "v=1", "progressToken": 5}
    reached = await gateway_to_backend(get(meta), {"traceparent": HEADER}, {"result": {}})
    backend, host, gateway = spans.get_finished_spans()
    assert (gateway.name, host.name, backend.name) == (
        "tools/call t__get",
        "host tools/call get",
        "backend tools/call get",
    )
    trace = int(CLIENT.split("-")[1], 16)  # _meta wins over the header
    assert {s.context.trace_id for s in (gateway, host, backend)} == {trace}
    assert gateway.parent is not None and gateway.parent.span_id == int(CLIENT.split("-")[2], 16)
    assert host.parent is not None and host.parent.span_id == gateway.context.span_id
    assert backend.parent is not None and backend.parent.span_id == host.context.span_id
    sent = reached[0]["params"]["_meta"]
    assert sent["traceparent"] == f"00-{trace:032x}-{backend.context.span_id:016x}-01"
    assert sent["tracestate"] == "v=1" and sent["progressToken"] == 5
    assert tracing.headers_of(reached[0]) == {
        "traceparent": sent["traceparent"],
        "tracestate": "v=1",
    }
    for span in (gateway, host, backend):
        assert span.attributes is not None and span.attributes["mcpctl.outcome"] == "ok"
        assert "hunter2" not in str(dict(span.attributes))
    assert gateway.attributes is not None and gateway.attributes["enduser.id"] == "a@example.com"


async def test_the_header_when_meta_has_none_and_outcomes(spans: InMemorySpanExporter) -> None:
    await gateway_to_backend(get(), {"traceparent": HEADER}, {"result": {"isError": True}})
    *_, gateway = spans.get_finished_spans()
    assert gateway.context.trace_id == int(HEADER.split("-")[1], 16)
    assert gateway.attributes is not None and gateway.attributes["mcpctl.outcome"] == "tool_error"
    spans.clear()
    await gateway_to_backend(get(), {}, {"error": {"code": -32602, "message": "no"}})
    *_, gateway = spans.get_finished_spans()
    assert gateway.parent is None  # a new trace
    assert gateway.attributes is not None and gateway.attributes["error.type"] == "-32602"


async def test_a_host_request_without_context_is_not_traced(spans: InMemorySpanExporter) -> None:
    async def backend(sent: Message) -> AsyncGenerator[Message, None]:
        yield {"jsonrpc": "2.0", "id": sent["id"], "result": {}}

    listing: Message = {"jsonrpc": "2.0", "id": "tools/list:t", "method": "tools/list"}
    items = tracing.host_exchange("t", 0, "a@example.com", "projects/p", listing, backend)
    assert len([item async for item in items]) == 1
    assert spans.get_finished_spans() == ()


def test_a_resource_uri_is_kept_as_the_audit_keeps_it() -> None:
    """Spans kept a URI's fragment and credentials (`user:pw@`), which the audit drops."""
    uri = "https://user:MARKER@files.example/docs/a.md?token=MARKER#MARKER"
    message = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}
    _, attributes = tracing._request_attributes(message, "resources/read")
    assert attributes["mcp.resource.uri"] == "https://files.example/docs/a.md"
    assert "MARKER" not in repr(attributes)
