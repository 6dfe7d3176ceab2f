"""The chart's RBAC, proven: `helm install` the chart on the real kube-apiserver of
scripts/k8s/cluster.sh, take a token of the ServiceAccount it made, and run mcpd (its app, Ray
hosts and Kubernetes orchestrator) with nothing but that token. mcpd creates, reaches (attach
and exec) and heals servers in the data plane; everything outside the rendered Role is 403.
The same mcpd's /metrics then serves every metric the chart's dashboards query."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcpctl.observability.metrics import Metrics
from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig, KubernetesOrchestrator
from tests.e2e.gateway import Gateway, start_gateway
from tests.helpers.chart import (
    CHART,
    DASHBOARDS,
    expressions,
    metric_samples,
    render,
    run_helm,
    selectors,
    set_args,
)
from tests.helpers.k8s import wait_default_account, wait_pods_gone
from tests.helpers.mcpd import add_server, api, ready, server_client, wait_instances
from tests.helpers.postgres import drop_database, own_database
from tests.helpers.waiting import until
from tests.helpers.world import EVERYTHING

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG unset: `make test` starts the test cluster (scripts/k8s/cluster.sh)",
    ),
]

RUNNER = "ghcr.io/mcpctl/runner:0.1.0"  # the test kubelet runs a runner image's args as is
# PID 1, reached by attach (the test kubelet runs mcp/everything as `npx -y ...everything`)
ATTACHED = {"image": "mcp/everything", "args": ["stdio"]}
RUNNER_SERVER = EVERYTHING  # exec'd into a runner pod


@dataclass
class Deployed:
    """mcpd started by the test kubelet from the chart's rendered Deployment."""

    url: str
    token: str


@dataclass
class Release:
    name: str
    control: str
    data: str
    account: str
    kubeconfig: Path  # the ServiceAccount's token, nothing else


@pytest.fixture(scope="module")
def admin() -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config()
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def release(
    helm: str, admin: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    name, control = f"rbac-{suffix}", f"mcpctl-rbac-{suffix}"
    data = f"{control}-servers"
    # An external database and one mcpd with a Ray of its own keep the cluster quiet: the test
    # kubelet cannot run the mcpd image (its pod waits in ImagePullBackOff), and it would run
    # the chart's Ray pods' `ray start`; here mcpd runs in the test process instead. The
    # ServiceAccount is the same one the chart's Ray workers carry (test_chart checks that).
    started = time.monotonic()
    sets = {
        "namespaces.controlPlane": control,
        "namespaces.dataPlane": data,
        "postgresql.enabled": "false",
        "externalDatabase.url": "postgresql+psycopg://mcpd:x@db.invalid:5432/mcpd",
        "servers.runnerImage": RUNNER,
        "ray.enabled": "false",
        "mcpd.replicas": "1",
    }
    args = ["--namespace", control, "--create-namespace", *set_args(sets)]
    run_helm(helm, "install", name, str(CHART), *args)
    print(f"\nhelm install: {time.monotonic() - started:.1f} s")
    try:
        [account] = admin.list_namespaced_service_account(
            control, label_selector=f"app.kubernetes.io/instance={name}"
        ).items
        token = admin.create_namespaced_service_account_token(
            account.metadata.name, control, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        kubeconfig = tmp_path_factory.mktemp("sa") / "kubeconfig"
        write_kubeconfig(kubeconfig, token, data)
        wait_default_account(admin, data)  # pods need it (ServiceAccount admission)
        yield Release(name, control, data, account.metadata.name, kubeconfig)
    finally:
        run_helm(helm, "uninstall", name, "--namespace", control, "--wait", "--timeout", "2m")
        admin.delete_namespace(control)  # helm's own; it keeps the Secrets marked "keep"


def write_kubeconfig(path: Path, token: str, namespace: str) -> None:
    """A kubeconfig with the test cluster's address and CA and the ServiceAccount's token."""
    admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster["cluster"]}],
        "users": [{"name": "mcpd", "user": {"token": token}}],
        "contexts": [
            {
                "name": "mcpd",
                "context": {"cluster": "test", "user": "mcpd", "namespace": namespace},
            }
        ],
        "current-context": "mcpd",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)


