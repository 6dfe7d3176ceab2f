"""What a real mcpd process makes of the data plane's bounds (issue 18, defects 2 and 4): the
bound on a client notification comes from MCPD_MAX_NOTIFICATION_BYTES, and connections its
host closed before they showed the cluster token are on /metrics as a counter."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import httpx
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from mcpctl.actors.controller import RAY_NAMESPACE, host_name
from mcpctl.dataplane import frames
from mcpctl.mcp import jsonrpc
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers.jsonrpc import ACCEPT, INIT
from tests.helpers.mcpd import bearer, wait_running
from tests.helpers.world import MISBEHAVING

LIMIT = 2048  # MCPD_MAX_NOTIFICATION_BYTES here (64 KiB by default)


@pytest.fixture(scope="module")
def mcpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mcpd]:
    start_ray()
    root = tmp_path_factory.mktemp("bounds")
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_ACTOR_HOSTS": "1",
        "MCPD_MAX_NOTIFICATION_BYTES": str(LIMIT),
    }
    daemon = start_mcpd(root / "data", env)
    state = root / "state"
    state.mkdir()
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    with httpx.Client(base_url=daemon.url, headers=headers(daemon), timeout=60) as api:
        created = api.post("/api/v1/servers", json={"metadata": {"name": "quick"}, "spec": spec})
        assert created.status_code == 201, created.text
    wait_running(daemon, "quick", timeout=180)
    yield daemon
    stop_mcpd(daemon)


def headers(mcpd: Mcpd) -> dict[str, str]:
    return {**bearer(mcpd.token), **ACCEPT}


def roots_changed(size: int) -> dict[str, object]:
    """notifications/roots/list_changed of exactly `size` bytes as the gateway measures it."""
    bare = jsonrpc.notification("notifications/roots/list_changed", {"_meta": {"pad": ""}})
    pad = size - len(jsonrpc.dumps(bare))
    return jsonrpc.notification("notifications/roots/list_changed", {"_meta": {"pad": "p" * pad}})


def test_the_notification_bound_is_mcpds_setting(mcpd: Mcpd) -> None:
    with httpx.Client(base_url=mcpd.url, headers=headers(mcpd), timeout=60) as http:
        opened = http.post("/mcp/servers/quick", json=INIT)
        assert opened.status_code == 200, opened.text
        http.headers["Mcp-Session-Id"] = opened.headers["Mcp-Session-Id"]
        assert http.post("/mcp/servers/quick", json=roots_changed(LIMIT)).status_code == 202
        large = http.post("/mcp/servers/quick", json=roots_changed(LIMIT + 1))
        assert large.status_code == 413, large.text
        assert large.json()["error"]["code"] == jsonrpc.INVALID_REQUEST
        assert large.json()["error"]["message"] == (
            f"Invalid Request: a notification of {LIMIT + 1} bytes; the limit is 2 KiB"
        )


async def refused_connection(address: dict[str, object], hello: bytes) -> None:
    """A connection to the host's data plane that shows `hello`, closed with nothing said."""
    path = address["unix"]
    assert isinstance(path, str)
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(hello)
    await writer.drain()
    assert await asyncio.wait_for(frames.read_frame(reader), 10) is None
    writer.close()


def refused_on_metrics(mcpd: Mcpd) -> tuple[str, dict[tuple[str, str], float]]:
    """mcpctl_dataplane_refused's type and samples, by (host, reason), from mcpd's /metrics."""
    scraped = httpx.get(f"{mcpd.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(scraped):
        if family.name == "mcpctl_dataplane_refused":
            samples = {
                (s.labels["host"], s.labels["reason"]): s.value
                for s in family.samples
                if s.name == "mcpctl_dataplane_refused_total"
            }
            return family.type, samples
    raise AssertionError("mcpctl_dataplane_refused is not on /metrics")


async def test_connections_refused_before_the_token_are_counted_on_metrics(mcpd: Mcpd) -> None:
    kind, before = refused_on_metrics(mcpd)
    assert kind == "counter"
    port = mcpd.url.rsplit(":", 1)[1]
    host = ray.get_actor(host_name(f"mcpd-{port}", 0), namespace=RAY_NAMESPACE)
    address = await host.dataplane_address.remote()
    await refused_connection(address, frames.encode(frames.HELLO, "0" * 64))
    await refused_connection(address, frames.HEADER.pack(9) + b"not json!")
    await refused_connection(address, frames.encode(frames.HELLO, "0" * 64))
    _, after = refused_on_metrics(mcpd)
    grew = {key: value - before.get(key, 0) for key, value in after.items()}
    assert grew == {("0", "wrong_token"): 2, ("0", "hello_malformed"): 1}, after
