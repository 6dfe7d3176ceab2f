"""The Helm chart (charts/mcpctl) with the real `helm` (scripts/helm.sh installs it): lint and
render with the default values and the files in charts/mcpctl/ci, check what the manifests
promise, check the Grafana dashboards against mcpd's metrics, and dry-run every rendered
manifest on the real kube-apiserver of scripts/k8s/cluster.sh (server side, strict field
validation, Pod Security admission on the pods the workloads would create)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from mcpctl.controllers.manifests import KEEP_ALIVE, PodEnv, PodOptions, render_pod
from mcpctl.controllers.workload import Workload
from mcpctl.daemon.shutdown import BACKSTOP_SECONDS
from mcpctl.models.server import Source, Transport
from mcpctl.observability.metrics import Metrics
from tests.e2e.conftest import free_port
from tests.e2e.test_lockdown import REFUSAL_PROBE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mcpctl"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
VALUES: dict[str, Path | None] = {
    "default": None,
    **{
        p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}
MCPD_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods/exec", "pods/attach"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
MCPD_SELECTOR = {
    "app.kubernetes.io/name": "mcpctl",
    "app.kubernetes.io/instance": "mcpctl",
    "app.kubernetes.io/component": "mcpd",
}
HEAD_SELECTOR = {**MCPD_SELECTOR, "app.kubernetes.io/component": "ray-head"}
WORKER_SELECTOR = {**MCPD_SELECTOR, "app.kubernetes.io/component": "ray-worker"}
LOCAL_RAY = {"ray.enabled": "false", "mcpd.replicas": "1"}  # one mcpd with a Ray of its own
CLUSTER_SCOPED = {"Namespace"}  # the only cluster-scoped kind the chart may render


# ------------------------------------------------------------------ helm


def helm_path() -> str | None:
    """MCPCTL_HELM, else what scripts/helm.sh installed into the cache, else helm on PATH."""
    cache = Path(os.environ.get("MCPCTL_CACHE", Path.home() / ".cache" / "mcpctl"))
    for candidate in (os.environ.get("MCPCTL_HELM"), cache / "helm" / "bin" / "helm"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = helm_path()
    if path is None:
        pytest.skip("helm not found: scripts/helm.sh installs it (`make test` runs it)")
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def template_args(
    values: Path | None, namespace: str, sets: dict[str, str], release: str
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["-f", str(values)]
    for key, value in sets.items():
        args += ["--set-string" if key.startswith("string:") else "--set", f"{key}={value}"]
    return [a.replace("string:", "") for a in args]


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
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[_ref(d) for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _ref(doc: dict[str, Any]) -> str:
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


def mcpd_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = container(docs, "mcpd")
    assert found["name"] == "mcpd"
    return found


def settings(docs: list[dict[str, Any]]) -> dict[str, str]:
    cm = [d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("-settings")]
    assert len(cm) == 1
    return dict(cm[0]["data"])


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str:
    return base64.b64decode(only(docs, "Secret", name)["data"][key]).decode()


def policy(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return only(docs, "NetworkPolicy", name)["spec"]


# ------------------------------------------------------------------ lint and render


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_passes_strict(helm: str, values: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", "mcpctl"]
    if VALUES[values] is not None:
        args += ["-f", str(VALUES[values])]
    result = run_helm(helm, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_chart_app_version_is_mcpctls_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"$', project, re.M)
    assert version and chart["appVersion"] == version.group(1)


def test_ci_has_the_values_files_the_issue_asks_for() -> None:
    assert {"external-database", "custom-namespaces", "observability"} <= set(VALUES)


@pytest.mark.parametrize("values", VALUES)
def test_every_object_lives_in_the_control_or_data_plane(helm: str, values: str) -> None:
    docs = render(helm, VALUES[values])
    chart_values = yaml.safe_load(VALUES[values].read_text()) if VALUES[values] else {}
    names = chart_values.get("namespaces", {})
    control = names.get("controlPlane", "mcpctl")
    data = names.get("dataPlane", "mcpctl-servers")
    monitoring = chart_values.get("dashboards", {}).get("namespace") or control
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
            continue
        assert doc["metadata"]["namespace"] in {control, data, monitoring}, _ref(doc)
    assert not {"ClusterRole", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    # Only the data plane holds server-facing objects; mcpd's own objects stay in the control plane.
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Service", "Secret", "ServiceAccount"}:
            assert doc["metadata"]["namespace"] == control, _ref(doc)
        if doc["kind"] in {"Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] == data, _ref(doc)


@pytest.mark.parametrize("values", VALUES)
def test_role_grants_exactly_the_verbs_mcpd_uses_in_the_data_plane(helm: str, values: str) -> None:
    docs = render(helm, VALUES[values])
    data = settings(docs)["MCPD_K8S_NAMESPACE"]
    role = only(docs, "Role")
    assert role["metadata"]["namespace"] == data
    assert role["rules"] == MCPD_RULES
    binding = only(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == data
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    account = only(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert account["automountServiceAccountToken"] is False
    # Only the pods where mcpd's host actors run mount its token: the chart's Ray workers, or
    # mcpd's own pod when it runs a Ray of its own (or joins mcpd.rayAddress).
    chart_values = yaml.safe_load(VALUES[values].read_text()) if VALUES[values] else {}
    hosts = "ray-worker" if chart_values.get("ray", {}).get("enabled", True) else "mcpd"
    for deployment in kinds(docs, "Deployment") + kinds(docs, "StatefulSet"):
        pod = deployment["spec"]["template"]["spec"]
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] == hosts:
            assert pod["serviceAccountName"] == account["metadata"]["name"]
            assert pod["automountServiceAccountToken"] is True
        else:
            assert "serviceAccountName" not in pod, _ref(deployment)
            assert pod["automountServiceAccountToken"] is False, _ref(deployment)


def test_namespaces_the_chart_creates(helm: str) -> None:
    # Installed with --namespace mcpctl --create-namespace, helm owns the control plane's.
    docs = render(helm)
    [namespace] = kinds(docs, "Namespace")
    assert namespace["metadata"]["name"] == "mcpctl-servers"
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Released into another namespace, the chart creates both.
    both = render(helm, namespace="default")
    assert {n["metadata"]["name"] for n in kinds(both, "Namespace")} == {"mcpctl", "mcpctl-servers"}
    assert (
        kinds(render(helm, namespace="default", **{"namespaces.create": "false"}), "Namespace")
        == []
    )


def test_values_schema_refuses_typos_and_bad_addresses(helm: str) -> None:
    for key, value, message in (
        ("mcpd.logLevl", "debug", "additional properties 'logLevl' not allowed"),
        ("networkPolicy.serverEgress.fetch[0].cidr", "example.com", "does not match pattern"),
        ("externalDatabase.url", "mysql://x@y/z", "does not match pattern"),
    ):
        result = run_helm(helm, *template_args(None, "mcpctl", {key: value}, "mcpctl"), check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_data_plane_must_differ_from_the_control_plane(helm: str) -> None:
    args = template_args(None, "mcpctl", {"namespaces.dataPlane": "mcpctl"}, "mcpctl")
    result = run_helm(helm, *args, check=False)
    assert result.returncode != 0
    assert "namespaces.dataPlane must differ from namespaces.controlPlane" in result.stderr


def test_default_values_run_mcpd_as_a_hardened_kubernetes_operator(helm: str) -> None:
    docs = render(helm)
    env = settings(docs)
    assert env["MCPD_ORCHESTRATOR"] == "kubernetes"
    assert env["MCPD_K8S_NAMESPACE"] == "mcpctl-servers"
    assert env["MCPD_HOST"] == "0.0.0.0"
    assert env["MCPD_PORT"] == "8420"
    assert env["MCPD_RESYNC_SECONDS"] == "30"
    assert env["MCPD_NODE_SELECTOR"] == ""
    assert env["MCPD_RUNNER_IMAGE"] == "ghcr.io/mcpctl/runner:0.1.0"
    assert "MCPD_K8S_CONTEXT" not in env
    # Every pod of the chart (mcpd, the Ray head and workers, PostgreSQL) is hardened.
    workloads = kinds(docs, "Deployment") + kinds(docs, "StatefulSet")
    assert len(workloads) == 4
    for deployment in workloads:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["enableServiceLinks"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["runAsNonRoot"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["limits"] and container["resources"]["requests"]
    deployment = workload(docs)
    pod = pod_spec(docs)
    mcpd = mcpd_container(docs)
    assert mcpd["image"] == "ghcr.io/mcpctl/mcpd:0.1.0"
    assert mcpd["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert mcpd["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert mcpd["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert mcpd["ports"] == [{"name": "http", "containerPort": 8420, "protocol": "TCP"}]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in secret_refs_of(mcpd)}
    assert secret_env == {
        "RAY_AUTH_TOKEN": {"name": "mcpctl-ray-token", "key": "token"},
        "MCPD_DATABASE_URL": {"name": "mcpctl-database", "key": "url"},
        "MCPD_ADMIN_TOKEN": {"name": "mcpctl-auth", "key": "admin-token"},
        "MCPD_SECRET_KEY": {"name": "mcpctl-auth", "key": "secret-key"},
    }
    assert mcpd["envFrom"] == [{"configMapRef": {"name": "mcpctl-settings"}}]
    mounts = {m["mountPath"]: m["name"] for m in mcpd["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Ray's object store: a memory-backed /dev/shm larger than the default 64 MB.
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/var/lib/mcpd"]]
    assert env["MCPD_DATA_DIR"] == "/var/lib/mcpd" and env["HOME"] == "/tmp"
    service = only(docs, "Service", "mcpctl")
    assert service["spec"]["selector"] == MCPD_SELECTOR
    assert deployment["spec"]["selector"]["matchLabels"] == MCPD_SELECTOR
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert kinds(docs, "ServiceMonitor") == []


def secret_refs_of(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]


def test_mcpd_replicas_roll_one_at_a_time_and_drain_before_they_stop(helm: str) -> None:
    docs = render(helm)
    deployment = workload(docs)
    # Gateway replicas on a shared Ray: a new one ready before an old one stops.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    budget = only(docs, "PodDisruptionBudget", "mcpctl")["spec"]
    assert budget == {
        "minAvailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": MCPD_SELECTOR},
    }
    pod = pod_spec(docs)
    [spread] = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": MCPD_SELECTOR}
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still works
    # Drain: the pod sleeps while endpoints drop it, then SIGTERM (/readyz 503, requests in
    # flight get MCPD_SHUTDOWN_SECONDS, a 2 s backstop); the kubelet's SIGKILL comes later.
    mcpd = mcpd_container(docs)
    assert mcpd["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    shutdown = float(settings(docs)["MCPD_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > 5 + shutdown + BACKSTOP_SECONDS
    assert pod["terminationGracePeriodSeconds"] == 35
    assert mcpd["readinessProbe"]["httpGet"]["path"] == "/readyz"
    docs = render(helm, **{"mcpd.preStopSeconds": "12", "mcpd.shutdownSeconds": "20"})
    assert mcpd_container(docs)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "12"]
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 12 + 20 + 15
    # More replicas, a budget of your own.
    docs = render(helm, **{"mcpd.replicas": "4", "podDisruptionBudget.minAvailable": "3"})
    assert workload(docs)["spec"]["replicas"] == 4
    assert only(docs, "PodDisruptionBudget", "mcpctl")["spec"]["minAvailable"] == 3


def test_one_mcpd_with_a_ray_of_its_own_is_a_singleton(helm: str) -> None:
    """Without a shared Ray, mcpd starts a local Ray in its pod: one replica, replaced with
    Recreate (two would both operate the same pods), with the ServiceAccount's token."""
    docs = render(helm, VALUES["local-ray"])
    deployment = workload(docs)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert only(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert kinds(docs, "Deployment") == [deployment]
    env = settings(docs)
    assert not {"RAY_ADDRESS", "RAY_AUTH_MODE", "MCPD_RAY_HOST_RESOURCE", "MCPD_SHARED"} & set(env)
    mcpd = mcpd_container(docs)
    assert "command" not in mcpd and "args" not in mcpd  # the image's entrypoint: mcpd
    assert "RAY_AUTH_TOKEN" not in {e["name"] for e in mcpd["env"]}
    assert "mcpctl-ray-token" not in {s["metadata"]["name"] for s in kinds(docs, "Secret")}
    assert pod_spec(docs)["serviceAccountName"] == "mcpctl"
    assert "topologySpreadConstraints" not in pod_spec(docs)
    # The default budget of a singleton lets no eviction take it down.
    single = render(helm, **LOCAL_RAY)
    assert only(single, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 0
    for sets, message in (
        ({"ray.enabled": "false"}, "mcpd.replicas > 1 needs a Ray cluster the replicas share"),
        (
            {"mcpd.rayAddress": "ray-head.ray.svc:6379"},
            "mcpd.rayAddress joins an existing Ray cluster: set ray.enabled=false with it",
        ),
    ):
        result = run_helm(helm, *template_args(None, "mcpctl", sets, "mcpctl"), check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_charts_ray_cluster(helm: str) -> None:
    """A head (GCS only) and workers (where mcpd's host actors run) from mcpd's image, with
    token authentication; mcpd's replicas join it through a raylet of their own."""
    docs = render(helm)
    env = settings(docs)
    assert env["RAY_ADDRESS"] == "mcpctl-ray-head.mcpctl.svc:6379"
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["MCPD_RAY_HOST_RESOURCE"] == "mcpd-host"
    # the replicas share one detached controller and its hosts: none stops them when it stops
    assert env["MCPD_SHARED"] == "true" and env["MCPD_DEPLOYMENT"] == "mcpctl"
    service = only(docs, "Service", "mcpctl-ray-head")["spec"]
    assert service["selector"] == HEAD_SELECTOR
    assert service["ports"] == [
        {"name": "gcs", "port": 6379, "targetPort": "gcs", "protocol": "TCP"}
    ]
    head, worker = workload(docs, "ray-head"), workload(docs, "ray-worker")
    assert head["spec"]["replicas"] == 1 and head["spec"]["strategy"] == {"type": "Recreate"}
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    token = {"name": "mcpctl-ray-token", "key": "token"}
    for component in ("ray-head", "ray-worker"):
        ray = container(docs, component)
        assert ray["image"] == mcpd_container(docs)["image"]  # one Ray version everywhere
        assert ray["command"] == ["ray"]
        args = ray["args"]
        assert args[0] == "start" and "--block" in args
        assert "--node-ip-address=$(POD_IP)" in args
        # pods have a 64 MB /dev/shm: a small object store in a memory-backed one
        assert "--object-store-memory=83886080" in args
        mounts = {m["mountPath"]: m["name"] for m in ray["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(docs, component)["volumes"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "128Mi"}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        values = {e["name"]: e.get("value") for e in ray["env"]}
        assert values["RAY_AUTH_MODE"] == "token" and values["HOME"] == "/tmp"
        assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in secret_refs_of(ray)} == {
            "RAY_AUTH_TOKEN": token
        }
    head_args = container(docs, "ray-head")["args"]
    # The head runs the GCS and no work: no CPUs, no mcpd-host resource.
    assert {"--head", "--port=6379", "--num-cpus=0", "--include-dashboard=false"} <= set(head_args)
    assert not [a for a in head_args if a.startswith("--resources")]
    assert container(docs, "ray-head")["readinessProbe"] == {
        "tcpSocket": {"port": "gcs"},
        "periodSeconds": 5,
    }
    worker_args = container(docs, "ray-worker")["args"]
    assert "--address=$(RAY_ADDRESS)" in worker_args
    assert '--resources={"mcpd-host": 1000}' in worker_args
    assert {e["name"]: e.get("value") for e in container(docs, "ray-worker")["env"]}[
        "RAY_ADDRESS"
    ] == env["RAY_ADDRESS"]  # the actors started there inherit it
    # mcpd's pod: a raylet without CPUs joins first (a Ray driver needs one), then mcpd.
    mcpd = mcpd_container(docs)
    assert mcpd["command"] == ["sh", "-c"]
    [script] = mcpd["args"]
    assert 'ray start --address="$RAY_ADDRESS" --node-ip-address="$POD_IP"' in script
    assert "--num-cpus=0" in script and script.rstrip().endswith("exec mcpd")
    # and mcpd connects through that raylet, not any other it may see on the machine
    assert {e["name"]: e.get("value") for e in mcpd["env"]}["MCPD_RAY_NODE_IP"] == "$(POD_IP)"
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in secret_refs_of(mcpd)}[
        "RAY_AUTH_TOKEN"
    ] == token
    # The token is generated into one Secret and appears nowhere else in plain text.
    secret = secret_value(docs, "mcpctl-ray-token", "token")
    assert re.fullmatch(r"[A-Za-z0-9]{64}", secret)
    rendered = run_helm(
        helm, *template_args(None, "mcpctl", {"ray.auth.token": "Tok3n-xyz"}, "mcpctl")
    )
    assert "Tok3n-xyz" not in rendered.stdout
    assert base64.b64encode(b"Tok3n-xyz").decode() in rendered.stdout  # only in the Secret
    # Budgets: the head waits for you, the workers go one at a time.
    assert only(docs, "PodDisruptionBudget", "mcpctl-ray-head")["spec"]["maxUnavailable"] == 0
    worker_budget = only(docs, "PodDisruptionBudget", "mcpctl-ray-worker")["spec"]
    assert worker_budget["maxUnavailable"] == 1
    assert worker_budget["selector"] == {"matchLabels": WORKER_SELECTOR}


def test_default_values_bundle_postgresql_on_a_volume(helm: str) -> None:
    docs = render(helm)
    statefulset = only(docs, "StatefulSet")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    pod = statefulset["spec"]["template"]["spec"]
    [postgres] = pod["containers"]
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in postgres["volumeMounts"]
    assert postgres["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    url = secret_value(docs, "mcpctl-database", "url")
    password = secret_value(docs, "mcpctl-database", "password")
    assert len(password) == 32
    assert url == f"postgresql+psycopg://mcpd:{password}@mcpctl-postgresql.mcpctl.svc:5432/mcpd"
    service = only(docs, "Service", "mcpctl-postgresql")
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    init = pod_spec(docs)["initContainers"]
    assert init[0]["name"] == "wait-for-database"
    # Generated secrets are kept by helm (a new Fernet key could not read stored secrets).
    for name in ("mcpctl-database", "mcpctl-auth"):
        annotations = only(docs, "Secret", name)["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"


def test_generated_admin_token_and_secret_key_are_usable(helm: str) -> None:
    first, second = render(helm), render(helm)
    token = secret_value(first, "mcpctl-auth", "admin-token")
    key = secret_value(first, "mcpctl-auth", "secret-key")
    assert re.fullmatch(r"mcp_[A-Za-z0-9]{43}", token)
    box = Fernet(key.encode())  # a valid Fernet key, or this raises
    assert box.decrypt(box.encrypt(b"x")) == b"x"
    # Without a cluster to look the old Secret up in, every render makes new ones.
    assert secret_value(second, "mcpctl-auth", "secret-key") != key
    given = render(helm, **{"auth.adminToken": "mcp_given", "auth.secretKey": key})
    assert secret_value(given, "mcpctl-auth", "admin-token") == "mcp_given"
    assert secret_value(given, "mcpctl-auth", "secret-key") == key
    existing = render(helm, **{"auth.existingSecret": "my-auth"})
    assert [s["metadata"]["name"] for s in kinds(existing, "Secret")] == [
        "mcpctl-database",
        "mcpctl-ray-token",
    ]
    refs = secret_refs(existing)
    assert refs["MCPD_SECRET_KEY"] == {"name": "my-auth", "key": "secret-key"}


# ------------------------------------------------------------------ the chart's Ray, run

DRIVER_PROBE = """
import json, os, ray
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)

@ray.remote
class Probe:
    def where(self):
        return ray.get_runtime_context().get_node_id(), os.environ.get("RAY_ADDRESS")

resource = os.environ["MCPD_RAY_HOST_RESOURCE"]
probes = [Probe.options(num_cpus=0, resources={resource: 0.001}).remote() for _ in range(4)]
placed = ray.get([p.where.remote() for p in probes], timeout=60)
nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
print(json.dumps({"nodes": nodes, "placed": placed}))
"""


def pod_env(
    docs: list[dict[str, Any]], component: str, directory: Path, marker: str
) -> dict[str, str]:
    """The container's environment as the kubelet would set it (ConfigMap, Secrets, the pod's
    IP), on this machine: the suite's own RAY_*/MCPD_* removed, Ray's files in `directory`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MCPD_", "KUBE"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    spec = container(docs, component)
    for source in spec.get("envFrom", []):
        env.update(only(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in spec.get("env", []):
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = secret_value(docs, ref["name"], ref["key"])
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = "127.0.0.1"  # the test cluster's pods share the host's
        elif "value" in item:
            env[item["name"]] = item["value"]
    env["HOME"] = env["RAY_TMPDIR"] = str(directory)  # each node's files apart
    env["MCPCTL_TEST_RAY_MARKER"] = marker
    return env


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) in command and args, as Kubernetes expands them."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def kill_marked(marker: str) -> None:
    """Every process that carries `marker` in its environment (Ray starts some in process
    groups of their own)."""
    needle = f"MCPCTL_TEST_RAY_MARKER={marker}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def test_the_rendered_ray_commands_form_a_cluster_that_keeps_host_actors_on_workers(
    helm: str,
) -> None:
    """The head's, a worker's and mcpd's containers as rendered, run on this machine (the head
    Service's address becomes 127.0.0.1): they form one Ray cluster with token
    authentication; mcpd's raylet joins it and `exec mcpd` (here a Ray driver that creates
    actors as mcpd's hosts do) finds actors asking for MCPD_RAY_HOST_RESOURCE placed on the
    worker only, with RAY_ADDRESS set; the head and mcpd's node have no CPUs; a client with
    another token is refused."""
    port = free_port()
    docs = render(helm, **{"ray.head.port": str(port), "ray.auth.token": "t" * 64})
    marker = uuid.uuid4().hex
    address = f"127.0.0.1:{port}"
    root = Path(tempfile.mkdtemp(prefix="rc"))  # short: Ray's socket paths live below it
    stub = root / "bin"
    stub.mkdir()
    (stub / "mcpd").write_text(f"#!{sys.executable}\n{DRIVER_PROBE}")
    (stub / "mcpd").chmod(0o755)
    processes = []

    def start(component: str) -> subprocess.Popen[bytes]:
        directory = root / component
        directory.mkdir()
        env = pod_env(docs, component, directory, marker)
        env["RAY_ADDRESS"] = address  # the head Service, resolved
        env["PATH"] = f"{stub}:{env['PATH']}"
        spec = container(docs, component)
        command = expand(spec["command"] + spec["args"], env)
        with (directory / "log").open("wb") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    def logs() -> str:
        return "\n".join(
            f"--- {log.parent.name}\n{log.read_text()[-3000:]}" for log in root.glob("*/log")
        )

    def started(component: str) -> None:
        """Until `ray start` of that container says so (nodes on one machine start one by one:
        some of Ray's ports are fixed)."""
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in (root / component / "log").read_bytes():
            assert time.monotonic() < deadline, f"{component} did not start:\n{logs()}"
            time.sleep(0.5)

    try:
        start("ray-head")
        started("ray-head")
        start("ray-worker")
        started("ray-worker")
        mcpd = start("mcpd")  # `until ray start ...; done; exec mcpd`
        try:
            mcpd.wait(timeout=180)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"mcpd's container did not finish:\n{logs()}") from None
        output = (root / "mcpd" / "log").read_text()
        assert mcpd.returncode == 0, logs()
        report = json.loads(output.strip().splitlines()[-1])
        refused = subprocess.run(
            [sys.executable, "-c", REFUSAL_PROBE, address],
            env={**pod_env(docs, "ray-head", root, marker), "RAY_AUTH_TOKEN": "0" * 64},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        kill_marked(marker)
        shutil.rmtree(root, ignore_errors=True)
    nodes = report["nodes"]
    workers = [n for n, resources in nodes.items() if "mcpd-host" in resources]
    assert len(nodes) == 3 and len(workers) == 1, nodes  # head, worker, mcpd's raylet
    assert nodes[workers[0]]["mcpd-host"] == 1000
    for node, resources in nodes.items():
        if node not in workers:
            assert resources.get("CPU", 0) == 0, resources  # no work lands there
    assert [where for where, _ in report["placed"]] == workers * 4
    assert {ray_address for _, ray_address in report["placed"]} == {address}
    assert refused.stdout.strip() == "refused AuthenticationError"


def test_external_database_values(helm: str) -> None:
    docs = render(helm, VALUES["external-database"])
    assert kinds(docs, "StatefulSet") == []
    assert [s["metadata"]["name"] for s in kinds(docs, "Service")] == ["mcpctl-ray-head", "mcpctl"]
    assert secret_value(docs, "mcpctl-database", "url") == (
        "postgresql+psycopg://mcpd:s3cret@db.example.internal:5432/mcpd"
    )
    assert "initContainers" not in pod_spec(docs)
    refs = secret_refs(docs)
    assert refs["MCPD_DATABASE_URL"] == {"name": "mcpctl-database", "key": "url"}
    assert secret_value(docs, "mcpctl-auth", "admin-token") == "mcp_ci-admin-token"
    database = {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    # mcpd (the store behind the REST API) and the host actors on the workers (instances)
    assert database in policy(docs, "mcpctl-mcpd")["egress"]
    assert database in policy(docs, "mcpctl-ray-worker")["egress"]
    assert database not in policy(docs, "mcpctl-ray-head")["egress"]
    assert [p["metadata"]["name"] for p in kinds(docs, "NetworkPolicy")] == [
        "mcpctl-mcpd",
        "mcpctl-ray-head",
        "mcpctl-ray-worker",
        "default-deny",
        "allow-dns",
        "servers-ingress-from-mcpd",
    ]


def test_external_database_from_an_existing_secret(helm: str) -> None:
    docs = render(
        helm,
        **{
            "postgresql.enabled": "false",
            "externalDatabase.existingSecret": "db-credentials",
            "externalDatabase.existingSecretKey": "uri",
        },
    )
    assert [s["metadata"]["name"] for s in kinds(docs, "Secret")] == [
        "mcpctl-auth",
        "mcpctl-ray-token",
    ]
    refs = secret_refs(docs)
    assert refs["MCPD_DATABASE_URL"] == {"name": "db-credentials", "key": "uri"}


def test_external_database_needs_a_url(helm: str) -> None:
    args = template_args(None, "mcpctl", {"postgresql.enabled": "false"}, "mcpctl")
    result = run_helm(helm, *args, check=False)
    assert result.returncode != 0
    assert "set externalDatabase.url or externalDatabase.existingSecret" in result.stderr


def test_custom_namespaces_and_node_selector(helm: str) -> None:
    docs = render(helm, VALUES["custom-namespaces"], namespace="default")
    assert {n["metadata"]["name"] for n in kinds(docs, "Namespace")} == {
        "team-mcp",
        "team-mcp-servers",
    }
    env = settings(docs)
    assert env["MCPD_K8S_NAMESPACE"] == "team-mcp-servers"
    assert env["MCPD_NODE_SELECTOR"] == "kubernetes.io/arch=amd64,node.example.com/pool=mcp"
    assert env["MCPD_RUNNER_IMAGE"] == "registry.example.internal/mcpctl/runner:0.1.0"
    assert env["MCPD_RESYNC_SECONDS"] == "15"
    assert env["MCPD_ACTOR_HOSTS"] == "4"
    assert env["MCPD_K8S_CONTEXT"] == "prod-eu"
    pod = pod_spec(docs)
    assert pod["nodeSelector"] == {"node.example.com/pool": "control"}
    assert pod["terminationGracePeriodSeconds"] == 10 + 30 + 15  # preStop + shutdown + Ray
    for component in ("mcpd", "ray-head", "ray-worker"):
        assert pod_spec(docs, component)["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert container(docs, component)["image"] == "registry.example.internal/mcpctl/mcpd:0.1.0"
    # the host actors' Ray workers on a pool of their own
    assert workload(docs, "ray-worker")["spec"]["replicas"] == 3
    assert pod_spec(docs, "ray-worker")["nodeSelector"] == {"node.example.com/pool": "mcp-hosts"}
    assert "nodeSelector" not in pod_spec(docs, "ray-head")
    assert env["RAY_ADDRESS"] == "mcpctl-ray-head.team-mcp.svc:6379"
    url = secret_value(docs, "mcpctl-database", "url")
    assert "@mcpctl-postgresql.team-mcp.svc:5432/" in url
    # The server pods accept mcpd's host actors (Ray workers) from the custom control plane.
    ingress = policy(docs, "servers-ingress-from-mcpd")["ingress"]
    peer = ingress[0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "team-mcp"}
    assert peer["podSelector"]["matchLabels"] == WORKER_SELECTOR
    # Per-server egress, in the Server resource's egress shape.
    fetch = policy(docs, "server-fetch-egress")
    assert fetch["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "mcpd",
        "mcpctl.io/server": "fetch",
    }
    assert fetch["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}],
        }
    ]
    assert policy(docs, "servers-egress")["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]
    api = {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    # the host actors call the API server from the workers; mcpd's gateways never do
    assert api in policy(docs, "mcpctl-ray-worker")["egress"]
    assert api not in policy(docs, "mcpctl-mcpd")["egress"]


def test_server_egress_keys_must_be_server_names(helm: str) -> None:
    args = template_args(
        None, "mcpctl", {"networkPolicy.serverEgress.Bad_Name[0].cidr": "1.2.3.4/32"}, "mcpctl"
    )
    result = run_helm(helm, *args, check=False)
    assert result.returncode != 0
    assert "is not a server name" in result.stderr


DNS_EGRESS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
API_EGRESS = {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
SERVERS_EGRESS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mcpctl-servers"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "mcpd"}},
        }
    ]
}
POSTGRES_SELECTOR = {**MCPD_SELECTOR, "app.kubernetes.io/component": "postgresql"}
DATABASE_EGRESS = {
    "to": [{"podSelector": {"matchLabels": POSTGRES_SELECTOR}}],
    "ports": [{"protocol": "TCP", "port": 5432}],
}


def test_network_policies_of_the_default_values(helm: str) -> None:
    docs = render(helm)
    mcpd_pods = {"matchLabels": MCPD_SELECTOR}
    ray_members = [
        {"podSelector": {"matchLabels": selector}}
        for selector in (MCPD_SELECTOR, HEAD_SELECTOR, WORKER_SELECTOR)
    ]
    # Data plane: deny everything, then DNS for all, and the host actors (on the Ray workers,
    # not mcpd's gateways) → servers.
    deny = only(docs, "NetworkPolicy", "default-deny")
    assert deny["metadata"]["namespace"] == "mcpctl-servers"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert policy(docs, "allow-dns") == {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [DNS_EGRESS],
    }
    assert policy(docs, "servers-ingress-from-mcpd") == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "mcpd"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "mcpctl"}
                        },
                        "podSelector": {"matchLabels": WORKER_SELECTOR},
                    }
                ]
            }
        ],
    }
    # mcpd's gateways: their port in, Ray's members both ways (its raylet and driver, the
    # head's GCS, the hosts' data-plane streams: random ports); DNS and the database out. No
    # API server, no server pods: the host actors on the workers make those calls.
    mcpd = policy(docs, "mcpctl-mcpd")
    assert mcpd["podSelector"] == mcpd_pods and mcpd["policyTypes"] == ["Ingress", "Egress"]
    assert mcpd["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": "http"}]},
        {"from": ray_members},
    ]
    assert mcpd["egress"] == [DNS_EGRESS, DATABASE_EGRESS, {"to": ray_members}]
    # The Ray head: its cluster's members only, both ways (and DNS).
    assert policy(docs, "mcpctl-ray-head") == {
        "podSelector": {"matchLabels": HEAD_SELECTOR},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": ray_members}],
        "egress": [DNS_EGRESS, {"to": ray_members}],
    }
    # The workers (host actors): the API server, the server pods, the database, the members.
    assert policy(docs, "mcpctl-ray-worker") == {
        "podSelector": {"matchLabels": WORKER_SELECTOR},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": ray_members}],
        "egress": [DNS_EGRESS, API_EGRESS, SERVERS_EGRESS, DATABASE_EGRESS, {"to": ray_members}],
    }
    # The database: only mcpd and the workers in, nothing out.
    assert policy(docs, "mcpctl-postgresql") == {
        "podSelector": {"matchLabels": POSTGRES_SELECTOR},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": mcpd_pods},
                    {"podSelector": {"matchLabels": WORKER_SELECTOR}},
                ],
                "ports": [{"protocol": "TCP", "port": 5432}],
            }
        ],
    }