@pytest.fixture(scope="module")
def mcpd(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """mcpd's app, Ray hosts and orchestrator, with only the ServiceAccount's token."""
    settings = KubernetesConfig(
        namespace=release.data,
        kubeconfig=str(release.kubeconfig),
        runner_image=RUNNER,
        node_selector={"kubernetes.io/arch": "amd64"},
    )
    # One Ray host: a growing pool moves servers between hosts, which replaces their pods.
    gateway = start_gateway(
        tmp_path_factory.mktemp("rbac"), f"rbac-{release.name}", hosts=1, kubernetes=settings
    )
    yield gateway
    for server in ("attached", "runner"):
        api(gateway, "DELETE", f"/servers/{server}")
    gateway.stop()


@pytest.fixture(scope="module")
def as_mcpd(release: Release) -> Iterator[Any]:
    """The CoreV1Api of mcpd's own orchestrator (its connection code, the token's kubeconfig)."""
    orchestrator = KubernetesOrchestrator(
        KubernetesConfig(namespace=release.data, kubeconfig=str(release.kubeconfig))
    )
    yield orchestrator.core
    orchestrator.api.close()


def connect(gateway: Gateway | Deployed, server: str) -> AbstractAsyncContextManager[Client]:
    return server_client(gateway, server, timeout=120)


@pytest.fixture(scope="module")
def servers(mcpd: Gateway) -> dict[str, str]:
    """attached (an image: attach) and runner (a package: exec in a runner pod), RUNNING."""
    for name, spec in (("attached", ATTACHED), ("runner", RUNNER_SERVER)):
        add_server(mcpd, name, spec)
    return {
        name: wait_instances(mcpd, name, "RUNNING")[0]["pod"] for name in ("attached", "runner")
    }


async def test_mcpd_with_only_the_charts_service_account_runs_and_heals_servers(
    mcpd: Gateway, servers: dict[str, str], release: Release, admin: client.CoreV1Api
) -> None:
    pod = admin.read_namespaced_pod(servers["attached"], release.data)
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "mcpd"
    assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64"}
    runner = admin.read_namespaced_pod(servers["runner"], release.data)
    assert runner.spec.containers[0].image == RUNNER
    async with connect(mcpd, "runner") as session:  # pods/exec
        echoed = await session.call_tool("echo", {"message": "through the chart's Role"})
        assert echoed.content[0].text == "Echo: through the chart's Role"
    async with connect(mcpd, "attached") as session:  # pods/attach
        result = await session.call_tool("echo", {"message": "attached"})
        assert result.content[0].text == "Echo: attached"
        # Heal: the pod goes away; mcpd sees it through its watch and makes another.
        admin.delete_namespaced_pod(servers["attached"], release.data)
        [healed] = wait_instances(mcpd, "attached", "RUNNING", exclude={servers["attached"]})
        assert healed["pod"] != servers["attached"]
        again = await session.call_tool("echo", {"message": "healed"})
        assert again.content[0].text == "Echo: healed"


def forbidden(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 403, caught.value
    return str(json.loads(caught.value.body)["message"])


def test_requests_outside_the_rendered_role_are_forbidden(
    as_mcpd: Any, release: Release, admin: client.CoreV1Api
) -> None:
    user = f"system:serviceaccount:{release.control}:{release.account}"
    data, control = release.data, release.control
    assert as_mcpd.list_namespaced_pod(data).items is not None  # the grant works
    # Other namespaces: its own, and any other.
    assert user in forbidden(as_mcpd.list_namespaced_pod, control)
    forbidden(as_mcpd.list_namespaced_pod, "default")
    forbidden(as_mcpd.create_namespaced_pod, control, pod("intruder"))
    forbidden(as_mcpd.list_pod_for_all_namespaces)
    # Secrets, even in the data plane: pods reference them, the kubelet resolves them.
    forbidden(as_mcpd.list_namespaced_secret, data)
    forbidden(as_mcpd.read_namespaced_secret, "anything", data)
    forbidden(as_mcpd.create_namespaced_secret, data, {"metadata": {"name": "s"}})
    forbidden(as_mcpd.list_namespaced_secret, control)
    # Verbs and kinds it does not use: no patch, no Services or ConfigMaps, nothing cluster-wide.
    forbidden(as_mcpd.patch_namespaced_pod, "anything", data, {"metadata": {"labels": {"a": "b"}}})
    forbidden(as_mcpd.delete_collection_namespaced_pod, data)
    forbidden(as_mcpd.create_namespaced_config_map, data, {"metadata": {"name": "c"}})
    forbidden(as_mcpd.list_namespace)
    forbidden(as_mcpd.list_node)
    networking = client.NetworkingV1Api(as_mcpd.api_client)
    forbidden(networking.list_namespaced_network_policy, data)
    rbac = client.RbacAuthorizationV1Api(as_mcpd.api_client)
    forbidden(rbac.create_namespaced_role, data, {"metadata": {"name": "more"}, "rules": []})
    # What the API server says it may do in the data plane, beyond what any authenticated
    # identity may (a ServiceAccount bound to nothing): exactly the rendered Role.
    baseline = "nobody"
    admin.create_namespaced_service_account(control, {"metadata": {"name": baseline}})
    nobody = admin.create_namespaced_service_account_token(
        baseline, control, {"spec": {"expirationSeconds": 600}}
    ).status.token
    unbound = release.kubeconfig.with_name("nobody")
    write_kubeconfig(unbound, nobody, data)
    with config.new_client_from_config(str(unbound)) as anyone:
        assert rules(as_mcpd.api_client, data) - rules(anyone, data) == {
            *(("", "pods", v) for v in ["get", "list", "watch", "create", "delete"]),
            *(("", r, v) for r in ["pods/exec", "pods/attach"] for v in ["create", "get"]),
            ("", "pods/log", "get"),
        }
        assert rules(as_mcpd.api_client, control) == rules(anyone, control)


def rules(api_client: client.ApiClient, namespace: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) the API server grants this identity in `namespace`."""
    review = client.AuthorizationV1Api(api_client).create_self_subject_rules_review(
        {"spec": {"namespace": namespace}}
    )
    assert not review.status.incomplete
    return {
        (group, resource, verb)
        for rule in review.status.resource_rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["sleep", "1"]}]},
    }


async def test_dashboards_query_only_metrics_that_mcpd_serves(
    mcpd: Gateway, servers: dict[str, str]
) -> None:
    async with connect(mcpd, "attached") as session:
        await session.list_tools()
        with pytest.raises(MCPError):  # a JSON-RPC error, counted
            await session.get_prompt("no-such-prompt")
        scraped = httpx.get(f"{mcpd.url}/metrics", timeout=30).text  # while the session is open
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    declared = metric_samples(Metrics())
    for family in text_string_to_metric_families(scraped):
        if not family.samples:  # served, with no series yet (nothing denied, nothing limited)
            for suffix in ("_total", "_created", "_bucket", "_sum", "_count", ""):
                if family.name + suffix in declared:
                    labels.setdefault(family.name + suffix, set()).update(
                        declared[family.name + suffix]
                    )
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            values[sample.name, frozenset(sample.labels.items())] = sample.value
    queried = set()
    for path in DASHBOARDS:
        for expr in expressions(json.loads(path.read_text())):
            for metric, used in selectors(expr):
                assert metric in labels, f"{path.name}: {metric} is not in mcpd's /metrics"
                assert used <= labels[metric], f"{path.name}: {metric} lacks {used}"
                queried.add(metric)
    assert queried >= {
        "mcpctl_mcp_requests_total",
        "mcpctl_mcp_errors_total",
        "mcpctl_mcp_request_duration_seconds_bucket",
        "mcpctl_mcp_sessions",
        "mcpctl_instances",
        "mcpctl_instance_restarts",
        "mcpctl_reconcile_duration_seconds_bucket",
    }
    # The series the panels draw carry this fleet's values.
    assert (
        values["mcpctl_instances", frozenset({"server": "attached", "status": "RUNNING"}.items())]
        == 1
    )
    error = frozenset({"target": "servers/attached", "method": "prompts/get"}.items())
    assert values["mcpctl_mcp_errors_total", error] == 1


# ------------------------------------------------------------------ the rendered Deployment


def apply(api_client: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    from kubernetes import dynamic

    resources = dynamic.DynamicClient(api_client).resources
    for doc in sorted(docs, key=lambda d: d["kind"] != "Namespace"):
        resource = resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.create(body=doc, namespace=doc["metadata"].get("namespace"))


async def test_the_rendered_deployment_runs_mcpd_as_the_operator(
    helm: str, admin: client.CoreV1Api, tmp_path: Path
) -> None:
    """The chart's Deployment, ConfigMap and Secrets as rendered, run by the test kubelet: mcpd
    starts from that environment (settings, database URL, admin token, Fernet key, external
    Ray) and operates server pods in the data plane with the chart's ServiceAccount.

    What the test kubelet cannot do is patched in: it runs no images (the container's command
    becomes this checkout's mcpd, without the raylet it starts first: the suite's Ray has one on
    this machine), mounts no ServiceAccount token (KUBECONFIG points at one), and pods see host
    paths (MCPD_DATA_DIR is a temporary directory)."""
    import sys

    import ray

    from tests.e2e.conftest import free_port
    from tests.e2e.gateway import start_ray

    start_ray()  # mcpd joins the suite's Ray through mcpd.rayAddress (RAY_ADDRESS)
    database = f"mcpd_chart_{uuid.uuid4().hex[:8]}"
    database_url = own_database(database)
    suffix = uuid.uuid4().hex[:6]
    control, data, port = f"mcpctl-deploy-{suffix}", f"mcpctl-deploy-{suffix}-servers", free_port()
    docs = render(
        helm,
        namespace="default",
        release=f"deploy-{suffix}",
        **{
            "namespaces.controlPlane": control,
            "namespaces.dataPlane": data,
            "postgresql.enabled": "false",
            "externalDatabase.url": database_url,
            "mcpd.port": str(port),
            "mcpd.rayAddress": ray.get_runtime_context().gcs_address,
            "ray.enabled": "false",  # not the chart's Ray: the suite's
            "mcpd.replicas": "1",  # pods share the host's network: one port, one mcpd
            "ray.auth.mode": "disabled",  # the suite's Ray runs without token auth
            "servers.runnerImage": RUNNER,
            "servers.nodeSelector.kubernetes\\.io/arch": "amd64",
        },
    )
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    token_secret = next(d for d in docs if d["kind"] == "Secret" and "admin-token" in d["data"])
    admin_token = base64.b64decode(token_secret["data"]["admin-token"]).decode()
    try:
        apply(admin.api_client, [d for d in docs if d["kind"] != "Deployment"])
        account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
        token = admin.create_namespaced_service_account_token(
            account, control, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        write_kubeconfig(tmp_path / "kubeconfig", token, data)
        # not the chart's `ray start` (a raylet for mcpd's node) then mcpd: the suite's Ray
        # already has a raylet on this machine
        assert container["command"] == ["sh", "-c"] and "exec mcpd" in container["args"][0]
        container["command"] = [sys.executable, "-m", "mcpctl.daemon"]
        del container["args"]
        container["env"] += [
            {"name": "KUBECONFIG", "value": str(tmp_path / "kubeconfig")},
            {"name": "MCPD_DATA_DIR", "value": str(tmp_path / "data")},
        ]
        wait_default_account(admin, data)
        apply(admin.api_client, [deployment])
        mcpd = Deployed(f"http://127.0.0.1:{port}", admin_token)
        until(
            lambda: ready(mcpd.url),
            timeout=120,
            interval=0.25,
            what=lambda _: mcpd_logs(admin, control),
        )
        assert api(mcpd, "GET", "/whoami").status_code == 200
        add_server(mcpd, "runner", RUNNER_SERVER)
        [instance] = wait_instances(mcpd, "runner", "RUNNING")
        pod = admin.read_namespaced_pod(instance["pod"], data)
        assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64"}
        assert pod.spec.containers[0].image == RUNNER
        async with connect(mcpd, "runner") as session:
            result = await session.call_tool("echo", {"message": "from the chart's mcpd"})
            assert result.content[0].text == "Echo: from the chart's mcpd"
        assert api(mcpd, "DELETE", "/servers/runner").status_code == 204
    finally:
        admin.delete_namespace(control)  # the kubelet stops mcpd (SIGTERM)
        admin.delete_namespace(data)
        wait_pods_gone(admin, control, timeout=60)
        drop_database(database)


def mcpd_logs(admin: client.CoreV1Api, namespace: str) -> str:
    pods = admin.list_namespaced_pod(namespace).items
    logs = []
    for pod in pods:
        try:
            logs.append(admin.read_namespaced_pod_log(pod.metadata.name, namespace)[-3000:])
        except ApiException as error:
            logs.append(f"{pod.metadata.name}: {error.reason}")
    return "mcpd did not become ready:\n" + "\n".join(logs)
