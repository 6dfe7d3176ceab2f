"""Starting or joining Ray for mcpd (DESIGN: Ray is not an open door).

A local Ray always starts fresh, in a private temporary directory of its own (a stale or
foreign `/tmp/ray/ray_current_cluster` pointer is never followed), binds to loopback only and
requires Ray's token authentication; the token is generated once and kept in mcpd's data
directory (mode 0600), where an operator's `ray` command can read it.

Joining a cluster (`RAY_ADDRESS`) uses token authentication too, with the token from the
environment (`RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`, a Secret in the chart); a cluster
without it is joined only when `RAY_AUTH_MODE=disabled` says so explicitly.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import ray

log = logging.getLogger(__name__)

TOKEN_FILE = "ray-token"
LOOPBACK = "127.0.0.1"
OBJECT_STORE_BYTES = 80 * 1024**2  # pods have a 64 MB /dev/shm (DESIGN)


def ensure_token(path: Path) -> Path:
    """The token file at `path`: created once with a new random token, always mode 0600."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        if path.read_text().strip():
            return path
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    return path


def init_ray(data_dir: Path | None = None, node_ip: str | None = None) -> None:
    """Join RAY_ADDRESS when set, else start a fresh local Ray (DESIGN: measured settings).
    The local Ray's token is kept in `data_dir` (without one, in Ray's private directory).
    `node_ip`: the address of the Ray node to connect to when joining (this pod's raylet)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        join_ray(address, node_ip)
    else:
        start_local_ray(data_dir)


def join_ray(address: str, node_ip: str | None = None) -> None:
    mode = os.environ.setdefault("RAY_AUTH_MODE", "token")
    if mode != "token":
        log.warning(
            "joining Ray at %s without token authentication (RAY_AUTH_MODE=%s)", address, mode
        )
    reload_auth_config()
    # Without the node's address a driver takes any raylet it can see on the machine, the
    # head's first: where processes of several Ray nodes are visible (pods without their own
    # PID namespace, several nodes on one host) it would connect through another node's socket.
    ray.init(address=address, log_to_driver=False, namespace=None, _node_ip_address=node_ip)


def start_local_ray(data_dir: Path | None) -> None:
    # 0700, unpredictable, empty; below RAY_TMPDIR when set, as Ray's own files would be.
    # Ray makes the directories it creates world-writable (0777, for machines it shares):
    # those live one level down, where only this user can reach them.
    private = Path(tempfile.mkdtemp(prefix="mcpd-ray-", dir=os.environ.get("RAY_TMPDIR")))
    atexit.register(remove_local_ray, private)
    temp_dir = private / "r"
    token = ensure_token((data_dir or private) / TOKEN_FILE)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over our token file
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    reload_auth_config()
    bind_ray_to_loopback()
    ray.init(
        address="local",  # never an address found in the environment or a pointer file
        _temp_dir=str(temp_dir),
        _node_ip_address=LOOPBACK,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=OBJECT_STORE_BYTES,
    )
    log.info("started a local Ray on loopback with token authentication (token in %s)", token)


def remove_local_ray(temp_dir: Path) -> None:
    """At exit: stop Ray's processes, then remove their directory (Ray's own exit hook would
    run after this one, with its processes still writing there)."""
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def bind_ray_to_loopback() -> None:
    """Ray binds its servers to loopback when the node's address is loopback, which it keeps
    only when clusters are off (as on macOS): the variable for the processes Ray starts, the
    constant (read when Ray was imported) for this one."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def reload_auth_config() -> None:
    """Ray read RAY_AUTH_MODE and the token when it was imported: read them again."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
