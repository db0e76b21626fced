"""Reads apk's record of installed packages (`lib/apk/db/installed`) and its protected paths.

Format (apk-tools src/database.c: written by `apk_db_fdb_write`, read by `apk_db_fdb_read`): one
stanza per package, stanzas separated by a line shorter than two bytes (normally a blank line),
every other line `<letter>:<value>`. We use `P:` name, `V:` version, `A:` arch, `f:` flags,
`F:` a directory (relative, no leading `/`), `R:` a file in the last `F:` directory, and for the
last `R:` its `a:uid:gid:mode[:xattr-digest]` (absent: 0:0:0644, apk's `apk_default_acl_file`)
and `Z:` content digest. `M:` (directory mode) and the many package-index letters (`C:`, `S:`,
`D:`, `r:`, ...) are not needed here and are ignored, as are letters we do not know.

Digests (`apk_blob_pull_digest` in src/blob.c): `Q1` + base64 or `X1` + hex of 20 bytes (SHA-1,
the only form apk writes, via `apk_blob_push_hash`); `Q2`/`X2` (and a `Q1`/`X1` that goes on
for 12 more bytes) hold 32 bytes of SHA-256; a value starting with a hex digit is the legacy
32-hex MD5. A package with flag `f:S` (installed from a v3 package) has SHA-256 truncated to
160 bits behind a `Q1` (`apk_db_fdb_read` turns SHA-1 into `APK_DIGEST_SHA256_160`): those
records carry `DigestAlgorithm.SHA256_160`.

What is hashed: the content of a regular file; for a **symlink, the target string** as
readlink() returns it, never the file it points to (src/io.c `apk_fileinfo_get`: with
APK_FI_NOFOLLOW it digests the `readlinkat` buffer; src/database.c installs symlinks the same
way). A check comparing these digests must therefore hash readlink() for S_IFLNK records. The DB
stores no file type: `a:...:777` marks a symlink (tar gives symlinks mode 0777 and apk keeps it),
so a record with permissions exactly 0777 gets mode S_IFLNK|0o777, every other one
S_IFREG|perms. The DB records no size and no link target.

Config files: apk has no conffile flag. `apk audit --system` (src/app_audit.c
`audit_directory_tree_item`, MODE_SYSTEM) skips every file whose protect mode is not "none"
(`apk_protect_mode_none`: NONE or IGNORE), i.e. files under apk's protected paths: the defaults
`+etc`, `@etc/init.d`, `!etc/apk` set in `apk_db_open`, then `etc/apk/protected_paths.d/*.list`
(`apk_db_add_protected_path`, matched per path component by `apk_db_dir_get` and
`determine_file_protect_mode`). Those files get is_config=True, like dpkg conffiles.

Deliberate differences from apk-tools, which refuses the whole DB on the first bad line
(`goto bad_entry`/`err_fmt`): a malformed line, a field without its `R:`/`F:`, a bad digest or an
unknown `f:` flag is a problem naming the line, package and file, and reading goes on. apk keeps
at most 20 digest bytes per installed file (`apk_dbf_digest_set`); we keep SHA-256 too.
"""

from __future__ import annotations

import base64
import binascii
import enum
import errno
import re
import stat
from dataclasses import dataclass, field

from .dpkg_filters import glob_to_regex
from .presence import db_present
from .records import (
    DigestAlgorithm,
    InstalledFile,
    Package,
    PackageDB,
    PkgDBError,
    PkgDBProblem,
)
from .rootfs import RootFS

__all__ = [
    "DATABASE_DIRS",
    "DB_PATHS",
    "DEFAULT_PROTECTED_PATHS",
    "MANAGER",
    "PROTECTED_PATHS_D",
    "ApkDBError",
    "ProtectMode",
    "ProtectedPaths",
    "parse_digest",
    "present",
    "read",
]

MANAGER = "apk"
# Where this reader reads by path (an image keeps these files whole: scanner/targets/image.py).
DATABASE_DIRS = (b"lib/apk/db", b"usr/lib/apk/db", b"etc/apk")
# apk-tools' `apk_db_layer_name(APK_DB_LAYER_ROOT)`; usr-merged apk roots (Chimera Linux) keep it
# in usr/lib with `lib -> usr/lib`, which RootFS resolves; the second path covers a missing link.
DB_PATHS = (b"lib/apk/db/installed", b"usr/lib/apk/db/installed")
_DB_IN_APK = b"db/installed"
PROTECTED_PATHS_D = b"etc/apk/protected_paths.d"
DEFAULT_PROTECTED_PATHS = (b"+etc", b"@etc/init.d", b"!etc/apk")  # apk_db_open

