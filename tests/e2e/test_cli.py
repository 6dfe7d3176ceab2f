"""The mcpctl CLI against a running mcpd: what a user types, what they see, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Mcpd, Run


def test_create_get_and_apply_round_trip(run: Run, tmp_path: Path) -> None:
    out, _ = run(
        "create",
        "server",
        "clock",
        "--command",
        "uvx",
        "--env",
        "TZ=UTC",
        "--",
        "mcp-server-time",
        "--local-timezone",
        "UTC",
    )
    assert out.strip() == "server/clock created"
    out, _ = run("get", "servers")
    assert out.split("\n")[0].split() == ["NAME", "TRANSPORT", "READY", "AGE"]
    assert "clock" in out and "0/1" in out
    yaml_text, _ = run("get", "server", "clock", "-o", "yaml")
    doc = yaml.safe_load(yaml_text)
    assert doc["kind"] == "Server"
    assert doc["spec"]["args"] == ["mcp-server-time", "--local-timezone", "UTC"]
    path = tmp_path / "clock.yaml"
    path.write_text(yaml_text)
    out, _ = run("apply", "-f", str(path))
    assert out.strip() == "server/clock unchanged"
    doc["spec"]["replicas"] = 2
    path.write_text(yaml.safe_dump(doc))
    out, _ = run("apply", "-f", str(path))
    assert out.strip() == "server/clock configured"
    out, _ = run("get", "server", "clock", "-o", "json")
    assert json.loads(out)["spec"]["replicas"] == 2
    out, _ = run("scale", "server", "clock", "--replicas", "0")
    assert out.strip() == "server/clock scaled to 0"
    out, _ = run("describe", "server", "clock")
    assert "TZ=UTC" in out and "0 ready / 0 desired" in out
    run("delete", "server", "clock")
    _, err = run("get", "server", "clock", code=1)
    assert err.strip() == "error: server 'clock' not found (HTTP 404)"


def test_apply_multi_document_file_creates_then_reports_unchanged(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        """
kind: User
metadata: {name: carol@example.com}
spec: {role: member}
---
kind: Server
metadata: {name: fetch}
spec: {package: mcp-server-fetch, runtime: python}
---
kind: Project
metadata: {name: research}
spec: {servers: [fetch], members: [carol@example.com]}
---
kind: Prompt
metadata: {name: summarize, project: research}
spec: {text: "Summarize {url}", arguments: [{name: url, required: true}]}
"""
    )
    out, _ = run("apply", "-f", str(path))
    assert out.split("\n")[:4] == [
        "user/carol@example.com created",
        "server/fetch created",
        "project/research created",
        "prompt/summarize created",
    ]
    out, _ = run("apply", "-f", str(path))
    assert out.count("unchanged") == 4
    # A list printed by `get -o yaml` applies too.
    listed, _ = run("get", "prompts", "-o", "yaml")
    path.write_text(listed)
    out, _ = run("apply", "-f", str(path))
    assert out.strip() == "prompt/summarize unchanged"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["create", "server", "web", "--command", "srv", "--transport", "sse"],
            "error: spec.port: port is required for transport sse",
        ),
        (
            ["create", "server", "Bad_Name", "--command", "srv"],
            "error: metadata.name: 'Bad_Name' is not a DNS-1123 label",
        ),
        (
            ["create", "server", "both", "--image", "i", "--url", "http://x", "--transport", "sse"],
            "error: spec.url: set exactly one source",
        ),
        (
            ["create", "server", "pkg", "--package", "p"],
            "error: spec.runtime: runtime (node or python) is required with package",
        ),
        (
            ["create", "server", "neg", "--command", "c", "--replicas", "-1"],
            "error: spec.replicas: Input should be greater than or equal to 0",
        ),
        (
            ["create", "server", "env", "--command", "c", "--env", "NOVALUE"],
            "error: --env expects KEY=VALUE, got 'NOVALUE'",
        ),
        (["get", "pods"], "error: unknown kind 'pods'"),
        (["get", "servers", "-o", "xml"], "error: unknown output format 'xml'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(run: Run, argv: list[str], message: str) -> None:
    _, err = run(*argv, code=1)
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(message)
    if argv[0] == "create":
        out, _ = run("get", "servers", "-o", "json")
        assert all(s["metadata"]["name"] != argv[2] for s in json.loads(out)["items"])


def test_invalid_document_in_a_file_sends_nothing(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "kind: Server\nmetadata: {name: good}\nspec: {command: c}\n---\nkind: Server\nmetadata: {name: bad}\nspec: {command: c, port: 1}\n"
    )
    _, err = run("apply", "-f", str(path), code=1)
    assert (
        err.strip()
        == f"error: {path}: document 2 (Server): spec.port: port is only valid for HTTP transports"
    )
    out, _ = run("get", "servers", "-o", "json")
    assert "good" not in out


def test_backup_and_restore_files(run: Run, tmp_path: Path) -> None:
    run("create", "server", "keep", "--command", "c")
    target = tmp_path / "backup.json"
    out, _ = run("backup", "-o", str(target))
    assert out.startswith("backed up")
    assert target.stat().st_mode & 0o777 == 0o600
    backup = json.loads(target.read_text())
    assert any(i["metadata"]["name"] == "keep" for i in backup["items"])
    out, _ = run("restore", "-f", str(target))
    assert "servers: " in out and "unchanged" in out
    truncated = tmp_path / "truncated.json"
    truncated.write_text(target.read_text()[:50])
    _, err = run("restore", "-f", str(truncated), code=1)
    assert err.startswith(f"error: {truncated}: not valid JSON")
    _, err = run("restore", "-f", str(tmp_path / "missing.json"), code=1)
    assert (
        err.strip() == f"error: cannot read {tmp_path / 'missing.json'}: No such file or directory"
    )


def test_config_file_and_precedence(run: Run, mcpd: Mcpd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPCTL_SERVER")
    monkeypatch.delenv("MCPCTL_TOKEN")
    run("config", "set-server", mcpd.url, "--token", mcpd.token)
    out, _ = run("whoami")
    assert out.strip() == "system@mcpctl.io (admin)"
    monkeypatch.setenv("MCPCTL_TOKEN", "mcp_wrong")
    _, err = run("whoami", code=1)
    assert err.startswith("error: invalid or expired token")
    out, _ = run("--token", mcpd.token, "whoami")
    assert "admin" in out
    _, err = run("--server", "http://127.0.0.1:9", "get", "servers", code=1)
    assert err.startswith("error: cannot reach mcpd at http://127.0.0.1:9")


def test_members_and_tokens(run: Run, mcpd: Mcpd, monkeypatch: pytest.MonkeyPatch) -> None:
    run("create", "user", "dave@example.com")
    token, _ = run("create", "token", "--user", "dave@example.com", "--name", "laptop")
    monkeypatch.setenv("MCPCTL_TOKEN", token.strip())
    out, _ = run("whoami")
    assert out.strip() == "dave@example.com (member)"
    _, err = run("get", "servers", code=1)
    assert err.strip() == "error: members may not read servers (HTTP 403)"
    out, _ = run("get", "tokens")
    assert "laptop" in out and token.strip() not in out


def test_console_scripts_are_installed(mcpd: Mcpd) -> None:
    scripts = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(scripts / "mcpctl"),
            "--server",
            mcpd.url,
            "--token",
            mcpd.token,
            "get",
            "users",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "UserList"
    help_text = subprocess.run(
        [str(scripts / "mcpd"), "--help"], capture_output=True, text=True, check=False
    )
    assert "--port" in help_text.stdout


def at_a_terminal(mcpd: Mcpd, columns: int, *argv: str) -> list[str]:
    """What `mcpctl` prints as typed at a terminal `columns` wide (a real pseudo-terminal)."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "MCPCTL_SERVER": mcpd.url}
    env["MCPCTL_TOKEN"] = mcpd.token
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mcpctl"), *argv], stdout=secondary, env=env
    )
    os.close(secondary)
    out = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed its end
        while chunk := os.read(primary, 65536):
            out += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0, out
    return out.decode().replace("\r\n", "\n").splitlines()


def test_tables_never_wrap_a_cell(run: Run, mcpd: Mcpd) -> None:
    """Names, commands and errors used to fold over several lines at 80 columns and when piped."""
    name = "a-server-with-a-name-long-enough-to-fill-most-of-a-terminal-x"
    run("create", "server", name, "--replicas", "0", "--command", "uvx", "--", "mcp-" + "x" * 90)
    for columns in (60, 80, 200):
        lines = at_a_terminal(mcpd, columns, "get", "servers", "-o", "wide")
        row = [line for line in lines if line.startswith("a-server-")]
        assert len(row) == 1, lines  # one line, not folded
        assert columns < 200 or row[0].startswith(name + " "), row  # the name is cut last
        assert all(len(line) <= columns for line in lines), [len(line) for line in lines]
    piped, _ = run("get", "servers", "-o", "wide")  # piped: whole cells, still one line each
    assert any(line.startswith(name + " ") and "x" * 90 in line for line in piped.splitlines())
