"""The backup file: a versioned envelope around `{kind, metadata, spec}` documents.

Secrets are not in backups: servers keep their `secretRef`s, the values stay in mcpd.
Users are listed without tokens; the built-in system user is implied.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from mcpctl.models.base import Model
from mcpctl.models.kinds import KINDS, SECRET, Resource, kind_named

FORMAT = "mcpctl-backup"
VERSION = 1
BACKED_UP = tuple(kind for kind in KINDS if kind is not SECRET)


class BackupError(ValueError):
    """A backup that cannot be restored; the message names what is wrong."""


class Backup(Model):
    format: Literal["mcpctl-backup"] = "mcpctl-backup"
    version: int = VERSION
    created_at: datetime
    mcpd_version: str = ""
    items: list[dict[str, Any]] = Field(default_factory=list)


def parse(text: str | bytes, source: str = "backup") -> tuple[Backup, list[Resource[Any]]]:
    """Read and validate a whole backup; raise BackupError naming the first problem."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise BackupError(f"{source}: not valid JSON (truncated?): {error}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BackupError(f'{source}: not an mcpctl backup (no "format": "{FORMAT}")')
    if raw.get("version") != VERSION:
        raise BackupError(
            f"{source}: unsupported backup version {raw.get('version')!r}; "
            f"this mcpd reads version {VERSION}"
        )
    try:
        backup = Backup.model_validate(raw)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(part) for part in detail["loc"])
        raise BackupError(f"{source}: {where}: {detail['msg']}") from None
    resources = []
    for index, item in enumerate(backup.items):
        resources.append(_parse_item(source, index, item))
    return backup, resources


def _parse_item(source: str, index: int, item: dict[str, Any]) -> Resource[Any]:
    where = f"{source}: items.{index}"
    try:
        kind = kind_named(str(item.get("kind", "")))
    except KeyError as error:
        raise BackupError(f"{where}: {error.args[0]}") from None
    if kind not in BACKED_UP:
        raise BackupError(f"{where}: kind {kind.name} is never part of a backup")
    try:
        return kind.parse(item)
    except ValidationError as error:
        detail = error.errors()[0]
        field = ".".join(str(part) for part in detail["loc"])
        name = (
            item.get("metadata", {}).get("name") if isinstance(item.get("metadata"), dict) else None
        )
        label = f"{kind.name} {name!r}" if name else kind.name
        raise BackupError(
            f"{where} ({label}): {field}: {detail['msg'].removeprefix('Value error, ')}"
        ) from None
