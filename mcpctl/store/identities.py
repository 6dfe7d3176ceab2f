"""Users who arrive with a token of the OpenID provider.

An account of the provider (issuer + subject) is bound to one user on first sight and is that
user from then on. On first sight its email must be verified, and it may create a new member or
claim a member an admin created for that email beforehand; it never becomes the built-in system
user, an admin, or a user already bound to another account (of any provider): those stay with
whoever holds them, whatever a token's email claim says.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mcpctl.models.user import SYSTEM_USER_EMAIL, Role, UserSpec, normalise_email
from mcpctl.store.repositories.base import spec_json
from mcpctl.store.tables import IdentityRow, UserRow


@dataclass(frozen=True)
class Account:
    """What a provider's token says about who holds it (claims already type-checked)."""

    issuer: str
    subject: str
    email: str
    email_verified: bool
    display_name: str = ""


@dataclass(frozen=True)
class Bound:
    email: str  # the user's, which may differ from the token's email claim
    role: Role


class NotBound(Exception):
    """The account cannot become a user: `reason` is a metric label, the message says why."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason


def provision(session: Session, account: Account) -> Bound:
    """The user the account is bound to, binding it on first sight (NotBound if it may not)."""
    user = _bound_user(session, account)
    if user is None:
        user = _first_sight(session, account)
    return Bound(user.email, Role(user.spec.get("role", "member")))


def _bound_user(session: Session, account: Account) -> UserRow | None:
    return session.scalar(
        select(UserRow)
        .join(IdentityRow, IdentityRow.user_id == UserRow.id)
        .where(IdentityRow.issuer == account.issuer, IdentityRow.subject == account.subject)
    )


def _first_sight(session: Session, account: Account) -> UserRow:
    if not account.email_verified:
        raise NotBound(
            "email_unverified",
            "the identity provider has not verified this account's email "
            "(email_verified is not true): mcpd cannot tell whose it is",
        )
    email = normalise_email(account.email)
    if email == SYSTEM_USER_EMAIL:
        raise NotBound("reserved_user", f"{email} is mcpd's built-in user; no account can be it")
    try:
        with session.begin_nested():
            user = session.scalar(select(UserRow).where(UserRow.email == email))
            if user is None:
                spec = spec_json(UserSpec(display_name=account.display_name[:256]))
                user = UserRow(email=email, spec=spec)
                session.add(user)
                session.flush()
            elif _claimable(session, user, account):
                return user  # a request of this account bound it meanwhile
            binding = IdentityRow(issuer=account.issuer, subject=account.subject, user_id=user.id)
            session.add(binding)
            session.flush()
    except IntegrityError:
        # Two first requests at once: whichever bound first decides; read what it bound.
        bound = _bound_user(session, account)
        if bound is None:
            raise NotBound(
                "identity_taken", f"the user {email} was just bound to another account"
            ) from None
        return bound
    return user


def _claimable(session: Session, user: UserRow, account: Account) -> bool:
    """An existing user an account may take on first sight: a member nobody holds yet (True
    when this account holds it already)."""
    holder = session.scalar(select(IdentityRow).where(IdentityRow.user_id == user.id).limit(1))
    if holder is not None:
        if (holder.issuer, holder.subject) == (account.issuer, account.subject):
            return True
        raise NotBound(
            "identity_taken",
            f"the user {user.email} belongs to another account of an identity provider",
        )
    if user.spec.get("role") == Role.ADMIN:
        raise NotBound(
            "admin_not_claimable",
            f"the user {user.email} is an admin created in mcpd: an identity provider's account "
            "never takes it over (sign in with its API token; admins from the provider come "
            "from MCPD_OIDC_ADMIN_GROUPS or are promoted after their first sign-in)",
        )
    return False
