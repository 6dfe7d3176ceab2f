"""Store and API edge cases on a real database (SQLite and PostgreSQL): each is a 4xx, never a
500 — concurrent creates of one name, the built-in system user, emails in any case, history
windows."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from mcpctl.backup.history import history
from mcpctl.models.instance import EventKind, InstanceEvent
from mcpctl.models.user import SYSTEM_USER_EMAIL
from mcpctl.store.database import Database
from mcpctl.store.repositories.events import events_between, events_for_window, record_event
from mcpctl.store.tables import InstanceEventRow
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_api import create, member_client

CLIENTS = 20

# One document per kind, written to the same name by every client; `n` varies a field so that
# the clients that do not create it really update it.
DOCUMENTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "servers": lambda n: {
        "metadata": {"name": "time"},
        "spec": {"command": "uvx", "description": f"writer {n}"},
    },
    "users": lambda n: {
        "metadata": {"name": "alice@example.com"},
        "spec": {"displayName": f"writer {n}"},
    },
    "projects": lambda n: {"metadata": {"name": "p"}, "spec": {"description": f"writer {n}"}},
    "secrets": lambda n: {"metadata": {"name": "s"}, "spec": {"data": {"key": f"writer {n}"}}},
    "templates": lambda n: {
        "metadata": {"name": "t"},
        "spec": {"description": f"writer {n}", "server": {"command": "uvx"}},
    },
    "prompts": lambda n: {"metadata": {"name": "hello"}, "spec": {"text": f"writer {n}"}},
}


def collection(plural: str) -> str:
    return "/api/v1/projects/home/prompts" if plural == "prompts" else f"/api/v1/{plural}"


@pytest.fixture
def lenient(api: TestClient) -> Iterator[TestClient]:
    """A client of the same app that answers a server error as a 500 instead of raising."""
    with TestClient(
        api.app,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        raise_server_exceptions=False,
    ) as client:
        yield client


def all_at_once(request: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`request(n)` from CLIENTS threads released together."""
    barrier = threading.Barrier(CLIENTS)
    responses: list[httpx.Response | None] = [None] * CLIENTS

    def client(n: int) -> None:
        barrier.wait()
        responses[n] = request(n)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(response is not None for response in responses)
    return [response for response in responses if response is not None]


