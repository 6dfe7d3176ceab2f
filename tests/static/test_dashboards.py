"""The chart's Grafana dashboards (charts/mcpctl/dashboards): valid dashboards that query only
the metrics and labels mcpd serves, and the ConfigMap that carries them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mcpctl.observability.metrics import Metrics
from tests.helpers.chart import (
    CHART,
    DASHBOARDS,
    expressions,
    metric_samples,
    only,
    panels,
    render,
    selectors,
)

BUILTIN_VARIABLES = {"__rate_interval", "__range", "__interval"}
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "delta",
    "histogram_quantile",
    "clamp_min",
    "count",
    "le",
}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert isinstance(dashboard["title"], str) and dashboard["title"].startswith("mcpctl / ")
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["id"] is None  # provisioned dashboards get their id from Grafana
    assert dashboard["time"] == {"from": "now-1h", "to": "now"}
    assert "mcpctl" in dashboard["tags"]
    variables = dashboard["templating"]["list"]
    names = [v["name"] for v in variables]
    assert len(names) == len(set(names))
    datasource = variables[0]
    assert (datasource["name"], datasource["type"], datasource["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    reference = {"type": "prometheus", "uid": "${datasource}"}
    for variable in variables[1:]:
        assert variable["type"] == "query" and variable["datasource"] == reference
        assert variable["query"]["query"].startswith("label_values(")
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        assert panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"stat", "timeseries"}
        assert panel["datasource"] == reference
        assert panel["fieldConfig"]["defaults"] is not None
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == reference
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            assert expr.count("[") == expr.count("]")
            for used in re.findall(r"\$(\w+)", expr):
                assert used in set(names) | BUILTIN_VARIABLES, f"unknown variable ${used}"
            # Legend labels must survive the aggregation.
            kept = set()
            for group in re.findall(r"by \(([^)]*)\)", expr):
                kept |= {label.strip() for label in group.split(",")}
            for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
                assert label in kept, f"{panel['title']}: legend {{{{{label}}}}} is aggregated away"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_queries_only_metrics_and_labels_mcpd_defines(path: Path) -> None:
    samples = metric_samples(Metrics())
    dashboard = json.loads(path.read_text())
    used = set()
    for expr in expressions(dashboard):
        words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\(", expr))
        assert words <= PROMQL_WORDS | {"label_values"}, f"unexpected function in {expr}"
        for metric, labels in selectors(expr):
            assert metric in samples, f"{metric} is not served at /metrics"
            assert labels <= samples[metric], f"{metric} has no label {labels - samples[metric]}"
            used.add(metric)
        for group in re.findall(r"by \(([^)]*)\)", expr):
            grouped = {label.strip() for label in group.split(",")}
            inner = {label for metric, _ in selectors(expr) for label in samples[metric]}
            assert grouped <= inner, f"{expr} groups by labels its metrics lack"
    assert used, "the dashboard queries nothing"


def test_dashboards_cover_the_fleet_and_the_gateway() -> None:
    fleet = " ".join(
        expressions(json.loads((CHART / "dashboards/fleet-overview.json").read_text()))
    )
    gateway = " ".join(expressions(json.loads((CHART / "dashboards/gateway.json").read_text())))
    for metric in ("mcpctl_instances", "mcpctl_instance_restarts"):
        assert metric in fleet
    assert "mcpctl_reconcile_duration_seconds_bucket" in fleet
    assert "mcpctl_mcp_requests_total" in gateway and "mcpctl_mcp_errors_total" in gateway
    assert "mcpctl_mcp_sessions" in gateway
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, target, method)" in gateway


def test_dashboards_configmap_carries_the_json_files(helm: str) -> None:
    configmap = only(render(helm), "ConfigMap", "mcpctl-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(configmap["data"]) == {p.name for p in DASHBOARDS}
    for path in DASHBOARDS:
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())
