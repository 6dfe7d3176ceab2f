"""Projects group servers behind one MCP endpoint and give members access."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, PlainValidator, WithJsonSchema

from mcpctl.models.base import Model, Name
from mcpctl.models.rate_limit import RateLimit
from mcpctl.models.user import Email, normalise_member_email

GROUP_PREFIX = "group:"
# A group as the OpenID provider names it in its groups claim (case kept as it is there).
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@ -]{0,127}$")


def _member(value: object) -> str:
    """A user's email (stored normalised), or `group:<name>` for everyone in that group."""
    if not isinstance(value, str):
        raise ValueError("a member is an email or 'group:<name>'")
    text = value.strip()
    if text[: len(GROUP_PREFIX)].lower() == GROUP_PREFIX:
        group = text[len(GROUP_PREFIX) :].strip()
        if not GROUP_NAME.match(group):
            raise ValueError(
                f"{text!r}: a group name is 1-128 letters, digits and '._:/@ -', "
                "starting with a letter or digit"
            )
        return GROUP_PREFIX + group
    return normalise_member_email(text)


Member = Annotated[
    str,
    PlainValidator(_member),
    WithJsonSchema({"type": "string", "description": "an email, or group:<name>"}),
]


def group_of(member: str) -> str | None:
    """The group a member entry names, or None for a user's email."""
    return member[len(GROUP_PREFIX) :] if member.startswith(GROUP_PREFIX) else None


class ProjectSpec(Model):
    description: str = Field(default="", max_length=4096)
    owner: Email | None = None
    servers: list[Name] = Field(default_factory=list)
    # Users (emails) and groups of the OpenID provider (`group:platform`).
    members: list[Member] = Field(default_factory=list)
    rate_limit: RateLimit | None = None  # all callers together (gateway/rate_limit.py)
