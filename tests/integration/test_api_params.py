"""Every path and query parameter of the REST API is parsed one way (gateway/api/params.py):
what is not a valid value is a 422 naming the parameter, on SQLite and PostgreSQL, never a
500 and never a number read some other way (`²`, `١٢`, `+1`, ` 1`, `1e3`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from mcpctl.models.instance import Instance, InstanceStatus
from mcpctl.store.database import Database
from mcpctl.store.repositories.instances import record
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_api import create

# Not whole numbers in the digits 0-9, or out of every range: `str.isdigit` accepts the first
# two (and `int()` only the second), `int()` accepts the next four.
NOT_NUMBERS = [
    "²",
    "\u0661\u0662",  # 12 in Arabic-Indic digits
    " 1",
    "+1",
    "1_000",
    "1.0",
    "1e3",
    "-1",
    "0x10",
    "99999999999999999999",
    "9" * 5000,
    "\x00",
    "1\x00",
]
NOT_NAMES = ["\x00", "a\x00b", "Bad_Name", "x" * 300, "\u202eevil", "é"]


class Logs:
    """A runtime that serves an instance's output and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, bool, int | None]] = []

    def logs(
        self, server: str, replica: int, pod: str | None, follow: bool, tail: int | None
    ) -> AsyncIterator[str]:
        self.asked.append((server, replica, follow, tail))

        async def lines() -> AsyncIterator[str]:
            yield "a line\n"

        return lines()


@pytest.fixture
def lenient(api: TestClient) -> Iterator[TestClient]:
    """The app of `api` answering a server error as a 500 instead of raising it."""
    with TestClient(
        api.app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, raise_server_exceptions=False
    ) as client:
        yield client


@pytest.fixture
def logs(api: TestClient, database: Database) -> Logs:
    """Server `time` with a running replica 0, and a runtime serving its logs."""
    create(api, "servers", {"metadata": {"name": "time"}, "spec": {"command": "uvx"}})
    with database.transaction() as session:
        record(session, Instance(server="time", replica=0, status=InstanceStatus.RUNNING))
    runtime = Logs()
    api.app.state.runtime = runtime
    return runtime


def refused(response: Any, parameter: str) -> None:
    assert response.status_code == 422, (parameter, response.status_code, response.text)
    body = response.json()
    assert body["field"] == parameter, body
    assert body["message"].startswith(f"{parameter}: "), body


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_audit_limit_is_a_whole_number_or_a_422(lenient: TestClient, value: str) -> None:
    for extra in ({}, {"format": "jsonl"}):
        refused(lenient.get("/api/v1/audit", params={"limit": value, **extra}), "limit")


def test_audit_limit_ranges(api: TestClient) -> None:
    assert api.get("/api/v1/audit", params={"limit": "1"}).status_code == 200
    assert api.get("/api/v1/audit", params={"limit": "10000"}).status_code == 200
    refused(api.get("/api/v1/audit", params={"limit": "0"}), "limit")
    refused(api.get("/api/v1/audit", params={"limit": "10001"}), "limit")
    jsonl = api.get("/api/v1/audit", params={"limit": "1000000", "format": "jsonl"})
    assert jsonl.status_code == 200
    refused(api.get("/api/v1/audit?limit=1&limit=2"), "limit")  # which one?
    assert api.get("/api/v1/audit?limit=").status_code == 200  # empty: not given


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_instance_logs_tail_is_a_whole_number_or_a_422(
    lenient: TestClient, logs: Logs, value: str
) -> None:
    refused(lenient.get("/api/v1/instances/time-0/logs", params={"tail": value}), "tail")
    assert logs.asked == []


def test_instance_logs_get_what_was_asked(api: TestClient, logs: Logs) -> None:
    shown = api.get("/api/v1/instances/time-0/logs", params={"tail": "5", "follow": "true"})
    assert shown.status_code == 200 and shown.text == "a line\n"
    assert api.get("/api/v1/instances/time-0/logs").status_code == 200
    assert logs.asked == [("time", 0, True, 5), ("time", 0, False, None)]
    refused(api.get("/api/v1/instances/time-0/logs", params={"follow": "perhaps"}), "follow")
    refused(api.get("/api/v1/instances/time-0/logs", params={"tail": "1000001"}), "tail")


