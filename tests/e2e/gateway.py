"""mcpd's app with its Ray runtime, served by uvicorn in a thread of the test process, so the
whole suite shares one Ray (DESIGN: +4 s per file otherwise)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import ray
import uvicorn
from cryptography.fernet import Fernet

from mcpctl.actors.host import HostConfig
from mcpctl.actors.runtime import Runtime
from mcpctl.daemon.assembly import assemble
from mcpctl.gateway.limits import Limits
from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig
from mcpctl.store.database import Database
from tests.conftest import ADMIN_TOKEN, fresh_database
from tests.e2e.conftest import free_port
from tests.helpers.waiting import until


def start_ray() -> None:
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024**2
    )


@dataclass
class Gateway:
    url: str
    token: str
    database: Database
    runtime: Runtime
    data_dir: Path
    server: uvicorn.Server
    thread: threading.Thread
    key: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self, dispose: bool = True) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        if dispose:
            self.database.dispose()


def start_gateway(
    workdir: Path,
    name: str,
    resync_seconds: float = 30.0,
    hosts: int = 2,
    kubernetes: KubernetesConfig | None = None,
    database: Database | None = None,
    key: bytes | None = None,
    limits: Limits | None = None,
) -> Gateway:
    """mcpd's app on a fresh SQLite (or the given database, to start "again" on it)."""
    start_ray()
    database = database or fresh_database("sqlite", workdir)
    key = key or Fernet.generate_key()
    data_dir = workdir / "data"
    config = HostConfig(
        0,
        database.url,
        key,
        str(data_dir),
        orchestrator="kubernetes" if kubernetes else "local",
        startup_timeout=120,
        kubernetes=kubernetes,
        request_timeout=(limits or Limits()).request_timeout,
    )
    app, runtime = assemble(database, config, resync_seconds, hosts, namespace=name, limits=limits)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"gateway-{name}", daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        return bool(server.started)

    if not until(started, timeout=120, fail=False):
        raise RuntimeError("the gateway did not start")
    return Gateway(
        f"http://127.0.0.1:{port}", ADMIN_TOKEN, database, runtime, data_dir, server, thread, key
    )
