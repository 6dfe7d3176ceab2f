"""The test cluster (scripts/k8s/cluster.sh) seen through the official Python client.

These tests check the real kube-apiserver and the test kubelet together: pods run as
local processes, exec/attach/logs stream through the API server, RBAC is enforced.
They run when KUBECONFIG points at the test cluster (`make test` starts it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from tests.helpers import k8s
from tests.helpers.processes import exited
from tests.helpers.waiting import until

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is unset: start the test cluster with `scripts/k8s/cluster.sh up` "
        'and `eval "$(scripts/k8s/cluster.sh env)"`',
    ),
]

NODE = "mcpctl-node-0"
RUNNER = "mcpctl/runner"  # the test kubelet runs a runner image's args as the command


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    with k8s.namespace(core, f"cluster-test-{uuid.uuid4().hex[:8]}", timeout=30) as name:
        yield name


# ------------------------------------------------------------------ helpers


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """For conditions with no watchable object (rare here): short polls."""
    until(
        check, timeout=timeout, interval=0.1, what=f"timed out after {timeout}s waiting for {what}"
    )


def wait_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    predicate: Callable[[client.V1Pod], bool],
    timeout: int = 30,
) -> client.V1Pod:
    """Await a pod state by watching from the current resourceVersion."""
    deadline = time.monotonic() + timeout
    pods = core.list_namespaced_pod(namespace, field_selector=f"metadata.name={name}")
    for pod in pods.items:
        if predicate(pod):
            return pod
    rv = pods.metadata.resource_version
    last = pods.items[0] if pods.items else None
    while (left := deadline - time.monotonic()) > 0:
        w = watch.Watch()
        for event in w.stream(
            core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=rv,
            timeout_seconds=max(1, int(left)),
        ):
            pod = event["object"]
            rv = pod.metadata.resource_version
            last = pod
            if event["type"] != "DELETED" and predicate(pod):
                w.stop()
                return pod
    raise AssertionError(
        f"pod {namespace}/{name} not in the expected state after {timeout}s; last seen: {last and last.status}"
    )


def wait_pod_gone(core: client.CoreV1Api, namespace: str, name: str, timeout: int = 30) -> None:
    pods = core.list_namespaced_pod(namespace, field_selector=f"metadata.name={name}")
    if not pods.items:
        return
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=pods.metadata.resource_version,
        timeout_seconds=timeout,
    ):
        if event["type"] == "DELETED":
            w.stop()
            return
    raise AssertionError(f"pod {namespace}/{name} still exists after {timeout}s")


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def container_state(pod: client.V1Pod) -> client.V1ContainerStatus | None:
    statuses = pod.status.container_statuses or []
    return statuses[0] if statuses else None


def pod_manifest(
    name: str,
    command: list[str] | None = None,
    args: list[str] | None = None,
    image: str = RUNNER,
    stdin: bool = False,
    restart_policy: str = "Always",
    env: list[client.V1EnvVar] | None = None,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels={"app.kubernetes.io/managed-by": "cluster-test"}
        ),
        spec=client.V1PodSpec(
            restart_policy=restart_policy,
            termination_grace_period_seconds=5,
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    command=command,
                    args=args,
                    stdin=stdin,
                    env=env,
                )
            ],
        ),
    )


def read_until(ws: Any, needle: str, timeout: float = 10) -> str:
    """Read stdout of a WSClient until it contains needle."""
    deadline = time.monotonic() + timeout
    out = ""
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not ws.is_open():
            raise AssertionError(f"did not read {needle!r}; got {out!r}")
        ws.update(timeout=min(left, 1))
        if ws.peek_stdout():
            out += ws.read_stdout()
    return out


def run_pod(
    core: client.CoreV1Api, namespace: str, pod: client.V1Pod, timeout: int = 30
) -> client.V1Pod:
    core.create_namespaced_pod(namespace, pod)
    return wait_pod(core, namespace, pod.metadata.name, is_ready, timeout=timeout)


# ------------------------------------------------------------------ tests


def test_node_is_ready_with_large_allocatable(core: client.CoreV1Api) -> None:
    node = core.read_node(NODE)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.metadata.labels["kubernetes.io/arch"] == "amd64"
    assert node.metadata.labels["kubernetes.io/os"] == "linux"
    assert node.status.allocatable["pods"] == "500"
    assert node.status.allocatable["cpu"] == "64"
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == ["127.0.0.1"]
    lease = client.CoordinationV1Api(core.api_client).read_namespaced_lease(NODE, "kube-node-lease")
    assert lease.spec.holder_identity == NODE


def test_stdin_pod_becomes_ready_and_exec_roundtrips_stdin(
    core: client.CoreV1Api, namespace: str
) -> None:
    pod = run_pod(core, namespace, pod_manifest("cat-exec", args=["cat"], stdin=True))
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip == "127.0.0.1"
    assert pod.status.start_time is not None
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["ContainersReady"] == "True"
    assert conditions["PodScheduled"] == "True"
    status = container_state(pod)
    assert status is not None and status.state.running is not None and status.restart_count == 0

    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "cat-exec",
        namespace,
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        ws.write_stdin("hello through exec\n")
        assert "hello through exec" in read_until(ws, "hello through exec")
    finally:
        ws.close()

    # a command's exit code comes back
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "cat-exec",
        namespace,
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=10)
    assert ws.returncode == 3
    ws.close()

    # non-interactive exec (preloaded) returns stdout
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "cat-exec",
        namespace,
        command=["sh", "-c", "echo $HOSTNAME"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out.strip() == "cat-exec"


def test_attach_to_stdin_pod_is_a_bidirectional_stream(
    core: client.CoreV1Api, namespace: str
) -> None:
    run_pod(core, namespace, pod_manifest("cat-attach", args=["cat"], stdin=True))

    def session(line: str) -> None:
        ws = stream(
            core.connect_get_namespaced_pod_attach,
            "cat-attach",
            namespace,
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        try:
            ws.write_stdin(line + "\n")
            assert line in read_until(ws, line)
            # the stream stays usable: a second message on the same session
            ws.update(timeout=1.5)
            ws.write_stdin(line + " again\n")
            assert f"{line} again" in read_until(ws, f"{line} again")
        finally:
            ws.close()

    session("first session")
    # stdin stays open across attach sessions (stdinOnce is false)
    session("second session")
    pod = core.read_namespaced_pod("cat-attach", namespace)
    status = container_state(pod)
    assert status is not None and status.state.running is not None and status.restart_count == 0


def test_logs_plain_tail_and_follow(core: client.CoreV1Api, namespace: str) -> None:
    script = 'for i in 1 2 3; do echo "line $i"; done; echo "to stderr" >&2; sleep 1; echo late; exec sleep 600'
    run_pod(core, namespace, pod_manifest("logger", command=["sh", "-c", script]))

    # follow: the stream delivers the late line as it is written
    resp = core.read_namespaced_pod_log("logger", namespace, follow=True, _preload_content=False)
    seen = b""
    try:
        for chunk in resp.stream(64):
            seen += chunk
            if b"late" in seen:
                break
    finally:
        resp.release_conn()
    # stdout and stderr are separate pipes: only each stream's own order is kept
    assert b"line 1\nline 2\nline 3\n" in seen.replace(b"to stderr\n", b"")

    logs = core.read_namespaced_pod_log("logger", namespace)
    assert "line 1\nline 2\nline 3\n" in logs.replace("to stderr\n", "")
    assert "to stderr" in logs
    assert core.read_namespaced_pod_log("logger", namespace, tail_lines=1) == "late\n"
    stamped = core.read_namespaced_pod_log("logger", namespace, timestamps=True, tail_lines=1)
    assert stamped.endswith(" late\n") and stamped[:4].isdigit()


def test_delete_pod_stops_its_process_and_removes_it(
    core: client.CoreV1Api, namespace: str
) -> None:
    # "$$" is Kubernetes' escape for "$": the shell sees "echo $$"
    run_pod(
        core, namespace, pod_manifest("sleeper", command=["sh", "-c", "echo $$$$; exec sleep 600"])
    )
    pid = 0

    def pid_logged() -> bool:
        nonlocal pid
        text = core.read_namespaced_pod_log("sleeper", namespace).strip()
        pid = int(text) if text.isdigit() else 0
        return pid > 0

    wait_for(pid_logged, timeout=10, what="the pid in the logs")
    assert not exited(pid)
    core.delete_namespaced_pod("sleeper", namespace)
    wait_pod_gone(core, namespace, "sleeper", timeout=20)
    assert exited(pid), f"process {pid} survived its pod"


def test_crashing_container_goes_to_crash_loop_back_off(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace, pod_manifest("crasher", command=["sh", "-c", "echo boom; exit 2"])
    )

    def crash_looping(pod: client.V1Pod) -> bool:
        status = container_state(pod)
        return bool(
            status
            and status.restart_count >= 2
            and status.state.waiting is not None
            and status.state.waiting.reason == "CrashLoopBackOff"
        )

    pod = wait_pod(core, namespace, "crasher", crash_looping, timeout=60)
    status = container_state(pod)
    assert status is not None
    assert status.last_state.terminated.exit_code == 2
    assert pod.status.phase == "Running"
    assert not is_ready(pod)
    assert "boom" in core.read_namespaced_pod_log("crasher", namespace, previous=True)


def test_restart_policy_never_ends_in_succeeded_or_failed(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace, pod_manifest("ok-once", command=["true"], restart_policy="Never")
    )
    core.create_namespaced_pod(
        namespace, pod_manifest("bad-once", command=["sh", "-c", "exit 7"], restart_policy="Never")
    )
    done = wait_pod(core, namespace, "ok-once", lambda p: p.status.phase == "Succeeded")
    failed = wait_pod(core, namespace, "bad-once", lambda p: p.status.phase == "Failed")
    done_status, failed_status = container_state(done), container_state(failed)
    assert done_status is not None and done_status.state.terminated.exit_code == 0
    assert done_status.state.terminated.reason == "Completed"
    assert failed_status is not None and failed_status.state.terminated.exit_code == 7
    assert failed_status.restart_count == 0


def test_unknown_image_without_command_cannot_be_pulled(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace, pod_manifest("no-image", image="example.invalid/nothing:1")
    )

    def pull_failing(pod: client.V1Pod) -> bool:
        status = container_state(pod)
        waiting = status.state.waiting if status else None
        return bool(waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"))

    pod = wait_pod(core, namespace, "no-image", pull_failing)
    assert pod.status.phase == "Pending"


def test_image_table_entrypoint_and_secret_env(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="api-key"), string_data={"token": "s3cr3t"}
        ),
    )
    env = [
        client.V1EnvVar(name="PLAIN", value="plain-value"),
        client.V1EnvVar(
            name="TOKEN",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="api-key", key="token")
            ),
        ),
        client.V1EnvVar(
            name="POD_NAME",
            value_from=client.V1EnvVarSource(
                field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
            ),
        ),
    ]
    # the python image's entrypoint comes from tests/cluster/images.yaml
    args = [
        "-c",
        "import os, time; print(os.environ['PLAIN'], os.environ['TOKEN'], os.environ['POD_NAME'], flush=True); time.sleep(600)",
    ]
    run_pod(core, namespace, pod_manifest("py-env", image="python:3.12-slim", args=args, env=env))
    wait_for(
        lambda: "plain-value s3cr3t py-env" in core.read_namespaced_pod_log("py-env", namespace),
        timeout=10,
        what="the environment in the logs",
    )


def test_watch_from_resource_version_sees_added_modified_deleted(
    core: client.CoreV1Api, namespace: str
) -> None:
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    run_pod(core, namespace, pod_manifest("watched", command=["sleep", "600"]))
    core.delete_namespaced_pod("watched", namespace, grace_period_seconds=0)
    wait_pod_gone(core, namespace, "watched")

    seen: list[str] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=10
    ):
        if event["object"].metadata.name != "watched":
            continue
        seen.append(event["type"])
        if event["type"] == "DELETED":
            w.stop()
    assert seen[0] == "ADDED"
    assert "MODIFIED" in seen
    assert seen[-1] == "DELETED"


def test_network_policy_and_server_side_dry_run(core: client.CoreV1Api, namespace: str) -> None:
    net = client.NetworkingV1Api(core.api_client)
    policy = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="default-deny"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(),
            policy_types=["Ingress", "Egress"],
            egress=[
                client.V1NetworkPolicyEgressRule(
                    ports=[client.V1NetworkPolicyPort(protocol="TCP", port=8000, end_port=8100)]
                )
            ],
        ),
    )
    net.create_namespaced_network_policy(namespace, policy)
    stored = net.read_namespaced_network_policy("default-deny", namespace)
    assert stored.spec.egress[0].ports[0].end_port == 8100

    created = core.create_namespaced_pod(
        namespace, pod_manifest("dry", command=["true"]), dry_run="All"
    )
    assert created.metadata.uid  # defaulted by the server ...
    assert not k8s.exists(lambda: core.read_namespaced_pod("dry", namespace))  # ... and not stored
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(
            namespace, pod_manifest("Not_A_Name", command=["true"]), dry_run="All"
        )
    assert invalid.value.status == 422


def test_service_account_token_is_bound_by_its_role(
    core: client.CoreV1Api, api: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="mcpd"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="mcpd"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""],
                    resources=["pods"],
                    verbs=["get", "list", "watch", "create", "delete"],
                ),
                client.V1PolicyRule(
                    api_groups=[""], resources=["pods/exec", "pods/attach"], verbs=["get", "create"]
                ),
                client.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"]),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="mcpd"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="mcpd"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="mcpd", namespace=namespace)
            ],
        ),
    )
    token = core.create_namespaced_service_account_token(
        "mcpd",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    assert token.count(".") == 2  # a JWT

    cfg = client.Configuration()
    cfg.host = api.configuration.host
    cfg.ssl_ca_cert = api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as sa_api:
        sa = client.CoreV1Api(sa_api)

        def role_in_effect() -> bool:  # the RBAC authorizer's cache catches up asynchronously
            try:
                sa.list_namespaced_pod(namespace)
                return True
            except ApiException as e:
                if e.status == 403:
                    return False
                raise

        wait_for(role_in_effect, timeout=10, what="the Role to take effect")
        sa.create_namespaced_pod(namespace, pod_manifest("sa-pod", args=["cat"], stdin=True))
        wait_pod(sa, namespace, "sa-pod", is_ready)
        assert [
            p.metadata.name
            for p in sa.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/managed-by=cluster-test"
            ).items
        ]
        out = stream(
            sa.connect_get_namespaced_pod_exec,
            "sa-pod",
            namespace,
            command=["echo", "exec-as-sa"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        assert out.strip() == "exec-as-sa"
        ws = stream(
            sa.connect_get_namespaced_pod_attach,
            "sa-pod",
            namespace,
            stdin=True,
            stdout=True,
            stderr=False,
            tty=False,
            _preload_content=False,
        )
        try:
            ws.write_stdin("attach-as-sa\n")
            read_until(ws, "attach-as-sa")
        finally:
            ws.close()
        assert "attach-as-sa" in sa.read_namespaced_pod_log("sa-pod", namespace)

        for forbidden in (
            lambda: sa.list_namespaced_secret(namespace),
            lambda: sa.list_namespaced_pod("default"),
            lambda: sa.create_namespaced_pod("default", pod_manifest("nope", command=["true"])),
            lambda: sa.list_namespaced_service_account(namespace),
        ):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403

        sa.delete_namespaced_pod("sa-pod", namespace)
        wait_pod_gone(sa, namespace, "sa-pod")


SANDBOX = {"mcpctl.test/sandbox": "true"}


def test_sandboxed_pods_have_an_address_services_volumes_probes_and_a_token(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    """Pods annotated mcpctl.test/sandbox get their own network namespace and address,
    /etc/hosts with the Services (served on their ClusterIPs by the kubelet's proxy), their
    volumes (an emptyDir at /tmp, the projected ServiceAccount token), exec inside the sandbox,
    and a readiness probe that holds Ready back until it passes; deletion removes it all."""
    node = core.read_node(NODE)
    if "mcpctl.test/pod-gateway" not in (node.metadata.annotations or {}):
        pytest.skip("the test kubelet runs without pod sandboxes")
    python = sys.executable
    serve = (
        "import http.server, time\n"
        "time.sleep(2)\n"  # the probe fails until then: not Ready though Running
        "http.server.HTTPServer(('0.0.0.0', 8080), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()"
    )
    web = pod_manifest("web", [python, "-c", serve])
    web.metadata.annotations, web.metadata.labels["app"] = SANDBOX, "web"
    web.spec.containers[0].ports = [client.V1ContainerPort(name="http", container_port=8080)]
    web.spec.containers[0].readiness_probe = client.V1Probe(
        http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1
    )
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
        ),
    )
    cluster_ip = core.create_namespaced_service(namespace, service).spec.cluster_ip
    shell = pod_manifest("shell", [python, "-c", "import time; time.sleep(3600)"])
    shell.metadata.annotations = SANDBOX
    shell.spec.automount_service_account_token = True
    shell.spec.volumes = [client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())]
    shell.spec.containers[0].volume_mounts = [client.V1VolumeMount(name="tmp", mount_path="/tmp")]
    core.create_namespaced_pod(namespace, web)

    def started(pod: client.V1Pod) -> bool:
        state = container_state(pod)
        return bool(pod.status.pod_ip and state and state.state.running)

    running = wait_pod(core, namespace, "web", started)
    assert not is_ready(running)  # its process runs; the probe does not pass yet
    shell = run_pod(core, namespace, shell)
    web = wait_pod(core, namespace, "web", is_ready)
    assert web.status.pod_ip != shell.status.pod_ip
    assert "127.0.0.1" not in (web.status.pod_ip, shell.status.pod_ip)
    marker = f"/tmp/sandbox-{uuid.uuid4().hex}"
    probe = (
        "import json, socket, urllib.request\n"
        f"open({marker!r}, 'w').write('x')\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "print(json.dumps({'ip': socket.gethostbyname('web'), 'name': socket.gethostname(),"
        " 'fqdn': socket.gethostbyname('web." + namespace + ".svc.cluster.local'),"
        " 'status': urllib.request.urlopen('http://web/', timeout=5).status,"
        " 'namespace': open(d + 'namespace').read(), 'token': open(d + 'token').read()}))"
    )
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        namespace,
        command=[python, "-c", probe],
        stderr=True,
        stdout=True,
        _preload_content=False,
    )
    ws.run_forever(timeout=60)
    out, err, code = ws.read_stdout(), ws.read_stderr(), ws.returncode
    ws.close()
    assert code == 0 and out.strip(), f"exit {code}; stdout {out!r}; stderr {err!r}"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["ip"] == seen["fqdn"] == cluster_ip
    assert seen["status"] == 200 and seen["name"] == "shell" and seen["namespace"] == namespace
    assert not os.path.exists(marker)  # it went to the pod's emptyDir
    review = client.AuthenticationV1Api(api).create_token_review({"spec": {"token": seen["token"]}})
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"
    assert review.status.user.extra["authentication.kubernetes.io/pod-name"] == ["shell"]
    for name in ("web", "shell"):
        core.delete_namespaced_pod(name, namespace)
    for name in ("web", "shell"):
        wait_pod_gone(core, namespace, name)
    with pytest.raises(OSError):
        socket.create_connection((web.status.pod_ip, 8080), timeout=1).close()
