"""Errors the store raises; the gateway maps them to HTTP statuses."""

from __future__ import annotations


class StoreError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(StoreError):
    status = 404


class Conflict(StoreError):
    status = 409


class ConcurrentWrite(Conflict):
    """Another transaction inserted the same unique name between this one's read and its
    insert. Running the same work again in a new transaction sees that row (and updates it)."""


class InvalidReference(StoreError):
    """A document names something that does not exist (a server, a user, a project)."""

    status = 422
