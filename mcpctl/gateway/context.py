"""What request handlers share: the database, repositories and the runtime's change hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mcpctl.models.kinds import Kind
from mcpctl.store.database import Database
from mcpctl.store.repositories import Repository

T = TypeVar("T")


@dataclass
class GatewayContext:
    database: Database
    repositories: dict[Kind, Repository]
    # Called after a committed change of a resource, so the runtime reconciles at once.
    on_change: Callable[[Kind, str], None] = field(default=lambda kind, name: None)
    # Authenticated tokens, remembered briefly; emptied whenever tokens or users change.
    token_cache: dict[str, Any] = field(default_factory=dict)
    # Called after an instance was deleted, so its supervisor replaces it.
    on_instance_deleted: Callable[[str, int], None] = field(default=lambda server, replica: None)
    # Projects as the MCP endpoints loaded them (no database round trip per MCP request);
    # emptied on every committed change, and kept a few seconds at most.
    project_cache: dict[str, Any] = field(default_factory=dict)
    # project -> {resource URI: member server}: learned from lists, so any request (a 2026 one
    # has no session that listed first) can read a resource through the project.
    resource_owners: dict[str, dict[str, str]] = field(default_factory=dict)

    def changed(self, kind: Kind, name: str) -> None:
        """After a committed change: forget what the caches hold, and tell the runtime."""
        self.token_cache.clear()
        self.project_cache.clear()
        self.resource_owners.clear()
        self.on_change(kind, name)

    async def transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction on a worker thread (the database calls block)."""

        def run() -> T:
            with self.database.transaction() as session:
                return work(session)

        return await run_in_threadpool(run)


def context_of(request: Request) -> GatewayContext:
    context: GatewayContext = request.app.state.context
    return context
