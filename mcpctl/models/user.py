"""Users, their roles and API tokens (stored hashed, shown once)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, TypeAdapter, ValidationError

from mcpctl.models.base import Model

SYSTEM_USER_EMAIL = "system@mcpctl.io"

# The one form an email is stored and compared in: validated (which strips it and normalises
# its domain), then lower-cased whole, so `Alice@Example.COM ` and `alice@example.com` are one
# user wherever an email appears (a user's name, a project's owner and members, a prompt's
# owner, a token's user).
Email = Annotated[EmailStr, AfterValidator(str.lower)]
_EMAIL = TypeAdapter(Email)


def normalise_email(value: str) -> str:
    """`value` in the stored form; a text that is no email is only stripped and lower-cased
    (it then names no user, and the lookup says so)."""
    try:
        return _EMAIL.validate_python(value)
    except ValidationError:
        return value.strip().lower()


def normalise_member_email(value: str) -> str:
    """`value` validated as an email (ValueError if it is none) in the stored form."""
    try:
        return _EMAIL.validate_python(value)
    except ValidationError as error:
        raise ValueError(f"{value!r} is not an email: {error.errors()[0]['msg']}") from None


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
