"""Backup and restore over the API (admins only); restore is one transaction."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.backup import format as backup_format
from mcpctl.backup.restore import restore, take
from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.gateway.errors import error_response
from mcpctl.models.base import Model
from mcpctl.models.kinds import SERVER


class RestoreResult(Model):
    restored: dict[str, dict[str, int]]


async def get_backup(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "take backups")
    context = context_of(request)
    backup = await context.transaction(lambda s: take(s, context.repositories))
    return JSONResponse(backup.model_dump(mode="json", by_alias=True))


async def post_restore(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "restore backups")
    context = context_of(request)
    try:
        _, resources = backup_format.parse(await request.body())
    except backup_format.BackupError as error:
        return error_response(422, str(error))

    def work(session: Session) -> dict[str, Counter[str]]:
        return restore(session, context.repositories, resources)

    outcomes = await context.transaction(work)
    for resource in resources:
        if resource.kind == SERVER.name:
            context.changed(SERVER, resource.metadata.name)
    context.token_cache.clear()  # users and projects may have changed too
    context.project_cache.clear()
    return JSONResponse({"restored": {kind: dict(counts) for kind, counts in outcomes.items()}})


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/backup",
        get_backup,
        "take backup",
        "backup",
        responses={200: backup_format.Backup},
    ),
    Operation(
        "POST",
        "/api/v1/restore",
        post_restore,
        "restore backup",
        "backup",
        body=backup_format.Backup,
        responses={200: RestoreResult},
    ),
]
