"""Process bookkeeping for the local orchestrator: pid files, identity, group kills."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class PidRecord:
    server: str
    replica: int
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused pid apart
    spec_hash: str
    address: str | None = None


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_alive(record: PidRecord) -> bool:
    return start_ticks(record.pid) == record.start_ticks


def private_dir(directory: Path) -> None:
    """`directory` exists with mode 0700 (pid files and logs are no one else's business)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def open_private(path: Path, mode: str) -> IO[bytes]:
    """`path` opened for writing ("wb" or "ab"), created with mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


class PidFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        private_dir(directory)

    def _path(self, server: str, replica: int) -> Path:
        return self.directory / f"{server}-{replica}.json"

    def write(self, record: PidRecord) -> None:
        path = self._path(record.server, record.replica)
        temporary = path.with_suffix(".tmp")
        with open_private(temporary, "wb") as file:
            file.write(json.dumps(asdict(record)).encode())
        temporary.replace(path)

    def remove(self, server: str, replica: int) -> None:
        self._path(server, replica).unlink(missing_ok=True)

    def records(self) -> list[PidRecord]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append(PidRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
        return found


async def kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        if not await wait_for_exit(pid, grace):
            os.killpg(pid, signal.SIGKILL)
            await wait_for_exit(pid, grace)


async def wait_for_exit(pid: int, timeout: float | None = None) -> bool:
    """Wait on a pidfd (an event, not a poll) until `pid` exits; False on timeout."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(descriptor, readable)
    try:
        await asyncio.wait_for(exited, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(descriptor)
        os.close(descriptor)
