"""`GET /api/v1/vulndb`: the console's advisory database for defenders, as a consistent
snapshot with a strong ETag (304 when the defender's copy is current); 404 when the console
serves none (`serve --vulndb PATH`, filled by `scan-root vulndb import --db PATH`)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from vulndb.store import StoreError, VulnDB

from .policy_api import FETCHERS, matches
from .web import authorize, error

__all__ = ["SQLITE_TYPE", "Snapshots", "routes"]

SQLITE_TYPE = "application/vnd.sqlite3"

log = logging.getLogger("scan-root.console")


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path
    etag: str
    source: tuple[int, int, int]  # (inode, size, mtime_ns) of the database it was copied from


class Snapshots:
    """Copies of the database, made with SQLite's backup API: an import running meanwhile is
    never seen half done (the file itself may be mid-transaction). A copy is made again only
    when the database file changed; it is checked to be ours before it is served."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._directory = Path(tempfile.mkdtemp(prefix="scan-root-console-vulndb."))
        # Removed with this object (the app's), or at the process's exit.
        weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        self._lock = threading.Lock()
        self._current: Snapshot | None = None

    def current(self) -> Snapshot:
        """The snapshot of the database as it is now; StoreError when it cannot be used."""
        with self._lock:
            try:
                info = os.stat(self.database)
            except OSError as error:
                raise StoreError(f"{self.database}: {error.strerror}") from error
            source = (info.st_ino, info.st_size, info.st_mtime_ns)
            if self._current is not None and self._current.source == source:
                return self._current
            VulnDB.open_read(self.database).close()  # ours, this schema, a regular file
            staging = self._directory / "staging.sqlite"
            staging.unlink(missing_ok=True)
            reader = sqlite3.connect(f"{self.database.resolve().as_uri()}?mode=ro", uri=True)
            writer = sqlite3.connect(staging)
            try:
                reader.backup(writer)
            finally:
                writer.close()
                reader.close()
            digest = hashlib.sha256()
            with open(staging, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            etag = f'"{digest.hexdigest()}"'
            path = self._directory / f"{digest.hexdigest()}.sqlite"
            os.replace(staging, path)
            if self._current is not None and self._current.path != path:
                # a response still sending it holds it open: unlinking frees it afterwards
                self._current.path.unlink(missing_ok=True)
            self._current = Snapshot(path, etag, source)
            return self._current


async def advisory_database(request: Request) -> Response:
    settings = request.app.state.settings
    authorized = await authorize(request, settings.engine, FETCHERS, "ingest or read")
    if isinstance(authorized, Response):
        return authorized
    if request.query_params:
        return error(
            422, "the advisory database takes no parameters", next(iter(request.query_params))
        )
    if settings.vulndb is None:
        return error(404, "this console serves no advisory database: defenders match none")
    # One Snapshots per database path, kept by the app: its copy outlives the request.
    known: dict[Path, Snapshots] = request.app.state.vulndb_snapshots
    snapshots = known.setdefault(settings.vulndb, Snapshots(settings.vulndb))
    try:
        snapshot = await run_in_threadpool(snapshots.current)
    except (StoreError, sqlite3.Error) as failure:
        # The console's own file: its operator reads the log, a defender keeps its copy.
        log.error("advisory database: %s", failure)
        return error(503, "the advisory database cannot be read now", retry_after=True)
    headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
    given = request.headers.get("if-none-match")
    if given is not None and matches(given, snapshot.etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(snapshot.path, media_type=SQLITE_TYPE, headers=headers)


routes = [Route("/api/v1/vulndb", advisory_database, methods=["GET"])]
