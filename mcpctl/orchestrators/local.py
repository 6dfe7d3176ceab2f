"""The local orchestrator: servers as subprocesses of the host actor (the embedded default).

Each server runs in its own process group with a parent-death signal, so it dies with its
host; pid files let the next start stop (STDIO) or adopt (HTTP) what an earlier run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from mcpctl.controllers.workload import Workload, with_port
from mcpctl.models.server import Source, Transport
from mcpctl.orchestrators.base import (
    MAX_LINE_BYTES,
    Channel,
    Exit,
    Handle,
    Orchestrator,
    StartError,
    read_line,
)
from mcpctl.orchestrators.processes import (
    PidFiles,
    PidRecord,
    is_alive,
    kill_group,
    open_private,
    private_dir,
    start_ticks,
    wait_for_exit,
)

log = logging.getLogger(__name__)

# What a server inherits from mcpd's environment: enough to find its runtime, nothing secret.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "npm_config_cache",
    "UV_CACHE_DIR",
    "UV_INDEX_URL",
    "PIP_INDEX_URL",
)
STDERR_TAIL_LINES = 20


class PipeChannel(Channel):
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    async def readline(self) -> bytes:
        try:
            return await read_line(self._stdout)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        """ConnectionResetError once the process's stdin is closed (it ended, or closed it):
        asyncio would drop the data silently and uvloop raise RuntimeError."""
        if not self._stdin.is_closing():
            self._stdin.write(data)
        if self._stdin.is_closing():  # closed before, or by this write (EPIPE)
            raise ConnectionResetError("the server's stdin is closed")
        await self._stdin.drain()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._stdin.close()


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    log_path: Path
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefer_installed(argv: tuple[str, ...], path: str) -> tuple[str, ...]:
    """`uvx PKG` runs PKG's entry point directly when it is installed in mcpd's environment."""
    if len(argv) >= 2 and argv[0] == "uvx":
        installed = Path(sys.executable).parent / argv[1]
        if installed.is_file() and os.access(installed, os.X_OK):
            return (str(installed), *argv[2:])
    return argv


def _pdeathsig_wrapper() -> list[str]:
    """`setpriv --pdeathsig KILL --`: the server dies with its host even after a SIGKILL."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class LocalOrchestrator(Orchestrator):
    def __init__(self, data_dir: Path) -> None:
        private_dir(data_dir)
        self.pids = PidFiles(data_dir / "run")
        self.log_dir = data_dir / "logs"
        private_dir(self.log_dir)
        self._children: dict[str, _Child] = {}
        self._wrapper = _pdeathsig_wrapper()

    def log_path(self, server: str, replica: int) -> Path:
        return self.log_dir / f"{server}-{replica}.log"

    async def start(self, workload: Workload) -> Handle:
        if workload.source is Source.URL:
            return Handle(
                f"url:{workload.url}",
                workload.server,
                workload.replica,
                workload.spec_hash,
                address=workload.url,
            )
        if workload.source is Source.IMAGE:
            raise StartError(
                "the local orchestrator cannot run container images; "
                "set MCPD_ORCHESTRATOR=kubernetes or use a package or command"
            )
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        # mcpd's own environment comes first: its uvx, and entry points installed beside it.
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
        )
        env.update(workload.env)
        env.update(workload.secret_values)
        argv = prefer_installed(workload.argv, env["PATH"])
        address = None
        if workload.transport is not Transport.STDIO:
            port = free_port()
            argv = with_port(argv, port)
            env["PORT"] = str(port)
            address = f"http://127.0.0.1:{port}{workload.path}"
        executable = shutil.which(argv[0], path=env.get("PATH"))
        if executable is None:
            raise StartError(f"command not found: {argv[0]}")
        log_path = self.log_path(workload.server, workload.replica)
        with open_private(log_path, "ab") as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._wrapper,
                    executable,
                    *argv[1:],
                    stdin=asyncio.subprocess.PIPE
                    if address is None
                    else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE if address is None else stderr,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                    limit=MAX_LINE_BYTES,
                )
            except OSError as error:
                raise StartError(f"cannot start {argv[0]}: {error.strerror}") from None
        child = _Child(process, log_path)
        key = workload.key
        self._children[key] = child
        asyncio.get_running_loop().create_task(self._capture_stderr(child))
        ticks = start_ticks(process.pid) or 0
        self.pids.write(
            PidRecord(
                workload.server, workload.replica, process.pid, ticks, workload.spec_hash, address
            )
        )
        return Handle(
            str(process.pid),
            workload.server,
            workload.replica,
            workload.spec_hash,
            address,
            pid=process.pid,
        )

    async def _capture_stderr(self, child: _Child) -> None:
        assert child.process.stderr is not None
        with open_private(child.log_path, "ab") as sink:
            async for line in child.process.stderr:
                sink.write(line)
                sink.flush()
                child.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def stop(self, handle: Handle) -> None:
        if handle.pid is None:
            return
        child = self._children.pop(f"{handle.server}-{handle.replica}", None)
        await kill_group(handle.pid)
        if child is not None:
            await child.process.wait()
        self.pids.remove(handle.server, handle.replica)

    async def wait(self, handle: Handle) -> Exit:
        if handle.pid is None:  # a URL: nothing runs here, so nothing ends
            await asyncio.Event().wait()
        assert handle.pid is not None
        child = self._children.get(f"{handle.server}-{handle.replica}")
        if child is None or child.process.pid != handle.pid:
            await wait_for_exit(handle.pid)
            return Exit(None, "exited")
        code = await child.process.wait()
        await asyncio.sleep(0)  # let the stderr reader take the last lines
        tail = " | ".join(list(child.stderr_tail)[-3:])
        reason = f"exited with code {code}" + (f": {tail}" if tail else "")
        return Exit(code, reason[:1000])

    def stderr_tail(self, handle: Handle) -> str:
        child = self._children.get(f"{handle.server}-{handle.replica}")
        return " | ".join(list(child.stderr_tail)[-3:]) if child else ""

    async def open_stdio(self, handle: Handle, workload: Workload) -> Channel:
        child = self._children.get(f"{handle.server}-{handle.replica}")
        if child is None or child.process.stdin is None:
            raise StartError(f"no STDIO pipes for {handle.server}-{handle.replica}")
        return PipeChannel(child.process)

    async def adopt(self, server: str) -> list[Handle]:
        """HTTP servers still listening are adopted; STDIO leftovers (their pipes are gone) stop."""
        adopted = []
        for record in self.pids.records():
            if record.server != server:
                continue
            key = f"{record.server}-{record.replica}"
            if key in self._children:
                continue
            if not is_alive(record):
                self.pids.remove(record.server, record.replica)
            elif record.address is None:
                log.info("stopping leftover STDIO process %s (pid %d)", key, record.pid)
                await kill_group(record.pid)
                self.pids.remove(record.server, record.replica)
            else:
                adopted.append(
                    Handle(
                        str(record.pid),
                        record.server,
                        record.replica,
                        record.spec_hash,
                        record.address,
                        pid=record.pid,
                    )
                )
        return adopted

    async def stop_orphans(self, known_servers: set[str]) -> int:
        stopped = 0
        for record in self.pids.records():
            if record.server in known_servers:
                continue
            if is_alive(record):
                log.info(
                    "stopping orphan %s-%d (pid %d)", record.server, record.replica, record.pid
                )
                await kill_group(record.pid)
                stopped += 1
            self.pids.remove(record.server, record.replica)
        return stopped

    async def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncIterator[str]:
        path = self.log_path(server, replica)
        if not path.exists():
            return
        with path.open("rb") as file:
            lines = file.readlines()
            for line in lines[-tail:] if tail else lines:
                yield line.decode(errors="replace")
            while follow:
                # A plain file grows with no event to wait on: read it as `tail -f` does.
                line = file.readline()
                if line:
                    yield line.decode(errors="replace")
                else:
                    await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Stop every server at once (in parallel, so the stop takes one grace, not one each)."""

        async def stop(key: str, child: _Child) -> None:
            with contextlib.suppress(ProcessLookupError):
                await kill_group(child.process.pid, grace=3)
            await child.process.wait()
            server, _, replica = key.rpartition("-")
            self.pids.remove(server, int(replica))

        await asyncio.gather(*(stop(key, child) for key, child in list(self._children.items())))
        self._children.clear()