# Far above any real DB (2,000 packages with 150,000 files is ~10 MiB); a hostile image must not
# make us read gigabytes into memory.
MAX_DB_BYTES = 256 << 20
MAX_LIST_BYTES = 1 << 20
# Binary garbage has a malformed "line" every few bytes: report the first ones, count the rest.
MAX_LINE_PROBLEMS = 20

_SYMLINK_MODE = stat.S_IFLNK | 0o777
_DEFAULT_MODE = stat.S_IFREG | 0o644
_ACL = re.compile(rb"([0-9]+):([0-9]+):([0-7]{1,6})(?::.*)?", re.DOTALL)
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_KNOWN_FLAGS = frozenset(b"fsxS")  # apk_db_fdb_read: broken files/script/xattr, sha256_160
_USED = frozenset({b"P", b"V", b"A", b"o", b"f", b"F", b"R", b"a", b"Z"})


class ApkDBError(PkgDBError):
    """The apk database exists but cannot be used at all."""


class ProtectMode(enum.Enum):
    """apk-tools' `enum apk_protect_mode`, keyed by the prefix of a protected-path line."""

    NONE = "none"
    IGNORE = "-"
    CHANGED = "+"
    SYMLINKS_ONLY = "@"
    ALL = "!"


_PREFIX = {b"-": ProtectMode.IGNORE, b"+": ProtectMode.CHANGED, b"@": ProtectMode.SYMLINKS_ONLY}
_PREFIX[b"!"] = ProtectMode.ALL
_NOT_PROTECTED = frozenset({ProtectMode.NONE, ProtectMode.IGNORE})  # apk_protect_mode_none


_Rule = tuple[bytes, ProtectMode]  # a pattern relative to some directory, and its mode


class ProtectedPaths:
    """apk's protected paths: which files `apk audit --system` leaves alone."""

    def __init__(self, lines: list[bytes]) -> None:
        rules: list[_Rule] = []
        for line in lines:
            # apk_db_add_protected_path: empty lines and '#' comments skipped; no prefix means '+'
            if not line or line.startswith(b"#"):
                continue
            mode = _PREFIX.get(line[:1])
            pattern = line[1:] if mode is not None else line
            rules.append((pattern.strip(b"/"), mode or ProtectMode.CHANGED))
        self.rules = tuple(rules)
        self._dirs: dict[bytes, tuple[ProtectMode, tuple[_Rule, ...]]] = {}
        self._regex: dict[bytes, re.Pattern[bytes]] = {}

    def mode(self, directory: bytes, name: bytes) -> ProtectMode:
        """The protect mode of file `name` in `directory` (determine_file_protect_mode)."""
        if not directory:
            return ProtectMode.NONE  # the root directory gets no rules in apk_db_dir_get
        mode, rules = self._dir(directory)
        for pattern, rule_mode in rules:  # usually none: only a few directories have rules left
            if b"/" not in pattern and self._match(pattern, name):
                mode = rule_mode  # the last matching rule wins
        return mode

    def is_config(self, directory: bytes, name: bytes) -> bool:
        return self.mode(directory, name) not in _NOT_PROTECTED

    def _dir(self, directory: bytes) -> tuple[ProtectMode, tuple[_Rule, ...]]:
        """A directory's mode and the rules left for what is below it (apk_db_dir_get).

        Each directory from its parent's, top down in a loop (a hostile `F:` may have
        thousands of components: no recursion per component).
        """
        cached = self._dirs.get(directory)
        if cached is not None:
            return cached
        # the deepest cached ancestor, then every directory below it in turn
        missing = [directory]
        parent = directory.rpartition(b"/")[0]
        while parent and parent not in self._dirs:
            missing.append(parent)
            parent = parent.rpartition(b"/")[0]
        mode, inherited = self._dirs[parent] if parent else (ProtectMode.NONE, self.rules)
        for path in reversed(missing):
            name = path.rpartition(b"/")[2]
            below: list[_Rule] = []
            for pattern, rule_mode in inherited:
                head, slash, rest = pattern.partition(b"/")
                if slash:
                    if self._match(head, name):
                        below.append((rest, rule_mode))
                elif self._match(pattern, name):
                    mode = rule_mode
            inherited = tuple(below)
            self._dirs[path] = (mode, inherited)
        return mode, inherited

    def _match(self, pattern: bytes, name: bytes) -> bool:
        # fnmatch(FNM_PATHNAME) on one component: `/` never occurs, so flags 0 are the same.
        regex = self._regex.get(pattern)
        if regex is None:
            regex = self._regex[pattern] = glob_to_regex(pattern)
        return regex.fullmatch(name) is not None


