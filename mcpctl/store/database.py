"""Engine, migrations and transactions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL advisory lock key of mcpd's start-up ("mcpctl" in ASCII): one per database
STARTUP_LOCK = 0x6D6370637463


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (mcpd does this on every start)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Replicas that start together on a fresh PostgreSQL take turns to migrate and bootstrap:
    concurrent `CREATE TABLE`s of one schema fail all but one. A lock of the session, so a
    replica that dies holding it releases it with its connection."""
    if engine.dialect.name != "postgresql":
        yield  # SQLite: one mcpd per file
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK})
            connection.commit()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """A transaction that reads, then writes what it read decides. On SQLite it takes the
        write lock first: a reading transaction cannot become a writer once another one has
        written (SQLITE_BUSY at once, whatever the busy timeout), so it would fail instead of
        waiting its turn. PostgreSQL needs nothing (constraints decide there)."""
        with self._sessions.begin() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