def test_network_policies_of_one_mcpd_with_a_ray_of_its_own(helm: str) -> None:
    """Without the chart's Ray, mcpd's pod runs the host actors itself: it reaches the API
    server and the server pods, and they accept it."""
    docs = render(helm, VALUES["local-ray"])
    mcpd_pods = {"matchLabels": MCPD_SELECTOR}
    mcpd = policy(docs, "mcpctl-mcpd")
    assert mcpd["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": "http"}]},
        {"from": [{"podSelector": mcpd_pods}]},
    ]
    assert mcpd["egress"] == [
        DNS_EGRESS,
        API_EGRESS,
        SERVERS_EGRESS,
        DATABASE_EGRESS,
        {"to": [{"podSelector": mcpd_pods}]},
    ]
    [peer] = policy(docs, "servers-ingress-from-mcpd")["ingress"][0]["from"]
    assert peer["podSelector"] == mcpd_pods
    names = [p["metadata"]["name"] for p in kinds(docs, "NetworkPolicy")]
    assert "mcpctl-ray-head" not in names and "mcpctl-ray-worker" not in names
    ingress = policy(docs, "mcpctl-postgresql")["ingress"]
    assert ingress[0]["from"] == [{"podSelector": mcpd_pods}]
    # An existing Ray's nodes call mcpd's raylet back: extraIngress opens that way.
    extra = {"from": [{"namespaceSelector": {"matchLabels": {"name": "ray"}}}]}
    docs = render(
        helm,
        **{
            "ray.enabled": "false",
            "mcpd.rayAddress": "ray-head.ray.svc:6379",
            "networkPolicy.mcpd.extraIngress[0].from[0].namespaceSelector.matchLabels.name": "ray",
        },
    )
    assert policy(docs, "mcpctl-mcpd")["ingress"][-1] == extra