def parse_digest(value: bytes) -> tuple[bytes, DigestAlgorithm] | str:
    """A `Z:` value as (raw digest, algorithm), or why it is not one (apk_blob_pull_digest)."""
    if len(value) == 30 and value.startswith(b"Q1"):
        # the form apk writes, nearly every line: decode it without the general checks below
        try:
            raw = binascii.a2b_base64(value[2:], strict_mode=True)
        except binascii.Error:
            return "bad base64"
        if len(raw) == 20:
            return raw, DigestAlgorithm.SHA1
    if len(value) < 2:
        return "too short"
    if _HEX.fullmatch(value[:1]):
        # apk reads a value starting with a hex digit as a legacy MD5 hexdump
        if len(value) == 32 and _HEX.fullmatch(value):
            return bytes.fromhex(value.decode("ascii")), DigestAlgorithm.MD5
        return "neither Q1/X1/Q2/X2 nor 32 hex digits of MD5"
    encoding, kind, payload = value[:1], value[1:2], value[2:]
    if kind not in (b"1", b"2") or encoding not in (b"Q", b"X"):
        return f"unknown digest prefix {value[:2].decode('ascii', 'backslashreplace')!r}"
    if encoding == b"Q":
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return "bad base64"
    elif _HEX.fullmatch(payload) and len(payload) % 2 == 0:
        raw = bytes.fromhex(payload.decode("ascii"))
    else:
        return "bad hex"
    if len(raw) == 20 and kind == b"1":
        return raw, DigestAlgorithm.SHA1
    if len(raw) == 32:
        return raw, DigestAlgorithm.SHA256
    return f"{len(raw)} bytes; {value[:2].decode('ascii')} needs {20 if kind == b'1' else 32}"


def present(root: RootFS) -> bool:
    """Whether `root` has an apk installed database, or its place is taken by something
    unusable (then read() says why)."""
    # From lib/apk down, which only apk makes: a FIFO or loop at lib/apk or lib/apk/db counts.
    return any(db_present(root, path[: -len(_DB_IN_APK) - 1], (_DB_IN_APK,)) for path in DB_PATHS)


def read(root: RootFS) -> PackageDB:
    """Read the apk database of `root`; raise ApkDBError only if it cannot be used at all."""
    source, data = _read_db(root)
    protected, problems = _read_protected_paths(root)
    parser = _Parser(source, protected, problems)
    parser.parse(data)
    if not data.strip():
        # apk-tools is itself a package: a root apk ran in lists at least that one. An emptied
        # database hides every package from verification, so it is said, not taken as clean.
        parser.problem("lists no package (empty): no package's files can be verified")
    elif not parser.packages:
        raise ApkDBError(
            f"/{source.decode()}: no package stanza found ({parser.bad_lines} malformed lines); "
            "not an apk installed database"
        )
    return PackageDB(tuple(parser.packages), tuple(parser.files), tuple(parser.problems))


def _read_db(root: RootFS) -> tuple[bytes, bytes]:
    for path in DB_PATHS:
        try:
            data = root.read_bytes(path, MAX_DB_BYTES)
        except FileNotFoundError:
            continue
        except OSError as error:
            if error.errno == errno.EFBIG:
                raise ApkDBError(
                    f"/{path.decode()}: larger than {MAX_DB_BYTES >> 20} MiB, not read"
                ) from error
            raise ApkDBError(f"/{path.decode()}: cannot read: {error.strerror}") from error
        if len(data) >= MAX_DB_BYTES:  # it grew while being read
            raise ApkDBError(f"/{path.decode()}: larger than {MAX_DB_BYTES >> 20} MiB, not read")
        return path, data
    raise ApkDBError(f"/{DB_PATHS[0].decode()}: no apk installed database")


def _read_protected_paths(root: RootFS) -> tuple[ProtectedPaths, list[PkgDBProblem]]:
    lines = list(DEFAULT_PROTECTED_PATHS)
    problems: list[PkgDBProblem] = []
    try:
        names = sorted(root.listdir(PROTECTED_PATHS_D))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    except OSError as error:
        names = []
        problems.append(
            PkgDBProblem(MANAGER, PROTECTED_PATHS_D, f"cannot list directory: {error.strerror}")
        )
    # apk reads them in readdir order; we sort, so the result does not depend on the filesystem
    for name in names:
        if not name.endswith(b".list"):
            continue
        path = PROTECTED_PATHS_D + b"/" + name
        try:
            data = root.read_bytes(path, MAX_LIST_BYTES)
        except OSError as error:
            problems.append(PkgDBProblem(MANAGER, path, f"cannot read: {error.strerror}"))
            continue
        lines.extend(data.split(b"\n"))
    return ProtectedPaths(lines), problems


