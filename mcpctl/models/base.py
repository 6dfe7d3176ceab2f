"""Shared pieces of every resource document: names, metadata, camelCase JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


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


class Model(BaseModel):
    """Base of API models: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )


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
