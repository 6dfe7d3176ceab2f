"""Who an OpenID provider's account becomes, on SQLite and PostgreSQL (issue 18, defect 1).

The audit: a token with `email: system@mcpctl.io, email_verified: false` was the system admin,
and `ROOT@Example.com` became admin `root@example.com`. Now an account is bound to one user by
issuer and subject on first sight, with a verified email, and never becomes the system user, an
admin made in mcpd, or a user another account holds. tests/e2e/test_oauth.py shows the same
through a real provider's tokens.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from mcpctl.models.user import SYSTEM_USER_EMAIL, Role, UserSpec
from mcpctl.store import identities
from mcpctl.store.database import Database
from mcpctl.store.identities import Account, NotBound
from mcpctl.store.repositories.base import spec_json
from mcpctl.store.tables import IdentityRow, UserRow

ISSUER = "https://idp.example"


def account(subject: str, email: str, verified: bool = True, issuer: str = ISSUER) -> Account:
    return Account(issuer, subject, email, verified, "")


def provision(database: Database, who: Account) -> identities.Bound:
    with database.write_transaction() as session:
        return identities.provision(session, who)


def refusal(database: Database, who: Account) -> str:
    with pytest.raises(NotBound) as caught:
        provision(database, who)
    return caught.value.reason


def add_user(database: Database, email: str, role: Role) -> None:
    with database.transaction() as session:
        session.add(UserRow(email=email, spec=spec_json(UserSpec(role=role))))


def test_the_system_user_is_nobody_s(database: Database) -> None:
    assert refusal(database, account("m", SYSTEM_USER_EMAIL, verified=False)) == "email_unverified"
    assert refusal(database, account("m", "SYSTEM@MCPCTL.IO")) == "reserved_user"
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(IdentityRow)) == 0


def test_a_new_account_becomes_a_new_member_bound_to_it(database: Database) -> None:
    bound = provision(database, account("alice-1", "Alice@Example.COM"))
    assert bound == identities.Bound("alice@example.com", Role.MEMBER)
    # Its email may change at the provider: it stays the same user.
    again = provision(database, account("alice-1", "alice.new@example.com", verified=False))
    assert again.email == "alice@example.com"


def test_an_existing_admin_is_never_claimed(database: Database) -> None:
    add_user(database, "root@example.com", Role.ADMIN)
    assert refusal(database, account("x", "ROOT@Example.com")) == "admin_not_claimable"


def test_a_member_is_claimed_once_by_a_verified_account(database: Database) -> None:
    add_user(database, "bob@example.com", Role.MEMBER)
    assert refusal(database, account("bob-1", "bob@example.com", verified=False)) == (
        "email_unverified"
    )
    assert provision(database, account("bob-1", "bob@example.com")).email == "bob@example.com"
    assert refusal(database, account("bob-2", "BOB@example.com")) == "identity_taken"
    other_issuer = account("bob-1", "bob@example.com", issuer="https://other.example")
    assert refusal(database, other_issuer) == "identity_taken"


def test_a_role_changed_in_mcpd_follows_the_bound_account(database: Database) -> None:
    provision(database, account("carol-1", "carol@example.com"))
    with database.transaction() as session:
        row = session.scalar(select(UserRow).where(UserRow.email == "carol@example.com"))
        assert row is not None
        row.spec = spec_json(UserSpec(role=Role.ADMIN))
    assert provision(database, account("carol-1", "carol@example.com")).role is Role.ADMIN


def test_deleting_the_user_forgets_its_binding(database: Database) -> None:
    provision(database, account("dave-1", "dave@example.com"))
    with database.transaction() as session:
        row = session.scalar(select(UserRow).where(UserRow.email == "dave@example.com"))
        session.delete(row)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(IdentityRow)) == 0
    assert provision(database, account("dave-2", "dave@example.com")).email == "dave@example.com"


def test_two_accounts_with_one_email_at_once_make_one_user_held_by_one(database: Database) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def first_sight(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(provision(database, account(f"e-{n % 2}", "erin@example.com")).email)
        except NotBound as refused:
            outcomes.append(refused.reason)

    threads = [threading.Thread(target=first_sight, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with database.transaction() as session:
        bindings = session.execute(select(IdentityRow.subject)).scalars().all()
        users = session.scalar(select(func.count()).where(UserRow.email == "erin@example.com"))
    assert users == 1 and len(bindings) == 1
    winner = bindings[0]
    # Every request of the account that won is erin; every one of the other is refused.
    assert outcomes.count("erin@example.com") == 4, outcomes
    assert outcomes.count("identity_taken") == 4, (winner, outcomes)
