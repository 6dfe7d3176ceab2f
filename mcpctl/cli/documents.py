"""Reading resource documents from YAML/JSON files for `apply` and `restore`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcpctl.cli.errors import CLIError
from mcpctl.models.kinds import Kind, Resource, kind_named


def read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as error:
        raise CLIError(f"cannot read {path}: {error.strerror}") from None


def load_documents(path: str) -> list[tuple[Kind, Resource[Any], dict[str, Any]]]:
    """Every document in a multi-document YAML (or JSON) file, validated before anything is sent."""
    try:
        raw_docs = [doc for doc in yaml.safe_load_all(read_text(path)) if doc is not None]
    except yaml.YAMLError as error:
        raise CLIError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    documents = []
    for index, raw in enumerate(raw_docs):
        for item in raw.get("items", []) if _is_list(raw) else [raw]:
            documents.append(_validate(path, index, item))
    if not documents:
        raise CLIError(f"{path}: no documents found")
    return documents


def _is_list(raw: Any) -> bool:
    return isinstance(raw, dict) and str(raw.get("kind", "")).endswith("List")


def _validate(path: str, index: int, raw: Any) -> tuple[Kind, Resource[Any], dict[str, Any]]:
    where = f"{path}: document {index + 1}"
    if not isinstance(raw, dict):
        raise CLIError(f"{where}: expected a mapping with kind, metadata and spec")
    try:
        kind = kind_named(str(raw.get("kind", "")))
    except KeyError as error:
        raise CLIError(f"{where}: {error.args[0]}") from None
    try:
        resource = kind.parse(raw)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        raise CLIError(f"{where} ({kind.name}): {field}: {message}") from None
    body = resource.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})
    return kind, resource, body
