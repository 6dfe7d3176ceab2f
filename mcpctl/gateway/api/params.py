"""Query and path parameters, parsed one way: each operation names a model of them (a
`Params`), the route validates it before the handler runs, and anything else is a 422 naming
the parameter (`limit: ...`). The OpenAPI document describes the same models.

Numbers (`Digits`) are ASCII digits and nothing else: no sign, space, exponent, `_`, `²` or
digits of other scripts (which `str.isdigit` and `int()` each accept a different part of).
An empty value is the same as none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
)
from pydantic_core import core_schema
from starlette.requests import Request

from mcpctl.backup.history import MAX_WINDOW, parse_window
from mcpctl.models.base import Name, field_error
from mcpctl.models.user import Email

DIGITS = re.compile(r"[0-9]{1,100}")
INSTANCE = re.compile(r"([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)-([0-9]{1,9})")
DURATION = re.compile(r"[0-9]{1,100}[smhd]")
UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # controls, lone surrogates
MAX_TEXT = 320  # the longest email; every name is shorter


def _plain_text(value: str) -> str:
    if len(value) > MAX_TEXT or UNSTORABLE.search(value):
        raise ValueError(f"at most {MAX_TEXT} characters, no control characters")
    return value


def _window(value: object) -> object:
    """`30m`, `24h`, `7d` as a timedelta (at most backup.history's MAX_WINDOW)."""
    if isinstance(value, str):
        if not DURATION.fullmatch(value):
            raise ValueError("a number (digits 0-9) and s, m, h or d, e.g. 30m, 24h, 7d")
        try:
            return parse_window(value)
        except ValueError:
            raise ValueError(f"at most {MAX_WINDOW.days}d") from None
    return value


def _moment(value: object) -> object:
    """A window (that long ago: a timedelta) or an ISO 8601 time (UTC unless it says)."""
    if not isinstance(value, str) or DURATION.fullmatch(value):
        return _window(value)
    try:
        if not value.isascii():
            raise ValueError
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("a duration (30m, 24h, 7d) or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _instance_name(value: str) -> str:
    match = INSTANCE.fullmatch(value)
    if match is None:
        raise ValueError("an instance is named <server>-<replica number>, e.g. time-0")
    return f"{match[1]}-{int(match[2])}"


@dataclass(frozen=True)
class Digits:
    """`Annotated[int, Digits(least, most)]`: a whole number written in the digits 0-9 only."""

    least: int = 0
    most: int = 2**63 - 1

    def _parse(self, value: object) -> int:
        if isinstance(value, str) and DIGITS.fullmatch(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"a whole number from {self.least} to {self.most} in the digits 0-9")
        if not self.least <= value <= self.most:
            raise ValueError(f"a whole number from {self.least} to {self.most}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(self._parse)

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "integer", "minimum": self.least, "maximum": self.most}


@dataclass(frozen=True)
class OneOf:
    """`Annotated[str, OneOf(choices)]`: a text that is one of `choices`."""

    choices: tuple[str, ...]

    def _check(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"one of {', '.join(self.choices)}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "string", "enum": list(self.choices)}


Text = Annotated[str, AfterValidator(_plain_text)]
Window = Annotated[
    timedelta,
    BeforeValidator(_window),
    WithJsonSchema({"type": "string", "pattern": f"^{DURATION.pattern}$", "examples": ["24h"]}),
]
Moment = Annotated[
    datetime | timedelta,
    BeforeValidator(_moment),
    WithJsonSchema(
        {"type": "string", "description": "a duration (24h: that long ago) or ISO 8601"}
    ),
]
InstanceName = Annotated[
    str,
    AfterValidator(_instance_name),
    WithJsonSchema({"type": "string", "pattern": f"^{INSTANCE.pattern}$"}),
]
__all__ = ["UUID", "Email", "InstanceName", "Moment", "Name", "Text", "Window"]


def moment(value: datetime | timedelta, now: datetime) -> datetime:
    return now - value if isinstance(value, timedelta) else value


class Params(BaseModel):
    """An operation's path and query parameters (by their names in the URL)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def of(cls, request: Request) -> Self:
        """The request's parameters, validated once (ValidationError: a 422 naming the
        parameter)."""
        parsed = request.scope.setdefault("mcpctl.params", {})
        if cls not in parsed:
            parsed[cls] = cls.model_validate(_values(cls, request))
        found: Self = parsed[cls]
        return found


def _values(model: type[Params], request: Request) -> dict[str, str]:
    values = dict(request.path_params)
    for name in model.model_fields:
        given = request.query_params.getlist(name)
        if len(given) > 1:
            raise field_error(model.__name__, name, "given more than once")
        if given and given[0] != "":
            values[name] = given[0]
    return values
