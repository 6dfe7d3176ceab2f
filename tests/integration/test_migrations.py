"""The Alembic migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, make_url, select, text

from mcpctl.daemon.main import open_database
from mcpctl.daemon.settings import Settings
from mcpctl.store.database import MIGRATIONS, Database, migrate
from mcpctl.store.tables import Base, TokenRow, UserRow
from tests.conftest import ADMIN_TOKEN
from tests.helpers.postgres import postgres_url

# The newest revision: the file name with the highest number (each revises the one before).
HEAD = max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrating_twice_is_a_no_op(database: Database) -> None:
    migrate(database.engine)
    with database.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == HEAD


def start_replica(url: str, data_dir: str, barrier: Any) -> None:
    """What an mcpd replica does first: migrate the store and bootstrap the admin."""
    settings = Settings(database_url=url, data_dir=Path(data_dir), admin_token=ADMIN_TOKEN)
    barrier.wait()
    database, _ = open_database(settings)
    database.dispose()


@pytest.mark.postgres
def test_replicas_starting_together_on_a_fresh_postgresql_all_start(tmp_path: Path) -> None:
    """A fresh `helm install` starts its gateway replicas at once: without the start-up lock
    all but one failed on concurrent CREATE TABLEs and restarted."""
    base = make_url(postgres_url())
    name = f"mcpctl_replicas_{uuid.uuid4().hex[:8]}"
    server = create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        spawn = multiprocessing.get_context("spawn")  # not a fork of a process running Ray
        barrier = spawn.Barrier(3)
        replicas = [
            spawn.Process(target=start_replica, args=(url, str(tmp_path / str(i)), barrier))
            for i in range(3)
        ]
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.join(120)
        assert [r.exitcode for r in replicas] == [0, 0, 0]
        database = Database(url)
        with database.engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == HEAD
        with database.transaction() as session:
            assert session.scalar(select(func.count()).select_from(UserRow)) == 1
            assert session.scalar(select(func.count()).select_from(TokenRow)) == 1
        database.dispose()
    finally:
        with server.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()
