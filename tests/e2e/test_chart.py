"""The Helm chart (charts/mcpctl) run for real: the Ray commands its templates render form a
cluster on this machine, and every rendered manifest is dry-run (server side, strict field
validation, Pod Security admission on the pods the workloads would create) or installed,
upgraded and uninstalled on the real kube-apiserver of scripts/k8s/cluster.sh. What the
rendered manifests say is checked without a cluster in tests/static/test_chart_templates.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from mcpctl.controllers.manifests import PodEnv, PodOptions, render_pod
from mcpctl.controllers.workload import Workload
from mcpctl.models.server import Source, Transport
from tests.e2e.conftest import free_port
from tests.e2e.test_lockdown import REFUSAL_PROBE
from tests.helpers.chart import (
    CHART,
    LOCAL_RAY,
    VALUES,
    container,
    kinds,
    only,
    ref,
    render,
    run_helm,
    secret_value,
    set_args,
)
from tests.helpers.k8s import exists, wait_default_account
from tests.helpers.waiting import until

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
        until(
            lambda: b"Ray runtime started" in (root / component / "log").read_bytes(),
            timeout=120,
            interval=0.5,
            what=lambda _: f"{component} did not start:\n{logs()}",
        )

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
    assert 200 <= response.status < 300, f"{ref(doc)}: {response.status} {response.data!r}"
    assert not response.getheader("Warning"), f"{ref(doc)}: {response.getheader('Warning')}"


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
    # One mcpd with its own Ray: the test kubelet cannot run the mcpd image (its pod waits in
    # ImagePullBackOff), but it would run the `ray start` commands of the chart's Ray pods.
    sets = {"namespaces.controlPlane": control, "namespaces.dataPlane": data, **LOCAL_RAY}
    args = [str(CHART), "--namespace", control, *set_args(sets)]
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
    until(
        lambda: not exists(lambda: core.read_namespace(name)),
        timeout=60,
        interval=0.3,
        what=f"namespace {name} is still there",
    )
