"""mcpd's data directory is private: 0700, and nothing in it readable by group or others
(the SQLite database and its journals, keys, tokens, servers' logs and pid files)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private(directory: Path) -> None:
    """Create `directory` 0700, or make an existing one and what it holds private (files an
    earlier version left readable included). Symbolic links are left alone."""
    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    directory.chmod(PRIVATE_DIR)
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                if mode & 0o077:
                    path.chmod(mode & ~0o077)


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite keeps a new database's mode
    and gives its journals the database's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