def test_observability_values(helm: str) -> None:
    docs = render(helm, VALUES["observability"])
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = only(docs, "Service", "mcpctl")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mcpctl"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    dashboards = only(docs, "ConfigMap", "mcpctl-dashboards")
    assert dashboards["metadata"]["namespace"] == "monitoring"
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"]["annotations"] == {"grafana_folder": "MCP"}
    assert settings(docs)["RAY_ADDRESS"] == "ray-head.ray.svc:6379"
    assert kinds(docs, "NetworkPolicy") == []
    # three gateway replicas on the existing Ray, a budget keeping two; no Ray of the chart's
    assert workload(docs)["spec"]["replicas"] == 3
    assert workload(docs)["spec"]["strategy"]["type"] == "RollingUpdate"
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert [d["metadata"]["name"] for d in kinds(docs, "Deployment")] == ["mcpctl"]
    assert "MCPD_RAY_HOST_RESOURCE" not in settings(docs)
    assert settings(docs)["MCPD_SHARED"] == "true"
    # mcpd's raylet joins it first (a Ray driver needs one on its node)
    assert mcpd_container(docs)["command"] == ["sh", "-c"]
    extra = [e for e in mcpd_container(docs)["env"] if "value" in e]
    assert extra == [
        {"name": "MCPD_RAY_NODE_IP", "value": "$(POD_IP)"},
        {"name": "RAY_memory_usage_threshold", "value": "0.9"},
    ]


