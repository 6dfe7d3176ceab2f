"""The chart's highly available mcpd, proven on the test cluster (scripts/k8s/cluster.sh):
`helm install` with 2 gateway replicas and the chart's own Ray (head + 1 worker), every pod
in a sandbox of the test kubelet (its own network namespace and address, the Services in
/etc/hosts, its volumes, the projected ServiceAccount token, probes honoured). Both replicas
serve one MCP session; a `helm upgrade` that changes a value rolls the gateways one by one
while a client keeps calling tools on that session through the ready endpoints of the mcpd
Service (as a load balancer would): no call fails and the session survives. The pods that run
mcpd's host actors (the Ray workers) carry the chart's ServiceAccount, whose token created the
server's pod in the data plane; the gateways carry no token at all."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from sqlalchemy import make_url

from tests.helpers.chart import CHART, run_helm, set_args
from tests.helpers.jsonrpc import ACCEPT, INIT, call
from tests.helpers.k8s import wait_pods_gone
from tests.helpers.mcpd import Endpoint, add_server, bearer, wait_instances
from tests.helpers.postgres import drop_database, own_database, postgres_url
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG unset: `make test` starts the test cluster (scripts/k8s/cluster.sh)",
    ),
]

SANDBOX = "mcpctl.test/sandbox"  # the test kubelet's opt-in: a pod network namespace etc.
ESCAPED = SANDBOX.replace(".", "\\.")  # as a key in helm's --set
GATEWAY = "mcpctl.test/pod-gateway"  # Node annotation: the node's address on the pod network
RUNNER = "ghcr.io/mcpctl/runner:0.1.0"  # the test kubelet runs a runner image's args as is
SERVER = "misbehaving"


@dataclass
class Release:
    name: str
    control: str
    data: str
    token: str
    database: str
    state: str
    core: client.CoreV1Api
    discovery: client.DiscoveryV1Api
    api: client.ApiClient
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return f"{self.name}-mcpctl"

    def headers(self, session: str | None = None) -> dict[str, str]:
        headers = {**bearer(self.token), **ACCEPT}
        return {**headers, "Mcp-Session-Id": session} if session else headers

    def pods(self, component: str) -> list[Any]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        return list(self.core.list_namespaced_pod(self.control, label_selector=selector).items)

    def endpoints(self) -> list[str]:
        """The mcpd Service's ready endpoints, from its EndpointSlices (what kube-proxy or a
        load balancer reads)."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.control, label_selector=f"kubernetes.io/service-name={self.fullname}"
        ).items
        urls = []
        for item in slices:
            port = next(p.port for p in item.ports or [] if p.name == "http")
            for endpoint in item.endpoints or []:
                if endpoint.conditions and endpoint.conditions.ready:
                    urls += [f"http://{address}:{port}" for address in endpoint.addresses]
        return sorted(urls)

    def both_ready(self, timeout: float = 60) -> list[str]:
        """The two gateways' endpoints, once both are ready: on a busy node a readiness probe
        can time out now and then (a load balancer routes around it meanwhile)."""
        return until(
            self.endpoints,
            lambda urls: len(urls) == 2,
            timeout=timeout,
            interval=0.5,
            what=lambda urls: f"ready endpoints: {urls}\n{diagnosis(self)}",
        )


