"""Where the store is, how to connect to it, and its schema revision (Alembic, run in-process)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "DB_ENV",
    "ConsoleDBError",
    "Revision",
    "default_url",
    "engine_for",
    "ensure_schema",
    "head_revision",
    "revision_of",
    "upgrade",
]

DB_ENV = "SCAN_ROOT_CONSOLE_DB"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# How long a SQLite writer waits for another's transaction before giving up.
SQLITE_BUSY_MS = 30_000


class ConsoleDBError(Exception):
    """The database cannot be used as asked (bad URL, older schema, unknown revision)."""


def default_url(environ: Mapping[str, str] = os.environ, *, uid: int | None = None) -> str:
    """`SCAN_ROOT_CONSOLE_DB`, else SQLite in the user's data dir (/var/lib/scan-root as root)."""
    if environ.get(DB_ENV):
        return environ[DB_ENV]
    if (os.geteuid() if uid is None else uid) == 0:
        folder = Path("/var/lib/scan-root")
    else:
        data = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")) / ".local/share")
        folder = Path(data).expanduser() / "scan-root"
    return f"sqlite:///{folder / 'console.db'}"


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConsoleDBError(f"not a database URL: {url!r}") from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConsoleDBError(
            f"unsupported database {parsed.get_backend_name()!r}: sqlite:///PATH or "
            "postgresql+psycopg://..."
        )
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what we install
    return parsed


# Connections one process keeps open to PostgreSQL. All of them stay open: a pool that opened
# extra ones under load and closed them after use made PostgreSQL start a server process per
# request (about 3 ms of its CPU each: 7 of the 10 ms PostgreSQL spent per report). A thread
# that finds every connection busy waits for one (then 503, as for any overload).
POOL_SIZE = 8


def engine_for(url: str, *, pool_size: int = POOL_SIZE) -> Engine:
    """An engine for `url`; a SQLite file's folder is created, and its connections set up
    (WAL, foreign keys, a busy timeout, and writes that take the lock when they begin)."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
        _sqlite_setup(engine)
        return engine
    return create_engine(parsed, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


def _check_sqlite_file(parsed: URL) -> None:
    """The SQLite database must be a file: in memory (or SQLite's nameless temporary file),
    nothing a command stores outlives it; a device or FIFO is no database (SQLite would put
    its journal beside it, in /dev). Its folder is created."""
    name = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1"):
        return  # a `file:` URI with its own options: SQLite's to read
    if name in ("", ":memory:"):
        raise ConsoleDBError("the console keeps its data in a file: sqlite:///PATH")
    path = Path(name)
    try:
        info = path.stat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    except OSError as error:
        raise ConsoleDBError(f"{name}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConsoleDBError(f"{name}: not a regular file, so not a database")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(connection: Any, record: Any) -> None:
        # Autocommit at the driver level: transactions are begun below, by us.
        connection.isolation_level = None
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        # FULL: a commit is on disk before the 201 that acknowledges it (the defender then
        # forgets the report). NORMAL, with WAL, may lose the last commits to a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer takes the write lock at BEGIN: a deferred transaction that read first would
        # get SQLITE_BUSY at once, without waiting, when another wrote meanwhile.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_without_engine()).get_current_head()
    assert head is not None  # the package ships its migrations
    return head


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def revision_of(engine: Engine) -> str | None:
    """The database's schema revision; None for a database Alembic never touched."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Migrate the database to the newest schema (from empty, or from an older revision)."""
    command.upgrade(_config(engine), "head")


class Revision:
    """What `ensure_schema` found."""

    CREATED = "created"
    CURRENT = "current"


def ensure_schema(engine: Engine) -> str:
    """A new (empty) database is created at the newest schema; a current one is left alone.

    An older revision is refused (only `db upgrade` migrates existing data), and so is one this
    version does not know (a newer console wrote it).
    """
    current = revision_of(engine)
    head = head_revision()
    if current == head:
        return Revision.CURRENT
    if current is None:
        if _has_tables(engine):
            raise ConsoleDBError(
                "the database has tables but no scan-root schema revision: not a console database"
            )
        upgrade(engine)
        return Revision.CREATED
    script = ScriptDirectory.from_config(_config_without_engine())
    known = {revision.revision for revision in script.walk_revisions()}
    if current in known:
        raise ConsoleDBError(
            f"the database's schema is at revision {current}, older than this console's "
            f"({head}): run `scan-root console db upgrade` first (back it up before)"
        )
    raise ConsoleDBError(
        f"the database's schema revision {current} is unknown to this console (a newer "
        "scan-root wrote it?)"
    )


def _has_tables(engine: Engine) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(engine).get_table_names())