def secret_refs(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    refs = secret_refs_of(mcpd_container(docs))
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in refs}


def test_an_external_ray_gets_the_token_from_a_secret(helm: str) -> None:
    external = {"mcpd.rayAddress": "ray-head.ray.svc:6379", "ray.enabled": "false"}
    docs = render(helm, **external, **{"ray.auth.namespaces": "{ray}"})
    assert settings(docs)["RAY_AUTH_MODE"] == "token"
    assert secret_refs(docs)["RAY_AUTH_TOKEN"] == {"name": "mcpctl-ray-token", "key": "token"}
    # one token, for mcpd and (a copy in its namespace) for the Ray cluster's pods
    secrets = [s for s in kinds(docs, "Secret") if s["metadata"]["name"] == "mcpctl-ray-token"]
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["mcpctl", "ray"]
    [token] = {base64.b64decode(s["data"]["token"]).decode() for s in secrets}
    assert re.fullmatch(r"[A-Za-z0-9]{64}", token)
    assert secrets[0]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    given = render(helm, **external, **{"ray.auth.token": "t0ken"})
    assert secret_value(given, "mcpctl-ray-token", "token") == "t0ken"
    existing = render(
        helm,
        **external,
        **{"ray.auth.existingSecret": "kuberay", "ray.auth.existingSecretKey": "auth_token"},
    )
    assert secret_refs(existing)["RAY_AUTH_TOKEN"] == {"name": "kuberay", "key": "auth_token"}
    assert "mcpctl-ray-token" not in {s["metadata"]["name"] for s in kinds(existing, "Secret")}
    disabled = render(helm, **external, **{"ray.auth.mode": "disabled"})
    assert settings(disabled)["RAY_AUTH_MODE"] == "disabled"
    assert "RAY_AUTH_TOKEN" not in secret_refs(disabled)
    assert "mcpctl-ray-token" not in {s["metadata"]["name"] for s in kinds(disabled, "Secret")}
    # mcpd's local Ray makes its own token (in its data directory)
    local = render(helm, **LOCAL_RAY)
    assert "RAY_AUTH_MODE" not in settings(local) and "RAY_AUTH_TOKEN" not in secret_refs(local)
    # The chart's own Ray: the same Secret, for mcpd, the head and the workers.
    existing = render(
        helm, **{"ray.auth.existingSecret": "mine", "ray.auth.existingSecretKey": "t"}
    )
    assert "mcpctl-ray-token" not in {s["metadata"]["name"] for s in kinds(existing, "Secret")}
    for component in ("mcpd", "ray-head", "ray-worker"):
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in secret_refs_of(container(existing, component))
        }
        assert refs["RAY_AUTH_TOKEN"] == {"name": "mine", "key": "t"}


