"""Prometheus metrics. Label values are server/project names (validated DNS labels), host
indexes, and MCP method names and reasons from fixed lists; never user input or secrets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "subscriptions/listen",
    }
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def method_label(method: object) -> str:
    return method if isinstance(method, str) and method in KNOWN_METHODS else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "mcpctl_mcp_requests",
            "MCP requests answered by the gateway.",
            ["target", "method"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mcpctl_mcp_errors",
            "MCP requests answered with a JSON-RPC error.",
            ["target", "method"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mcpctl_mcp_request_duration_seconds",
            "Time from an MCP request to its response.",
            ["target", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sessions = Gauge(
            "mcpctl_mcp_sessions",
            "Client sessions open on the MCP endpoints.",
            registry=self.registry,
        )
        self.instances = Gauge(
            "mcpctl_instances",
            "Instances by server and status.",
            ["server", "status"],
            registry=self.registry,
        )
        self.restarts = Gauge(
            "mcpctl_instance_restarts",
            "Restarts of each server's instances since they were created.",
            ["server"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "mcpctl_auth_failures",
            "Requests refused for their token (401), by reason: unknown_token, expired, issuer, "
            "audience, signature, unsigned, key, malformed, ...",
            ["reason"],
            registry=self.registry,
        )
        self.refused = Counter(
            "mcpctl_mcp_refused",
            "MCP messages refused by the gateway before reaching a backend, by reason.",
            ["target", "reason"],
            registry=self.registry,
        )
        self.dropped = Gauge(
            "mcpctl_backend_messages_dropped",
            "Messages dropped between clients and a backend, since its host started: from the "
            "backend, what no client could be given without crossing tenants (refused server "
            "requests, dropped notifications, a full client queue); from clients, what the "
            "backend could not take (delivery_queue_full, delivery_stalled, backend_stalled, "
            "client_message_backend_gone) or was not theirs to send (foreign_answer).",
            ["server", "reason"],
            registry=self.registry,
        )
        self.dataplane_refused = HostCounts(
            "mcpctl_dataplane_refused",
            "Data-plane connections a host closed before they showed the cluster token, by "
            "host index and reason: hello_timeout, hello_malformed, closed_before_hello, "
            "wrong_token, too_many_unauthenticated.",
            ["host", "reason"],
            self.registry,
        )
        self.reconcile = Histogram(
            "mcpctl_reconcile_duration_seconds",
            "Time to hand every host its desired servers (a full resync).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # -- audit trail and rate limits (gateway/audit.py, gateway/rate_limit.py) --------
        self.denied = Counter(
            "mcpctl_mcp_denied",
            "Requests refused by a policy, by endpoint kind (servers, projects, api) and reason "
            "(unauthenticated, invalid_token, forbidden, not_found, rate_limited, tool_denied, "
            "policy, other).",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "mcpctl_rate_limited",
            "MCP requests answered 429, by the limit hit (scope: principal or project) and "
            "endpoint.",
            ["scope", "target"],
            registry=self.registry,
        )
        self.audit_records = Counter(
            "mcpctl_audit_records",
            "Audit records queued for the store, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.audit_dropped = Counter(
            "mcpctl_audit_dropped",
            "Audit records dropped, by reason: queue_full, store_unavailable (a batch could not "
            "be written at all), refused (the store refused the row itself, even escaped).",
            ["reason"],
            registry=self.registry,
        )
        self.audit_batches = Counter(
            "mcpctl_audit_batches",
            "Transactions that wrote audit records (many records each).",
            registry=self.registry,
        )


class HostCounts(Collector):
    """A counter whose values the hosts keep (each since it started), set from them at each
    scrape: exported as a Prometheus counter, per host, so that rate() reads a host's restart
    as the reset it is."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)  # the attribute prometheus_client's metrics use
        self._values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def set(self, values: Mapping[tuple[str, ...], float]) -> None:
        self._values = dict(values)

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, value in self._values.items():
            family.add_metric(labels, value)
        yield family

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
