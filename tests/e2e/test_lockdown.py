"""mcpd locked down (issue: data-plane safety, "Ray, files, stop" and bounds): real mcpd
processes, a misbehaving STDIO server (tests/servers/misbehaving.py) started as users start
servers, raw sockets where a client misbehaves.

- A local Ray starts fresh (a stale Ray pointer does not stop mcpd), every socket of mcpd's
  process tree listens on loopback only, and Ray refuses a client without its token.
- The data directory and every file in it are private.
- SIGTERM: streams end at once, a request in flight gets MCPD_SHUTDOWN_SECONDS, then an
  error, and mcpd exits.
- Connections that send nothing, half a head or half a body are closed; heads are bounded.
- /metrics can require a token, or be served alone on a port of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray

from tests.e2e.conftest import Mcpd, free_port, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers import jsonrpc
from tests.helpers.jsonrpc import ACCEPT, initialize
from tests.helpers.mcpd import add_server, bearer, wait_instances
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING, SERVER

REVISION = "2025-06-18"
INIT = initialize(REVISION)


# -- helpers -------------------------------------------------------------------------------


def headers(mcpd: Mcpd) -> dict[str, str]:
    return bearer(mcpd.token)


def create_misbehaving(mcpd: Mcpd, state: Path) -> None:
    state.mkdir(exist_ok=True)
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    add_server(mcpd, SERVER, spec)
    wait_instances(mcpd, SERVER, timeout=120, interval=0.2)


def joined_mcpd(directory: Path, **settings: str) -> Mcpd:
    """An mcpd on the suite's Ray (fast to start): for what does not depend on Ray."""
    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "MCPD_ACTOR_HOSTS": "1"}
    return start_mcpd(directory / "data", {**env, **settings})


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat_line.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def listening_inodes() -> dict[str, tuple[str, int]]:
    """Listening TCP sockets of the machine: inode -> (address, port)."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            ip = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found[fields[9]] = (str(ipaddress.ip_address(ip)), int(port, 16))
    return found


def listening_sockets(root: int) -> list[tuple[int, str, str, int]]:
    """(pid, command, address, port) of every listening TCP socket in `root`'s process tree."""
    listening = listening_inodes()
    sockets = []
    for pid in process_tree(root):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for link in links:
            inode = link[len("socket:[") : -1] if link.startswith("socket:[") else None
            if inode in listening:
                sockets.append((pid, command, *listening[inode]))
    return sockets


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed `sock` (reading whatever it sent first)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {seconds} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


# -- Ray and files: a local mcpd -----------------------------------------------------------


@pytest.fixture(scope="module")
def local_mcpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mcpd, Path]]:
    """mcpd as a user starts it: its own local Ray, not the suite's. Ray's default directory
    holds a stale pointer to a cluster long gone (as a crashed `ray start` leaves it), which
    used to stop mcpd from starting. RAY_TMPDIR is short: Ray's socket paths live below it."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt"))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
    env = {"RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": "", "MCPD_ACTOR_HOSTS": "1"}
    workdir = tmp_path_factory.mktemp("local")
    daemon = start_mcpd(workdir / "data", env)
    try:
        create_misbehaving(daemon, workdir / "state")
        yield daemon, ray_tmp
    finally:
        stop_mcpd(daemon)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_stale_ray_pointer_does_not_stop_mcpd(local_mcpd: tuple[Mcpd, Path]) -> None:
    mcpd, ray_tmp = local_mcpd
    assert httpx.get(f"{mcpd.url}/readyz").status_code == 200
    assert (ray_tmp / "ray" / "ray_current_cluster").read_text() == "127.0.0.1:1"
    [session_dir] = ray_tmp.glob("mcpd-ray-*")  # a fresh Ray in a private directory
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700


def test_local_mode_listens_on_loopback_only(local_mcpd: tuple[Mcpd, Path]) -> None:
    mcpd, _ = local_mcpd
    sockets = listening_sockets(mcpd.process.pid)
    commands = {command for _, command, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= commands, sockets  # Ray's servers are in the tree
    assert int(mcpd.url.rsplit(":", 1)[1]) in {port for *_, port in sockets}
    assert [s for s in sockets if not is_loopback(s[2])] == []


REFUSAL_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).internal_kv_keys(b"", namespace=None, timeout=10)
except Exception as error:
    print("refused", type(error).__name__)
else:
    print("connected")
"""


def test_local_ray_refuses_clients_without_its_token(
    local_mcpd: tuple[Mcpd, Path], tmp_path: Path
) -> None:
    mcpd, _ = local_mcpd
    [port] = [
        p for _, command, _, p in listening_sockets(mcpd.process.pid) if command == "gcs_server"
    ]
    token_file = mcpd.data_dir / "ray-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on

    def probe(**auth: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", REFUSAL_PROBE, f"127.0.0.1:{port}"],
            env={**base, **auth},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip()

    assert probe(RAY_AUTH_MODE="disabled") == "refused AuthenticationError"
    assert probe(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64) == "refused AuthenticationError"
    assert probe(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file)) == "connected"


