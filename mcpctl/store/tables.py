"""SQLAlchemy tables. Specs are stored as JSON documents; what is joined or unique is a column."""

from __future__ import annotations

import uuid
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


JSONDoc = JSON().with_variant(JSONB(), "postgresql")


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
    email: Mapped[str] = mapped_column(String(320), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
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
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[UserRow] = relationship(back_populates="tokens")


class ServerRow(Timestamps, Base):
    __tablename__ = "servers"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    generation: Mapped[int] = mapped_column(Integer, default=1)


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("server_id", "replica"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    replica: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    pod: Mapped[str | None] = mapped_column(String(253))
    pid: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(512))
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    server: Mapped[ServerRow] = relationship()


class SecretRow(Timestamps, Base):
    __tablename__ = "secrets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)


class TemplateRow(Timestamps, Base):
    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc)


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
    name: Mapped[str] = mapped_column(String(128), primary_key=True)


class ProjectRow(Timestamps, Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
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
    name: Mapped[str] = mapped_column(String(63))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    project: Mapped[ProjectRow] = relationship()
    owner: Mapped[UserRow] = relationship()


class InstanceEventRow(Base):
    """The lifecycle of instances, kept after their server is gone (history outlives it)."""

    __tablename__ = "instance_events"
    __table_args__ = (Index("ix_instance_events_server_at", "server", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server: Mapped[str] = mapped_column(String(63))
    replica: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
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
    principal: Mapped[str] = mapped_column(String(320))
    endpoint: Mapped[str] = mapped_column(String(80))
    project: Mapped[str | None] = mapped_column(String(63))
    server: Mapped[str | None] = mapped_column(String(63))
    method: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(512))
    duration_ms: Mapped[float] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(128))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    args_hash: Mapped[str | None] = mapped_column(String(64))


class RateLimitBucketRow(Base):
    """A token bucket every gateway replica leases tokens from (see gateway/rate_limit.py)."""

    __tablename__ = "rate_limit_buckets"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
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
    document: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
