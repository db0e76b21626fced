"""Reads rpm's installed-package database in-process: SQLite, Berkeley DB hash or ndb.

No `rpm` binary, no librpm, no Berkeley DB library. Every database file is opened through
RootFS (no symlink leaves the root) and never written: SQLite opens it immutable, the others
are read with pread.

Which database: a root may hold several (a converted image keeps its old `Packages`;
`var/lib/rpm` is often a symlink to `usr/lib/sysimage/rpm`, which makes two names for one
file: files are told apart by device and inode). We read the one rpm would use, in this order:
`usr/lib/sysimage/rpm/rpmdb.sqlite`, `var/lib/rpm/rpmdb.sqlite`, then ndb `Packages.db`, then
Berkeley DB `Packages` (each in `usr/lib/sysimage/rpm`, then `var/lib/rpm`). Every other
database present is named in a problem ("not read"). If the chosen one cannot be used at all,
the next one present is read instead and the failure is a problem; if none can be used,
`RpmDBError`. A database path that holds something unusable (a fifo, a device, a directory) or
cannot be looked up (a symlink loop in its directories) counts as present: a problem, never
"no rpm database".

Per header: a header that cannot be parsed, or whose SHA-256/SHA-1 header digest does not match
its immutable region (`_digest.py`), is a problem naming the database and the header number,
and the others are still read. Which files give records (ghosts, file states, types)
and what of them is verified is described in `_package.py`; the counts are in `RpmDB.skipped`.
"""

from __future__ import annotations

import errno
import gc
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..records import PackageDB, PkgDBError, PkgDBProblem
from ..rootfs import RootFS
from . import _bdb, _digest, _header, _ndb, _sqlite
from ._package import MANAGER, ConvertedHeader, Skipped, convert
from ._source import Backend, BlobProblem, HeaderBlob, StorageError

__all__ = [
    "DATABASES",
    "DATABASE_DIRS",
    "MANAGER",
    "RpmDB",
    "RpmDBError",
    "SkippedFiles",
    "present",
    "read",
]

_SYSIMAGE = b"usr/lib/sysimage/rpm/"
_VAR_LIB = b"var/lib/rpm/"
# Where this reader reads by path (an image keeps these files whole: scanner/targets/image.py).
DATABASE_DIRS = (_SYSIMAGE.rstrip(b"/"), _VAR_LIB.rstrip(b"/"))

# The storage formats, in the order rpm would prefer them; mypy checks each against Backend.
_BACKENDS: tuple[Backend, ...] = (_sqlite, _ndb, _bdb)
# (path inside the root, backend module), in the order rpm would prefer them.
DATABASES: tuple[tuple[bytes, Backend], ...] = tuple(
    (directory + backend.FILENAME, backend)
    for backend in _BACKENDS
    for directory in (_SYSIMAGE, _VAR_LIB)
)


class RpmDBError(PkgDBError):
    """No rpm database in the root can be used at all."""


@dataclass(frozen=True, slots=True)
class SkippedFiles:
    """Files the headers list whose content is not verified, by reason (rpm -V skips it too)."""

    ghost: int = 0  # %ghost: content never installed by rpm (a record: permissions verified)
    not_normal_state: int = 0  # FILESTATES not installed / net-shared (no record)
    directory: int = 0
    other_type: int = 0  # devices, fifos, sockets


@dataclass(frozen=True, slots=True)
class RpmDB(PackageDB):
    """What the rpm database says is installed, which database was read, and what was skipped."""

    database: bytes = b""  # the file read, relative to the root
    backend: str = ""  # "sqlite", "bdb" or "ndb"
    headers: int = 0  # header blobs found (packages + unreadable ones)
    skipped: SkippedFiles = SkippedFiles()


def present(root: RootFS) -> bool:
    """Whether `root` holds any rpm database file, or something unusable where one belongs."""
    problems: list[PkgDBProblem] = []
    return bool(_found(root, problems) or problems)