def test_metrics_on_a_port_of_their_own_or_behind_a_token(helm: str) -> None:
    docs = render(helm, **{"mcpd.metricsPort": "9090", "serviceMonitor.enabled": "true"})
    assert settings(docs)["MCPD_METRICS_PORT"] == "9090"
    ports = {p["name"]: p["containerPort"] for p in mcpd_container(docs)["ports"]}
    assert ports == {"http": 8420, "metrics": 9090}
    service = only(docs, "Service", "mcpctl")["spec"]["ports"]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in service
    [endpoint] = only(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and "authorization" not in endpoint
    scrape = {"ports": [{"protocol": "TCP", "port": "metrics"}]}
    assert scrape in policy(docs, "mcpctl-mcpd")["ingress"]
    assert scrape not in policy(render(helm), "mcpctl-mcpd")["ingress"]
    token = {"mcpd.metricsRequireToken": "true", "serviceMonitor.enabled": "true"}
    docs = render(helm, **token, **{"serviceMonitor.tokenSecret.name": "prometheus-token"})
    assert settings(docs)["MCPD_METRICS_REQUIRE_TOKEN"] == "true"
    [endpoint] = only(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "prometheus-token", "key": "token"},
    }
    result = run_helm(helm, *template_args(None, "mcpctl", token, "mcpctl"), check=False)
    assert result.returncode != 0 and "serviceMonitor.tokenSecret.name" in result.stderr