def database_service(release: Release, gateway: str) -> str:
    """A selector-less Service `postgresql` whose EndpointSlice names the node's pod-network
    address: the test kubelet's service proxy takes that to the host's loopback, where the
    suite's PostgreSQL listens. Returns mcpd's database URL."""
    url = make_url(postgres_url())
    release.core.create_namespaced_service(
        release.control,
        {
            "metadata": {"name": "postgresql"},
            "spec": {"ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
        },
    )
    release.discovery.create_namespaced_endpoint_slice(
        release.control,
        {
            "metadata": {
                "name": "postgresql-host",
                "labels": {"kubernetes.io/service-name": "postgresql"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": url.port or 5432, "protocol": "TCP"}],
            "endpoints": [{"addresses": [gateway]}],
        },
    )
    host = f"postgresql.{release.control}.svc"
    return url.set(host=host, port=5432, database=release.database).render_as_string(
        hide_password=False
    )


@pytest.fixture(scope="module")
def release(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    api = config.new_client_from_config()
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    [node] = core.list_node().items
    gateway = (node.metadata.annotations or {}).get(GATEWAY)
    if not gateway:
        api.close()
        pytest.skip("the test kubelet runs without pod sandboxes (scripts/k8s/README.md)")
    suffix = uuid.uuid4().hex[:6]
    name, control = f"ha-{suffix}", f"mcpctl-ha-{suffix}"
    state = tmp_path_factory.mktemp("ha-state")
    release = Release(
        name=name,
        control=control,
        data=f"{control}-servers",
        token="",
        # the release's own, reached from the pods through a Service (database_service)
        database=make_url(own_database(f"mcpctl_ha_{suffix}")).database or "",
        state=str(state),
        core=core,
        discovery=discovery,
        api=api,
    )
    core.create_namespace({"metadata": {"name": control}})
    installed = False
    try:
        database = database_service(release, gateway)
        started = time.monotonic()
        sets = {
            "namespaces.controlPlane": control,
            "namespaces.dataPlane": release.data,
            "postgresql.enabled": "false",
            "externalDatabase.url": database,
            "servers.runnerImage": RUNNER,
            "mcpd.replicas": "2",
            "ray.workers.replicas": "1",
            f"string:podAnnotations.{ESCAPED}": "true",
        }
        run_helm(helm, "install", name, str(CHART), "--namespace", control, *set_args(sets))
        installed = True
        wait_rolled(release, timeout=240)
        release.timings["install"] = time.monotonic() - started
        print(
            f"\nhelm install, until rolled out (2 mcpd, Ray head + worker): "
            f"{release.timings['install']:.1f} s"
        )
        secret = core.read_namespaced_secret(f"{release.fullname}-auth", control)
        release.token = base64.b64decode(secret.data["admin-token"]).decode()
        yield release
    finally:
        if installed:
            run_helm(helm, "uninstall", name, "--namespace", control, "--wait", "--timeout", "2m")
        for namespace in (release.data, control):
            try:
                core.delete_namespace(namespace)
            except ApiException as error:
                if error.status != 404:
                    raise
        wait_pods_gone(core, control, timeout=90)  # their sandboxes with them
        drop_database(release.database)
        api.close()


def wait_rolled(release: Release, timeout: float) -> None:
    """Until every Deployment of the release has all its replicas updated, ready and alone
    (old pods gone), as `kubectl rollout status` waits; on timeout, what the pods show, and
    the logs of the containers that restarted."""
    apps = client.AppsV1Api(release.api)
    selector = f"app.kubernetes.io/instance={release.name}"
    until(
        lambda: apps.list_namespaced_deployment(release.control, label_selector=selector).items,
        lambda deployments: (
            all(
                (d.status.observed_generation or 0) >= d.metadata.generation
                and d.status.updated_replicas == d.spec.replicas
                and d.status.ready_replicas == d.spec.replicas
                and d.status.replicas == d.spec.replicas
                for d in deployments
            )
            and len(deployments) == 3
        ),
        timeout=timeout,
        interval=0.5,
        what=lambda _: "the release did not roll out:\n" + diagnosis(release),
    )


def diagnosis(release: Release) -> str:
    """What `kubectl describe` would show of the release's pods: state, restarts, the last
    exit, the namespace's events (probe failures, kills, back-offs), and the previous log of
    every container that restarted."""
    lines = []
    for pod in release.core.list_namespaced_pod(release.control).items:
        lines.append(f"pod {pod.metadata.name} {pod.status.phase} ip={pod.status.pod_ip}")
        for status in pod.status.container_statuses or []:
            last = status.last_state.terminated if status.last_state else None
            ended = (
                f" last exit {last.exit_code} {last.reason} at {last.finished_at}" if last else ""
            )
            lines.append(
                f"  {status.name}: ready={status.ready} restarts={status.restart_count}{ended}"
                f" now {status.state}"
            )
            if status.restart_count:
                log = release.core.read_namespaced_pod_log(
                    pod.metadata.name, release.control, container=status.name, previous=True
                )
                # Ray's fatal errors print their cause first and a long stack dump after it
                lines.append(log if len(log) < 9000 else f"{log[:5000]}\n…\n{log[-4000:]}")
    events = release.core.list_namespaced_event(release.control).items
    events.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
    for event in events[-40:]:
        when = event.last_timestamp or event.event_time
        lines.append(
            f"event {when} {event.type} {event.reason} {event.involved_object.name}"
            f" x{event.count or 1}: {event.message}"
        )
    return "\n".join(lines)


@pytest.fixture(autouse=True)
def explain_failure(request: pytest.FixtureRequest, release: Release) -> Iterator[None]:
    """A failed test prints the release's pods and events (captured output of its teardown)."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(diagnosis(release))


@pytest.fixture(scope="module")
def server(release: Release) -> str:
    """A command server created through replica A's REST API; running as seen from B."""
    a, b = release.both_ready()
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), release.state]}
    add_server(Endpoint(a, release.token), SERVER, spec)
    wait_instances(Endpoint(b, release.token), SERVER, timeout=120, interval=0.2)
    return f"/mcp/servers/{SERVER}"


@pytest.fixture(scope="module")
def session(release: Release, server: str) -> str:
    a, _ = release.both_ready()
    begun = httpx.post(f"{a}{server}", json=INIT, headers=release.headers(), timeout=30)
    assert begun.status_code == 200, begun.text
    return begun.headers["Mcp-Session-Id"]


def test_the_release_runs_in_pod_sandboxes(release: Release) -> None:
    """Four pods, each with its own address; the gateways are Ready only once /readyz answers
    (the chart's probes), and reach Ray through the head's Service name."""
    pods = {c: release.pods(c) for c in ("mcpd", "ray-head", "ray-worker")}
    assert [len(pods[c]) for c in ("mcpd", "ray-head", "ray-worker")] == [2, 1, 1]
    addresses = {p.status.pod_ip for group in pods.values() for p in group}
    assert len(addresses) == 4 and "127.0.0.1" not in addresses
    ready = release.both_ready()
    assert ready == sorted(f"http://{p.status.pod_ip}:8420" for p in pods["mcpd"])
    for url in ready:
        assert httpx.get(f"{url}/readyz").status_code == 200
    # the two gateways started together on a fresh database: neither had to restart
    assert [p.status.container_statuses[0].restart_count for p in pods["mcpd"]] == [0, 0]


def test_both_replicas_serve_one_session(release: Release, server: str, session: str) -> None:
    a, b = release.both_ready()
    echoed = httpx.post(
        f"{b}{server}", json=call(1, "echo", text="on b"), headers=release.headers(session)
    )
    assert "echo: on b" in echoed.text, echoed.text
    # progress of a call made through B, on the session A began
    progress = call(2, "progress", meta={"progressToken": "p"}, text="step")
    streamed = httpx.post(
        f"{b}{server}", json=progress, headers=release.headers(session), timeout=30
    )
    assert '"progressToken":"p"' in streamed.text and '"message":"step"' in streamed.text
    assert "progressed" in streamed.text
    again = httpx.post(
        f"{a}{server}", json=call(3, "echo", text="on a"), headers=release.headers(session)
    )
    assert "echo: on a" in again.text, again.text


def exec_in(release: Release, pod: str, container: str, command: list[str]) -> str:
    return str(
        stream(
            release.core.connect_get_namespaced_pod_exec,
            pod,
            release.control,
            container=container,
            command=command,
            stderr=True,
            stdout=True,
            stdin=False,
            tty=False,
        )
    )


def test_host_actors_run_with_the_service_account_on_the_workers(
    release: Release, server: str
) -> None:
    """The RBAC proof for the pods that run host actors: the Ray worker's projected token is
    the chart's ServiceAccount's, bound to that pod; that identity may create pods in the
    data plane only, and the server's pod is there; the gateways have no token."""
    [worker] = release.pods("ray-worker")
    account = worker.spec.service_account_name
    assert account == release.fullname
    token = exec_in(
        release,
        worker.metadata.name,
        "ray-worker",
        ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
    ).strip()
    review = client.AuthenticationV1Api(release.api).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated, review.status
    user = review.status.user
    assert user.username == f"system:serviceaccount:{release.control}:{account}"
    assert user.extra["authentication.kubernetes.io/pod-name"] == [worker.metadata.name]

    def allowed(namespace: str) -> bool:
        spec = {
            "user": user.username,
            "groups": user.groups,
            "resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "pods"},
        }
        answer = client.AuthorizationV1Api(release.api).create_subject_access_review({"spec": spec})
        return bool(answer.status.allowed)

    assert allowed(release.data) and not allowed(release.control)
    servers = release.core.list_namespaced_pod(release.data).items
    assert [p.metadata.name for p in servers if p.metadata.name.startswith(f"mcp-{SERVER}-")]
    for gateway in release.pods("mcpd"):
        assert gateway.spec.automount_service_account_token is False
        listing = exec_in(
            release,
            gateway.metadata.name,
            "mcpd",
            ["ls", "/var/run/secrets/kubernetes.io/serviceaccount"],
        )
        assert "token" not in listing.split()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["kubernetes.io"]["pod"]["name"] == worker.metadata.name


def gateway_process(pod_ip: str) -> int:
    """The pid of the mcpd process of the gateway pod at `pod_ip` (the test kubelet runs a
    container's processes on the host, in the pod's namespaces)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                environ = file.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
        except OSError:
            continue
        if f"POD_IP={pod_ip}".encode() in environ and any(a.endswith(b"/mcpd") for a in argv):
            return int(entry)
    raise AssertionError(f"no mcpd process of the pod at {pod_ip}")


def echo_through(release: Release, pod: Any, server: str, session: str, text: str) -> None:
    """A tool call on the session through that gateway pod, answered."""
    answered = httpx.post(
        f"http://{pod.status.pod_ip}:8420{server}",
        json=call(len(text), "echo", text=text),
        headers=release.headers(session),
        timeout=30,
    )
    assert f"echo: {text}" in answered.text, answered.text


def test_a_gateway_that_crashes_comes_back(release: Release, server: str, session: str) -> None:
    """kill -9 of one gateway's mcpd: the kubelet restarts the container in the same pod,
    whose /tmp and /dev/shm still hold the last run's Ray files; it joins Ray again and
    serves the session, and the other gateway answers meanwhile."""
    victim, other = release.pods("mcpd")
    restarts = victim.status.container_statuses[0].restart_count
    os.kill(gateway_process(victim.status.pod_ip), signal.SIGKILL)
    echo_through(release, other, server, session, "meanwhile")
    started = time.monotonic()

    def status() -> Any:
        pod = release.core.read_namespaced_pod(victim.metadata.name, release.control)
        [only] = pod.status.container_statuses
        return only

    restarted = until(
        status,
        lambda now: now.restart_count > restarts and now.ready,
        timeout=120,
        interval=0.5,
        what=lambda _: diagnosis(release),
    )
    print(f"\na gateway killed: restarted and ready again in {time.monotonic() - started:.1f} s")
    echo_through(release, victim, server, session, "back")
    assert restarted.restart_count == restarts + 1, diagnosis(release)


class Traffic:
    """A client that keeps calling a tool on one session through the mcpd Service's ready
    endpoints in turn, refreshed from its EndpointSlices as a load balancer would; a
    connection error or a 503 (a gateway stopping) is retried once on another endpoint."""

    def __init__(self, release: Release, path: str, session: str) -> None:
        self.release, self.path, self.session = release, path, session
        self.urls = release.endpoints()
        self.answered = 0
        self.retried = 0
        self.served: dict[str, int] = {}
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._watch, daemon=True),
            threading.Thread(target=self._run, daemon=True),
        ]

    def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                urls = self.release.endpoints()
            except Exception:  # the API server is busy: keep the last list
                urls = self.urls
            if urls:
                self.urls = urls
            time.sleep(0.2)

    def _run(self) -> None:
        turn = 0
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                turn += 1
                urls = list(self.urls)
                first = urls[turn % len(urls)]
                others = [u for u in urls if u != first] or [first]
                error = self._call(http, first, turn)
                if error is not None:
                    self.retried += 1
                    again = self._call(http, others[turn % len(others)], turn)
                    if again is not None:
                        self.failed.append(f"{error}; then {again}")

    def _call(self, http: httpx.Client, url: str, turn: int) -> str | None:
        """None when answered; else what went wrong, if a retry may help (else recorded)."""
        try:
            answer = http.post(
                f"{url}{self.path}",
                json=call(turn, "echo", text=str(turn)),
                headers=self.release.headers(self.session),
            )
        except httpx.TransportError as error:
            return f"{url}: {error!r}"
        if answer.status_code == 503:
            return f"{url}: 503"
        if f'"echo: {turn}"' in answer.text:
            self.answered += 1
            self.served[url] = self.served.get(url, 0) + 1
        else:
            self.failed.append(f"{url}: {answer.status_code} {answer.text[:300]}")
        return None

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_a_rollout_under_traffic_fails_no_call(
    helm: str, release: Release, server: str, session: str
) -> None:
    old = {p.metadata.name for p in release.pods("mcpd")}
    workers = {p.metadata.name for p in release.pods("ray-worker")}
    with Traffic(release, server, session) as traffic:
        time.sleep(2)
        before = traffic.answered
        assert before > 0, traffic.failed
        started = time.monotonic()
        run_helm(
            helm,
            "upgrade",
            release.name,
            str(CHART),
            "--namespace",
            release.control,
            "--reuse-values",
            "--set",
            "mcpd.logLevel=debug",  # the settings' checksum changes: the gateways roll
        )
        wait_rolled(release, timeout=240)
        upgraded = time.monotonic() - started
        # until the old gateways are gone (preStop, drain) and both new ones serve
        until(
            lambda: (
                not old & {p.metadata.name for p in release.pods("mcpd")} and len(traffic.urls) == 2
            ),
            timeout=120,
            interval=0.2,
            what="the old gateways did not go away",
        )
        rolled = time.monotonic() - started
        after = traffic.answered
        time.sleep(2)
    new = {p.metadata.name for p in release.pods("mcpd")}
    release.timings["rollout"] = rolled
    print(
        f"\nhelm upgrade, until rolled out: {upgraded:.1f} s; until the old gateways were gone: "
        f"{rolled:.1f} s; calls answered: {traffic.answered} ({after - before} during the "
        f"rollout), retried once on another endpoint: {traffic.retried}, failed: "
        f"{len(traffic.failed)}; per endpoint: {traffic.served}"
    )
    assert traffic.failed == []
    assert after - before > 20 and traffic.answered > after
    assert len(new) == 2 and not new & old
    assert {p.metadata.name for p in release.pods("ray-worker")} == workers  # Ray stayed
    # the session survived: both new gateways serve it
    for index, url in enumerate(release.both_ready()):
        echoed = httpx.post(
            f"{url}{server}",
            json=call(1000 + index, "echo", text=f"after {index}"),
            headers=release.headers(session),
        )
        assert f"echo: after {index}" in echoed.text, echoed.text
    served_by_new = [u for u in traffic.served if u in release.endpoints()]
    assert served_by_new, traffic.served
