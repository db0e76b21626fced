"""The console's advisory database for the defender: fetched with its ETag, kept on disk."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vulndb.store import StoreError, VulnDB

from .delivery import ConsoleClient
from .etags import forget, read_etag, write_etag

__all__ = ["AdvisoryCache", "AdvisoryState"]

log = logging.getLogger(__name__)

VULNDB_PATH = "/api/v1/vulndb"
# Written to disk in pieces, never held in memory; a real Debian + Alpine database is ~30 MB.
MAX_VULNDB_BYTES = 1 << 30
# A download may take longer than a report's exchange: this long in all, then the cached copy.
DOWNLOAD_SECONDS = 600.0


@dataclass(slots=True)
class AdvisoryState:
    path: str | None  # the database scans match against; None: no vulnerabilities
    problems: list[str] = field(default_factory=list)


class AdvisoryCache:
    """`GET /api/v1/vulndb` with If-None-Match into `directory`/vulndb.sqlite.

    `--vulndb PATH` wins: that file is used as it is, never fetched. A download replaces the
    cached copy only once it opens as an advisory database of this schema (a rename: a scan
    reading the old copy keeps it). A 404 (the console serves none) removes the copy. The
    console away: the cached copy, said as a problem."""

    def __init__(
        self, client: ConsoleClient | None, directory: str | os.PathLike[str], fixed: str | None
    ) -> None:
        self.client = client
        self.fixed = fixed
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._path = self.directory / "vulndb.sqlite"
        self._etag_path = self.directory / "vulndb.etag"

    def refresh(self) -> AdvisoryState:
        if self.fixed is not None:
            return AdvisoryState(self.fixed)
        cached = str(self._path) if self._usable(self._path) else None
        if self.client is None:
            return AdvisoryState(cached)
        headers = {"Accept": "application/vnd.sqlite3"}
        etag = read_etag(self._etag_path) if cached else None
        if etag:
            headers["If-None-Match"] = etag
        with tempfile.NamedTemporaryFile(
            dir=self.directory, prefix=".vulndb.", delete=False
        ) as part:
            staging = Path(part.name)
            try:
                status, answer_headers, _ = self.client.request(
                    "GET",
                    VULNDB_PATH,
                    headers=headers,
                    max_bytes=MAX_VULNDB_BYTES,
                    into=part,
                    whole_seconds=DOWNLOAD_SECONDS,
                )
                part.flush()
                os.fsync(part.fileno())
            except OSError as error:
                staging.unlink(missing_ok=True)
                return self._fallback(cached, f"console unreachable ({error})")
        if status != 200:
            staging.unlink(missing_ok=True)
            if status == 304 and cached:
                return AdvisoryState(cached)
            if status == 404:
                forget(self._path, self._etag_path)
                return AdvisoryState(None)
            return self._fallback(cached, f"console answered {status}")
        if not self._usable(staging):
            staging.unlink(missing_ok=True)
            return self._fallback(cached, "the console's advisory database does not open")
        os.replace(staging, self._path)
        write_etag(self._etag_path, answer_headers)
        return AdvisoryState(str(self._path))

    def _fallback(self, cached: str | None, why: str) -> AdvisoryState:
        used = "the cached copy was used" if cached else "no vulnerabilities were matched"
        message = f"advisory database: {why}; {used}"
        log.warning("%s", message)
        return AdvisoryState(cached, [message])

    @staticmethod
    def _usable(path: Path) -> bool:
        try:
            VulnDB.open_read(path).close()
        except StoreError:
            return False
        return True
