"""SQLAlchemy tables. Specs are stored as JSON documents; what is joined or unique is a column.

Text that comes from outside mcpd (requests, servers' output, identity providers' claims) is in
columns of type SafeText or SafeJSON: NUL and lone surrogates, which PostgreSQL (and, for
surrogates, either database's driver) refuses, are stored as their Python escapes, so no such
value can fail a write, or a lookup, on either database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from mcpctl.models.base import UNSTORABLE, unstorable_in


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def storable(text: str) -> str:
    """`text` as both databases store it: each NUL becomes the four characters `\\x00`, each
    lone surrogate its six-character escape (`\\ud800`); everything else is kept as it is."""
    if text.isascii():  # the usual case: one scan at C speed
        return text.replace("\x00", "\\x00")
    return UNSTORABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    return "\\x00" if character == "\x00" else f"\\u{ord(character):04x}"


def storable_json(value: Any) -> Any:
    """A JSON document with `storable` applied to every string, keys included (PostgreSQL's
    JSONB refuses `\\u0000` and lone surrogates); the document itself when nothing needs it."""
    if unstorable_in(value) is None:
        return value
    return _storable_json(value)


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {_storable_json(k): _storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_json(item) for item in value]
    return value


class SafeText(TypeDecorator[str]):
    """A string column for text from outside mcpd. Written and compared as `storable` makes it
    (a lookup by a name with a NUL finds nothing instead of failing); with `cut`, written cut to
    the column's length (or to `most` for unbounded text), as a record of what was seen should
    be. Identifying columns (names, emails) are never cut: two names would become one. Read
    back escaped too, so rows written before this type cannot reach a reader unescaped."""

    impl: TypeEngine[Any] | type[TypeEngine[Any]] = String
    cache_ok = True

    def __init__(self, length: int | None = None, *, cut: bool = True, most: int | None = None):
        super().__init__(length)
        if length is None:  # unbounded: TEXT, as the columns were before this type
            self.impl = Text()
        self.length = length
        self.cut = cut
        self.most = most if most is not None else length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        value = storable(value)
        return value[: self.most] if self.cut and self.most is not None else value

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        """process_bind_param as one function per value (the audit writes a dozen per row):
        TypeDecorator's own wrapper costs a second call each."""
        most = self.most if self.cut else None
        escape, sub = _escape, UNSTORABLE.sub
        then = self.impl_instance.bind_processor(dialect)  # None for strings on both drivers

        def process(value: Any) -> str | None:
            if value is None:
                return None
            value = value.replace("\x00", "\\x00") if value.isascii() else sub(escape, value)
            return value if most is None else value[:most]

        if then is None:
            return process
        return lambda value: then(process(value))


LONG_TEXT = 4000  # characters kept of unbounded text from outside (a server's stderr)


class SafeJSON(TypeDecorator[Any]):
    """A JSON document (JSONB on PostgreSQL) whose strings may come from outside mcpd: written
    and read as `storable_json` makes it."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return storable_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return storable_json(value)


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UserRow(Timestamps, Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(SafeText(320, cut=False), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    tokens: Mapped[list[TokenRow]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class IdentityRow(Base):
    """An OpenID provider's account (issuer + subject) bound to the user it created or claimed
    on first sight: later tokens of that account are that user whatever their email says, and
    no other account of any provider can become that user."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    issuer: Mapped[str] = mapped_column(String(1024))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(SafeText(128, cut=False))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[UserRow] = relationship(back_populates="tokens")


class ServerRow(Timestamps, Base):
    __tablename__ = "servers"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(SafeText(63, cut=False), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    generation: Mapped[int] = mapped_column(Integer, default=1)


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("server_id", "replica"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    replica: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    pod: Mapped[str | None] = mapped_column(SafeText(253))
    pid: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(SafeText(512))
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(SafeText(most=LONG_TEXT))  # a server's stderr
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    server: Mapped[ServerRow] = relationship()


class SecretRow(Timestamps, Base):
    __tablename__ = "secrets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(SafeText(63, cut=False), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)


class TemplateRow(Timestamps, Base):
    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(SafeText(63, cut=False), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(SafeJSON)


class ProjectServerRow(Base):
    __tablename__ = "project_servers"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    server_id: Mapped[str] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class ProjectMemberRow(Base):
    __tablename__ = "project_members"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class ProjectGroupRow(Base):
    """A group of the OpenID provider whose members are members of the project."""

    __tablename__ = "project_groups"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(SafeText(128, cut=False), primary_key=True)


class ProjectRow(Timestamps, Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(SafeText(63, cut=False), unique=True)
    description: Mapped[str] = mapped_column(SafeText(cut=False), default="")
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    owner: Mapped[UserRow] = relationship()
    servers: Mapped[list[ServerRow]] = relationship(
        secondary="project_servers", order_by="ProjectServerRow.position"
    )
    members: Mapped[list[UserRow]] = relationship(
        secondary="project_members", order_by="UserRow.email"
    )
    groups: Mapped[list[ProjectGroupRow]] = relationship(
        cascade="all, delete-orphan", order_by="ProjectGroupRow.name"
    )


class PromptRow(Timestamps, Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(SafeText(63, cut=False))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    project: Mapped[ProjectRow] = relationship()
    owner: Mapped[UserRow] = relationship()


class InstanceEventRow(Base):
    """The lifecycle of instances, kept after their server is gone (history outlives it)."""

    __tablename__ = "instance_events"
    __table_args__ = (Index("ix_instance_events_server_at", "server", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server: Mapped[str] = mapped_column(SafeText(63))
    replica: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(SafeText(most=LONG_TEXT))  # a server's stderr
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEventRow(Base):
    """One audited MCP request (a call, a get, a read) or one denied request. Arguments are
    kept only as a hash (sha256 of their canonical JSON), never their values."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_principal_at", "principal", "at"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Request text (paths, names, ids, reasons): SafeText, cut to the column.
    principal: Mapped[str] = mapped_column(SafeText(320))
    endpoint: Mapped[str] = mapped_column(SafeText(80))
    project: Mapped[str | None] = mapped_column(SafeText(63))
    server: Mapped[str | None] = mapped_column(SafeText(63))
    method: Mapped[str] = mapped_column(SafeText(64))
    name: Mapped[str] = mapped_column(SafeText(512))
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(SafeText(512))
    duration_ms: Mapped[float] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(SafeText(128))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    args_hash: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(SafeText(64))  # the client's address
    # Requests the row stands for: unauthenticated denials from one address are aggregated.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class RateLimitBucketRow(Base):
    """A token bucket every gateway replica leases tokens from (see gateway/rate_limit.py)."""

    __tablename__ = "rate_limit_buckets"
    key: Mapped[str] = mapped_column(SafeText(400, cut=False), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class ProjectRateLimitRow(Base):
    """A project's `rateLimit` (kept beside the project's row, dropped with it)."""

    __tablename__ = "project_rate_limits"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    per_minute: Mapped[int] = mapped_column(Integer)
    burst: Mapped[int] = mapped_column(Integer)


class ProjectPolicyRow(Base):
    """A project's `expose`, `access` and `views` (models/exposure.py), one document."""

    __tablename__ = "project_policies"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
