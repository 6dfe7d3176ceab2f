"""Secrets hold values that servers' env references; the API never returns the values."""

from __future__ import annotations

from pydantic import Field, field_validator

from mcpctl.models.base import Model
from mcpctl.models.server import SECRET_KEY


class SecretSpec(Model):
    data: dict[str, str | None] = Field(
        default_factory=dict,
        description="key to value; values are write-only and read back as null",
    )

    @field_validator("data")
    @classmethod
    def _keys(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for key in value:
            if not SECRET_KEY.match(key) or len(key) > 253:
                raise ValueError(f"secret key {key!r} may hold only letters, digits, '-', '_', '.'")
        return value
