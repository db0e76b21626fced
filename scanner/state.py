"""The incremental-rescan state file: what the last scan verified, per file, and how to reuse it.

Layout (all integers little-endian), sealed by a trailing SHA-256 of everything before it:

    MAGIC                      b"SCANROOT-STATE\\n"
    u32 + JSON header          format, scanner version, check versions, target identity,
                               options fingerprint, 448's plan fingerprint, entry count, length
                               of the path blob, and the findings/problems of each file that
                               gave any ("verdicts", by hex path)
    count x RECORD             st_dev, st_ino, size, mtime_ns, ctime_ns, mode, verdict,
                               manifest key (16 bytes), xxh3-128 (16 bytes)
    path blob                  the entries' root-relative paths joined by NUL (never in a name)
    SHA-256                    32 bytes

Fixed-size records and one path blob load in a few milliseconds for ~20k files (struct's
iter_unpack and one split), and a flipped or missing byte anywhere fails the seal.

What is reused, and when (see docs/rescans.md): a file's verdict — nothing (clean),
or the findings and problems every check gave it, replayed as they were — when its manifest key
(the package records 448 judged it against) is unchanged and, for `stat`, its identity (device,
inode, size, mtime_ns, ctime_ns, mode) is unchanged and its ctime lies over a second before the
scan that recorded it (else a change in the same timestamp tick could go unseen: git's "racily
clean" problem); for `content`, its mode and xxh3-128 are unchanged. Findings and problems are
replayed only while 448's whole plan (every physical path and its package records) is the one
they were recorded under, since a finding names the package that owns its file. A file that
could not be read is never recorded. The whole state is dropped when the scanner, a check's
VERSION, the target or the options that shape verdicts differ.
The state is integrity-checked, not authenticated: whoever can write it can forge verdicts, so it
is created 0600 and kept outside the scanned root unless the caller explicitly allows otherwise.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import pickle
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from _native import HashResult, HashStatus, WalkEntry, mounts
from pkgdb import InstalledFile

from .atomic import write_atomically
from .errors import UsageError
from .jsonload import DEFAULT_MAX_NODES, InputFileError, count_nodes, load_json
from .memo import MAX_STATE_BYTES, Memo
from .miners import read_digests
from .report import Effect, Finding, FindingKind, PackageRef, Problem, ProblemKind, Severity
from .version import __version__

__all__ = [
    "FORMAT",
    "MAGIC",
    "NO_KEY",
    "Rescan",
    "StateError",
    "StateSession",
    "decode",
    "encode",
    "manifest_key",
    "open_state",
]

FORMAT = 1
MAGIC = b"SCANROOT-STATE\n"
RECORD = struct.Struct("<QQqqqIB16s16s")
_LENGTH = struct.Struct("<I")
_SEAL = 32  # SHA-256
NO_KEY = bytes(16)  # a file no package records (425/426 only)
# verdict byte: bits
CLEAN = 0  # no finding, no problem
RACY = 1  # ctime too close to the scan to trust an unchanged stat (content rescans only)
ITEMS = 2  # the file gave findings or problems: header["verdicts"][path.hex()]
# A timestamp tick is at most this long on the filesystems a root lives on (ext4/xfs/btrfs/
# overlayfs: the kernel's coarse clock, a few ms; ext3 and 128-byte ext4 inodes: 1 s).
RACY_NS = 1_000_000_000
# The header's JSON values (its recorded findings and problems: ~20 each) a scan reads back;
# jsonload's default, which bounds what a forged header can make of memory.
MAX_HEADER_NODES = DEFAULT_MAX_NODES

Entry = tuple[int, int, int, int, int, int, int, bytes, bytes]  # RECORD's fields, in order


class Rescan(enum.Enum):
    """How much of the state a scan trusts."""

    STAT = "stat"  # unchanged identity and manifest entry: the verdict stands, the file unread
    CONTENT = "content"  # every file read, only xxh3-128 computed; a mismatch is verified fully
    FULL = "full"  # the state is ignored, then rewritten


Item = Finding | Problem


def item_to_json(item: Item) -> dict[str, Any]:
    """A finding or problem as plain JSON, every field kept (paths as hex: they are bytes)."""
    package = None if item.package is None else list(_package_fields(item.package))
    if isinstance(item, Problem):
        return {
            "problem": True, "kind": item.kind, "message": item.message,
            "path": None if item.path is None else item.path.hex(), "check": item.check,
            "package": package, "errno": item.errno,
        }  # fmt: skip
    return {
        "check": item.check, "title": item.title, "severity": int(item.severity),
        "kind": item.kind, "path": item.path.hex(), "package": package,
        "expected": item.expected, "actual": item.actual, "algorithm": item.algorithm,
        "detail": item.detail, "config": item.config, "extra": dict(item.extra),
        "rule": item.rule, "effect": item.effect,
    }  # fmt: skip


def _package_fields(package: PackageRef) -> tuple[str, str, str]:
    return package.name, package.version, package.manager


def item_from_json(data: dict[str, Any]) -> Item:
    """The record item_to_json was given (StateError if it is not such a dict).

    The seal proves no authorship (anyone can compute it), so every field's type is checked:
    a replayed record reaches every output writer, which trusts its types.
    """
    try:
        raw_package = _field(data, "package", list, optional=True)
        package = None
        if raw_package is not None:
            if len(raw_package) != 3 or not all(isinstance(part, str) for part in raw_package):
                raise TypeError("package is not [name, version, manager]")
            package = PackageRef(*raw_package)
        if data.get("problem"):
            path_hex = _field(data, "path", str, optional=True)
            errno = _field(data, "errno", int, optional=True)
            return Problem(
                ProblemKind(_field(data, "kind", str)), _field(data, "message", str),
                None if path_hex is None else bytes.fromhex(path_hex),
                _field(data, "check", str, optional=True), package, errno,
            )  # fmt: skip
        extra = _field(data, "extra", dict)
        if not all(isinstance(key, str) for key in extra):
            raise TypeError("extra has a key that is not a string")
        return Finding(
            check=_field(data, "check", str), title=_field(data, "title", str),
            severity=Severity(_field(data, "severity", int)), kind=FindingKind(_field(data, "kind", str)),
            path=bytes.fromhex(_field(data, "path", str)), package=package,
            expected=_field(data, "expected", str, optional=True),
            actual=_field(data, "actual", str, optional=True),
            algorithm=_field(data, "algorithm", str, optional=True),
            detail=_field(data, "detail", str, optional=True),
            config=_field(data, "config", bool), extra=extra,
            rule=_field(data, "rule", str, optional=True),
            effect=_effect(_field(data, "effect", str, optional=True)),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise StateError(f"corrupt verdict: {error!r}") from error


def _effect(value: str | None) -> Effect | None:
    return None if value is None else Effect(value)


def _field(data: dict[str, Any], key: str, kind: type[Any], *, optional: bool = False) -> Any:
    """data[key], which must be a `kind` (None too when `optional`); TypeError when it is not.
    A bool is not an int here: JSON's true is no errno and no severity."""
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{key} is not a {kind.__name__}")
    return value