def test_shutdown_seconds_bound_mcpd_and_its_pod(helm: str) -> None:
    assert settings(render(helm))["MCPD_SHUTDOWN_SECONDS"] == "15"
    docs = render(helm, **{"mcpd.shutdownSeconds": "40"})
    assert settings(docs)["MCPD_SHUTDOWN_SECONDS"] == "40"
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 5 + 40 + 15


# ------------------------------------------------------------------ dashboards

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


# ------------------------------------------------------------------ images


def stages(dockerfile: Path) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into build stages."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    result: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_mcpd_image_is_multi_stage_non_root_without_build_tools() -> None:
    build, *_, final = stages(REPO / "docker" / "mcpd.Dockerfile")
    assert len(stages(REPO / "docker" / "mcpd.Dockerfile")) >= 2
    assert any("pip install" in line or "uv pip install" in line for line in build)
    text = "\n".join(final)
    assert "pip install" not in text and "apt-get install" not in text
    assert not re.search(r"\b(gcc|build-essential|make|git)\b", text)
    assert re.search(r"^COPY --from=\S+ /opt/mcpd /opt/mcpd$", text, re.M)
    [user] = [line for line in final if line.startswith("USER ")]
    assert re.fullmatch(r"USER 10001(:10001)?", user)
    assert 'ENTRYPOINT ["mcpd"]' in final
    ignore = (REPO / "docker" / "mcpd.Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!mcpctl/"} <= set(ignore)


