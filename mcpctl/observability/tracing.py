"""OpenTelemetry tracing of MCP requests: a span in the gateway, one in the host and one for
the backend call, linked by W3C trace context carried in the message's `params._meta`.

Configured only from the standard `OTEL_*` variables and on only when an exporter is named
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER`,
and not `OTEL_SDK_DISABLED=true`). Off, `enabled` is False and the callers create nothing: every
hook reads that one module attribute first, and the SDK is not even imported.

A span carries what a request is (method, endpoint, server, tool/prompt name, resource URI
without its query, the principal's email as `enduser.id`, the JSON-RPC id) and how it ended
(`mcpctl.outcome`, `error.type`, the JSON-RPC error code); never argument values, results,
tokens or secrets.

Trace context from the client: `params._meta.traceparent` (with its `tracestate`) wins over
the HTTP `traceparent` header: `_meta` names this one request, while a header covers a whole
POST (a batch, or a client's HTTP instrumentation). Each hop replaces `_meta.traceparent` with
its own span's, so a backend sees the trace continued by mcpd, never a parent it did not make.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.trace_context import CONTEXT_KEYS, TRACEPARENT, meta
from mcpctl.mcp.trace_context import headers_of as headers_of  # what HTTP backends are sent
from mcpctl.observability.redaction import resource_subject

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "mcpd"
MAX_NAME = 128  # tool and prompt names as attributes and in span names are cut here

# Read on the hot path, first: False unless configure() set tracing up in this process.
enabled = False
_tracer: Any = None
_provider: Any = None
_propagator: Any = None


# -- configuration ---------------------------------------------------------------------------


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(env)
    if exporters == ["none"]:
        return False
    return bool(
        env.get("OTEL_TRACES_EXPORTER")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def environment(env: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The OTEL_* variables of this process, for processes started elsewhere (host actors on
    other Ray nodes do not inherit mcpd's environment)."""
    env = os.environ if env is None else env
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("OTEL_")))


def configure(component: str, inherited: tuple[tuple[str, str], ...] = (), env: Any = None) -> bool:
    """Set tracing up in this process from the OTEL_* variables (`inherited` fills those this
    process lacks); `component` (gateway, host) becomes the `mcpctl.component` resource
    attribute. Returns whether tracing is on. Idempotent."""
    global enabled, _tracer, _provider, _propagator
    env = os.environ if env is None else env
    for key, value in inherited:
        env.setdefault(key, value)  # the SDK's exporter and sampler read os.environ
    if enabled or not wanted(env):
        return enabled
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        attributes = {"mcpctl.component": component}
        named = "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
        if not env.get("OTEL_SERVICE_NAME") and not named:
            attributes["service.name"] = DEFAULT_SERVICE_NAME
        provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_*
        exporters = [_exporter(name, env) for name in _exporter_names(env) or ["otlp"]]
        for exporter in exporters:
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
    except Exception as error:  # a bad OTEL_* value: mcpd runs on, untraced, and says why
        log.error("tracing stays off: %s", error)
        return False
    _provider = provider
    _tracer = provider.get_tracer("mcpctl")
    _propagator = TraceContextTextMapPropagator()
    enabled = True
    log.info("tracing on (%s): spans exported per the OTEL_* variables", component)
    return True


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "")
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: mcpd exports otlp, console or none")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        try:  # opentelemetry-exporter-otlp-proto-grpc, when installed beside mcpd
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ValueError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc; "
                "mcpd ships http/protobuf"
            ) from None
        return GrpcExporter()
    if protocol != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def shutdown(timeout_millis: int = 5000) -> None:
    """Export what is buffered and stop (mcpd and host actors call this as they stop)."""
    global enabled
    if _provider is None:
        return
    enabled = False
    try:
        _provider.force_flush(timeout_millis)
        _provider.shutdown()
    except Exception as error:
        log.warning("flushing spans failed: %s", error)


def flush(timeout_millis: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# -- trace context in messages ---------------------------------------------------------------


def _parent(message: Message, headers: Mapping[str, str] | None = None) -> Any:
    """The caller's context: `_meta.traceparent` (+ tracestate), else the HTTP headers'."""
    context = meta(message)
    carrier: Mapping[str, Any] | None = None
    if context is not None and isinstance(context.get(TRACEPARENT), str):
        carrier = context
    elif headers is not None and headers.get(TRACEPARENT):
        carrier = headers
    if carrier is None:
        return None
    return _propagator.extract({k: str(carrier[k]) for k in CONTEXT_KEYS if carrier.get(k)})


def _with_context(message: Message, span: Any) -> Message:
    """`message` (a copy) whose `_meta` carries `span`'s trace context instead of its caller's."""
    from opentelemetry.trace import set_span_in_context

    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=set_span_in_context(span))
    params = message.get("params")
    params = dict(params) if isinstance(params, dict) else {}
    others = params.get("_meta")
    others = (
        {k: v for k, v in others.items() if k not in CONTEXT_KEYS}
        if isinstance(others, dict)
        else {}
    )
    params["_meta"] = {**others, **carrier}
    return {**message, "params": params}


# -- what a span says ------------------------------------------------------------------------


def _cut(value: Any) -> str:
    return str(value)[:MAX_NAME]