class StateError(ValueError):
    """The state file cannot be used (truncated, corrupt, foreign, stale): a full scan follows."""


def encode(header: dict[str, Any], entries: dict[bytes, Entry]) -> bytes:
    """The sealed file for `entries` ({path: Entry}); header's count/paths fields are set here.

    StateError when the header holds more JSON values than decode accepts (MAX_HEADER_NODES).
    """
    paths = b"\0".join(entries)
    header = dict(header, count=len(entries), paths_length=len(paths))
    text = json.dumps(header, sort_keys=True).encode()
    if count_nodes(text) > MAX_HEADER_NODES:
        raise StateError(f"more than {MAX_HEADER_NODES} JSON values in the header")
    pack = RECORD.pack
    body = b"".join(
        [MAGIC, _LENGTH.pack(len(text)), text, *(pack(*entry) for entry in entries.values()), paths]
    )
    return body + hashlib.sha256(body).digest()


def decode(data: bytes) -> tuple[dict[str, Any], dict[bytes, Entry]]:
    """(header, entries) of a sealed state file; StateError when it is not one, or damaged.

    Read through a memoryview: a state file of MAX_STATE_BYTES is not copied once more.
    """
    if not data.startswith(MAGIC):
        raise StateError("not a scan-root state file (bad magic)")
    if len(data) < len(MAGIC) + _LENGTH.size + _SEAL:
        raise StateError("truncated")
    view = memoryview(data)
    body, seal = view[:-_SEAL], view[-_SEAL:]
    if hashlib.sha256(body).digest() != seal:
        raise StateError("corrupt or truncated (checksum mismatch)")
    at = len(MAGIC)
    (length,) = _LENGTH.unpack_from(body, at)
    at += _LENGTH.size
    # Counted in place first: a forged header of a hundred megabytes is not copied to be refused.
    if count_nodes(data, at, min(at + length, len(body))) > MAX_HEADER_NODES:
        raise StateError(f"corrupt header: more than {MAX_HEADER_NODES} JSON values")
    try:
        header = load_json(
            bytes(body[at : at + length]),
            what="state header",
            max_bytes=len(body),
            max_nodes=MAX_HEADER_NODES,
        )
        if not isinstance(header, dict):
            raise TypeError("not a JSON object")
        count, paths_length = header["count"], header["paths_length"]
        if not all(type(n) is int and n >= 0 for n in (count, paths_length)):
            raise TypeError("count and paths_length are not sizes")
    except (ValueError, KeyError, TypeError) as error:  # JSONInputError is a ValueError
        raise StateError(f"corrupt header: {error}") from error
    at += length
    if len(body) != at + count * RECORD.size + paths_length:
        raise StateError("corrupt (sizes disagree with the header)")
    records = body[at : at + count * RECORD.size]
    paths = bytes(body[at + count * RECORD.size :]).split(b"\0") if count else []
    if len(paths) != count:
        raise StateError("corrupt (path count disagrees with the header)")
    return header, dict(zip(paths, RECORD.iter_unpack(records), strict=True))