def test_runner_image_keeps_the_pod_alive_with_mcpds_args() -> None:
    [*_, final] = stages(REPO / "docker" / "runner.Dockerfile")
    entrypoint = json.loads(next(x for x in final if x.startswith("ENTRYPOINT "))[11:])
    cmd = json.loads(next(x for x in final if x.startswith("CMD "))[4:])
    # mcpd sets args ["sleep", "infinity"] and keeps the entrypoint: an init that runs its args.
    assert entrypoint[-1] == "--" and "tini" in entrypoint[0]
    assert cmd == KEEP_ALIVE
    # npx from the node base image, uvx from uv's, a Python for uvx to run packages with.
    text = (REPO / "docker" / "runner.Dockerfile").read_text()
    assert re.search(r"^ARG NODE_IMAGE=node:\S+$", text, re.M)
    assert "COPY --from=uv /uv /uvx /usr/local/bin/" in text and " python3 " in text
    [user] = [line for line in final if line.startswith("USER ")]
    assert re.fullmatch(r"USER 10001(:10001)?", user)


# ------------------------------------------------------------------ the real API server


needs_cluster = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"),
    reason="KUBECONFIG unset: `make test` starts the test cluster (scripts/k8s/cluster.sh)",
)


@pytest.fixture(scope="module")
def kube() -> Iterator[client.ApiClient]:
    api = config.new_client_from_config()
    yield api
    api.close()


