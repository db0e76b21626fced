"""Reports waiting for the console: one file each, written atomically, bounded in bytes."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from scanner.atomic import write_atomically

__all__ = ["Spool", "SpoolEntry", "SpoolError"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 << 20
SUFFIX = ".json"
# <nanoseconds>-<scan_id>.json: the time orders the queue (oldest first); the scan id is a
# UUID (scanner.report.new_scan_id), nothing a report's author could make into a path.
_NAME = re.compile(
    r"(\d{19,20})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json"
)
CORRUPT = "corrupt"
# What a spool keeps in the corrupt/ quarantine for someone to look at: the files themselves
# count toward the bound too.
MAX_CORRUPT_FILES = 16


# How many of each loss list a report said (see Spool.take_losses).
LossMark = tuple[int, int, int]


class SpoolError(OSError):
    """The spool directory cannot be used at all (not creatable, not a directory)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    path: Path
    scan_id: str
    size: int


@dataclass(slots=True)
class _Losses:
    """What was lost since the last report that said so (reported once, then cleared)."""

    dropped: list[str] = field(default_factory=list)  # scan ids dropped for room
    corrupt: list[str] = field(default_factory=list)  # file names quarantined
    refused: list[str] = field(default_factory=list)  # "scan id: why" the console refused


class Spool:
    """A directory of reports, oldest first; `put` makes room by dropping the oldest ones.
    One defender owns it (not thread-safe).

    Files are written to a temporary name, fsynced, renamed and the directory fsynced: after
    a crash a report is there whole or not at all. What is dropped or found corrupt is kept in
    `losses` and in `losses.json` until a report carries it to the console (`take_losses`).
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 1024:
            raise ValueError("the spool needs at least 1 KiB")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A spool that is a symlink is refused: whoever swapped it could point it at a
            # directory of other files, which the spool would quarantine and delete as "not a
            # spool file" (tests/test_defender_adversary.py).
            if self.directory.is_symlink():
                raise OSError(errno.ELOOP, "is a symbolic link, not the spool directory")
            (self.directory / CORRUPT).mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise SpoolError(error.errno, f"spool {self.directory}: {error.strerror}") from error
        self._losses = self._read_losses()
        self._clean_temporaries()
        # What a crash or someone else left here is judged now, so that the first report of
        # this run can say it, not one a cycle later.
        for entry in self._scan():
            self.read(entry)

    # -- writing ---------------------------------------------------------------------------

    def put(self, scan_id: str, body: bytes) -> SpoolEntry:
        """Store one report (its JSON bytes); the oldest go first when it would not fit."""
        if _NAME.fullmatch(f"{'0' * 19}-{scan_id}{SUFFIX}") is None:
            raise ValueError(f"not a scan id: {scan_id!r}")
        if len(body) > self.max_bytes:
            # Kept nowhere: said in the next report, like a report dropped for room.
            self._losses.dropped.append(scan_id)
            self._write_losses()
            raise ValueError(f"report {scan_id} ({len(body)} bytes) is larger than the spool")
        self._make_room(len(body))
        name = f"{time.time_ns():020d}-{scan_id}{SUFFIX}"
        path = self.directory / name
        write_atomically(str(path), body)
        return SpoolEntry(path, scan_id, len(body))

    def _make_room(self, incoming: int) -> None:
        corrupt = sorted((self.directory / CORRUPT).iterdir())
        pending = list(self._scan())
        used = sum(_size(path) for path in corrupt) + sum(entry.size for entry in pending)
        # Quarantined files first (already reported), then the oldest reports.
        while corrupt and (used + incoming > self.max_bytes or len(corrupt) > MAX_CORRUPT_FILES):
            victim = corrupt.pop(0)
            used -= _size(victim)
            _unlink(victim)
        while pending and used + incoming > self.max_bytes:
            victim_entry = pending.pop(0)
            used -= victim_entry.size
            _unlink(victim_entry.path)
            self._losses.dropped.append(victim_entry.scan_id)
            log.warning("spool full: dropped report %s", victim_entry.scan_id)
        self._write_losses()

    # -- reading ---------------------------------------------------------------------------

    def pending(self) -> list[SpoolEntry]:
        """The reports waiting, oldest first (corrupt ones moved aside as they are found)."""
        return list(self._scan())

    def read(self, entry: SpoolEntry) -> bytes | None:
        """The report's bytes, or None when it is corrupt (then quarantined and reported)."""
        try:
            with _open_regular(entry.path) as handle:
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            return None  # delivered or dropped meanwhile
        except OSError as error:
            self._quarantine(entry.path, f"unreadable: {error.strerror}")
            return None
        if not _is_report(data, entry.scan_id):
            self._quarantine(entry.path, "not the report its name says")
            return None
        return data

    def lost(self, scan_id: str) -> None:
        """A report that could not be written (a full disk): said in the next one that is."""
        self._losses.dropped.append(scan_id)
        try:
            self._write_losses()
        except OSError as error:
            log.error("spool: cannot record the loss of %s: %s", scan_id, error.strerror)

    def remove(self, entry: SpoolEntry) -> None:
        _unlink(entry.path)
        _fsync_directory(self.directory)

    def refused(self, entry: SpoolEntry, reason: str) -> None:
        """The console will never take this report: kept aside, and said in the next one."""
        self._losses.refused.append(f"{entry.scan_id}: {reason}")
        self._write_losses()
        self._quarantine(entry.path, reason, report=False)

    def _scan(self) -> Iterator[SpoolEntry]:
        for path in sorted(self.directory.iterdir()):
            if path.name in (CORRUPT, LOSSES) or path.name.startswith("."):
                continue
            match = _NAME.fullmatch(path.name)
            try:
                regular = path.is_file() and not path.is_symlink()
            except OSError:
                regular = False
            if match is None or not regular:
                self._quarantine(path, "not a spool file")
                continue
            yield SpoolEntry(path, match.group(2), _size(path))

    def _quarantine(self, path: Path, reason: str, *, report: bool = True) -> None:
        target = self.directory / CORRUPT / f"{time.time_ns():020d}-{path.name[:100]}"
        try:
            os.rename(path, target)
        except OSError as error:
            log.error("spool: cannot move %s aside (%s); removing it", path.name, error.strerror)
            _unlink(path)
        log.error("spool: %s is %s; moved to %s", path.name, reason, CORRUPT)
        if report:
            self._losses.corrupt.append(f"{path.name[:100]}: {reason}")
            self._write_losses()

    # -- losses ----------------------------------------------------------------------------

    def take_losses(self) -> tuple[list[str], LossMark]:
        """What was lost and not yet said, as sentences for a report's problems, and a mark
        to pass `commit_losses` once that report is safely spooled (losses after the mark,
        such as a report dropped to make room for this one, stay for the next report)."""
        losses = self._losses
        out = []
        if losses.dropped:
            out.append(
                f"spool: {len(losses.dropped)} earlier report(s) dropped (spool full or larger "
                f"than --spool-max-bytes): scan ids {', '.join(losses.dropped[:20])}"
                + (" ..." if len(losses.dropped) > 20 else "")
            )
        if losses.corrupt:
            out.append(
                f"spool: {len(losses.corrupt)} corrupt spool file(s) set aside: "
                + "; ".join(losses.corrupt[:10])
            )
        if losses.refused:
            out.append(
                f"console refused {len(losses.refused)} report(s): "
                + "; ".join(losses.refused[:10])
            )
        return out, (len(losses.dropped), len(losses.corrupt), len(losses.refused))

    def commit_losses(self, mark: LossMark) -> None:
        if not any(mark):
            return
        dropped, corrupt, refused = mark
        losses = self._losses
        self._losses = _Losses(
            losses.dropped[dropped:], losses.corrupt[corrupt:], losses.refused[refused:]
        )
        self._write_losses()

    def _read_losses(self) -> _Losses:
        try:
            with _open_regular(self.directory / LOSSES) as handle:
                document = json.loads(handle.read(1 << 20))
            return _Losses(
                dropped=[str(item) for item in document.get("dropped", [])][:1000],
                corrupt=[str(item) for item in document.get("corrupt", [])][:1000],
                refused=[str(item) for item in document.get("refused", [])][:1000],
            )
        except FileNotFoundError:
            return _Losses()
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            # RecursionError: another process may write here, and deeply nested JSON makes
            # json.loads recurse past the limit (tests/test_defender_adversary.py).
            # Its own record of losses lost: that itself is said.
            return _Losses(corrupt=[f"{LOSSES}: unreadable, earlier losses unknown"])

    def _write_losses(self) -> None:
        document = {
            "dropped": self._losses.dropped[-1000:],
            "corrupt": self._losses.corrupt[-1000:],
            "refused": self._losses.refused[-1000:],
        }
        write_atomically(str(self.directory / LOSSES), json.dumps(document).encode())

    def _clean_temporaries(self) -> None:
        for path in self.directory.glob(".*.tmp"):
            _unlink(path)  # a write a crash interrupted: never renamed, so never a report


LOSSES = "losses.json"


def _is_report(data: bytes, scan_id: str) -> bool:
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("scan_id") == scan_id


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file, never through a symlink.

    Another process may write into the spool: a FIFO would block open() forever and a
    symlink to /dev/zero or a secret would be read as ours, so O_NONBLOCK | O_NOFOLLOW and
    a check of what was opened (not of the name, which can change in between).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