@pytest.mark.parametrize("plural", list(DOCUMENTS))
def test_concurrent_creates_of_one_name_one_wins_the_others_409(
    lenient: TestClient, plural: str
) -> None:
    if plural == "prompts":
        create(lenient, "projects", {"metadata": {"name": "home"}, "spec": {}})
    path = collection(plural)
    responses = all_at_once(lambda n: lenient.post(path, json=DOCUMENTS[plural](n)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: CLIENTS - 1}, [r.text for r in responses]
    assert all("already exists" in r.json()["message"] for r in responses if r.status_code == 409)
    listed = lenient.get(path).json()["items"]
    assert len(listed) == (2 if plural == "users" else 1)  # users: and the system user


@pytest.mark.parametrize("plural", list(DOCUMENTS))
def test_concurrent_puts_of_one_name_one_creates_the_others_update(
    lenient: TestClient, plural: str
) -> None:
    if plural == "prompts":
        create(lenient, "projects", {"metadata": {"name": "home"}, "spec": {}})
    document = DOCUMENTS[plural]
    item = f"{collection(plural)}/{document(0)['metadata']['name']}"
    responses = all_at_once(lambda n: lenient.put(item, json=document(n)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 200: CLIENTS - 1}, [r.text for r in responses]
    outcomes = Counter(response.headers["Mcpctl-Outcome"] for response in responses)
    assert outcomes["created"] == 1
    assert outcomes["created"] + outcomes["configured"] + outcomes["unchanged"] == CLIENTS
    assert lenient.get(item).status_code == 200


@pytest.mark.parametrize("plural", list(DOCUMENTS))
def test_concurrent_deletes_of_one_name_one_204_the_others_404(
    lenient: TestClient, plural: str
) -> None:
    if plural == "prompts":
        create(lenient, "projects", {"metadata": {"name": "home"}, "spec": {}})
    document = DOCUMENTS[plural](0)
    assert lenient.post(collection(plural), json=document).status_code == 201
    item = f"{collection(plural)}/{document['metadata']['name']}"
    responses = all_at_once(lambda n: lenient.delete(item))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {204: 1, 404: CLIENTS - 1}, [r.text for r in responses]
    assert lenient.get(item).status_code == 404


@pytest.mark.parametrize("plural", ["servers", "projects", "users"])
def test_puts_racing_deletes_of_one_name_are_never_a_500(lenient: TestClient, plural: str) -> None:
    document = DOCUMENTS[plural]
    item = f"{collection(plural)}/{document(0)['metadata']['name']}"

    def put_or_delete(n: int) -> httpx.Response:
        return lenient.delete(item) if n % 2 else lenient.put(item, json=document(n))

    for _ in range(3):
        assert lenient.put(item, json=document(0)).status_code in (200, 201)
        responses = all_at_once(put_or_delete)
        statuses = Counter(response.status_code for response in responses)
        assert set(statuses) <= {200, 201, 204, 404, 409}, [r.text for r in responses]
        assert statuses[204] >= 1


# The built-in system user -------------------------------------------------------------------


def test_the_system_user_cannot_be_demoted(api: TestClient) -> None:
    item = f"/api/v1/users/{SYSTEM_USER_EMAIL}"
    document = api.get(item).json()
    document["spec"]["role"] = "member"
    response = api.put(item, json=document)
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "spec.role"
    assert "system user" in response.json()["message"]
    # Spelled otherwise, it is still the system user.
    shouted = {**document, "metadata": {"name": SYSTEM_USER_EMAIL.upper()}}
    assert api.put(f"/api/v1/users/{SYSTEM_USER_EMAIL.upper()}", json=shouted).status_code == 409
    assert api.get(item).json()["spec"]["role"] == "admin"
    assert api.get("/api/v1/whoami").json() == {
        "email": SYSTEM_USER_EMAIL,
        "role": "admin",
        "groups": [],
    }
    # What does not demote it is allowed.
    document["spec"] = {"role": "admin", "displayName": "the system"}
    assert api.put(item, json=document).status_code == 200


@pytest.mark.parametrize("name", [SYSTEM_USER_EMAIL, "System@MCPCTL.io"])
def test_the_system_user_cannot_be_deleted(api: TestClient, name: str) -> None:
    response = api.delete(f"/api/v1/users/{name}")
    assert response.status_code == 409, response.text
    assert "system user" in response.json()["message"]
    assert api.get(f"/api/v1/users/{SYSTEM_USER_EMAIL}").status_code == 200


def test_a_restore_cannot_demote_the_system_user_and_changes_nothing(api: TestClient) -> None:
    backup = {
        "format": "mcpctl-backup",
        "version": 1,
        "createdAt": "2026-03-01T10:00:00Z",
        "items": [
            {"kind": "User", "metadata": {"name": "bob@example.com"}, "spec": {}},
            {"kind": "Server", "metadata": {"name": "time"}, "spec": {"command": "uvx"}},
            {
                "kind": "User",
                "metadata": {"name": SYSTEM_USER_EMAIL.title()},
                "spec": {"role": "member"},
            },
        ],
    }
    response = api.post("/api/v1/restore", json=backup)
    assert response.status_code == 409, response.text
    assert "system user" in response.json()["message"]
    # One transaction: nothing of the backup was kept.
    assert api.get("/api/v1/servers").json()["items"] == []
    users = api.get("/api/v1/users").json()["items"]
    assert [(u["metadata"]["name"], u["spec"]["role"]) for u in users] == [
        (SYSTEM_USER_EMAIL, "admin")
    ]


# Emails -------------------------------------------------------------------------------------


def test_emails_are_one_user_however_they_are_written(api: TestClient) -> None:
    user = create(api, "users", {"metadata": {"name": " Alice@Example.COM "}, "spec": {}})
    assert user["metadata"]["name"] == "alice@example.com"
    again = api.post("/api/v1/users", json={"metadata": {"name": "ALICE@example.com"}, "spec": {}})
    assert again.status_code == 409
    assert api.get("/api/v1/users/aLiCe@EXAMPLE.com").json()["metadata"]["name"] == (
        "alice@example.com"
    )
    project = create(
        api,
        "projects",
        {
            "metadata": {"name": "p"},
            "spec": {"owner": "ALICE@EXAMPLE.COM", "members": ["Alice@example.com "]},
        },
    )
    assert project["spec"]["owner"] == "alice@example.com"
    assert project["spec"]["members"] == ["alice@example.com"]
    prompt = {"metadata": {"name": "hi"}, "spec": {"text": "hi", "owner": "Alice@Example.com"}}
    assert create(api, "prompts", prompt, project="p")["spec"]["owner"] == "alice@example.com"
    # Tokens under any spelling belong to the one user, who is a member of the project.
    token = api.post("/api/v1/users/ALICE@example.COM/tokens", json={"name": "t"}).json()
    assert token["user"] == "alice@example.com"
    alice = TestClient(api.app, headers={"Authorization": f"Bearer {token['token']}"})
    assert alice.get("/api/v1/whoami").json()["email"] == "alice@example.com"
    assert alice.get("/api/v1/projects/p").status_code == 200
    assert alice.get("/api/v1/users/Alice@Example.com/tokens").status_code == 200
    mine = {"metadata": {"name": "mine"}, "spec": {"text": "x", "owner": "ALICE@example.com"}}
    made = alice.post("/api/v1/projects/p/prompts", json=mine)
    assert made.status_code == 201, made.text
    assert api.delete("/api/v1/users/Alice@EXAMPLE.com").status_code == 204
    assert api.get("/api/v1/users/alice@example.com").status_code == 404


def test_a_member_added_in_another_case_reads_the_project(api: TestClient) -> None:
    bob = member_client(api, "bob@example.com")
    create(api, "projects", {"metadata": {"name": "p"}, "spec": {"members": ["BOB@Example.com"]}})
    assert bob.get("/api/v1/projects/p").status_code == 200


# History ------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["99999999999999999999d", "999999999d", "3651d"])
def test_a_huge_history_window_is_422_naming_the_field(api: TestClient, window: str) -> None:
    response = api.get("/api/v1/analytics/history", params={"window": window})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "window"
    assert "at most 3650d" in response.json()["message"]


def fill_history(database: Database, now: datetime) -> None:
    """A replica that crashed and restarted every two hours for ten days, and one stopped long
    ago: 362 events."""
    with database.transaction() as session:
        for hours in range(240, 0, -2):
            at = now - timedelta(hours=hours)
            for offset, kind in enumerate((EventKind.STARTED, EventKind.READY, EventKind.CRASHED)):
                record_event(
                    session,
                    InstanceEvent(
                        server="flaky",
                        replica=0,
                        kind=kind,
                        reason="exit 1" if kind is EventKind.CRASHED else None,
                        at=at + timedelta(minutes=10 * offset),
                    ),
                )
        for days, kind in ((60, EventKind.READY), (40, EventKind.STOPPED)):
            record_event(
                session,
                InstanceEvent(server="idle", replica=1, kind=kind, at=now - timedelta(days=days)),
            )


def test_history_reads_only_the_events_of_its_window(api: TestClient, database: Database) -> None:
    fill_history(database, datetime.now(UTC))
    loaded: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(target)

    event.listen(InstanceEventRow, "load", on_load)
    try:
        response = api.get("/api/v1/analytics/history", params={"window": "2h"})
    finally:
        event.remove(InstanceEventRow, "load", on_load)
    assert response.status_code == 200, response.text
    servers = {row["server"]: row for row in response.json()["servers"]}
    assert servers["flaky"]["restarts"] == 1
    # The 2 events of the window plus each replica's last one before it, not all 362.
    assert len(loaded) == 4, len(loaded)


@pytest.mark.parametrize("server", [None, "flaky", "idle"])
def test_history_of_the_window_equals_history_of_everything(
    database: Database, server: str | None
) -> None:
    now = datetime.now(UTC)
    fill_history(database, now)
    for window in (timedelta(minutes=30), timedelta(hours=5), timedelta(days=15)):
        start = now - window
        with database.transaction() as session:
            needed = events_for_window(session, start, now, server)
            everything = events_between(session, datetime(1970, 1, 1, tzinfo=UTC), now, server)
        assert {(e.server, e.replica, e.at) for e in needed} <= {
            (e.server, e.replica, e.at) for e in everything
        }
        assert history(needed, start, now) == history(everything, start, now)
