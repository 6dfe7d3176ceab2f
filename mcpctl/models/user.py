"""Users, their roles and API tokens (stored hashed, shown once)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from mcpctl.models.base import Model

SYSTEM_USER_EMAIL = "system@mcpctl.io"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class UserSpec(Model):
    display_name: str = Field(default="", max_length=256)
    role: Role = Role.MEMBER


class TokenRequest(Model):
    name: str = Field(default="default", min_length=1, max_length=128)
    expires_at: datetime | None = None


class ApiToken(Model):
    """A token as listed: never the secret, only an id and a recognisable prefix."""

    id: str
    name: str
    user: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    token: str | None = Field(default=None, description="the secret, present only on creation")
