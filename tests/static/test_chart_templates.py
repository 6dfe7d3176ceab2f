"""The Helm chart's templates (charts/mcpctl), rendered by the real `helm` with the default
values and the files in charts/mcpctl/ci (scripts/helm.sh installs helm): lint, the values
schema, and what the manifests promise (planes, RBAC, hardening, Ray, databases, network
policies, observability). Nothing here needs a cluster: test_chart*.py in tests/e2e install
the chart."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from mcpctl.daemon.shutdown import BACKSTOP_SECONDS
from tests.helpers.chart import (
    CHART,
    LOCAL_RAY,
    REPO,
    VALUES,
    container,
    kinds,
    only,
    pod_spec,
    ref,
    render,
    run_helm,
    secret_value,
    settings,
    template_args,
    workload,
)

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
CLUSTER_SCOPED = {"Namespace"}  # the only cluster-scoped kind the chart may render


def mcpd_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = container(docs, "mcpd")
    assert found["name"] == "mcpd"
    return found


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
        assert doc["metadata"]["namespace"] in {control, data, monitoring}, ref(doc)
    assert not {"ClusterRole", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    # Only the data plane holds server-facing objects; mcpd's own objects stay in the control plane.
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Service", "Secret", "ServiceAccount"}:
            assert doc["metadata"]["namespace"] == control, ref(doc)
        if doc["kind"] in {"Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] == data, ref(doc)


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
            assert "serviceAccountName" not in pod, ref(deployment)
            assert pod["automountServiceAccountToken"] is False, ref(deployment)


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
        for each in pod["containers"] + pod.get("initContainers", []):
            security = each["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["runAsNonRoot"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert each["resources"]["limits"] and each["resources"]["requests"]
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
