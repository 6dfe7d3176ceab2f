"""Every error leaves as JSON naming what was wrong: `{status, error, message, field}`."""

from __future__ import annotations

from http import HTTPStatus

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcpctl.store.errors import StoreError


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, object] = {
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def describe(error: ValidationError, prefix: str = "") -> tuple[str, str]:
    """`(field, message)` for a pydantic error: `spec.port`, `spec.port: must be >= 1`."""
    messages = []
    first_field = ""
    for index, detail in enumerate(error.errors(include_url=False)):
        field = prefix + ".".join(str(part) for part in detail["loc"])
        if index == 0:
            first_field = field
        text = detail["msg"].removeprefix("Value error, ")
        messages.append(f"{field}: {text}" if field else text)
    return first_field, "; ".join(messages[:5])


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    field, message = describe(exc)
    return error_response(422, message, field or None)


async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    return error_response(exc.status, exc.message, exc.field)


async def on_integrity_error(request: Request, exc: Exception) -> JSONResponse:
    """A constraint the database enforced against a race the repositories did not foresee
    (their own races are ConcurrentWrite): a conflict, and the transaction was rolled back."""
    assert isinstance(exc, IntegrityError)
    return error_response(409, "the change conflicts with a concurrent one; nothing was changed")


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


HANDLERS = {
    ValidationError: on_validation_error,
    StoreError: on_store_error,
    IntegrityError: on_integrity_error,
    HTTPException: on_http_error,
}
