"""`scan-root console ...`: serve, db upgrade, token create/list/revoke, user add."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from scanner.vulnerabilities import check_database as check_vulndb

from .accounts import AccountError, add_user, create_token, list_tokens, revoke_token
from .app import (
    CONCURRENT_ENV,
    DEFAULT_CONCURRENT_REPORTS,
    DEFAULT_MAX_REPORT_BYTES,
    MAX_BYTES_ENV,
    VULNDB_ENV,
    WINDOW_ENV,
    parse_duration,
)
from .database import (
    DB_ENV,
    ConsoleDBError,
    Revision,
    default_url,
    engine_for,
    ensure_schema,
    head_revision,
    revision_of,
    upgrade,
)
from .kinds import Scope

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_LISTEN = "127.0.0.1:8088"
# A password longer than this is not a password someone types.
MAX_PASSWORD = 4096


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root console",
        description="The results store and its HTTP API. Every command takes --db URL "
        f"(default: ${DB_ENV}, else SQLite in $XDG_DATA_HOME/scan-root/console.db, "
        "/var/lib/scan-root/console.db as root); a new database is created and migrated on "
        "first use.",
    )
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument(
        "--db",
        metavar="URL",
        help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (default: $"
        f"{DB_ENV}, else the SQLite file above)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[db_option], help="serve the HTTP API")
    serve.add_argument(
        "--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, help=f"default {DEFAULT_LISTEN}"
    )
    serve.add_argument("--workers", type=_positive, default=1, metavar="N", help="processes")
    serve.add_argument(
        "--max-report-bytes",
        type=_positive,
        default=DEFAULT_MAX_REPORT_BYTES,
        metavar="N",
        help="largest report accepted, uncompressed (default 64 MiB)",
    )
    serve.add_argument(
        "--max-concurrent-reports",
        type=_positive,
        default=DEFAULT_CONCURRENT_REPORTS,
        metavar="N",
        help="reports each process reads and stores at once; more wait, then 503 (default "
        f"{DEFAULT_CONCURRENT_REPORTS}): with --max-report-bytes, what bounds memory",
    )
    serve.add_argument(
        "--deployed-window",
        type=_duration,
        default="24h",
        metavar="DURATION",
        help="an image is deployed while a container running it was reported within this "
        "long (default 24h; s, m, h or d)",
    )

    serve.add_argument(
        "--vulndb",
        metavar="PATH",
        help="serve this advisory database to defenders (GET /api/v1/vulndb); fill and "
        "refresh it with `scan-root vulndb import --db PATH SOURCE...`",
    )

    db = commands.add_parser("db", help="the database's schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_commands.add_parser(
        "upgrade", parents=[db_option], help="migrate the schema to this version's"
    )

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = token_commands.add_parser(
        "create", parents=[db_option], help="make a token; it is printed once, on stdout, alone"
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--scope",
        action="append",
        choices=[scope.value for scope in Scope],
        help="what the token may do (repeatable; default ingest)",
    )
    token_commands.add_parser("list", parents=[db_option], help="list tokens (never their text)")
    revoke = token_commands.add_parser("revoke", parents=[db_option], help="revoke a token")
    revoke.add_argument("name", metavar="NAME")

    user = commands.add_parser("user", help="users of the web views")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = user_commands.add_parser(
        "add", parents=[db_option], help="add a user; the password is read from stdin"
    )
    add.add_argument("name", metavar="NAME")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConsoleDBError(f"--listen: not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def _prepare(engine: Engine) -> None:
    """The schema created if the database is new; an older one is refused (ConsoleDBError)."""
    if ensure_schema(engine) == Revision.CREATED:
        print(
            f"scan-root console: created the database at revision {head_revision()}",
            file=sys.stderr,
        )


def _password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        line = sys.stdin.readline(MAX_PASSWORD + 2)
        password = line.removesuffix("\n").removesuffix("\r")
    if len(password) > MAX_PASSWORD:
        # Never cut short: the stored hash would be of another password than the one typed.
        raise AccountError(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def _serve(arguments: argparse.Namespace, url: str) -> int:
    import uvicorn

    from .http_protocol import BoundedHttpToolsProtocol

    host, port = _listen(arguments.listen)
    engine = engine_for(url)
    try:
        _prepare(engine)
    finally:
        engine.dispose()
    # uvicorn's worker processes import the app anew: they read their settings from here.
    os.environ[DB_ENV] = url
    os.environ[MAX_BYTES_ENV] = str(arguments.max_report_bytes)
    os.environ[CONCURRENT_ENV] = str(arguments.max_concurrent_reports)
    os.environ[WINDOW_ENV] = arguments.deployed_window
    if arguments.vulndb is not None:
        trouble = check_vulndb(arguments.vulndb)
        if trouble is not None:
            print(f"scan-root console: {trouble}", file=sys.stderr)
            return EXIT_USAGE
        os.environ[VULNDB_ENV] = os.path.abspath(arguments.vulndb)
    uvicorn.run(
        "console.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=arguments.workers,
        proxy_headers=False,
        server_header=False,
        # httptools, its request head bounded (console/http_protocol.py), on uvloop: both in C.
        http=BoundedHttpToolsProtocol,
        loop="uvloop",
        log_level="info",
    )
    return EXIT_OK


def _run(arguments: argparse.Namespace) -> int:
    url = arguments.db or default_url()
    if arguments.command == "serve":
        return _serve(arguments, url)
    engine = engine_for(url)
    try:
        if arguments.command == "db":
            before = revision_of(engine)
            upgrade(engine)
            after = revision_of(engine)
            print(f"scan-root console: schema at revision {after} (was {before})", file=sys.stderr)
            return EXIT_OK
        _prepare(engine)
        if arguments.command == "token":
            _token(arguments, engine)
        else:
            add_user(engine, arguments.name, _password())
        return EXIT_OK
    finally:
        engine.dispose()


def _token(arguments: argparse.Namespace, engine: Engine) -> None:
    if arguments.token_command == "create":
        scopes = [Scope(scope) for scope in arguments.scope or [Scope.INGEST]]
        print(create_token(engine, arguments.name, scopes))
    elif arguments.token_command == "list":
        for info in list_tokens(engine):
            state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
            granted = ",".join(info.scopes)
            print(f"{info.name}\t{granted}\t{info.created_at:%Y-%m-%d %H:%M}\t{state}")
    else:
        revoke_token(engine, arguments.name)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return _run(arguments)
    except (ConsoleDBError, AccountError) as error:
        print(f"scan-root console: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as error:
        # The driver's words, not a traceback: a refused connection, a missing database.
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        print(f"scan-root console: database error: {reason}", file=sys.stderr)
        return EXIT_USAGE
