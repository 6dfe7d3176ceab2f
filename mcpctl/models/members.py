"""Who a project's members (and its access rules) name: a user's email, or `group:<name>`
for everyone in that group of the OpenID provider."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

from mcpctl.models.user import normalise_member_email

GROUP_PREFIX = "group:"
EVERYONE = "*"  # in an access rule: every member of the project
# A group as the OpenID provider names it in its groups claim (case kept as it is there).
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@ -]{0,127}$")


def _member(value: object) -> str:
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


def _anyone_or_member(value: object) -> str:
    return EVERYONE if value == EVERYONE else _member(value)


Member = Annotated[
    str,
    PlainValidator(_member),
    WithJsonSchema({"type": "string", "description": "an email, or group:<name>"}),
]
RuleMember = Annotated[
    str,
    PlainValidator(_anyone_or_member),
    WithJsonSchema({"type": "string", "description": "an email, group:<name>, or *"}),
]


def group_of(member: str) -> str | None:
    """The group a member entry names, or None for a user's email."""
    return member[len(GROUP_PREFIX) :] if member.startswith(GROUP_PREFIX) else None
