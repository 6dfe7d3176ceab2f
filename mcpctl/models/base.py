"""Shared pieces of every resource document: names, metadata, camelCase JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# What neither database can store: NUL (PostgreSQL refuses it in text and in JSONB) and UTF-16
# surrogates (JSON's "\ud800" decodes to one; no driver encodes it as UTF-8). Python strings
# hold a valid pair as one character, so every surrogate in a `str` is a lone one.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _dns1123_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if len(key) > 253 or not LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
        if len(item) > 63 or not LABEL_VALUE.match(item):
            raise ValueError(f"label value {item!r} of {key!r} is not a valid label value")
    return value


Name = Annotated[str, AfterValidator(_dns1123_label)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]


def unstorable_in(value: Any) -> str | None:
    """Where in `value` (a string, or dicts and lists of them, keys included) the first NUL or
    lone surrogate is, as a path (`""` for `value` itself, `env.FOO`, `args.2`); None if none.
    Nested models are not entered: they checked their own fields."""
    if isinstance(value, str):
        bad = "\x00" in value or (not value.isascii() and UNSTORABLE.search(value))
        return "" if bad else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and unstorable_in(key) is not None:
                return str(key).encode("unicode_escape").decode()
            where = unstorable_in(item)
            if where is not None:
                return ".".join(p for p in (str(key), where) if p)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            where = unstorable_in(item)
            if where is not None:
                return ".".join(p for p in (str(index), where) if p)
    return None


class Model(BaseModel):
    """Base of API models: camelCase on the wire, unknown fields refused, and text mcpctl
    cannot store (NUL, lone surrogates) refused in every string, naming the field."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )
    # False for records of what mcpd observed (never API input): their text comes from
    # servers and clients, and the store keeps it escaped (store/tables.py, SafeText).
    refuses_unstorable_text: ClassVar[bool] = True

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        if not cls.refuses_unstorable_text or isinstance(value, int | float | datetime | None):
            return value
        where = unstorable_in(value)
        if where is not None:
            inside = f" (at {where})" if where else ""
            raise ValueError(
                f"contains NUL (\\x00) or a lone surrogate (\\ud800-\\udfff){inside}: "
                "mcpctl stores neither; send the text without it"
            )
        return value


class Record(Model):
    """What mcpd observed (an instance, its events, an audit record): read from the store or
    made from what servers say, never taken from an API request, so its text is not refused
    (it arrives escaped: see store/tables.py, SafeText)."""

    refuses_unstorable_text: ClassVar[bool] = False


class Metadata(Model):
    name: str = Field(min_length=1, max_length=253)
    project: Name | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Document(Model):
    """`{kind, metadata, spec}`: the shape `apply -f` reads and `get -o yaml` prints."""

    kind: str
    metadata: Metadata
    spec: dict[str, object] = Field(default_factory=dict)
    status: dict[str, object] | None = None


def field_error(title: str, field: str, message: str, value: object = None) -> ValidationError:
    """A validation error located at `field`, for checks that span several fields."""
    detail = InitErrorDetails(
        type=PydanticCustomError("invalid", message), loc=tuple(field.split(".")), input=value
    )
    return ValidationError.from_exception_data(title, [detail])
