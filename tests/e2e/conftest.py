"""A real mcpd process (SQLite, its own data dir) for tests that go over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.mcpd import ready
from tests.helpers.waiting import until

ADMIN_TOKEN = "mcp_e2e-admin-token"


@dataclass
class Mcpd:
    url: str
    token: str
    data_dir: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mcpd(data_dir: Path, env: dict[str, str] | None = None) -> Mcpd:
    port = free_port()
    environment = {
        **os.environ,
        "MCPD_DATA_DIR": str(data_dir),
        "MCPD_PORT": str(port),
        "MCPD_ADMIN_TOKEN": ADMIN_TOKEN,
        **(env or {}),
    }
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mcpctl.daemon"], env=environment, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"mcpd exited with {process.returncode}; see {log.name}")
        return ready(url, timeout=1)

    if not until(up, timeout=60, fail=False):
        process.kill()
        raise RuntimeError("mcpd did not become ready in 60 s")
    return Mcpd(url, ADMIN_TOKEN, data_dir, process)


def stop_mcpd(mcpd: Mcpd) -> None:
    mcpd.process.terminate()
    try:
        mcpd.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        mcpd.process.kill()
        mcpd.process.wait()


@pytest.fixture(scope="module")
def mcpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mcpd]:
    """An mcpd process on the suite's one Ray (it joins through RAY_ADDRESS)."""
    import ray

    from tests.e2e.gateway import start_ray

    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    daemon = start_mcpd(tmp_path_factory.mktemp("mcpd") / "data", env)
    yield daemon
    stop_mcpd(daemon)


class Run:
    """Runs the mcpctl CLI in-process: `run(*argv, code=0)` returns (stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, code: int = 0) -> tuple[str, str]:
        from mcpctl.cli.main import main

        with pytest.raises(SystemExit) as exited:
            main([*argv])
            raise SystemExit(0)
        out, err = self.capsys.readouterr()
        assert exited.value.code == code, (out, err)
        return out, err


@pytest.fixture
def run(
    mcpd: Mcpd, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Run:
    """The CLI against the module's mcpd, with a config file of its own and wide tables."""
    monkeypatch.setenv("MCPCTL_SERVER", mcpd.url)
    monkeypatch.setenv("MCPCTL_TOKEN", mcpd.token)
    monkeypatch.setenv("MCPCTL_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setattr("mcpctl.cli.output.console.width", 200)
    return Run(capsys)