# Every field of a package record that 448's verdict depends on.
_RECORD_FIELDS = attrgetter(
    "manager",
    "package",
    "version",
    "path",
    "algorithm",
    "digest",
    "mode",
    "size",
    "is_config",
    "link_target",
    "verify",
    "missing_ok",
)


def manifest_key(records: Sequence[InstalledFile]) -> bytes:
    """16 bytes naming every package record a path is judged against (a changed one: a new key).

    repr of plain values (str, bytes, int, None, an enum member) is the same in every process.
    """
    text = repr([_RECORD_FIELDS(record) for record in records])
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def plan_fingerprint(records: Mapping[bytes, Sequence[InstalledFile]]) -> str:
    """One digest of 448's whole plan (physical path -> its package records), ~10x cheaper than
    a manifest_key per path. Pickle's bytes for equal data may differ (its memo follows object
    identity), which only costs a per-path recomputation; equal bytes always mean equal data."""
    dumped = pickle.dumps(
        [(path, [_RECORD_FIELDS(record) for record in group]) for path, group in records.items()],
        protocol=5,
    )
    return hashlib.blake2b(dumped, digest_size=16).hexdigest()


def _inside(path: str, root: str, root_dev: int, root_mount: int | None = None) -> bool:
    """True when `path` would be part of the scanned tree: under the root, on its device and,
    when `root_mount` (the root's mount id) is known, on its mount (the walk never crosses a mount
    point, so a volume or a bind mount of a directory from elsewhere inside the root is outside
    it); or, wherever its path, in a directory the root shows (a bind of one of the root's own
    directories, or the directory the root is itself a bind of)."""
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)) or ".")
    real_root = os.path.realpath(root)
    under = directory == real_root or directory.startswith(real_root.rstrip("/") + "/")
    try:
        fd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return under  # cannot tell: under the root's path is inside, the safe answer
    try:
        if os.fstat(fd).st_dev != root_dev:
            return False
        if under:
            here = mounts.mount_id(fd) if root_mount is not None else None
            if here is None or here == root_mount:
                return True
        elif root_mount is None:
            return False  # no /proc: another path on the root's device is taken as elsewhere
        # Another mount of the root's file system, or another path: inside where the walk would
        # meet the same directory of that file system.
        return _below_in_file_system(fd, root, unknown=under)
    finally:
        os.close(fd)


