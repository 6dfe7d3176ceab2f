"""Usage mistakes with the installed `mcpctl`, as a user types them (issue 20's first item).

Typer 0.22+ raises its own copy of click's exceptions, which `main()` did not catch: every
mistake below printed a ~47-line traceback with the useful line at its bottom. Now: one line
naming what is wrong and where to look, exit 2 for usage (as click's own), and no traceback.
No mcpd is needed: these fail before any request.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MCPCTL = str(Path(sys.executable).parent / "mcpctl")


def mcpctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPCTL, "--server", "http://127.0.0.1:9", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["gett", "servers"], "No such command 'gett'. Did you mean 'get'? (see 'mcpctl --help')"),
        (["get", "servers", "-w"], "No such option: -w (see 'mcpctl get --help')"),
        (["delete", "-f", "x.yaml"], "No such option: -f (see 'mcpctl delete --help')"),
        (["scale", "server", "x", "--replicas", "two"], "Invalid value for '--replicas'"),
        (["scale", "server", "x", "--replicas", "-1"], "greater than or equal to 0"),
        (["get"], "Missing argument 'kind'. (see 'mcpctl get --help')"),
        ([], "Missing command"),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_2(argv: list[str], says: str) -> None:
    result = mcpctl(*argv)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and says in result.stderr, result.stderr


def test_version_flag_and_command() -> None:
    for argv in (["--version"], ["version"]):
        result = mcpctl(*argv)
        assert result.returncode == 0 and result.stdout.startswith("mcpctl "), result


def test_an_unreachable_server_is_one_line_and_exit_1() -> None:
    result = mcpctl("get", "servers")
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