def _request_attributes(message: Message, method: str) -> tuple[str, dict[str, Any]]:
    """The span name's subject and the attributes naming what is asked (never arguments)."""
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    attributes: dict[str, Any] = {"mcp.method.name": _cut(method)}
    if "id" in message:
        attributes["jsonrpc.request.id"] = _cut(message["id"])
    subject = ""
    if method == "tools/call" and params.get("name") is not None:
        subject = _cut(params["name"])
        attributes["gen_ai.tool.name"] = subject
        attributes["gen_ai.operation.name"] = "execute_tool"
    elif method == "prompts/get" and params.get("name") is not None:
        subject = _cut(params["name"])
        attributes["gen_ai.prompt.name"] = subject
    elif isinstance(params.get("uri"), str):  # resources/read, subscribe: what the audit keeps
        attributes["mcp.resource.uri"] = resource_subject(params["uri"][:4096])[:1024]
    return subject, attributes


def _span_name(prefix: str, method: str, subject: str) -> str:
    from mcpctl.observability.metrics import method_label

    return " ".join(p for p in (prefix, method_label(method), subject) if p)


def _end(span: Any, response: Message | None, outcome: str | None = None) -> None:
    """Record how the request ended and end the span."""
    from opentelemetry.trace import Status, StatusCode

    error = response.get("error") if response is not None else None
    result = response.get("result") if response is not None else None
    if outcome is None:
        if isinstance(error, dict):
            outcome = "timeout" if error.get("code") == jsonrpc.REQUEST_TIMEOUT else "error"
        elif isinstance(result, dict) and result.get("isError") is True:
            outcome = "tool_error"
        elif response is None:
            outcome = "no_response"
        else:
            outcome = "ok"
    span.set_attribute("mcpctl.outcome", outcome)
    if isinstance(error, dict):
        code = error.get("code")
        span.set_attribute("rpc.jsonrpc.error_code", code if isinstance(code, int) else -1)
        span.set_attribute("error.type", str(code))
        span.set_status(Status(StatusCode.ERROR))
    elif outcome != "ok":
        span.set_attribute("error.type", outcome)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


# -- the three spans -------------------------------------------------------------------------

Exchange = Callable[[Message], AsyncGenerator[Message, None]]


async def gateway_request(
    message: Message,
    method: str,
    headers: Mapping[str, str],
    attributes: dict[str, Any],
    serve: Exchange,
) -> AsyncGenerator[Message, None]:
    """`serve(message)` inside the gateway's span of one MCP request: the span's context goes
    on in `_meta`; it ends with the response (or when the stream is closed without one)."""
    from opentelemetry.trace import SpanKind

    subject, described = _request_attributes(message, method)
    span = _tracer.start_span(
        _span_name("", method, subject),
        context=_parent(message, headers),
        kind=SpanKind.SERVER,
        attributes={**described, **attributes},
    )
    async for item in _within(span, message, serve):
        yield item


async def host_exchange(
    server: str,
    host: int,
    principal: str,
    endpoint: str,
    message: Message,
    exchange: Exchange,
) -> AsyncGenerator[Message, None]:
    """`exchange(message)` inside the host's span, continuing the gateway's (in `_meta`).
    A message that comes with no trace context (mcpd's own requests, such as a project's
    list of each server) is not traced here: it would be a trace of its own, of no call."""
    attributes = {
        "mcpctl.server": server,
        "mcpctl.host": host,
        "mcpctl.endpoint": endpoint,
        "enduser.id": principal,
    }
    async for item in _continued("host", "SERVER", attributes, message, exchange):
        yield item


async def backend_call(
    server: str, replica: int, message: Message, exchange: Exchange
) -> AsyncGenerator[Message, None]:
    """`exchange(message)` (the multiplexer's, to the backend) inside a client span whose
    context the backend gets in `_meta` (and HTTP backends in headers too)."""
    attributes = {"mcpctl.server": server, "mcpctl.replica": replica}
    async for item in _continued("backend", "CLIENT", attributes, message, exchange):
        yield item


async def _continued(
    hop: str, kind: str, attributes: dict[str, Any], message: Message, exchange: Exchange
) -> AsyncGenerator[Message, None]:
    """`exchange(message)` inside a span of this hop, continuing the trace in `_meta`; a
    message without one is not traced."""
    parent = _parent(message)
    if parent is None:
        async for item in exchange(message):
            yield item
        return
    from opentelemetry.trace import SpanKind

    method = str(message.get("method"))
    subject, described = _request_attributes(message, method)
    span = _tracer.start_span(
        _span_name(hop, method, subject),
        context=parent,
        kind=getattr(SpanKind, kind),
        attributes={**described, **attributes},
    )
    async for item in _within(span, message, exchange):
        yield item


async def _within(span: Any, message: Message, exchange: Exchange) -> AsyncGenerator[Message, None]:
    """`exchange` of `message` carrying `span`'s context; the span ends with the response, or
    as cancelled / failed when the stream closes or breaks before it."""
    outcome = "cancelled"
    answered = False
    stream = exchange(_with_context(message, span))
    try:
        async for item in stream:
            if not answered and jsonrpc.is_response(item):
                answered = True
                _end(span, item)  # the span covers the request until its answer
            yield item
    except Exception:
        outcome = "failed"
        raise
    finally:
        await stream.aclose()
        if not answered:
            _end(span, None, outcome)
