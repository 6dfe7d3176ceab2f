"""The OpenAPI 3.1 document, generated from the operations and their pydantic types."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter

from mcpctl import __version__
from mcpctl.gateway.api.operation import Operation

REF = "#/components/schemas/{model}"
STRING = {"type": "string"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["status", "error", "message"],
    "properties": {
        "status": {"type": "integer"},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def of(self, type_: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(type_).json_schema(
            by_alias=True,
            ref_template=REF,
            mode=mode,  # type: ignore[arg-type]
        )
        self.components.update(schema.pop("$defs", {}))
        return schema


def document(operations: list[Operation]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {},
        }
        parameters = _parameters(op, schemas)
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schemas.of(op.body, "validation")}},
            }
        for status, type_ in op.responses.items():
            response: dict[str, Any] = {"description": "OK" if status < 300 else "error"}
            if type_ is str:
                response["content"] = {"text/plain": {"schema": {"type": "string"}}}
            elif type_ is not None:
                response["content"] = {
                    "application/json": {"schema": schemas.of(type_, "serialization")}
                }
            item["responses"][str(status)] = response
        for status in _error_statuses(op):
            item["responses"].setdefault(
                str(status),
                {
                    "description": "error",
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="Error")}}
                    },
                },
            )
        if not op.public:
            item["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcpd API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _parameters(op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    """The path's `{names}` and the query's, described by the operation's Params model."""
    in_path = re.findall(r"{(\w+)}", op.path)
    described: dict[str, Any] = {}
    required: list[str] = []
    if op.params is not None:
        schema = schemas.of(op.params, "validation")
        described, required = schema.get("properties", {}), schema.get("required", [])
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": described.get(name, STRING)}
        for name in in_path
    ]
    parameters += [
        {"name": name, "in": "query", "required": name in required, "schema": _not_null(item)}
        for name, item in described.items()
        if name not in in_path
    ]
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its `null` (a query has no null: it is absent)."""
    choices = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(choices) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**choices[0], **rest}


def _error_statuses(op: Operation) -> list[int]:
    statuses = [] if op.public else [401, 403]
    if "{" in op.path:
        statuses.append(404)
    if op.body is not None:
        statuses += [400, 409, 422]
    elif op.params is not None:
        statuses.append(422)
    return statuses
