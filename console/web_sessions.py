"""Web sign-in in the store: passwords checked, sessions made, looked up, slid and ended,
failed sign-ins counted for the rate limit."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, delete, func, insert, select, update

from .credentials import hash_password, hash_token, verify_password
from .models import NAME_LENGTH, Base, LoginFailure, User, WebSession

__all__ = [
    "MAX_COOKIE_LENGTH",
    "SESSION_COOKIE",
    "Limits",
    "SessionUser",
    "check_password",
    "clear_failures",
    "end_session",
    "new_csrf_token",
    "record_failure",
    "retry_after",
    "session_user",
    "start_session",
]

SESSION_COOKIE = "scan_root_session"
SESSION_BYTES = 32
# Longer than any token we make; a longer cookie is no session, and is not hashed.
MAX_COOKIE_LENGTH = 256
# last_seen_at is moved at most this often: a page view is not a write.
TOUCH_EVERY = timedelta(minutes=1)
ADDRESS_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SessionUser:
    user_id: int
    name: str
    csrf_token: str


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a session lives, and how many failed sign-ins the rate limit allows."""

    lifetime: timedelta
    idle: timedelta
    failures_per_user: int
    failures_per_address: int
    failure_window: timedelta


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(SESSION_BYTES)


@functools.cache
def _decoy_hash() -> str:
    """A hash to verify against when the user name is unknown, so that an unknown name takes
    as long to refuse as a wrong password (its timing tells no one which names exist)."""
    return hash_password(secrets.token_urlsafe(SESSION_BYTES))


def check_password(engine: Engine, name: str, password: str) -> int | None:
    """The user's id when `password` is theirs; None otherwise (after an argon2 verify either
    way)."""
    row = None
    if 0 < len(name) <= NAME_LENGTH:
        users = _table(User)
        with engine.connect() as connection:
            row = connection.execute(
                select(users.c.id, users.c.password_hash).where(users.c.name == name)
            ).first()
    if row is None:
        verify_password(_decoy_hash(), password)
        return None
    return int(row.id) if verify_password(row.password_hash, password) else None


def start_session(engine: Engine, user_id: int, limits: Limits) -> str:
    """A new session's cookie value (random: never one the browser sent, so a session cannot
    be fixed in advance). Sessions past their time are cleared on the way."""
    token = secrets.token_urlsafe(SESSION_BYTES)
    now = datetime.now(UTC)
    sessions = _table(WebSession)
    with engine.begin() as connection:
        connection.execute(
            delete(sessions).where(
                (sessions.c.expires_at <= now) | (sessions.c.last_seen_at <= now - limits.idle)
            )
        )
        connection.execute(
            insert(sessions).values(
                token_hash=hash_token(token),
                user_id=user_id,
                csrf_token=new_csrf_token(),
                created_at=now,
                last_seen_at=now,
                expires_at=now + limits.lifetime,
            )
        )
    return token


def session_user(engine: Engine, token: str, limits: Limits) -> SessionUser | None:
    """The live session's user; None for an unknown, ended, expired or idle one."""
    if not token or len(token) > MAX_COOKIE_LENGTH:
        return None
    sessions, users = _table(WebSession), _table(User)
    now = datetime.now(UTC)
    with engine.connect() as connection:
        row = connection.execute(
            select(
                sessions.c.id,
                sessions.c.user_id,
                sessions.c.csrf_token,
                sessions.c.last_seen_at,
                users.c.name,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(
                sessions.c.token_hash == hash_token(token),
                sessions.c.expires_at > now,
                sessions.c.last_seen_at > now - limits.idle,
            )
        ).first()
        if row is None:
            return None
        if _aware(row.last_seen_at) <= now - TOUCH_EVERY:
            connection.execute(
                update(sessions).where(sessions.c.id == row.id).values(last_seen_at=now)
            )
            connection.commit()
    return SessionUser(int(row.user_id), row.name, row.csrf_token)


def end_session(engine: Engine, token: str) -> None:
    """The session deleted: its cookie, kept or stolen, signs no one in any more."""
    if not token or len(token) > MAX_COOKIE_LENGTH:
        return
    sessions = _table(WebSession)
    with engine.begin() as connection:
        connection.execute(delete(sessions).where(sessions.c.token_hash == hash_token(token)))


def _key(name: str) -> str:
    return name[:NAME_LENGTH]


def retry_after(engine: Engine, name: str, address: str, limits: Limits) -> int | None:
    """Seconds until a sign-in may be tried again, when this user name or this address has
    failed too often within the window; None when it may be tried now."""
    failures = _table(LoginFailure)
    now = datetime.now(UTC)
    since = now - limits.failure_window
    waits: list[int] = []
    with engine.connect() as connection:
        for column, value, allowed in (
            (failures.c.user_name, _key(name), limits.failures_per_user),
            (failures.c.address, address[:ADDRESS_LENGTH], limits.failures_per_address),
        ):
            recent = select(failures.c.failed_at).where(
                column == value, failures.c.failed_at > since
            )
            count = connection.execute(
                select(func.count()).select_from(recent.subquery())
            ).scalar_one()
            if count < allowed:
                continue
            # Free again when enough of the failures leave the window: the allowed-th newest.
            oldest_kept = connection.execute(
                recent.order_by(failures.c.failed_at.desc()).offset(allowed - 1).limit(1)
            ).scalar_one()
            free_at = _aware(oldest_kept) + limits.failure_window
            waits.append(max(1, int((free_at - now).total_seconds()) + 1))
    return max(waits) if waits else None


def record_failure(engine: Engine, name: str, address: str, limits: Limits) -> None:
    """A failed sign-in counted (and those past the window forgotten)."""
    failures = _table(LoginFailure)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            delete(failures).where(failures.c.failed_at <= now - limits.failure_window)
        )
        connection.execute(
            insert(failures).values(
                user_name=_key(name), address=address[:ADDRESS_LENGTH], failed_at=now
            )
        )


def clear_failures(engine: Engine, name: str) -> None:
    """A user who signed in starts afresh (the address's failures still count)."""
    failures = _table(LoginFailure)
    with engine.begin() as connection:
        connection.execute(delete(failures).where(failures.c.user_name == _key(name)))
