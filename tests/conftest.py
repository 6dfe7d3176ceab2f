"""Shared fixtures: a real database per test (SQLite and PostgreSQL) and the REST app on it,
`helm`; each test marked with its tier (the folder it is in: `pytest -m "not e2e"`)."""

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
from tests.helpers.chart import helm_path
from tests.helpers.postgres import postgres_url

ADMIN_TOKEN = "mcp_test-admin-token"
TIERS = ("unit", "integration", "static", "e2e", "cluster")  # folders of tests/, and markers


BACKENDS = ["sqlite", "postgresql"]


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries the marker of its tier, the folder below tests/ it is in."""
    root = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def helm() -> str:
    path = helm_path()
    if path is None:
        pytest.skip("helm not found: scripts/helm.sh installs it (`make test` runs it)")
    return path
