"""The REST API on a real database (SQLite and PostgreSQL): CRUD, errors, auth, apply."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ADMIN_TOKEN

SERVER = {"metadata": {"name": "time"}, "spec": {"command": "uvx", "args": ["mcp-server-time"]}}


def create(api: TestClient, plural: str, doc: dict[str, Any], project: str | None = None) -> Any:
    path = f"/api/v1/projects/{project}/{plural}" if project else f"/api/v1/{plural}"
    response = api.post(path, json=doc)
    assert response.status_code == 201, response.text
    return response.json()


def member_client(api: TestClient, email: str) -> TestClient:
    create(api, "users", {"metadata": {"name": email}, "spec": {"role": "member"}})
    token = api.post(f"/api/v1/users/{email}/tokens", json={"name": "t"}).json()["token"]
    client = TestClient(api.app, headers={"Authorization": f"Bearer {token}"})
    return client


def test_server_crud(api: TestClient) -> None:
    created = create(api, "servers", SERVER)
    assert created["spec"]["replicas"] == 1
    assert created["status"] == {"replicas": 1, "ready": 0, "instances": []}
    listed = api.get("/api/v1/servers").json()
    assert [s["metadata"]["name"] for s in listed["items"]] == ["time"]
    changed = {**SERVER, "spec": {**SERVER["spec"], "replicas": 3}}
    response = api.put("/api/v1/servers/time", json=changed)
    assert (response.status_code, response.headers["Mcpctl-Outcome"]) == (200, "configured")
    assert api.get("/api/v1/servers/time").json()["spec"]["replicas"] == 3
    assert api.delete("/api/v1/servers/time").status_code == 204
    assert api.get("/api/v1/servers/time").status_code == 404


def test_put_is_an_idempotent_apply(api: TestClient) -> None:
    first = api.put("/api/v1/servers/time", json=SERVER)
    second = api.put("/api/v1/servers/time", json=SERVER)
    assert (first.status_code, first.headers["Mcpctl-Outcome"]) == (201, "created")
    assert (second.status_code, second.headers["Mcpctl-Outcome"]) == (200, "unchanged")
    # What GET returns (with status and timestamps) applies as a no-op too.
    echoed = api.put("/api/v1/servers/time", json=api.get("/api/v1/servers/time").json())
    assert echoed.headers["Mcpctl-Outcome"] == "unchanged"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"metadata": {"name": "Bad"}, "spec": {"command": "c"}}, "metadata.name"),
        ({"metadata": {"name": "a"}, "spec": {"command": "c", "transport": "sse"}}, "spec.port"),
        ({"metadata": {"name": "a"}, "spec": {"image": "i", "url": "http://u"}}, "spec.url"),
        ({"metadata": {"name": "a"}, "spec": {"package": "p"}}, "spec.runtime"),
        ({"metadata": {"name": "a"}, "spec": {"command": "c", "replicas": -2}}, "spec.replicas"),
        (
            {"metadata": {"name": "a"}, "spec": {"command": "c", "env": [{"name": "X"}]}},
            "spec.env.0.value",
        ),
        ({"kind": "Project", "metadata": {"name": "a"}, "spec": {"command": "c"}}, "kind"),
    ],
)
def test_invalid_server_is_422_naming_the_field(
    api: TestClient, doc: dict[str, Any], field: str
) -> None:
    response = api.post("/api/v1/servers", json=doc)
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == field
    assert body["message"].startswith(field)
    assert api.get("/api/v1/servers").json()["items"] == []


def test_errors_are_json(api: TestClient) -> None:
    create(api, "servers", SERVER)
    conflict = api.post("/api/v1/servers", json=SERVER)
    assert conflict.status_code == 409
    assert conflict.json()["message"] == "server 'time' already exists"
    missing = api.get("/api/v1/projects/nope")
    assert (missing.status_code, missing.json()["message"]) == (404, "project 'nope' not found")
    garbage = api.post("/api/v1/servers", content=b"{not json")
    assert garbage.status_code == 400
    assert "not valid JSON" in garbage.json()["message"]
    mismatch = api.put("/api/v1/servers/other", json=SERVER)
    assert (mismatch.status_code, mismatch.json()["field"]) == (422, "metadata.name")


def test_project_members_must_exist(api: TestClient) -> None:
    create(api, "servers", SERVER)
    doc = {"metadata": {"name": "p"}, "spec": {"servers": ["time", "ghost"]}}
    response = api.post("/api/v1/projects", json=doc)
    assert (response.status_code, response.json()["field"]) == (422, "spec.servers.1")
    doc = {"metadata": {"name": "p"}, "spec": {"servers": ["time"], "members": ["x@example.com"]}}
    response = api.post("/api/v1/projects", json=doc)
    assert (response.status_code, response.json()["field"]) == (422, "spec.members.0")
    created = create(api, "projects", {"metadata": {"name": "p"}, "spec": {"servers": ["time"]}})
    assert created["spec"]["owner"] == "system@mcpctl.io"
    # Deleting a server removes it from its projects.
    api.delete("/api/v1/servers/time")
    assert api.get("/api/v1/projects/p").json()["spec"]["servers"] == []


def test_prompts_live_in_projects(api: TestClient) -> None:
    create(api, "projects", {"metadata": {"name": "p"}, "spec": {}})
    prompt = {
        "metadata": {"name": "greet"},
        "spec": {"text": "Hi {name}", "arguments": [{"name": "name"}]},
    }
    created = create(api, "prompts", prompt, project="p")
    assert created["metadata"]["project"] == "p"
    assert api.get("/api/v1/prompts").json()["items"][0]["metadata"]["name"] == "greet"
    assert api.post("/api/v1/projects/nope/prompts", json=prompt).status_code == 422
    api.delete("/api/v1/projects/p")
    assert api.get("/api/v1/prompts").json()["items"] == []


def test_template_instantiation(api: TestClient) -> None:
    template = {
        "metadata": {"name": "fetch"},
        "spec": {
            "parameters": [{"name": "pkg"}],
            "server": {"package": "${pkg}", "runtime": "python", "replicas": 2},
        },
    }
    create(api, "templates", template)
    made = api.post(
        "/api/v1/templates/fetch/instantiate",
        json={"name": "f1", "parameters": {"pkg": "mcp-server-fetch"}},
    )
    assert made.status_code == 201
    assert made.json()["spec"]["package"] == "mcp-server-fetch"
    missing = api.post("/api/v1/templates/fetch/instantiate", json={"name": "f2"})
    assert (missing.status_code, missing.json()["field"]) == (422, "parameters.pkg")
    again = api.post(
        "/api/v1/templates/fetch/instantiate", json={"name": "f1", "parameters": {"pkg": "x"}}
    )
    assert again.status_code == 409


def test_secrets_are_never_returned(api: TestClient) -> None:
    doc = {"metadata": {"name": "gh"}, "spec": {"data": {"token": "s3cr3t-value"}}}
    created = api.post("/api/v1/secrets", json=doc)
    assert created.json()["spec"]["data"] == {"token": None}
    assert "s3cr3t-value" not in api.get("/api/v1/secrets").text
    assert "s3cr3t-value" not in api.get("/api/v1/backup").text
    # Echoing the secret back (values null) keeps the values; a new key needs one.
    echoed = api.put("/api/v1/secrets/gh", json=api.get("/api/v1/secrets/gh").json())
    assert echoed.headers["Mcpctl-Outcome"] == "unchanged"
    bad = api.put(
        "/api/v1/secrets/gh", json={"metadata": {"name": "gh"}, "spec": {"data": {"new": None}}}
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "spec.data.new")


def test_authentication(api: TestClient) -> None:
    anonymous = TestClient(api.app)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").json() == {"status": "ok"}
    response = anonymous.get("/api/v1/servers")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    wrong = TestClient(api.app, headers={"Authorization": "Bearer mcp_wrong"})
    refused = wrong.get("/api/v1/servers")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == (  # RFC 6750
        'Bearer error="invalid_token", error_description="invalid or expired token"'
    )
    malformed = TestClient(api.app, headers={"Authorization": ADMIN_TOKEN})
    assert malformed.get("/api/v1/servers").status_code == 401


def test_members_see_only_their_projects(api: TestClient) -> None:
    create(api, "servers", SERVER)
    alice = member_client(api, "alice@example.com")
    member_client(api, "bob@example.com")
    create(
        api,
        "projects",
        {
            "metadata": {"name": "mine"},
            "spec": {"members": ["alice@example.com"], "servers": ["time"]},
        },
    )
    create(api, "projects", {"metadata": {"name": "theirs"}, "spec": {"owner": "bob@example.com"}})
    assert [p["metadata"]["name"] for p in alice.get("/api/v1/projects").json()["items"]] == [
        "mine"
    ]
    assert alice.get("/api/v1/projects/theirs").status_code == 404
    assert alice.get("/api/v1/servers").status_code == 403
    assert (
        alice.post("/api/v1/servers", json={**SERVER, "metadata": {"name": "x"}}).status_code == 403
    )
    assert alice.delete("/api/v1/projects/mine").status_code == 403
    assert alice.get("/api/v1/users/bob@example.com/tokens").status_code == 403
    assert alice.get("/api/v1/whoami").json() == {
        "email": "alice@example.com",
        "role": "member",
        "groups": [],
    }


def test_members_manage_their_own_prompts(api: TestClient) -> None:
    alice = member_client(api, "alice@example.com")
    create(
        api, "projects", {"metadata": {"name": "mine"}, "spec": {"members": ["alice@example.com"]}}
    )
    create(api, "projects", {"metadata": {"name": "other"}, "spec": {}})
    prompt = {"metadata": {"name": "p1"}, "spec": {"text": "hello"}}
    made = alice.post("/api/v1/projects/mine/prompts", json=prompt)
    assert made.status_code == 201
    assert made.json()["spec"]["owner"] == "alice@example.com"
    # A project she is not in answers exactly like a missing one, whatever she does with it.
    for path in ("other", "missing"):
        posted = alice.post(f"/api/v1/projects/{path}/prompts", json=prompt)
        listed = alice.get(f"/api/v1/projects/{path}/prompts")
        read = alice.get(f"/api/v1/projects/{path}/prompts/p1")
        project = alice.get(f"/api/v1/projects/{path}")
        for answer in (posted, listed, read, project):
            assert answer.status_code == 404, answer.text
            assert answer.json()["message"] == f"project {path!r} not found"
    create(api, "prompts", {"metadata": {"name": "admins"}, "spec": {"text": "x"}}, project="mine")
    assert alice.delete("/api/v1/projects/mine/prompts/admins").status_code == 403
    assert alice.delete("/api/v1/projects/mine/prompts/p1").status_code == 204
    forged = {"metadata": {"name": "p2"}, "spec": {"text": "x", "owner": "system@mcpctl.io"}}
    assert alice.post("/api/v1/projects/mine/prompts", json=forged).status_code == 403


def test_tokens_are_listed_without_secrets_and_can_be_revoked(api: TestClient) -> None:
    alice = member_client(api, "alice@example.com")
    listed = api.get("/api/v1/users/alice@example.com/tokens").json()["items"]
    assert len(listed) == 1
    assert "token" not in listed[0] or listed[0]["token"] is None
    assert alice.get("/api/v1/whoami").status_code == 200
    assert (
        api.delete(f"/api/v1/users/alice@example.com/tokens/{listed[0]['id']}").status_code == 204
    )
    assert alice.get("/api/v1/whoami").status_code == 401


def test_expired_token_is_refused(api: TestClient) -> None:
    create(api, "users", {"metadata": {"name": "old@example.com"}, "spec": {}})
    body = {"name": "old", "expiresAt": "2000-01-01T00:00:00Z"}
    token = api.post("/api/v1/users/old@example.com/tokens", json=body).json()["token"]
    old = TestClient(api.app, headers={"Authorization": f"Bearer {token}"})
    assert old.get("/api/v1/whoami").status_code == 401


def test_deleting_a_user_hands_their_projects_to_the_system_user(api: TestClient) -> None:
    create(api, "users", {"metadata": {"name": "gone@example.com"}, "spec": {}})
    create(api, "projects", {"metadata": {"name": "p"}, "spec": {"owner": "gone@example.com"}})
    assert api.delete("/api/v1/users/gone@example.com").status_code == 204
    assert api.get("/api/v1/projects/p").json()["spec"]["owner"] == "system@mcpctl.io"
    assert api.delete("/api/v1/users/system@mcpctl.io").status_code == 409


def test_openapi_matches_the_routes(api: TestClient) -> None:
    spec = api.get("/api/v1/openapi.json").json()
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    routed = {
        (route.path, method)
        for route in api.app.routes
        for method in (route.methods or ())
        if method != "HEAD" and not route.path.startswith(("/mcp", "/metrics", "/.well-known/"))
    }
    assert documented == routed - {("/api/v1/openapi.json", "GET")}
    assert "/api/v1/servers/{name}" in spec["paths"]
    schema = spec["components"]["schemas"]
    assert "ServerSpec" in schema


def test_changing_project_membership_is_an_update(api: TestClient) -> None:
    create(api, "servers", SERVER)
    first = create(api, "projects", {"metadata": {"name": "p"}, "spec": {}})
    response = api.put(
        "/api/v1/projects/p", json={"metadata": {"name": "p"}, "spec": {"servers": ["time"]}}
    )
    assert response.headers["Mcpctl-Outcome"] == "configured"
    assert response.json()["metadata"]["updatedAt"] > first["metadata"]["updatedAt"]
    again = api.put(
        "/api/v1/projects/p", json={"metadata": {"name": "p"}, "spec": {"servers": ["time"]}}
    )
    assert again.headers["Mcpctl-Outcome"] == "unchanged"
