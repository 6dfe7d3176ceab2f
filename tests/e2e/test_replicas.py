"""Two mcpd gateway replicas on one Ray and one PostgreSQL (MCPD_SHARED): a session begun on
one is served by the other, survives the kill of the replica that began it and its restart, and
the controller actor's death costs nothing but a restart."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from cryptography.fernet import Fernet

from mcpctl.actors.controller import RAY_NAMESPACE, controller_name
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers.jsonrpc import ACCEPT, INIT, answer_of, call, envelope, modern_headers
from tests.helpers.mcpd import add_server, bearer, instances, wait_instances
from tests.helpers.postgres import own_database
from tests.helpers.processes import exited
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING, SERVER

DEPLOYMENT = "replicas-test"


@dataclass
class Pair:
    a: Mcpd
    b: Mcpd
    env: dict[str, str]
    root: Path
    state: Path

    def headers(self, session: str | None = None) -> dict[str, str]:
        headers = {**bearer(self.a.token), **ACCEPT}
        return {**headers, "Mcp-Session-Id": session} if session else headers


def until_running(mcpd: Mcpd) -> dict[str, Any]:
    """The first RUNNING instance of the server, as `mcpd` reports it."""
    return wait_instances(mcpd, SERVER, timeout=120, interval=0.1)[0]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    start_ray()
    root = tmp_path_factory.mktemp("replicas")
    state = root / "state"
    state.mkdir()
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_SHARED": "true",
        "MCPD_DEPLOYMENT": DEPLOYMENT,
        "MCPD_ACTOR_HOSTS": "1",
        "MCPD_DATABASE_URL": own_database("mcpctl_replicas"),  # the others reset theirs
        "MCPD_SECRET_KEY": Fernet.generate_key().decode(),
    }
    a = start_mcpd(root / "a", env)
    b = start_mcpd(root / "b", env)
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    add_server(a, SERVER, spec)
    until_running(b)
    yield Pair(a, b, env, root, state)
    for mcpd in (a, b):
        if mcpd.process.poll() is None:
            stop_mcpd(mcpd)
    controller = ray.get_actor(controller_name(DEPLOYMENT), namespace=RAY_NAMESPACE)
    ray.get(controller.shutdown.remote())  # shared: no replica stops the deployment
    ray.kill(controller, no_restart=True)


def test_a_session_begun_on_one_replica_is_served_by_the_other(pair: Pair) -> None:
    path = f"/mcp/servers/{SERVER}"
    begun = httpx.post(f"{pair.a.url}{path}", json=INIT, headers=pair.headers())
    session = begun.headers["Mcp-Session-Id"]
    echoed = httpx.post(
        f"{pair.b.url}{path}", json=call(1, "echo", text="on b"), headers=pair.headers(session)
    )
    assert "echo: on b" in echoed.text, echoed.text
    # Progress of a call made through B, on the session A began.
    progress = call(6, "progress", meta={"progressToken": "p"}, text="step")
    streamed = httpx.post(f"{pair.b.url}{path}", json=progress, headers=pair.headers(session))
    assert '"progressToken":"p"' in streamed.text and '"message":"step"' in streamed.text
    assert "progressed" in streamed.text
    # A question from the server on A's stream, answered through B: the call completes.
    sample = call(2, "sample", text="q")
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", f"{pair.a.url}{path}", json=sample, headers=pair.headers(session)
        ) as stream,
    ):
        lines = stream.iter_lines()
        question = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))
        assert question["method"] == "sampling/createMessage"
        reply = {
            "jsonrpc": "2.0",
            "id": question["id"],
            "result": {"role": "assistant", "content": {"type": "text", "text": "via b"}},
        }
        reply["result"]["model"] = "test"
        delivered = httpx.post(f"{pair.b.url}{path}", json=reply, headers=pair.headers(session))
        assert delivered.status_code == 202
        final = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))
    assert final["result"]["content"][0]["text"] == "sampled: via b"


def test_an_input_required_retry_lands_on_the_other_replica(pair: Pair) -> None:
    """A 2026-07-28 call whose backend asks for sampling: A answers input_required, the retry
    with the answer goes to B, and the call (still pending at the backend) completes once."""
    path = f"/mcp/servers/{SERVER}"
    first = call(1, "sample", meta=envelope({"sampling": {}}), text="across replicas")
    headers = {**pair.headers(), **modern_headers("tools/call", "sample")}
    asked = httpx.post(f"{pair.a.url}{path}", json=first, headers=headers, timeout=30).json()
    assert asked["result"]["resultType"] == "input_required", asked
    [key] = asked["result"]["inputRequests"]
    answer = {"role": "assistant", "content": {"type": "text", "text": "from b"}, "model": "m"}
    params = {
        **first["params"],
        "inputResponses": {key: answer},
        "requestState": asked["result"]["requestState"],
    }
    done = httpx.post(
        f"{pair.b.url}{path}", json={**first, "id": 2, "params": params}, headers=headers
    ).json()
    assert done["id"] == 2 and done["result"]["content"][0]["text"] == "sampled: from b", done
    assert (pair.state / "sampled").read_text().splitlines().count("across replicas") == 1


def test_a_killed_replica_loses_no_session_and_no_backend(pair: Pair) -> None:
    path = f"/mcp/servers/{SERVER}"
    begun = httpx.post(f"{pair.a.url}{path}", json=INIT, headers=pair.headers())
    session = begun.headers["Mcp-Session-Id"]
    backend = until_running(pair.b)
    pair.a.process.send_signal(signal.SIGKILL)
    pair.a.process.wait()
    on_b = httpx.post(
        f"{pair.b.url}{path}", json=call(3, "pid", text=""), headers=pair.headers(session)
    )
    assert answer_of(on_b)["result"]["content"][0]["text"] == str(backend["pid"])
    pair.a = start_mcpd(pair.root / "a", pair.env)  # the replica comes back: same session
    again = httpx.post(
        f"{pair.a.url}{path}", json=call(4, "pid", text=""), headers=pair.headers(session)
    )
    assert answer_of(again)["result"]["content"][0]["text"] == str(backend["pid"])
    assert [i["pid"] for i in instances(pair.a, SERVER)] == [backend["pid"]]  # no duplicate


def test_the_controller_killed_is_restarted_and_duplicates_nothing(pair: Pair) -> None:
    path = f"/mcp/servers/{SERVER}"
    backend = until_running(pair.b)
    controller = ray.get_actor(controller_name(DEPLOYMENT), namespace=RAY_NAMESPACE)
    old = ray.get(controller.process_id.remote())
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)
    # A backend killed meanwhile: its host replaces it (healing needs no controller).
    os.kill(backend["pid"], signal.SIGKILL)
    replaced = until(
        lambda: until_running(pair.b), lambda new: new["pid"] != backend["pid"], timeout=60
    )
    print(f"backend replaced {time.monotonic() - killed:.2f} s after the controller's kill")
    backend = replaced
    begun = httpx.post(f"{pair.b.url}{path}", json=INIT, headers=pair.headers())
    session = begun.headers["Mcp-Session-Id"]
    during = httpx.post(
        f"{pair.b.url}{path}", json=call(5, "echo", text="x"), headers=pair.headers(session)
    )
    assert answer_of(during)["result"]["content"][0]["text"] == "echo: x"  # hosts serve on
    new = ray.get(controller.process_id.remote())  # waits for Ray's restart
    assert new != old and exited(old)
    print(f"controller back in {time.monotonic() - killed:.2f} s")
    ray.get(controller.placement.remote())
    assert [i["pid"] for i in instances(pair.b, SERVER)] == [backend["pid"]]


class Traffic:
    """A client that calls through both replicas in turn, and retries on the other one when a
    replica is away (connection refused or closed, 503 while it stops): what a load balancer
    in front of the replicas does."""

    def __init__(self, pair: Pair, session: str) -> None:
        self.pair, self.session = pair, session
        self.answered = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            turn += 1
            errors: list[str] = []
            for attempt in range(3):  # a balancer's retries: both replicas, three rounds
                if self._call(turn, errors):
                    break
                time.sleep(0.2 * (attempt + 1))
            else:
                self.failed.append(f"no replica answered: {errors}")

    def _call(self, turn: int, errors: list[str]) -> bool:
        path = f"/mcp/servers/{SERVER}"
        replicas = [self.pair.a, self.pair.b] if turn % 2 else [self.pair.b, self.pair.a]
        for mcpd in replicas:
            try:
                answer = httpx.post(
                    f"{mcpd.url}{path}",
                    json=call(turn, "echo", text=str(turn)),
                    headers=self.pair.headers(self.session),
                    timeout=30,
                )
            except httpx.TransportError as error:
                errors.append(f"{mcpd.url}: {error!r}")
                continue
            if answer.status_code == 503:
                errors.append(f"{mcpd.url}: 503")
                continue
            if f'"echo: {turn}"' in answer.text:
                self.answered += 1
            else:
                self.failed.append(answer.text)
            return True
        return False

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_a_rolling_restart_under_traffic_fails_no_call(pair: Pair) -> None:
    path = f"/mcp/servers/{SERVER}"
    begun = httpx.post(f"{pair.a.url}{path}", json=INIT, headers=pair.headers())
    with Traffic(pair, begun.headers["Mcp-Session-Id"]) as traffic:
        for name in ("a", "b"):
            old = getattr(pair, name)
            before = traffic.answered
            stop_mcpd(old)  # SIGTERM: it drains, the client goes to the other replica
            setattr(pair, name, start_mcpd(pair.root / name, pair.env))
            assert traffic.answered > before
    assert traffic.failed == []
    assert traffic.answered > 50


def test_calls_through_a_replica_killed_with_9_are_answered_by_the_other(pair: Pair) -> None:
    path = f"/mcp/servers/{SERVER}"
    begun = httpx.post(f"{pair.b.url}{path}", json=INIT, headers=pair.headers())
    with Traffic(pair, begun.headers["Mcp-Session-Id"]) as traffic:
        before = traffic.answered
        pair.a.process.send_signal(signal.SIGKILL)
        pair.a.process.wait()
        deadline = time.monotonic() + 30
        until(lambda: traffic.answered >= before + 20, timeout=30)
        pair.a = start_mcpd(pair.root / "a", pair.env)
        until(lambda: traffic.answered >= before + 40, timeout=deadline + 60 - time.monotonic())
    assert traffic.failed == []  # a connection error became an answer on the other replica
