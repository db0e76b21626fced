"""Reads header blobs from rpm's SQLite `rpmdb.sqlite` (rpm >= 4.16), read-only and immutable.

rpm's sqlite backend (`lib/backend/sqlite.c`) keeps each header in `Packages(hnum INTEGER
PRIMARY KEY, blob BLOB)`; the other tables are indexes we do not need.

The file is opened by the reader inside the root (no symlink leaves it); we hand SQLite that
open file as `/proc/self/fd/N` with `mode=ro&immutable=1`: read-only, no locking, and no
`-shm`/`-wal` file is ever created beside it (never write into a scanned root). SQLite
resolves the magic link to the file's physical path and opens that, so we first check that
the path still names our file (same device and inode). Without /proc (or if the check fails)
we read the file, bounded, through our fd and hand SQLite the bytes (`deserialize`): same
result, more memory. An immutable open ignores an uncommitted write-ahead log; the reader
reports a non-empty `-wal` beside the database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from ._source import BlobProblem, HeaderBlob, StorageError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FILENAME", "MAX_DESERIALIZE_BYTES", "NAME", "blobs"]

NAME: Final = "sqlite"
FILENAME: Final = b"rpmdb.sqlite"

# Only the fallback reads the whole file into memory; far above any real rpmdb (~100 MB).
MAX_DESERIALIZE_BYTES: Final = 1 << 30
_SQLITE_MAGIC = b"SQLite format 3\0"


def blobs(fd: int) -> Iterator[HeaderBlob | BlobProblem]:
    """Open the SQLite rpmdb at `fd` without writing anything; yield its header blobs."""
    if os.pread(fd, 16, 0) != _SQLITE_MAGIC:
        raise StorageError("no SQLite magic: not an SQLite database")
    # Imported here, not at the top: sqlite3 (with datetime) costs ~2 ms at every start of the
    # scanner, and only roots with an SQLite rpmdb need it.
    import sqlite3

    try:
        connection = _connect(fd)
        cursor = connection.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")
    except sqlite3.Error as error:
        raise StorageError(f"SQLite cannot read it: {error}") from error
    except UnicodeDecodeError as error:
        # SQLite's message quotes the damaged schema, which Python cannot decode
        raise StorageError(f"SQLite cannot read it: damaged schema ({error.reason})") from error
    return _rows(connection, cursor)


def _connect(fd: int) -> sqlite3.Connection:
    import sqlite3  # already loaded by blobs()

    link = f"/proc/self/fd/{fd}"
    try:
        same = _same_file(os.stat(os.readlink(link)), os.fstat(fd))
    except OSError:
        same = False
    if same:
        return sqlite3.connect(f"file:{link}?mode=ro&immutable=1", uri=True)
    size = os.fstat(fd).st_size
    if size > MAX_DESERIALIZE_BYTES:
        raise StorageError(f"{size} bytes: too large to load without /proc")
    data = bytearray(os.pread(fd, size, 0))
    # rpm's databases are in WAL mode (header bytes 18 and 19 = 2), which an in-memory database
    # cannot open ("unable to open database file"); our private copy is read as a rollback-
    # journal one (1), which reads the same pages.
    if data[18:20] == b"\2\2":
        data[18:20] = b"\1\1"
    connection = sqlite3.connect(":memory:")
    connection.deserialize(bytes(data))
    return connection


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _rows(
    connection: sqlite3.Connection, cursor: sqlite3.Cursor
) -> Iterator[HeaderBlob | BlobProblem]:
    import sqlite3  # already loaded by blobs()

    try:
        while True:
            try:
                row = cursor.fetchone()
            except (sqlite3.Error, UnicodeDecodeError) as error:
                # a damaged page: SQLite stops the scan, so do we, keeping what was read
                yield BlobProblem(None, f"SQLite stopped reading Packages: {error}")
                return
            if row is None:
                return
            number, blob = row
            if not isinstance(number, int) or not isinstance(blob, bytes):
                yield BlobProblem(
                    number if isinstance(number, int) else None,
                    f"row holds {type(blob).__name__}, not a header blob",
                )
                continue
            yield HeaderBlob(number, blob)
    finally:
        connection.close()
