"""Databases of a test's own on the suite's PostgreSQL (scripts/postgres.sh), for what runs
outside the test process (mcpd processes, pods) and must not share the tests' database."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, make_url, text


def postgres_url() -> str:
    """The suite's PostgreSQL (MCPCTL_TEST_POSTGRES_URL); without it, the test is skipped."""
    url = os.environ.get("MCPCTL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MCPCTL_TEST_POSTGRES_URL is unset: run the suite with `make test`")
    return url


def _execute(statement: str) -> None:
    engine = create_engine(make_url(postgres_url()), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def own_database(name: str) -> str:
    """A fresh database `name` (an older one of that name dropped first); its URL."""
    drop_database(name)
    _execute(f"CREATE DATABASE {name}")
    return make_url(postgres_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    _execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
