"""The per-invocation state every command reads: where mcpd is and the HTTP client."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from mcpctl.cli.client import Client
from mcpctl.cli.settings import resolve


@dataclass
class Invocation:
    server: str | None = None
    token: str | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(resolve(self.server, self.token))
        return self._client


def client(ctx: typer.Context) -> Client:
    invocation: Invocation = ctx.ensure_object(Invocation)
    return invocation.client