def test_data_dir_and_its_files_are_private(local_mcpd: tuple[Mcpd, Path]) -> None:
    mcpd, _ = local_mcpd
    data = mcpd.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    names = {p.relative_to(data).as_posix() for p in data.rglob("*")}
    expected = {"mcpd.db", "secret.key", "ray-token", "logs", "run", f"run/{SERVER}-0.json"}
    assert expected <= names and any(n.startswith("logs/") for n in names), names
    readable = {
        p.relative_to(data).as_posix(): oct(p.stat().st_mode)
        for p in data.rglob("*")
        if p.stat().st_mode & 0o077
    }
    assert readable == {}


# -- connection bounds and /metrics --------------------------------------------------------

READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mcpd]:
    daemon = joined_mcpd(
        tmp_path_factory.mktemp("bounded"),
        MCPD_READ_TIMEOUT=str(READ_TIMEOUT),
        MCPD_KEEP_ALIVE_SECONDS="1",
        MCPD_MAX_CONNECTIONS="20",
        MCPD_METRICS_REQUIRE_TOKEN="true",
    )
    yield daemon
    stop_mcpd(daemon)


def test_a_connection_that_sends_nothing_is_closed(bounded: Mcpd) -> None:
    with connect(bounded.url) as sock:
        assert closed_within(sock, READ_TIMEOUT + 5) >= READ_TIMEOUT - 0.5


