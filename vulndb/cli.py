"""The `scan-root vulndb` command: import advisory sources into the local database, show it."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import sys
from collections.abc import Sequence

from .release import DISPLAY_NAMES
from .sources import SourceError, detect, read
from .store import StoreError, VulnDB, default_path

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2

DESCRIPTION = """\
The local advisory database scans match packages against (`scan-root ROOT --vulndb PATH`).

  scan-root vulndb import SOURCE... [--db PATH]   add or refresh advisories (incremental)
  scan-root vulndb status [--db PATH]             sources, ecosystems, counts and age

A SOURCE is judged by its content: an OSV record, a directory of records, an OSV all.zip
export, an Alpine secdb file, the Debian security tracker's JSON, or Rocky/Alma errata.
The database is $SCAN_ROOT_VULNDB, else ~/.cache/scan-root/vulndb.sqlite."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root vulndb",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    importing = commands.add_parser("import", help="import advisory sources")
    importing.add_argument("sources", nargs="+", metavar="SOURCE")
    importing.add_argument("--db", metavar="PATH", help="the database (created when absent)")
    importing.add_argument(
        "--name",
        metavar="NAME",
        help="the name reports give the source (default: the SOURCE's file name)",
    )
    status = commands.add_parser("status", help="what the database holds")
    status.add_argument("--db", metavar="PATH", help="the database")
    status.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.db or str(default_path())
    if args.command == "import":
        return _import(path, args.sources, args.name)
    return _status(path, args.format)


def _say(message: str) -> None:
    print(f"scan-root vulndb: {_printable(message)}", file=sys.stderr)


def _import(path: str, sources: list[str], name: str | None) -> int:
    try:
        db = VulnDB.open_write(path)
    except (StoreError, OSError) as error:
        _say(str(error))
        return EXIT_USAGE
    status = EXIT_OK
    with db:
        for source in sources:
            label = name or os.path.basename(os.path.normpath(source)) or source
            try:
                kind = detect(source)
                result = db.import_advisories(read(source), label=label)
            except (SourceError, StoreError, sqlite3.Error) as error:
                # Nothing of this source was stored: an import is one transaction.
                _say(f"{error} (nothing imported from it)")
                status = EXIT_USAGE
                continue
            print(
                f"{_printable(source)}: {kind.value}, {result.advisories} advisories: "
                f"{result.added} added, {result.replaced} changed, {result.unchanged} unchanged"
            )
    return status


def _status(path: str, output: str) -> int:
    try:
        db = VulnDB.open_read(path)
    except StoreError as error:
        _say(str(error))
        return EXIT_USAGE
    try:
        with db:
            sources = db.sources()
            ecosystems = sorted(
                db.ecosystems().items(), key=lambda item: (item[0].distro.value, item[0].release)
            )
    except sqlite3.Error as error:  # our table names, someone else's columns
        _say(f"{path}: not a usable advisory database: {error}")
        return EXIT_USAGE
    last = max((s.imported_at for s in sources), default=None)
    if output == "json":
        document = {
            "database": path,
            "last_import": last,
            "sources": [
                {
                    "kind": s.kind,
                    "name": s.label,
                    "imported_at": s.imported_at,
                    "newest": s.newest,
                    "entries": s.units,
                }
                for s in sources
            ],
            "ecosystems": [
                {"distro": e.distro.value, "release": e.release, "entries": count}
                for e, count in ecosystems
            ],
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    print(f"database: {_printable(path)}")
    print(f"last import: {last or 'never'}{_age(last)}")
    for s in sources:
        print(
            f"source {_printable(s.kind)}:{_printable(s.label)}: {s.units} entries, "
            f"imported {s.imported_at}, newest advisory {_printable(s.newest or 'unknown')}"
        )
    for ecosystem, count in ecosystems:
        shown = f"{DISPLAY_NAMES[ecosystem.distro]} {ecosystem.release}"
        print(f"ecosystem {_printable(shown)}: {count} entries")
    return EXIT_OK


def _age(stamp: str | None) -> str:
    """` (3 days ago)`: a database nobody refreshed says so."""
    if stamp is None:
        return ""
    try:
        then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return ""
    days = (datetime.datetime.now(datetime.UTC) - then).days
    return " (today)" if days < 1 else f" ({days} days ago)"


def _printable(text: str) -> str:
    """Names come from files we do not trust: no terminal escapes reach the user's screen."""
    return "".join(c if c.isprintable() else "?" for c in text)
