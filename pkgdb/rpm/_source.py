"""The one protocol every rpmdb storage backend follows: given an open file, yield header blobs.

A backend module (`_sqlite`, `_bdb`, `_ndb`) exposes `NAME` (the backend's name in rpm's
`%_db_backend` terms), `FILENAME` (its file inside the rpmdb directory) and
`blobs(fd) -> Iterator[HeaderBlob | BlobProblem]`. `blobs` raises `StorageError` at once when
the file is not usable at all (wrong magic, unsupported version, unreadable); damage found
later is yielded as a `BlobProblem` and the backend goes on with the next record where it can.
Backends never parse headers and never see the root: the reader opens the file inside the root.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

__all__ = ["Backend", "BlobProblem", "HeaderBlob", "StorageError"]


# Plain slotted classes, not dataclasses: each dataclass costs about a millisecond of import time
# at every start of the scanner, and these never leave pkgdb.rpm.
class HeaderBlob:
    """One stored header, as rpm wrote it."""

    __slots__ = ("data", "number")

    def __init__(self, number: int, data: bytes) -> None:
        self.number = number  # rpm's header number: sqlite `hnum`, Berkeley DB key, ndb `pkgidx`
        self.data = data

    def __repr__(self) -> str:
        return f"HeaderBlob({self.number}, <{len(self.data)} bytes>)"


class BlobProblem:
    """A record (or a part of the file) that could not be read; reading goes on."""

    __slots__ = ("message", "number")

    def __init__(self, number: int | None, message: str) -> None:
        self.number = number  # the header number concerned, when known
        self.message = message

    def __repr__(self) -> str:
        return f"BlobProblem({self.number!r}, {self.message!r})"


class StorageError(Exception):
    """The database file cannot be used at all by this backend."""


class Backend(Protocol):
    NAME: str
    FILENAME: bytes

    def blobs(self, fd: int) -> Iterator[HeaderBlob | BlobProblem]: ...
