"""Shared fixtures: a real database per test (SQLite and PostgreSQL) and the REST app on it."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from starlette.testclient import TestClient

from mcpctl.gateway.app import build_app
from mcpctl.gateway.context import GatewayContext
from mcpctl.store import tokens
from mcpctl.store.database import Database, migrate
from mcpctl.store.repositories import repositories
from mcpctl.store.secretbox import SecretBox

ADMIN_TOKEN = "mcp_test-admin-token"


def exited(pid: int) -> bool:
    """The process has exited (a zombie its parent has not reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


BACKENDS = ["sqlite", "postgresql"]


def postgres_url() -> str:
    url = os.environ.get("MCPCTL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MCPCTL_TEST_POSTGRES_URL is unset: run the suite with `make test`")
    return url


def fresh_database(backend: str, tmp_path: os.PathLike[str]) -> Database:
    if backend == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/mcpd.db")
    else:
        database = Database(postgres_url())
        with database.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    migrate(database.engine)
    with database.transaction() as session:
        tokens.bootstrap(session, ADMIN_TOKEN)
    return database


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[Database]:
    db = fresh_database(request.param, tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def context(database: Database) -> GatewayContext:
    return GatewayContext(database, repositories(SecretBox(Fernet.generate_key())))


@pytest.fixture
def api(context: GatewayContext) -> Iterator[TestClient]:
    with TestClient(
        build_app(context), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as client:
        yield client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each phase's report on the test item (`report_setup`, `report_call`): a fixture's
    teardown can tell whether its test failed, and explain why."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
