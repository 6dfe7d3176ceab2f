"""A rate limit as a project declares it: calls per minute, with bursts."""

from __future__ import annotations

from pydantic import Field

from mcpctl.models.base import Model


class RateLimit(Model):
    """`perMinute` calls on average (0: no limit), up to `burst` at once (0: `perMinute`)."""

    per_minute: int = Field(ge=0, le=10_000_000)
    burst: int = Field(default=0, ge=0, le=10_000_000)