def test_half_a_request_head_is_closed_however_slowly_it_trickles(bounded: Mcpd) -> None:
    with connect(bounded.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: mcpd\r\nX-Slow: ")
        started = time.monotonic()
        sock.settimeout(0.5)
        while True:
            assert time.monotonic() - started < READ_TIMEOUT + 5, "the connection is still open"
            try:
                sock.sendall(b"x")  # one more byte of the head every half second
                if sock.recv(65536) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert time.monotonic() - started >= READ_TIMEOUT - 0.5


def test_a_stalled_body_is_closed(bounded: Mcpd) -> None:
    with connect(bounded.url) as sock:
        sock.sendall(
            b"POST /api/v1/servers HTTP/1.1\r\nHost: mcpd\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + bounded.token.encode() + b"\r\n"
            b'Content-Length: 1000\r\n\r\n{"metadata":'
        )
        closed_within(sock, READ_TIMEOUT + 5)


def test_an_idle_keep_alive_connection_is_closed(bounded: Mcpd) -> None:
    with connect(bounded.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: mcpd\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 5) < READ_TIMEOUT  # MCPD_KEEP_ALIVE_SECONDS=1


def test_an_oversized_head_is_refused(bounded: Mcpd) -> None:
    with connect(bounded.url) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: mcpd\r\nX-Big: " + b"x" * 200_000)
        sock.settimeout(5)
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""  # closed before the client finished sending: nothing was buffered
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
        closed_within(sock, 5)


def test_connections_over_the_limit_get_503(bounded: Mcpd) -> None:
    idle = [connect(bounded.url) for _ in range(20)]
    try:
        assert httpx.get(f"{bounded.url}/healthz").status_code == 503
    finally:
        for sock in idle:
            sock.close()


def test_metrics_can_require_a_token(bounded: Mcpd) -> None:
    refused = httpx.get(f"{bounded.url}/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    answer = httpx.get(f"{bounded.url}/metrics", headers=headers(bounded))
    assert answer.status_code == 200 and "mcpctl_mcp_requests_total" in answer.text


def test_metrics_on_a_port_of_their_own(tmp_path: Path) -> None:
    port = free_port()
    mcpd = joined_mcpd(tmp_path, MCPD_METRICS_PORT=str(port))
    try:
        metrics = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{metrics}/metrics")
        assert answer.status_code == 200 and "mcpctl_mcp_requests_total" in answer.text
        for path in ("/healthz", "/api/v1/servers", f"/mcp/servers/{SERVER}"):
            assert httpx.get(f"{metrics}{path}", headers=headers(mcpd)).status_code == 404
        # the main port keeps /metrics for token holders only
        assert httpx.get(f"{mcpd.url}/metrics").status_code == 401
        assert httpx.get(f"{mcpd.url}/metrics", headers=headers(mcpd)).status_code == 200
    finally:
        stop_mcpd(mcpd)
    with pytest.raises(httpx.ConnectError):  # and it stops with mcpd
        httpx.get(f"http://127.0.0.1:{port}/metrics")


# -- SIGTERM -------------------------------------------------------------------------------

GRACE = 3.0


def raw_post(url: str, path: str, body: bytes, extra: dict[str, str]) -> socket.socket:
    """A POST written whole to the socket before this returns (so mcpd has it in hand)."""
    sock = connect(url)
    head = [f"POST {path} HTTP/1.1", "Host: mcpd", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in extra.items()]
    head.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return sock


def read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def refused_soon(url: str, timeout: float) -> None:

    def refused() -> bool:
        try:
            connect(url).close()
        except ConnectionRefusedError:
            return True
        return False

    # no event tells a client that a listener closed: try again
    until(refused, timeout=timeout, what="mcpd still accepts connections")


async def test_sigterm_ends_streams_gives_requests_their_grace_and_exits(tmp_path: Path) -> None:
    mcpd = joined_mcpd(tmp_path, MCPD_SHUTDOWN_SECONDS=str(GRACE))
    try:
        create_misbehaving(mcpd, tmp_path / "state")
        path = f"/mcp/servers/{SERVER}"
        base = {**headers(mcpd), **ACCEPT}
        async with httpx.AsyncClient(base_url=mcpd.url, headers=base, timeout=60) as http:
            answer = await http.post(path, json=INIT)
            session = {"Mcp-Session-Id": answer.headers["Mcp-Session-Id"]}
            session["MCP-Protocol-Version"] = REVISION
            http.headers.update(session)
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(path, json=initialized)).status_code == 202

            stream_open = asyncio.Event()

            async def listen() -> float:
                async with http.stream("GET", path) as stream:
                    assert stream.status_code == 200
                    stream_open.set()
                    async for _ in stream.aiter_bytes():
                        pass
                return time.monotonic()

            listening = asyncio.create_task(listen())
            await stream_open.wait()
            hang = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang"}}'
            hanging = raw_post(mcpd.url, path, hang, {**base, **session})
            echo = jsonrpc.call(8, "echo", text="hi")
            # an answer after the hanging call was written: mcpd has that call in hand
            assert "echo: hi" in (await http.post(path, json=echo)).text

            signalled = time.monotonic()
            mcpd.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(refused_soon, mcpd.url, GRACE / 2)  # no new connections
            stream_ended = await asyncio.wait_for(listening, GRACE + 10)
            answer_bytes = await asyncio.to_thread(read_all, hanging, GRACE + 10)
            answered = time.monotonic()
            code = await asyncio.to_thread(mcpd.process.wait, GRACE + 15)
            exited = time.monotonic()
            hanging.close()
    finally:
        if mcpd.process.poll() is None:
            stop_mcpd(mcpd)
    assert stream_ended - signalled < GRACE / 2  # a stream does not hold the stop
    # the call in flight had its grace, then an error saying what happened
    assert GRACE - 0.5 <= answered - signalled <= GRACE + 3
    assert answer_bytes.startswith(b"HTTP/1.1 503"), answer_bytes
    assert b'"id":7' in answer_bytes.replace(b" ", b"") and b"shutting down" in answer_bytes
    assert exited - signalled < GRACE + 12, exited - signalled
    assert code == 0  # a stop that drained is a success, not a death by SIGTERM


def http_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in `data` (bodies with Content-Length)."""
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields.get(b"content-length", fields.get(b"Content-Length", b"0")))
        responses.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return responses


async def test_readyz_turns_503_once_sigterm_began(tmp_path: Path) -> None:
    """After SIGTERM, a request that still reaches mcpd's app (new connections are refused, so:
    one pipelined behind a request in its grace period) finds /readyz answering 503."""
    mcpd = joined_mcpd(tmp_path, MCPD_SHUTDOWN_SECONDS=str(GRACE))
    try:
        create_misbehaving(mcpd, tmp_path / "state")
        assert httpx.get(f"{mcpd.url}/readyz").json() == {"status": "ok"}
        path = f"/mcp/servers/{SERVER}"
        base = {**headers(mcpd), **ACCEPT}
        answer = httpx.post(f"{mcpd.url}{path}", json=INIT, headers=base)
        session = {"Mcp-Session-Id": answer.headers["Mcp-Session-Id"]}
        session["MCP-Protocol-Version"] = REVISION
        # the backend takes 1.5 s to read mem://slow: well inside the grace period
        slow = b'{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"mem://slow"}}'
        sock = raw_post(mcpd.url, path, slow, {**base, **session})
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: mcpd\r\n\r\n")  # pipelined behind it
        await asyncio.sleep(0.5)  # the read is at the backend
        mcpd.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(refused_soon, mcpd.url, GRACE / 2)
        data = await asyncio.to_thread(read_all, sock, GRACE + 10)
        sock.close()
        await asyncio.to_thread(mcpd.process.wait, GRACE + 15)
    finally:
        if mcpd.process.poll() is None:
            stop_mcpd(mcpd)
    [(read_status, read_body), (ready_status, ready_body)] = http_responses(data)
    assert read_status == 200 and b"content of mem://slow" in read_body, read_body
    assert ready_status == 503, ready_body
    assert json.loads(ready_body) == {"status": "shutting down"}