def dry_run(api: client.ApiClient, resources: Any, doc: dict[str, Any]) -> None:
    """POST with dryRun=All and strict field validation; fail with the server's message."""
    resource = resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    namespace = doc["metadata"].get("namespace") if resource.namespaced else None
    request = api.param_serialize(
        "POST",
        resource.path(namespace=namespace),
        query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=doc,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    response.read()
    assert 200 <= response.status < 300, f"{_ref(doc)}: {response.status} {response.data!r}"
    assert not response.getheader("Warning"), f"{_ref(doc)}: {response.getheader('Warning')}"


def pod_of(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod a workload's controller would create (a StatefulSet's claim as it names it)."""
    template = json.loads(json.dumps(workload["spec"]["template"]))
    name = workload["metadata"]["name"]
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        claim_name = claim["metadata"]["name"]
        template["spec"].setdefault("volumes", []).append(
            {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-0"}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-0",
            "namespace": workload["metadata"]["namespace"],
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }


def wait_default_account(core: client.CoreV1Api, namespace: str) -> None:
    """Pods can be created once the controller-manager made the namespace's `default` account."""
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException:
            assert time.monotonic() < deadline, f"no default ServiceAccount in {namespace}"
            time.sleep(0.2)


@pytest.mark.k8s
@needs_cluster
@pytest.mark.parametrize("values", VALUES)
def test_every_rendered_manifest_passes_a_server_side_dry_run(
    helm: str, kube: client.ApiClient, values: str
) -> None:
    core = client.CoreV1Api(kube)
    resources = dynamic.DynamicClient(kube).resources
    suffix = uuid.uuid4().hex[:6]
    control, data = f"chart-{values[:12]}-{suffix}", f"chart-{values[:12]}-{suffix}-servers"
    # Released into another namespace, the chart creates (and labels) both of its own.
    docs = render(
        helm,
        VALUES[values],
        namespace="default",
        **{"namespaces.controlPlane": control, "namespaces.dataPlane": data},
    )
    assert {n["metadata"]["name"] for n in kinds(docs, "Namespace")} == {control, data}
    created: list[str] = []
    try:
        for namespace in kinds(docs, "Namespace"):
            dry_run(kube, resources, namespace)
            core.create_namespace(namespace)  # so that the objects inside can be dry-run
            created.append(namespace["metadata"]["name"])
        for name in sorted({d["metadata"].get("namespace") or "" for d in docs} - {"", *created}):
            try:
                core.read_namespace(name)
            except ApiException:  # e.g. the observability values' "monitoring"
                core.create_namespace({"metadata": {"name": name}})
                created.append(name)
        checked = []
        for doc in docs:
            # prometheus-operator's CRD is not installed on the test cluster
            if doc["kind"] not in ("Namespace", "ServiceMonitor"):
                dry_run(kube, resources, doc)
                checked.append(doc["kind"])
        assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= set(checked)
        # The workloads' pods as their controllers would create them, through Pod Security
        # admission (both namespaces enforce "restricted"); the ServiceAccount admission plugin
        # wants their account to exist.
        for account in kinds(docs, "ServiceAccount"):
            core.create_namespaced_service_account(account["metadata"]["namespace"], account)
        for workload in kinds(docs, "Deployment") + kinds(docs, "StatefulSet"):
            labels = core.read_namespace(workload["metadata"]["namespace"]).metadata.labels
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
            dry_run(kube, resources, pod_of(workload))
    finally:
        for name in created:
            core.delete_namespace(name)


@pytest.mark.k8s
@needs_cluster
def test_data_plane_admits_mcpds_pods_and_refuses_escalated_ones(
    helm: str, kube: client.ApiClient
) -> None:
    """The server pods mcpd renders pass the "restricted" standard the chart's data plane
    enforces; one that adds a capability is refused (so the enforcement is real)."""
    core = client.CoreV1Api(kube)
    resources = dynamic.DynamicClient(kube).resources
    data = f"chart-psa-{uuid.uuid4().hex[:6]}"
    docs = render(helm, **{"namespaces.dataPlane": data})
    namespace = only(docs, "Namespace", data)
    core.create_namespace(namespace)
    try:
        wait_default_account(core, data)
        options = PodOptions(namespace=data, node_selector={"kubernetes.io/arch": "amd64"})
        for source, transport, image in (
            (Source.IMAGE, Transport.STDIO, "mcp/time"),
            (Source.PACKAGE, Transport.STDIO, None),
            (Source.IMAGE, Transport.STREAMABLE_HTTP, "mcp/everything"),
        ):
            workload = Workload(
                "psa", 0, "0123456789abcdef", source, transport, ("x",), image, port=3001
            )
            dry_run(kube, resources, render_pod(workload, options, PodEnv()))
        workload = Workload("psa", 0, "0", Source.IMAGE, Transport.STDIO, image="mcp/time")
        escalated = render_pod(workload, options, PodEnv())
        escalated["spec"]["containers"][0]["securityContext"]["capabilities"] = {
            "add": ["NET_ADMIN"]
        }
        with pytest.raises(AssertionError, match=r"403 .*violates PodSecurity .*restricted:latest"):
            dry_run(kube, resources, escalated)
    finally:
        core.delete_namespace(data)


@pytest.mark.k8s
@needs_cluster
def test_generated_secrets_survive_upgrade_uninstall_and_reinstall(
    helm: str, kube: client.ApiClient
) -> None:
    """A real `helm install` (one mcpd with its own Ray), `helm upgrade`, `helm uninstall` and
    a new install: the admin token, the Fernet key and the database password stay the same (a
    new key could not read the stored secrets; a kept volume needs its password)."""
    core = client.CoreV1Api(kube)
    suffix = uuid.uuid4().hex[:6]
    release, control, data = f"life-{suffix}", f"chart-life-{suffix}", f"chart-life-{suffix}-dp"
    args = [str(CHART), "--namespace", control]
    args += ["--set", f"namespaces.controlPlane={control}", "--set", f"namespaces.dataPlane={data}"]
    # One mcpd with its own Ray: the test kubelet cannot run the mcpd image (its pod waits in
    # ImagePullBackOff), but it would run the `ray start` commands of the chart's Ray pods.
    for key, value in LOCAL_RAY.items():
        args += ["--set", f"{key}={value}"]
    secrets = [f"{release}-mcpctl-auth", f"{release}-mcpctl-database"]

    def generated() -> dict[str, dict[str, str]]:
        return {name: core.read_namespaced_secret(name, control).data for name in secrets}

    try:
        run_helm(helm, "install", release, *args, "--create-namespace")
        first = generated()
        assert set(first[secrets[0]]) == {"admin-token", "secret-key"}
        assert core.read_namespace(data).metadata.labels["pod-security.kubernetes.io/enforce"]
        run_helm(helm, "upgrade", release, *args, "--set", "mcpd.logLevel=debug")
        assert generated() == first
        run_helm(helm, "uninstall", release, "--namespace", control, "--wait")
        assert generated() == first  # helm.sh/resource-policy: keep
        wait_namespace_gone(core, data)
        run_helm(helm, "install", release, *args)
        assert generated() == first
    finally:
        run_helm(helm, "uninstall", release, "--namespace", control, "--wait", check=False)
        core.delete_namespace(control)


def wait_namespace_gone(core: client.CoreV1Api, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespace(name)
        except ApiException as error:
            assert error.status == 404
            return
        assert time.monotonic() < deadline, f"namespace {name} is still there"
        time.sleep(0.3)


def test_pod_annotations_reach_every_pod_of_the_chart(helm: str) -> None:
    """podAnnotations/podLabels go on the gateways', the Ray head's and workers' pods (the HA
    test on the test cluster puts them in sandboxes that way), next to the gateways' settings
    checksum, which a changed value moves (so `helm upgrade` rolls the gateways, not Ray)."""
    sets = {"podAnnotations.example\\.com/team": "mcp", "podLabels.tier": "gateway"}
    docs = render(helm, **sets)
    for component in ("mcpd", "ray-head", "ray-worker"):
        meta = workload(docs, component)["spec"]["template"]["metadata"]
        assert meta["annotations"]["example.com/team"] == "mcp", component
        assert meta["labels"]["tier"] == "gateway", component
    before = workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
    changed = render(helm, **sets, **{"mcpd.logLevel": "debug"})
    after = workload(changed)["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
    assert before != after
    for component in ("ray-head", "ray-worker"):
        assert (
            workload(changed, component)["spec"]["template"]
            == (workload(docs, component)["spec"]["template"])
        )
