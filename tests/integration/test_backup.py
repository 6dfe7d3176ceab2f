"""Backups hold every field, restore in one transaction, and refuse bad input unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mcpctl.gateway.app import build_app
from mcpctl.gateway.context import GatewayContext
from mcpctl.store.repositories import repositories
from mcpctl.store.secretbox import SecretBox
from tests.conftest import ADMIN_TOKEN, BACKENDS, fresh_database

FULL_SERVER = {
    "metadata": {"name": "github"},
    "spec": {
        "description": "GitHub tools",
        "transport": "streamable-http",
        "package": "@modelcontextprotocol/server-github",
        "runtime": "node",
        "args": ["--read-only"],
        "port": 3000,
        "path": "/mcp",
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "GITHUB_TOKEN", "secretRef": {"name": "github", "key": "token"}},
        ],
        "replicas": 2,
        "isolation": "principal",
        "idleSeconds": 120,
        "maxInstances": 5,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "labels": {"team": "platform"},
        "egress": [{"cidr": "140.82.112.0/20", "ports": [443], "protocol": "TCP"}],
    },
}


def populate(api: TestClient) -> None:
    docs: list[tuple[str, dict[str, Any]]] = [
        (
            "users",
            {
                "metadata": {"name": "alice@example.com"},
                "spec": {"role": "admin", "displayName": "Alice"},
            },
        ),
        ("users", {"metadata": {"name": "bob@example.com"}, "spec": {"role": "member"}}),
        ("secrets", {"metadata": {"name": "github"}, "spec": {"data": {"token": "ghp_secret"}}}),
        ("servers", FULL_SERVER),
        (
            "servers",
            {"metadata": {"name": "time"}, "spec": {"command": "uvx", "args": ["mcp-server-time"]}},
        ),
        (
            "servers",
            {
                "metadata": {"name": "remote"},
                "spec": {"url": "https://mcp.example.com/sse", "transport": "sse"},
            },
        ),
        (
            "templates",
            {
                "metadata": {"name": "py"},
                "spec": {
                    "parameters": [{"name": "pkg", "description": "PyPI name"}],
                    "server": {"package": "${pkg}", "runtime": "python"},
                },
            },
        ),
        (
            "projects",
            {
                "metadata": {"name": "dev"},
                "spec": {
                    "description": "d",
                    "owner": "alice@example.com",
                    "servers": ["time", "github"],
                    "members": ["bob@example.com"],
                },
            },
        ),
        ("projects", {"metadata": {"name": "ops"}, "spec": {"servers": ["remote"]}}),
    ]
    for plural, doc in docs:
        assert api.post(f"/api/v1/{plural}", json=doc).status_code == 201
    prompt = {
        "metadata": {"name": "review"},
        "spec": {
            "text": "Review {pr}",
            "arguments": [{"name": "pr", "required": True}],
            "owner": "bob@example.com",
        },
    }
    assert api.post("/api/v1/projects/dev/prompts", json=prompt).status_code == 201


def comparable(backup: dict[str, Any]) -> list[dict[str, Any]]:
    """A backup minus generated timestamps."""
    items = []
    for item in backup["items"]:
        metadata = {
            k: v for k, v in item["metadata"].items() if k not in ("createdAt", "updatedAt")
        }
        items.append({**item, "metadata": metadata})
    return items


def app_on(tmp_path: Path, backend: str) -> TestClient:
    database = fresh_database(backend, tmp_path)
    from cryptography.fernet import Fernet

    context = GatewayContext(database, repositories(SecretBox(Fernet.generate_key())))
    return TestClient(build_app(context), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


@pytest.mark.parametrize("target", BACKENDS)
def test_round_trip_into_an_empty_database(api: TestClient, tmp_path: Path, target: str) -> None:
    populate(api)
    first = api.get("/api/v1/backup").json()
    assert first["format"] == "mcpctl-backup"
    assert first["version"] == 1
    server = next(i for i in first["items"] if i["metadata"]["name"] == "github")
    assert server["spec"] == {**FULL_SERVER["spec"]}  # every field, secrets as references
    assert all(i["kind"] != "Secret" for i in first["items"])
    assert "ghp_secret" not in json.dumps(first)

    (tmp_path / target).mkdir()
    empty = app_on(tmp_path / target, target)
    restored = empty.post("/api/v1/restore", content=json.dumps(first))
    assert restored.status_code == 200, restored.text
    assert restored.json()["restored"]["servers"] == {"created": 3}
    second = empty.get("/api/v1/backup").json()
    assert comparable(second) == comparable(first)
    dev = empty.get("/api/v1/projects/dev").json()["spec"]
    assert (dev["owner"], dev["servers"], dev["members"]) == (
        "alice@example.com",
        ["time", "github"],
        ["bob@example.com"],
    )


def test_unknown_owner_falls_back_to_the_system_user(api: TestClient) -> None:
    backup = {
        "format": "mcpctl-backup",
        "version": 1,
        "createdAt": "2026-01-01T00:00:00Z",
        "items": [
            {"kind": "Project", "metadata": {"name": "p"}, "spec": {"owner": "ghost@example.com"}}
        ],
    }
    assert api.post("/api/v1/restore", json=backup).status_code == 200
    assert api.get("/api/v1/projects/p").json()["spec"]["owner"] == "system@mcpctl.io"


def corruptions(good: dict[str, Any]) -> list[tuple[str, bytes]]:
    text = json.dumps(good)
    bad_item = {
        **good,
        "items": [
            *good["items"],
            {
                "kind": "Server",
                "metadata": {"name": "x"},
                "spec": {"image": "a", "url": "http://b"},
            },
        ],
    }
    dangling = {
        **good,
        "items": [
            *good["items"],
            {"kind": "Project", "metadata": {"name": "zz"}, "spec": {"servers": ["missing"]}},
        ],
    }
    return [
        ("truncated", text[: len(text) // 2].encode()),
        ("not json", b"\x00\x01garbage"),
        ("foreign", b'{"hello": "world"}'),
        ("future version", json.dumps({**good, "version": 99}).encode()),
        (
            "unknown kind",
            json.dumps(
                {**good, "items": [{"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}]}
            ).encode(),
        ),
        ("invalid item", json.dumps(bad_item).encode()),
        ("dangling reference", json.dumps(dangling).encode()),
    ]


def test_corrupt_backups_change_nothing(api: TestClient) -> None:
    populate(api)
    good = api.get("/api/v1/backup").json()
    # Change the database after the backup, so a partial restore would show.
    api.put(
        "/api/v1/servers/time", json={"metadata": {"name": "time"}, "spec": {"command": "other"}}
    )
    api.delete("/api/v1/projects/ops")
    before = comparable(api.get("/api/v1/backup").json())
    messages = {}
    for label, payload in corruptions(good):
        response = api.post("/api/v1/restore", content=payload)
        assert response.status_code == 422, label
        messages[label] = response.json()["message"]
        assert comparable(api.get("/api/v1/backup").json()) == before, label
    assert "not valid JSON" in messages["truncated"]
    assert "not an mcpctl backup" in messages["foreign"]
    assert "unsupported backup version 99" in messages["future version"]
    assert "unknown kind 'Pod'" in messages["unknown kind"]
    assert "Server 'x'" in messages["invalid item"] and "spec.url" in messages["invalid item"]
    assert "server 'missing' not found" in messages["dangling reference"]
