"""Tokens and users in the store: created, listed, revoked, looked up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from .credentials import MAX_TOKEN_LENGTH, hash_password, hash_token, new_token
from .kinds import Scope
from .models import NAME_LENGTH, Token, TokenScope, User

__all__ = [
    "AccountError",
    "TokenInfo",
    "add_user",
    "create_token",
    "list_tokens",
    "revoke_token",
    "token_scopes",
]


class AccountError(Exception):
    """A token or user operation refused (a name in use, unknown, too long)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    revoked_at: datetime | None


def _tokens() -> Table:
    table = Token.__table__
    assert isinstance(table, Table)
    return table


def _scopes() -> Table:
    table = TokenScope.__table__
    assert isinstance(table, Table)
    return table


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise AccountError(f"{what} name must be 1 to {NAME_LENGTH} printable characters")


def create_token(engine: Engine, name: str, scopes: Iterable[Scope]) -> str:
    """A new token's text (shown once, never stored: only its SHA-256 is)."""
    _check_name(name, "token")
    token = new_token()
    wanted = sorted(set(scopes)) or [Scope.INGEST]
    try:
        with engine.begin() as connection:
            token_id = connection.execute(
                insert(_tokens())
                .values(name=name, token_hash=hash_token(token), created_at=datetime.now(UTC))
                .returning(_tokens().c.id)
            ).scalar_one()
            connection.execute(
                insert(_scopes()), [{"token_id": token_id, "scope": scope} for scope in wanted]
            )
    except IntegrityError:
        raise AccountError(f"a token named {name!r} exists already (revoke it first)") from None
    return token


def list_tokens(engine: Engine) -> list[TokenInfo]:
    tokens, scopes = _tokens(), _scopes()
    with engine.connect() as connection:
        granted: dict[int, list[Scope]] = {}
        for token_id, scope in connection.execute(select(scopes.c.token_id, scopes.c.scope)):
            granted.setdefault(token_id, []).append(scope)
        rows = connection.execute(
            select(tokens.c.id, tokens.c.name, tokens.c.created_at, tokens.c.revoked_at).order_by(
                tokens.c.name, tokens.c.id
            )
        ).all()
    return [
        TokenInfo(row.name, tuple(sorted(granted.get(row.id, []))), row.created_at, row.revoked_at)
        for row in rows
    ]


def revoke_token(engine: Engine, name: str) -> None:
    tokens = _tokens()
    with engine.begin() as connection:
        done = connection.execute(
            update(tokens)
            .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    if done.rowcount == 0:
        raise AccountError(f"no live token named {name!r}")


def token_scopes(engine: Engine, token: str) -> tuple[int, frozenset[Scope]] | None:
    """The live token's id and scopes; None for an unknown or revoked token."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    tokens, scopes = _tokens(), _scopes()
    with engine.connect() as connection:
        # One statement: no transaction around it (saves two round trips on every request).
        connection.execution_options(isolation_level="AUTOCOMMIT")
        rows = connection.execute(
            select(tokens.c.id, scopes.c.scope)
            .join(scopes, scopes.c.token_id == tokens.c.id)
            .where(tokens.c.token_hash == hash_token(token), tokens.c.revoked_at.is_(None))
        ).all()
    if not rows:
        return None
    return rows[0].id, frozenset(row.scope for row in rows)


def add_user(engine: Engine, name: str, password: str) -> None:
    _check_name(name, "user")
    if not password:
        raise AccountError("the password is empty")
    users = User.__table__
    assert isinstance(users, Table)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(users).values(
                    name=name, password_hash=hash_password(password), created_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        raise AccountError(f"a user named {name!r} exists already") from None