def read(root: RootFS) -> RpmDB:
    """Read the rpm database rpm would use in `root`; RpmDBError only if none is usable."""
    problems: list[PkgDBProblem] = []
    found = _found(root, problems)
    if not found:
        if problems:  # a database path holds a fifo, a device, a directory, or loops
            raise RpmDBError(
                "; ".join(f"/{p.source.decode(errors='replace')}: {p.message}" for p in problems)
            )
        looked = ", ".join("/" + path.decode() for path, _ in DATABASES)
        raise RpmDBError(f"no rpm database found (looked for {looked})")
    failures: list[str] = []
    for index, (path, backend) in enumerate(found):
        try:
            result = _read_one(root, path, backend, problems)
        except StorageError as error:
            message = f"cannot be read as rpm {backend.NAME} database: {error}"
            failures.append(f"/{path.decode(errors='replace')}: {message}")
            problems.append(PkgDBProblem(MANAGER, path, message))
            continue
        for other, other_backend in found[index + 1 :]:
            problems.append(
                PkgDBProblem(
                    MANAGER,
                    other,
                    f"not read: rpm would use /{path.decode(errors='replace')} "
                    f"({backend.NAME}) first; this {other_backend.NAME} database may be stale",
                )
            )
        return replace(result, problems=tuple(problems))
    raise RpmDBError("; ".join(failures))


def _found(root: RootFS, problems: list[PkgDBProblem]) -> list[tuple[bytes, Backend]]:
    """The database files present, in preference order, one entry per distinct file."""
    found: list[tuple[bytes, Backend]] = []
    seen: set[tuple[int, int]] = set()
    for path, backend in DATABASES:
        try:
            st = root.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # nothing there (or a parent is a plain file): no database
        except OSError as error:
            # a symlink loop in the rpmdb directory's path, or no permission to look: a
            # database may be there, unseen (never "no package manager")
            problems.append(PkgDBProblem(MANAGER, path, f"cannot be looked up: {error.strerror}"))
            continue
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            problems.append(PkgDBProblem(MANAGER, path, f"{kind}, not read"))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue  # the same file under its other directory name
        seen.add((st.st_dev, st.st_ino))
        found.append((path, backend))
    return found


def _read_one(root: RootFS, path: bytes, backend: Backend, problems: list[PkgDBProblem]) -> RpmDB:
    try:
        fd = root.open(path)
    except OSError as error:
        raise StorageError(f"cannot open: {error.strerror}") from error
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StorageError("not a regular file")
        if backend is _sqlite:
            _check_wal(root, path, problems)
        # Tens of thousands of records, none in a reference cycle: the cyclic collector would
        # only rescan the growing list at every 700 allocations (~20% of the read, measured).
        # The same pause as Mercurial's util.nogc; restored even if it was off before.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _collect(path, backend, backend.blobs(fd), problems)
        finally:
            if collecting:
                gc.enable()
    except OSError as error:
        if error.errno == errno.EISDIR:
            raise StorageError("a directory") from error
        raise StorageError(f"read error: {error.strerror}") from error
    finally:
        os.close(fd)


def _collect(
    path: bytes,
    backend: Backend,
    blobs: Iterable[HeaderBlob | BlobProblem],
    problems: list[PkgDBProblem],
) -> RpmDB:
    """Parse every blob; problems go to `problems` (the caller puts them in the result)."""
    skipped = Skipped()
    packages = []
    files = []
    headers = 0

    def problem(number: int | None, message: str) -> None:
        where = "" if number is None else f"header {number}: "
        problems.append(PkgDBProblem(MANAGER, path, where + message))

    for item in blobs:
        if isinstance(item, BlobProblem):
            problem(item.number, item.message)
            continue
        headers += 1
        try:
            header = _header.parse(item.data)
            converted: ConvertedHeader = convert(header, skipped)
        except _header.HeaderError as error:
            problem(item.number, f"unreadable header: {error}")
            continue
        label = f"{converted.package.name}: "
        # Its files are still listed: a finding on them is worth more than silence, and the
        # problem already makes the verdict incomplete.
        try:
            damaged = _digest.check(item.data, header)
        except _header.HeaderError as error:
            damaged = f"header digest tag unreadable: {error}"
        if damaged is not None:
            problem(item.number, label + damaged)
        for message in converted.problems:
            problem(item.number, label + message)
        packages.append(converted.package)
        files.extend(converted.files)
    return RpmDB(
        packages=tuple(packages),
        files=tuple(files),
        problems=(),
        database=path,
        backend=backend.NAME,
        headers=headers,
        skipped=SkippedFiles(
            skipped.ghost, skipped.not_normal_state, skipped.directory, skipped.other_type
        ),
    )


def _check_wal(root: RootFS, path: bytes, problems: list[PkgDBProblem]) -> None:
    wal = path + b"-wal"
    try:
        size = root.lstat(wal).st_size
    except OSError:
        return
    if size:
        problems.append(
            PkgDBProblem(
                MANAGER,
                wal,
                f"write-ahead log of {size} bytes not read (the database is opened immutable): "
                "transactions not yet checkpointed are missing",
            )
        )