def _below_in_file_system(fd: int, root: str, *, unknown: bool) -> bool:
    """True when the directory `fd` is the root or below it in their one file system; `unknown`
    when /proc cannot tell."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return unknown
    try:
        here, top = mounts.file_system_path(fd), mounts.file_system_path(root_fd)
    finally:
        os.close(root_fd)
    if here is None or top is None:
        return unknown
    return here == top or here.startswith(top.rstrip(b"/") + b"/")


@dataclass(slots=True)
class StateSession:
    """One scan's view of the state: what it may reuse, and the state it will write."""

    path: str
    level: Rescan
    header: dict[str, Any]
    started_ns: int
    previous: dict[bytes, Entry] = field(default_factory=dict)
    previous_plan: str | None = None
    loaded: bool = False  # `previous` came from a valid state file of this target and options
    current: dict[bytes, Entry] = field(default_factory=dict)
    skip: bytes | None = None  # the state file's own root-relative path, when inside the root
    same_plan: bool = False  # 448's plan is the one the previous state was written under
    unchanged: bool = True  # nothing recorded differs from the previous state (no rewrite)
    previous_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    current_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # A state inside the root: its directory, opened beneath the root without following a
    # symlink, written through (None: the path as given); `writable` false when there is none.
    directory_fd: int | None = None
    writable: bool = True

    def use_plan(
        self,
        records: Mapping[bytes, Sequence[InstalledFile]],
        complete: bool,
        fingerprint: str | None = None,
    ) -> None:
        """Fingerprint 448's plan (unless given: a kept plan's, scanner/memo.py): when it is the
        previous scan's, stored manifest keys hold and stored findings may be replayed. Without
        448 (`complete` false) the plan is empty and says nothing of the packages that own
        files: findings are then judged again."""
        if not complete:
            fingerprint = None
        elif fingerprint is None:
            fingerprint = plan_fingerprint(records)
        self.same_plan = fingerprint is not None and self.previous_plan == fingerprint
        self.header["plan"] = fingerprint

    def _replay(self, path: bytes, old: Entry) -> list[Item] | None:
        """The stored verdict of `path` (carried into the new state), None when not replayable."""
        if not old[6] & ITEMS:
            self.current[path] = old
            return []
        stored = self.previous_items.get(path.hex())
        if not self.same_plan or not isinstance(stored, list) or not stored:
            return None  # ITEMS with nothing stored cannot be what this scanner wrote
        try:
            items = [item_from_json(data) for data in stored if isinstance(data, dict)]
            if len(items) != len(stored):
                return None
        except StateError:
            return None  # sealed, so only a scanner bug could get here: judge again
        self.current[path] = old
        self.current_items[path.hex()] = stored
        return items

    def key(self, path: bytes, records: Sequence[InstalledFile] | None) -> bytes:
        """The manifest key of a path (NO_KEY when 448 does not verify it)."""
        if records is None:
            return NO_KEY
        if self.same_plan:
            old = self.previous.get(path)
            if old is not None and old[7] != NO_KEY:
                return old[7]
        return manifest_key(records)

    def fast_stat(self) -> bool:
        """STAT level under the previous plan: a recorded path's manifest key holds (same plan,
        same paths verified) and it was a regular file the options did not exclude, so an
        entry with a clean verdict may be reused on its identity alone (content.py's fast
        path; it is what reuse_stat decides for it)."""
        return self.level is Rescan.STAT and self.loaded and self.same_plan

    def clean_entries(self) -> dict[bytes, Entry]:
        """The previous entries with a clean verdict (the fast path's: see fast_stat)."""
        return {path: entry for path, entry in self.previous.items() if entry[6] == CLEAN}

    def carry(self, paths: list[bytes]) -> None:
        """Keep the previous entries of `paths` (the fast path's reuses) in the new state."""
        self.current.update(zip(paths, map(self.previous.__getitem__, paths)))

    def reuse_stat(self, entry: WalkEntry, key: bytes) -> list[Item] | None:
        """STAT level: the stored verdict of this unchanged file (kept for the next scan): its
        findings and problems, [] when clean; None when the file must be judged again."""
        old = self.previous.get(entry.path)
        if (
            old is None
            or old[6] & RACY
            or old[7] != key
            or old[0] != entry.dev
            or old[1] != entry.ino
            or old[2] != entry.size
            or old[3] != entry.mtime_ns
            or old[4] != entry.ctime_ns
            or old[5] != entry.mode
        ):
            return None
        return self._replay(entry.path, old)

    def content_candidate(self, entry: WalkEntry, key: bytes) -> bool:
        """CONTENT level: a verdict exists for this path, mode and manifest key (and may be
        replayed); its xxh3 decides (same_content)."""
        old = self.previous.get(entry.path)
        return (
            old is not None
            and old[7] == key
            and old[5] == entry.mode
            and (not old[6] & ITEMS or self.same_plan)
        )

    def same_content(self, path: bytes, result: HashResult, key: bytes) -> list[Item] | None:
        """CONTENT level: the stored verdict when the file still hashes to the xxh3 it was judged
        on (recorded with the identity just seen); None when it must be judged again."""
        old = self.previous.get(path)
        if (
            old is None
            or result.status is not HashStatus.OK
            or result.xxh3 is None
            or result.xxh3 != old[8]
            or result.mode != old[5]
        ):
            return None
        items = self._replay(path, old)
        if items is not None:
            self.record(path, result, key, items)
        return items

    def record(self, path: bytes, result: HashResult, key: bytes, items: Sequence[Item]) -> None:
        """Remember a file just judged and what it gave (identity from the hasher's lstat,
        taken before its read)."""
        if result.status is not HashStatus.OK or result.xxh3 is None:
            return  # nothing verified to remember: judged again next time
        racy = result.ctime_ns > self.started_ns - RACY_NS
        verdict = (RACY if racy else CLEAN) | (ITEMS if items else CLEAN)
        if items:
            stored = [item_to_json(item) for item in items]
            self.current_items[path.hex()] = stored
            if self.previous_items.get(path.hex()) != stored:
                self.unchanged = False
        else:
            self.current_items.pop(path.hex(), None)
        entry: Entry = (
            result.dev,
            result.ino,
            result.size,
            result.mtime_ns,
            result.ctime_ns,
            result.mode,
            verdict,
            key,
            result.xxh3,
        )
        self.current[path] = entry
        if self.previous.get(path) != entry:
            self.unchanged = False

    def save(self) -> str | None:
        """Write the new state atomically (temp file in the same directory, fsync, rename);
        the reason it could not be written, or None. A state identical to the one read is not
        rewritten: an unchanged rescan writes nothing."""
        try:
            return self._save()
        finally:
            self.close()

    def close(self) -> None:
        """Release the state's directory in the root, if one is held (save() does; so does the
        end of a scan that never got to save)."""
        if self.directory_fd is not None:
            os.close(self.directory_fd)
            self.directory_fd = None

    def _save(self) -> str | None:
        if not self.writable:
            return None  # said when the state was opened
        if (
            self.loaded
            and self.unchanged
            and self.previous_plan == self.header.get("plan")
            and self.current.keys() == self.previous.keys()
        ):
            return None
        try:
            data = encode(dict(self.header, verdicts=self.current_items), self.current)
        except StateError:
            # More recorded findings and problems than the next scan would read back: the files
            # that gave them are left out (judged again next time), the clean ones kept.
            clean = {path: entry for path, entry in self.current.items() if not entry[6] & ITEMS}
            data = encode(dict(self.header, verdicts={}), clean)
        if len(data) > MAX_STATE_BYTES:
            return (
                f"state {self.path} not written: {len(data)} bytes, over the limit of "
                f"{MAX_STATE_BYTES} a scan reads back"
            )
        try:
            write_atomically(self.path, data, directory_fd=self.directory_fd)
        except OSError as error:
            return f"cannot write the state file {self.path}: {error.strerror}"
        return None


