"""CLI failures: one line on stderr, exit code 1."""

from __future__ import annotations


class CLIError(Exception):
    """Raised anywhere in the CLI; main() prints `error: <message>` and exits 1."""