@dataclass(slots=True)
class _File:
    """A file entry being read: its `R:` and what `a:`/`Z:` said about it."""

    directory: bytes
    name: bytes
    line: int
    mode: int | None = _DEFAULT_MODE
    digest: bytes | None = None
    algorithm: DigestAlgorithm | None = None
    has_digest: bool = False


@dataclass(slots=True)
class _Stanza:
    """The package being read."""

    line: int
    name: bytes | None = None
    version: bytes | None = None
    arch: bytes | None = None
    origin: bytes | None = None  # o: the aport it was built from, which advisories name
    flags: bytes = b""
    directory: bytes | None = None  # the last F:, None before any (or after an unusable one)
    bad_directory: bool = False
    files: list[_File] = field(default_factory=list)
    issues: list[tuple[int, str]] = field(default_factory=list)  # named once the package is known
    empty: bool = True


@dataclass(slots=True)
class _Parser:
    """The state of one read of the installed DB."""

    source: bytes
    protected: ProtectedPaths
    problems: list[PkgDBProblem]
    packages: list[Package] = field(default_factory=list)
    files: list[InstalledFile] = field(default_factory=list)
    owners: dict[bytes, str] = field(default_factory=dict)
    bad_lines: int = 0

    def problem(self, message: str) -> None:
        self.problems.append(PkgDBProblem(MANAGER, self.source, message))

    def parse(self, data: bytes) -> None:
        stanza = _Stanza(1)
        lineno = 0
        for lineno, line in enumerate(data.split(b"\n"), 1):
            if len(line) < 2:
                # apk_db_fdb_read ends a package on any line shorter than two bytes
                if line:
                    self.malformed(lineno, line, "taken as the end of a stanza, as apk does")
                self.finish(stanza)
                stanza = _Stanza(lineno + 1)
            elif line[1:2] != b":":
                self.malformed(lineno, line, "ignored")
            else:
                stanza.empty = False
                letter = line[:1]
                if letter in _USED:  # most lines are index fields we do not need: skip them fast
                    self.field(stanza, lineno, letter, line[2:])
        self.finish(stanza)
        if data and not data.endswith(b"\n"):
            self.problem(f"line {lineno}: no final newline: the last stanza may be truncated")
        if self.bad_lines > MAX_LINE_PROBLEMS:
            self.problem(f"{self.bad_lines - MAX_LINE_PROBLEMS} more malformed lines not listed")

    def malformed(self, lineno: int, line: bytes, outcome: str) -> None:
        self.bad_lines += 1
        if self.bad_lines <= MAX_LINE_PROBLEMS:
            shown = line[:40].decode("ascii", "backslashreplace")
            self.problem(f"line {lineno}: not a 'X:value' line: {shown!r} ({outcome})")

    def field(self, stanza: _Stanza, lineno: int, letter: bytes, value: bytes) -> None:
        if letter == b"R":
            self.file_entry(stanza, lineno, value)
        elif letter == b"Z":
            self.digest(stanza, lineno, value)
        elif letter == b"a":
            self.acl(stanza, lineno, value)
        elif letter == b"F":
            if b"\0" in value:
                stanza.issues.append((lineno, "F: contains a NUL byte; its files are ignored"))
                stanza.directory, stanza.bad_directory = None, True
            else:
                # apk_db_dir_get trims trailing slashes; a leading one would only be a typo
                stanza.directory, stanza.bad_directory = value.strip(b"/"), False
        elif letter in (b"P", b"V", b"A", b"o"):
            attribute = {b"P": "name", b"V": "version", b"A": "arch", b"o": "origin"}[letter]
            if getattr(stanza, attribute) is not None:
                stanza.issues.append((lineno, f"{letter.decode()}: given twice; first one used"))
            else:
                setattr(stanza, attribute, value)
        elif letter == b"f":
            stanza.flags += value
        # every other letter (index fields, M:, r:, q:, s:, unknown ones) is not needed here

    def file_entry(self, stanza: _Stanza, lineno: int, name: bytes) -> None:
        if stanza.bad_directory:
            return
        if stanza.directory is None:
            stanza.issues.append((lineno, f"R:{_show(name)} before any F: line (ignored)"))
        elif not name or b"\0" in name:
            stanza.issues.append((lineno, f"R:{_show(name)} is not a file name (ignored)"))
        else:
            stanza.files.append(_File(stanza.directory, name, lineno))

    def current(self, stanza: _Stanza, lineno: int, letter: str) -> _File | None:
        """The file an `a:`/`Z:` line belongs to: the last R: of the current F: directory."""
        last = stanza.files[-1] if stanza.files else None
        if last is None or last.directory != stanza.directory:
            if not stanza.bad_directory:
                stanza.issues.append((lineno, f"{letter}: without an R: line (ignored)"))
            return None
        return last

    def acl(self, stanza: _Stanza, lineno: int, value: bytes) -> None:
        entry = self.current(stanza, lineno, "a")
        if entry is None:
            return
        match = _ACL.fullmatch(value)
        if match is None:
            entry.mode = None
            shown = f"{_show(_path(entry))}: a:{_show(value)}"
            stanza.issues.append((lineno, f"{shown} is not uid:gid:mode; mode unknown"))
            return
        permissions = int(match.group(3), 8) & 0o7777  # apk keeps mode & 07777 (acl atomize)
        entry.mode = _SYMLINK_MODE if permissions == 0o777 else stat.S_IFREG | permissions

    def digest(self, stanza: _Stanza, lineno: int, value: bytes) -> None:
        entry = self.current(stanza, lineno, "Z")
        if entry is None:
            return
        if entry.has_digest:
            shown = _show(_path(entry))
            stanza.issues.append((lineno, f"{shown}: second Z: line; first one used"))
            return
        entry.has_digest = True
        parsed = parse_digest(value)
        if isinstance(parsed, str):
            shown = f"{_show(_path(entry))}: bad digest Z:{_show(value)}"
            stanza.issues.append((lineno, f"{shown}: {parsed}; not verifiable"))
        else:
            entry.digest, entry.algorithm = parsed

    def finish(self, stanza: _Stanza) -> None:
        if stanza.empty:
            return
        if stanza.name is None:
            self.problem(
                f"line {stanza.line}: stanza without a P: line ({len(stanza.files)} files ignored)"
            )
            return
        name = self.text(stanza.name, stanza.line, "P")
        version = self.text(stanza.version or b"", stanza.line, "V")
        arch = self.text(stanza.arch, stanza.line, "A") if stanza.arch is not None else None
        where = f"package {name}"
        if stanza.version is None:
            self.problem(f"line {stanza.line}: {where}: no V: line")
        for lineno, message in stanza.issues:
            self.problem(f"line {lineno}: {where}: {message}")
        unknown = sorted({chr(flag) for flag in stanza.flags} - {chr(f) for f in _KNOWN_FLAGS})
        if unknown:
            self.problem(
                f"line {stanza.line}: {where}: unknown f: flag(s) {''.join(unknown)!r} "
                "(apk-tools would refuse this DB as too new); digests read as usual"
            )
        truncated_sha256 = ord("S") in stanza.flags
        for entry in stanza.files:
            path = _path(entry)
            digest, algorithm = entry.digest, entry.algorithm
            if truncated_sha256 and algorithm is DigestAlgorithm.SHA1:
                algorithm = DigestAlgorithm.SHA256_160  # the same 20 bytes, another hash
            owner = self.owners.get(path)
            if owner is None:
                self.owners[path] = name
            else:
                self.problem(
                    f"line {entry.line}: {where}: {_show(path)} is also listed by {owner}; "
                    "both records kept"
                )
            config = self.protected.is_config(entry.directory, entry.name)
            self.files.append(
                InstalledFile(path, name, version, MANAGER, digest, algorithm, config, entry.mode)
            )
        origin = self.text(stanza.origin, stanza.line, "o") if stanza.origin is not None else name
        self.packages.append(
            Package(MANAGER, name, version, arch, file_count=len(stanza.files), source=origin)
        )

    def text(self, value: bytes, line: int, letter: str) -> str:
        """A field as text: apk writes only ASCII here; anything else is reported, not guessed."""
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            shown = value.decode("ascii", "backslashreplace")
            self.problem(f"line {line}: {letter}:{shown!r} is not ASCII")
            return shown


def _path(entry: _File) -> bytes:
    return entry.directory + b"/" + entry.name if entry.directory else entry.name


def _show(value: bytes) -> str:
    return value[:80].decode("utf-8", "backslashreplace")
