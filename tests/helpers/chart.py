"""The Helm chart (charts/mcpctl) with the real `helm` (scripts/helm.sh installs it): render its
templates into manifests and find what is in them; the Grafana dashboards' queries."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mcpctl.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mcpctl"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
VALUES: dict[str, Path | None] = {
    "default": None,
    **{
        p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}
LOCAL_RAY = {"ray.enabled": "false", "mcpd.replicas": "1"}  # one mcpd with a Ray of its own


def helm_path() -> str | None:
    """MCPCTL_HELM, else what scripts/helm.sh installed into the cache, else helm on PATH."""
    cache = Path(os.environ.get("MCPCTL_CACHE", Path.home() / ".cache" / "mcpctl"))
    for candidate in (os.environ.get("MCPCTL_HELM"), cache / "helm" / "bin" / "helm"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("helm")


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def set_args(sets: dict[str, str]) -> list[str]:
    """`--set key=value` for each value (`--set-string` for a key written `string:key`)."""
    args = []
    for key, value in sets.items():
        flag = "--set-string" if key.startswith("string:") else "--set"
        args += [flag, f"{key.removeprefix('string:')}={value}"]
    return args


def template_args(
    values: Path | None, namespace: str, sets: dict[str, str], release: str
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["-f", str(values)]
    return args + set_args(sets)


def render(
    helm: str,
    values: Path | None = None,
    namespace: str = "mcpctl",
    release: str = "mcpctl",
    **sets: str,
) -> list[dict[str, Any]]:
    """`helm template` → the manifests, as dicts."""
    out = run_helm(helm, *template_args(values, namespace, sets, release)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[ref(d) for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def ref(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{doc['kind']}/{meta.get('namespace', '')}/{meta.get('name') or meta['generateName']}"


def workload(docs: list[dict[str, Any]], component: str = "mcpd") -> dict[str, Any]:
    """The one Deployment of a component: mcpd, ray-head or ray-worker."""
    found = [
        d
        for d in kinds(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"expected one {component} Deployment, got {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]], component: str = "mcpd") -> dict[str, Any]:
    return dict(workload(docs, component)["spec"]["template"]["spec"])


def container(docs: list[dict[str, Any]], component: str = "mcpd") -> dict[str, Any]:
    [found] = pod_spec(docs, component)["containers"]
    return dict(found)


def settings(docs: list[dict[str, Any]]) -> dict[str, str]:
    cm = [d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("-settings")]
    assert len(cm) == 1
    return dict(cm[0]["data"])


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str:
    return base64.b64decode(only(docs, "Secret", name)["data"][key]).decode()


# ------------------------------------------------------------------ dashboards


def metric_samples(metrics: Metrics) -> dict[str, set[str]]:
    """Every sample name mcpd's registry can expose → its label names (as /metrics shows it)."""
    names: dict[str, set[str]] = {}
    for collector in metrics.registry._names_to_collectors.values():
        for family in collector.describe():
            labels = set(getattr(collector, "_labelnames", ()))
            suffixes = {
                "counter": ["_total", "_created"],
                "histogram": ["_bucket", "_sum", "_count", "_created"],
                "gauge": [""],
            }[family.type]
            for suffix in suffixes:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names) of each vector selector, incl. label_values(metric{...}, label)."""
    found = []
    for match in re.finditer(r"\b(mcpctl_[a-z_]+)\s*(\{([^}]*)\})?", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(3) or ""))
        found.append((match.group(1), labels))
    return found