def _fingerprint(
    checks: dict[str, int],
    all_files: bool,
    excludes: Iterable[str],
    content_limit: int,
    miner_digests: Iterable[str],
) -> str:
    """What shapes a verdict besides the file: the checks and the options that change them."""
    digest = hashlib.sha256(
        json.dumps([sorted(checks.items()), all_files, list(excludes), content_limit]).encode()
    )
    for name in miner_digests:
        try:  # its contents: a digest added later must count
            digest.update(hashlib.sha256(read_digests(name)).digest())
        except OSError as error:
            digest.update(f"unreadable {error.errno}".encode())
        except InputFileError:  # a FIFO, device or giant: 426 refuses it (UsageError)
            digest.update(b"refused")
    return digest.hexdigest()


def _directory_beneath(root_fd: int, relative: str) -> int:
    """The directory `relative` (normalised, no `..`) of the root, opened O_RDONLY without
    following a symlink in any component; OSError (ELOOP, ENOTDIR...) otherwise."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(".", flags, dir_fd=root_fd)
    for part in relative.split("/") if relative else ():
        try:
            below = os.open(part, flags, dir_fd=fd)
        finally:
            os.close(fd)
        fd = below
    return fd


def open_state(
    path: str | os.PathLike[str],
    level: Rescan,
    *,
    root_path: str,
    root_fd: int,
    target: str | None,
    checks: dict[str, int],
    all_files: bool,
    excludes: Iterable[str],
    content_limit: int,
    miner_digests: Iterable[str],
    allow_in_root: bool,
    started_ns: int,
    memo: Memo,
) -> tuple[StateSession, str | None, str | None]:
    """(session, problem, notice): the state to use for this scan and why any was not.

    `problem` says why an existing state file was not used (the scan is then a full one);
    `notice` says that there was none yet. UsageError when the file would be inside the root
    and `allow_in_root` is false. The decoded file is kept by the session's `memo`.
    """
    name = os.fspath(path)
    root_stat = os.stat(root_fd)
    inside = _inside(name, root_path, root_stat.st_dev, mounts.mount_id(root_fd))
    # A path spelled through the root is resolved beneath it without following a symlink: a
    # writer in the root can turn its directory into a symlink to any host directory between
    # scans (or during one), and the state would be written there.
    lexical = os.path.normpath(os.path.abspath(name))
    lexical_root = os.path.normpath(os.path.abspath(root_path))
    through_root = lexical_root != "/" and lexical.startswith(lexical_root.rstrip("/") + "/")
    if inside and not allow_in_root:
        raise UsageError(
            f"{name}: the state file would be inside the scanned root {root_path}; "
            "choose a path outside it (or on another mount), or allow it explicitly "
            "(--state-in-root)"
        )
    identity: dict[str, Any] = (
        {"target": target}
        if target is not None
        else {"root": os.path.realpath(root_path), "dev": root_stat.st_dev, "ino": root_stat.st_ino}
    )
    header = {
        "format": FORMAT,
        "scanner": __version__,
        "checks": {key: checks[key] for key in sorted(checks)},
        "identity": identity,
        "options": _fingerprint(checks, all_files, excludes, content_limit, miner_digests),
    }
    session = StateSession(name, level, header, started_ns)
    if inside:
        relative = (
            os.path.relpath(lexical, lexical_root)
            if through_root
            else os.path.relpath(os.path.realpath(name), os.path.realpath(root_path))
        )
        session.skip = os.fsencode(relative)
    if through_root:
        try:
            session.directory_fd = _directory_beneath(
                root_fd, os.path.dirname(os.path.relpath(lexical, lexical_root))
            )
        except OSError as error:
            session.writable = False
            return (
                session,
                (
                    f"state {name}: its directory in the scanned root is a symlink or no "
                    f"directory ({error.strerror}): not read, not written; full scan"
                ),
                None,
            )
    if level is Rescan.FULL:
        return session, None, None
    try:
        # Decoded once per session while the file keeps its identity (a defender's loop).
        old_header, entries = memo.state(
            name, decode, StateError, directory_fd=session.directory_fd
        )
    except FileNotFoundError:
        return session, None, f"state {name}: none yet, full scan (the state is written after it)"
    except OSError as error:
        return session, f"state {name}: cannot read ({error.strerror}): full scan", None
    except StateError as error:
        return session, f"state {name}: {error}: full scan", None
    for key, what in (
        ("format", "state format"),
        ("scanner", "scanner version"),
        ("checks", "check versions or selection"),
        ("identity", "target"),
        ("options", "verdict-shaping options (--all-files, --exclude, content limit, digests)"),
    ):
        if old_header.get(key) != header[key]:
            return (
                session,
                (
                    f"state {name}: written for another {what} "
                    f"({old_header.get(key)!r}, now {header[key]!r}): full scan"
                ),
                None,
            )
    session.previous = entries
    session.previous_plan = old_header.get("plan")
    verdicts = old_header.get("verdicts", {})
    session.previous_items = verdicts if isinstance(verdicts, dict) else {}
    session.loaded = True
    return session, None, None