@pytest.mark.parametrize("replica", NOT_NUMBERS)
def test_an_instance_name_ends_in_a_whole_number_or_is_a_422(
    lenient: TestClient, logs: Logs, replica: str
) -> None:
    path = f"/api/v1/instances/{quote('time-' + replica, safe='')}"
    refused(lenient.get(path), "name")
    refused(lenient.get(path + "/logs"), "name")
    refused(lenient.delete(path), "name")
    assert lenient.get("/api/v1/instances/time-0").status_code == 200  # still there


def test_a_history_window_is_in_the_digits_0_9(api: TestClient) -> None:
    for value in ("\u0661\u0662h", "²h", " 1h", "+1h"):
        refused(api.get("/api/v1/analytics/history", params={"window": value}), "window")


@pytest.mark.parametrize(
    "value", ["\u0661\u0662h", "²h", " 1h", "+1h", "1e3s", "\u0662\u0660\u0662\u0664-01-01", "\x00"]
)
def test_audit_times_are_durations_or_iso_times(lenient: TestClient, value: str) -> None:
    for parameter in ("since", "until"):
        refused(lenient.get("/api/v1/audit", params={parameter: value}), parameter)
        refused(lenient.get("/api/v1/audit/summary", params={parameter: value}), parameter)


def test_audit_times_that_are_valid_are_read(api: TestClient) -> None:
    for since in ("30m", "7d", "2024-01-01T00:00:00Z", "2024-01-01"):
        assert api.get("/api/v1/audit", params={"since": since}).status_code == 200, since


@pytest.mark.parametrize("value", ["\x00", "a\x00", "x" * 321, "\x1b[31m"])
def test_audit_filters_are_plain_text(lenient: TestClient, value: str) -> None:
    for parameter in ("user", "project", "server"):
        refused(lenient.get("/api/v1/audit", params={parameter: value}), parameter)


@pytest.mark.parametrize("value", NOT_NAMES)
def test_names_in_paths_are_names_or_a_422(lenient: TestClient, value: str) -> None:
    name = quote(value, safe="")
    for path in ("servers", "projects", "secrets", "templates"):
        refused(lenient.get(f"/api/v1/{path}/{name}"), "name")
        refused(lenient.delete(f"/api/v1/{path}/{name}"), "name")
    refused(lenient.get(f"/api/v1/projects/{name}/prompts"), "project")
    refused(lenient.get(f"/api/v1/projects/{name}/prompts/hello"), "project")
    refused(lenient.get(f"/api/v1/projects/home/prompts/{name}"), "name")
    refused(lenient.post(f"/api/v1/templates/{name}/instantiate", json={}), "name")
    refused(lenient.get("/api/v1/instances", params={"server": value}), "server")
    refused(lenient.get("/api/v1/analytics/history", params={"server": value}), "server")


@pytest.mark.parametrize("value", ["\x00", "not-an-email", "a@b@c"])
def test_users_in_paths_are_emails_or_a_422(lenient: TestClient, value: str) -> None:
    email = quote(value, safe="")
    refused(lenient.get(f"/api/v1/users/{email}"), "name")
    refused(lenient.delete(f"/api/v1/users/{email}"), "name")
    refused(lenient.get(f"/api/v1/users/{email}/tokens"), "name")
    refused(lenient.delete(f"/api/v1/users/admin@example.com/tokens/{email}"), "token")


def test_an_unknown_token_id_is_a_404(api: TestClient) -> None:
    create(api, "users", {"metadata": {"name": "alice@example.com"}, "spec": {}})
    token = api.post("/api/v1/users/alice@example.com/tokens", json={"name": "t"}).json()
    gone = "/api/v1/users/Alice@Example.com/tokens/" + token["id"].upper()  # one id
    assert api.delete(gone).status_code == 204
    assert api.delete(gone).status_code == 404


def test_the_openapi_document_describes_the_parameters(api: TestClient) -> None:
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    limit = next(p for p in paths["/api/v1/audit"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["type"] == "integer" and limit["schema"]["minimum"] == 1
    logs = paths["/api/v1/instances/{name}/logs"]["get"]["parameters"]
    assert [(p["name"], p["in"]) for p in logs] == [
        ("name", "path"),
        ("follow", "query"),
        ("tail", "query"),
    ]
    assert "422" in paths["/api/v1/audit"]["get"]["responses"]
