"""API tokens: random, shown once, stored as SHA-256 (they are high-entropy, so no KDF)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mcpctl.models.user import (
    SYSTEM_USER_EMAIL,
    ApiToken,
    Role,
    TokenRequest,
    UserSpec,
    normalise_email,
)
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories.base import spec_json
from mcpctl.store.tables import TokenRow, UserRow, utcnow

TOKEN_PREFIX = "mcp_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _as_model(row: TokenRow, token: str | None = None) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        user=row.user.email,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        token=token,
    )


def _user(session: Session, email: str) -> UserRow:
    email = normalise_email(email)
    user = session.scalar(select(UserRow).where(UserRow.email == email))
    if user is None:
        raise NotFound(f"user {email!r} not found")
    return user


def issue(
    session: Session, email: str, request: TokenRequest, token: str | None = None
) -> ApiToken:
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        user=_user(session, email),
        name=request.name,
        prefix=token[:8],
        token_hash=hash_token(token),
        expires_at=request.expires_at,
    )
    session.add(row)
    session.flush()
    return _as_model(row, token)


def list_tokens(session: Session, email: str) -> list[ApiToken]:
    user = _user(session, email)
    rows = session.scalars(
        select(TokenRow).where(TokenRow.user_id == user.id).order_by(TokenRow.created_at)
    )
    return [_as_model(row) for row in rows]


def revoke(session: Session, email: str, token_id: str) -> None:
    user = _user(session, email)
    row = session.scalar(
        select(TokenRow).where(TokenRow.id == token_id, TokenRow.user_id == user.id)
    )
    if row is None:
        raise NotFound(f"token {token_id!r} of user {email!r} not found")
    session.delete(row)


def authenticate(session: Session, token: str, now: datetime | None = None) -> UserRow | None:
    """The token's user, or None for an unknown or expired token."""
    now = now or utcnow()
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row.user


def bootstrap(session: Session, admin_token: str | None) -> str | None:
    """On an empty database: create the system user and an admin token; return it if new.

    With `admin_token` given it is (re)registered, so a fixed token survives restarts.
    """
    system = session.scalar(select(UserRow).where(UserRow.email == SYSTEM_USER_EMAIL))
    if system is None:
        spec = spec_json(UserSpec(display_name="mcpctl system", role=Role.ADMIN))
        system = UserRow(email=SYSTEM_USER_EMAIL, spec=spec)
        session.add(system)
        session.flush()
    if admin_token is not None:
        if session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(admin_token))):
            return None
        issue(session, SYSTEM_USER_EMAIL, TokenRequest(name="admin"), admin_token)
        return None
    if session.scalar(select(TokenRow.id).where(TokenRow.user_id == system.id).limit(1)):
        return None
    return issue(session, SYSTEM_USER_EMAIL, TokenRequest(name="admin")).token
