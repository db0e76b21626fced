"""Reads dpkg's record of installed packages: status or status.d, md5sums, conffiles.

Sources, all read through RootFS so that a hostile image cannot point us outside its root:
  * `var/lib/dpkg/status` (deb822 stanzas) and/or `var/lib/dpkg/status.d/*` (distroless: one
    file per bazel target, named after the target, not the package; stanzas have no `Status:`
    and count as installed; optional `status.d/<file>.md5sums`);
  * `var/lib/dpkg/info/<pkg>.md5sums` or `<pkg>:<arch>.md5sums` (dpkg names it `<pkg>:<arch>`
    for `Multi-Arch: same` packages; we look for both names);
  * the `Conffiles:` field (md5sums never list conffiles); `var/lib/dpkg/diversions`;
  * dpkg's path filters in `etc/dpkg/dpkg.cfg{,.d/*}` (see dpkg_filters.py).

Which packages count as installed: the third word of `Status:` is one of `installed`,
`triggers-pending`, `triggers-awaited`, `half-configured`, `unpacked` (all files are unpacked on
disk) or `half-installed` (an interrupted unpack or removal: files may be old, new or gone, so it
is also reported as a problem). The first word (want: install/hold/deinstall/purge) is ignored:
`deinstall ok installed` is still on disk. `config-files` (only conffiles left) and
`not-installed` are not installed packages and give no files; the `reinstreq` flag is a problem.

Conffiles flagged `obsolete` (no longer shipped; dpkg leaves them behind, unowned in practice)
or `remove-on-upgrade` (not shipped, not expected on disk) are skipped: they have nothing to
verify against. `newconffile` means "not configured yet" and gives digest None. A path both in
md5sums and in Conffiles is one record, the conffile's (is_config=True).

Diversions (`dpkg-divert`): a file that package P lists at `from`, diverted to `to` by another
package or locally (`:`), is on disk at `to`, so P's record gets path `to`; the diverting
package's own file stays at `from` (dpkg `namenodetouse`). Path filters are matched against
the path as the package spells it, before diversion, as dpkg does when unpacking. They excuse
only a file that is absent: one that is there is verified like any other.
"""

from __future__ import annotations

import errno
import re
import stat
from dataclasses import dataclass, field
from typing import TypeVar

from .dpkg_files import Diversion, parse_conffiles, parse_diversions, parse_md5sums
from .dpkg_filters import PathFilter, PathFilters, read_filters
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
from .stanzas import MalformedLines, Stanza, parse_stanzas

__all__ = [
    "DATABASE_DIRS",
    "DIVERSIONS",
    "INFO_DIR",
    "MANAGER",
    "STATUS",
    "STATUS_D",
    "DpkgDB",
    "DpkgDBError",
    "present",
    "read",
]

MANAGER = "dpkg"
# Where this reader reads by path (an image keeps these files whole: scanner/targets/image.py).
DATABASE_DIRS = (b"var/lib/dpkg", b"etc/dpkg")
STATUS = b"var/lib/dpkg/status"
STATUS_D = b"var/lib/dpkg/status.d"
INFO_DIR = b"var/lib/dpkg/info"
DIVERSIONS = b"var/lib/dpkg/diversions"

# Far above any real DB (a 2,000-package status is ~5 MiB); a hostile image must not make us
# read gigabytes into memory.
# deb-control(5) Source: a package name, then optionally its version in parentheses.
_SOURCE = re.compile(rb"([a-z0-9][a-z0-9+.-]*)(?:[ \t]+\(([^()\s]+)\))?")
MAX_STATUS_BYTES = 256 << 20
MAX_INFO_BYTES = 64 << 20

_FILES_ON_DISK = frozenset(
    {
        b"installed",
        b"triggers-pending",
        b"triggers-awaited",
        b"half-configured",
        b"unpacked",
        b"half-installed",
    }
)
_NOT_INSTALLED = frozenset({b"not-installed", b"config-files"})
_WANTED = frozenset(
    {b"Package", b"Status", b"Version", b"Architecture", b"Multi-Arch", b"Conffiles", b"Source"}
)
_MD5 = DigestAlgorithm.MD5
_MAX_EPOCH = (1 << 31) - 1  # dpkg: INT_MAX
_Entry = TypeVar("_Entry", tuple[bytes, bytes], tuple[bytes, bytes | None])


class DpkgDBError(PkgDBError):
    """The dpkg database exists but cannot be used at all."""


@dataclass(frozen=True, slots=True)
class DpkgDB(PackageDB):
    """Everything dpkg says is installed, and what could not be read."""

    filters: tuple[PathFilter, ...] = ()  # the filters applied, so a report can show them


def present(root: RootFS) -> bool:
    """Whether `root` has a dpkg database (a status file or a status.d directory), or its
    place is taken by something unusable (then read() says why)."""
    return db_present(root, DATABASE_DIRS[0], (b"status", b"status.d"))


def read(root: RootFS) -> DpkgDB:
    """Read the dpkg database of `root`; raise DpkgDBError only if it cannot be used at all."""
    reader = _Reader(root)
    status = reader.read_db_file(STATUS, MAX_STATUS_BYTES)
    status_d = reader.list_dir(STATUS_D)
    if status is None and status_d is None:
        raise DpkgDBError(f"/{STATUS.decode()}: no dpkg status file and no status.d directory")
    reader.load_diversions()
    reader.load_filters()
    if status is not None:
        reader.read_status(status)
    if status_d is not None:
        reader.read_status_d(status_d)
    return reader.result()


@dataclass(slots=True)
class _Reader:
    """The state of one read: what was found so far, and what went wrong."""

    root: RootFS
    packages: list[Package] = field(default_factory=list)
    files: list[InstalledFile] = field(default_factory=list)
    problems: list[PkgDBProblem] = field(default_factory=list)
    filtered: int = 0
    filters: PathFilters = field(default_factory=lambda: PathFilters(()))
    diversions: dict[bytes, Diversion] = field(default_factory=dict)
    seen: set[tuple[str, str | None]] = field(default_factory=set)
    used: set[bytes] = field(default_factory=set)  # the md5sums files of installed packages

    def result(self) -> DpkgDB:
        return DpkgDB(
            tuple(self.packages),
            tuple(self.files),
            tuple(self.problems),
            self.filtered,
            self.filters.filters,
        )

    def problem(self, source: bytes, message: str) -> None:
        self.problems.append(PkgDBProblem(MANAGER, source, message))

    # --- reading files ------------------------------------------------------------------

    def read_db_file(self, path: bytes, limit: int) -> bytes | None:
        """Read a DB file; None if absent. An unreadable status file is fatal, others problems."""
        try:
            data = self.root.read_bytes(path, limit)
        except FileNotFoundError:
            return None
        except OSError as error:
            reason = (
                f"larger than {limit >> 20} MiB, not read"
                if error.errno == errno.EFBIG
                else f"cannot read: {error.strerror}"
            )
            if path == STATUS:
                raise DpkgDBError(f"/{path.decode()}: {reason}") from error
            self.problem(path, reason)
            return None
        if len(data) >= limit:  # it grew while being read
            if path == STATUS:
                raise DpkgDBError(f"/{path.decode()}: larger than {limit >> 20} MiB, not read")
            self.problem(path, f"larger than {limit >> 20} MiB, not read")
            return None
        return data

    def list_dir(self, path: bytes) -> set[bytes] | None:
        try:
            return set(self.root.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            self.problem(path, f"cannot list directory: {error.strerror}")
            return None

    def load_diversions(self) -> None:
        data = self.read_db_file(DIVERSIONS, MAX_INFO_BYTES)
        if data is None:
            return
        self.diversions, errors = parse_diversions(data)
        for line, message in errors:
            self.problem(DIVERSIONS, f"line {line}: {message}")

    def load_filters(self) -> None:
        self.filters, problems = read_filters(self.root)
        self.problems.extend(problems)

    # --- status and status.d ------------------------------------------------------------

    def read_status(self, data: bytes) -> None:
        info = self.list_dir(INFO_DIR)
        if info is None:
            info = set()
            self.problem(INFO_DIR, "no info directory: no package's files can be verified")
        # Hundreds of small md5sums files: on a cold cache, queue them all before reading any.
        self.root.prefetch([INFO_DIR + b"/" + name for name in info if name.endswith(b".md5sums")])
        stanzas = self.stanzas(data, STATUS)
        if data.strip() and not stanzas:
            raise DpkgDBError(
                f"/{STATUS.decode()}: no package stanza found; not a dpkg status file"
            )
        if data and not data.endswith(b"\n"):
            self.problem(STATUS, "does not end with a newline: the last stanza may be truncated")
        for stanza in stanzas:
            self.add_package(stanza, STATUS, INFO_DIR, info, (), status_required=True)
        self.orphans(info)

    def orphans(self, info: set[bytes]) -> None:
        """md5sums files of no installed package. dpkg deletes a package's md5sums when it
        removes the package (only conffiles and postrm stay, for `config-files`), so these
        mean a status file that lost or demoted stanzas: an emptied status, or a package hidden
        from verification by deleting its stanza or setting it `not-installed`."""
        orphans = sorted(n for n in info if n.endswith(b".md5sums") and n not in self.used)
        if orphans:
            shown = ", ".join(n.decode("utf-8", "backslashreplace")[:80] for n in orphans[:3])
            more = f" and {len(orphans) - 3} more" if len(orphans) > 3 else ""
            self.problem(
                INFO_DIR,
                f"md5sums of no installed package: {shown}{more}; the status file may have lost "
                "packages, whose files are not verified",
            )

    def read_status_d(self, names: set[bytes]) -> None:
        for name in sorted(names):
            if name.endswith(b".md5sums") or name.startswith(b"."):
                continue
            source = STATUS_D + b"/" + name
            data = self.read_db_file(source, MAX_STATUS_BYTES)
            if data is None:
                continue
            stanzas = self.stanzas(data, source)
            if not stanzas:
                self.problem(source, "no package stanza found")
            # The md5sums of a one-package file is named after the file (a bazel target name),
            # e.g. status.d/base + status.d/base.md5sums for Package: base-files.
            preferred = (name + b".md5sums",) if len(stanzas) == 1 else ()
            for stanza in stanzas:
                self.add_package(stanza, source, STATUS_D, names, preferred, status_required=False)

    def stanzas(self, data: bytes, source: bytes) -> list[Stanza]:
        """The stanzas that name a package; malformed lines and nameless stanzas are problems."""
        found = []
        for item in parse_stanzas(data, _WANTED):
            if isinstance(item, MalformedLines):
                where = (
                    f"line {item.first}"
                    if item.first == item.last
                    else f"lines {item.first}-{item.last}"
                )
                self.problem(source, f"{where}: {item.reason} (ignored)")
            elif b"Package" not in item.fields:
                self.problem(source, f"line {item.line}: stanza without a Package field (ignored)")
            else:
                found.append(item)
        return found

    def add_package(
        self,
        stanza: Stanza,
        source: bytes,
        info_dir: bytes,
        info_names: set[bytes],
        preferred: tuple[bytes, ...],
        status_required: bool,
    ) -> None:
        fields = stanza.fields
        raw_name = fields[b"Package"]
        name = self.text(raw_name, source, stanza.line, "Package")
        where = f"line {stanza.line}: package {name}"
        for duplicate in stanza.duplicates:
            self.problem(
                source,
                f"{where}: field {duplicate.decode(errors='replace')} given twice; first one used",
            )
        if not self.installed(fields.get(b"Status"), source, where, status_required):
            return
        version = self.text(fields.get(b"Version", b""), source, stanza.line, "Version")
        if not version:
            self.problem(source, f"{where}: installed but has no Version")
        raw_arch = fields.get(b"Architecture")
        arch = self.text(raw_arch, source, stanza.line, "Architecture") if raw_arch else None
        if (name, arch) in self.seen:
            self.problem(source, f"{where}: listed twice; the later stanza is ignored")
            return
        self.seen.add((name, arch))

        conffiles = self.conffiles(fields.get(b"Conffiles"), source, where)
        names = _info_names(raw_name, raw_arch, fields.get(b"Multi-Arch") == b"same", b".md5sums")
        md5sums_name = next((n for n in preferred + names if n in info_names), None)
        entries: list[tuple[bytes, bytes]] = []
        if md5sums_name is not None:
            self.used.add(md5sums_name)
            md5sums_path = info_dir + b"/" + md5sums_name
            data = self.read_db_file(md5sums_path, MAX_INFO_BYTES)
            if data is not None:
                entries, errors = parse_md5sums(data)
                for line, message in errors:
                    self.problem(md5sums_path, f"line {line}: {message} (ignored)")
        else:
            lists = _info_names(raw_name, raw_arch, fields.get(b"Multi-Arch") == b"same", b".list")
            list_name = next((n for n in lists if n in info_names), None)
            self.no_md5sums(name, source, info_dir, list_name)

        count = self.add_files(name, version, entries, conffiles)
        epoch = self.epoch(version, source, where)
        source_name, source_version = self.source_package(fields.get(b"Source"), source, stanza)
        self.packages.append(
            Package(
                MANAGER,
                name,
                version,
                arch,
                epoch,
                file_count=count,
                source=source_name or name,
                source_version=source_version,
            )
        )

    def source_package(
        self, raw: bytes | None, source: bytes, stanza: Stanza
    ) -> tuple[str | None, str | None]:
        """`Source: name` or `Source: name (version)` (deb-control(5)); (None, None) if absent
        or malformed, which is said: a package matched by the wrong name would be missed."""
        if raw is None:
            return None, None
        match = _SOURCE.fullmatch(raw.strip())
        if match is None:
            shown = raw[:80].decode("ascii", "backslashreplace")
            self.problem(source, f"line {stanza.line}: Source {shown!r} is malformed; ignored")
            return None, None
        name = self.text(match[1], source, stanza.line, "Source")
        version = match[2]
        return name, None if version is None else self.text(version, source, stanza.line, "Source")

    def epoch(self, version: str, source: bytes, where: str) -> int | None:
        """The epoch of `[epoch:]upstream[-revision]` (deb-version(5)); None when not given.

        As dpkg's parseversion (lib/dpkg/parsehelp.c): the part before the first `:` must be
        a decimal number no greater than INT_MAX; `version` stays the full string either way.
        """
        head, colon, _ = version.partition(":")
        if not colon:
            return None
        if not head:
            reason = "its epoch is empty"
        elif not (head.isascii() and head.isdigit()):
            reason = "its epoch is not a number"
        elif len(head) > 10 or int(head) > _MAX_EPOCH:  # checked before int(): 5,000 digits
            reason = "its epoch is too big"
        else:
            return int(head)
        self.problem(source, f"{where}: Version {version[:80]!r}: {reason}")
        return None

    def installed(self, status: bytes | None, source: bytes, where: str, required: bool) -> bool:
        if status is None:
            if required:
                self.problem(source, f"{where}: no Status field (ignored)")
                return False
            return True  # distroless status.d: only installed packages are listed
        words = status.split()
        if len(words) != 3:
            self.problem(
                source, f"{where}: Status is not 'want flag status': {status[:80]!r} (ignored)"
            )
            return False
        _want, flag, state = words
        if state in _NOT_INSTALLED:
            return False
        if state not in _FILES_ON_DISK:
            self.problem(source, f"{where}: unknown status {state[:40]!r} (ignored)")
            return False
        if state == b"half-installed":
            self.problem(
                source,
                f"{where}: half-installed (unpack or removal interrupted): its files may not match",
            )
        elif flag == b"reinstreq":
            self.problem(
                source, f"{where}: dpkg marks it 'reinstall required': its files may not match"
            )
        return True

    def conffiles(
        self, value: bytes | None, source: bytes, where: str
    ) -> list[tuple[bytes, bytes | None]]:
        if not value:
            return []
        conffiles, errors = parse_conffiles(value)
        for line, message in errors:
            self.problem(source, f"{where}: Conffiles line {line}: {message} (ignored)")
        return [(c.path, c.digest) for c in conffiles if not (c.obsolete or c.remove_on_upgrade)]

    def no_md5sums(
        self, name: str, source: bytes, info_dir: bytes, list_name: bytes | None
    ) -> None:
        """A package without md5sums is a problem, unless its file list holds no regular file."""
        if info_dir == STATUS_D:
            self.problem(STATUS_D, f"package {name}: no md5sums file: its files cannot be verified")
            return
        if list_name is None:
            self.problem(
                info_dir,
                f"package {name}: no md5sums file and no file list: its files cannot be verified",
            )
            return
        list_path = info_dir + b"/" + list_name
        data = self.read_db_file(list_path, MAX_INFO_BYTES)
        if data is None:
            self.problem(
                info_dir, f"package {name}: no md5sums file and its file list is unreadable"
            )
            return
        unverifiable = 0
        for line in data.split(b"\n"):
            path = line.strip(b"/")
            if not path or path == b".":
                continue
            if b"\0" in path:
                unverifiable += 1  # no file has this name: what it stood for cannot be checked
                continue
            try:
                mode = self.root.lstat(path).st_mode
            except OSError as error:
                # gone: it may have been a file, unless the image's path filters dropped it
                if error.errno in (errno.ENOENT, errno.ENOTDIR) and not self.filters.excluded(path):
                    unverifiable += 1
                continue
            if not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                unverifiable += 1
        if unverifiable:
            self.problem(
                info_dir,
                f"package {name}: no md5sums file: {unverifiable} listed files cannot be verified",
            )

    def add_files(
        self,
        name: str,
        version: str,
        entries: list[tuple[bytes, bytes]],
        conffiles: list[tuple[bytes, bytes | None]],
    ) -> int:
        """Make the package's records; return how many. Hot: ~100,000 calls on a desktop."""
        if conffiles:
            conffile_paths = {path for path, _ in conffiles}
            entries = [entry for entry in entries if entry[0] not in conffile_paths]
        entries = self.placed(name, entries)
        conffiles = self.placed(name, conffiles)
        records = [InstalledFile(p, name, version, MANAGER, d, _MD5, False) for p, d in entries]
        records += [
            InstalledFile(p, name, version, MANAGER, d, None if d is None else _MD5, True)
            for p, d in conffiles
        ]
        self.files.extend(records)
        return len(records)

    def placed(self, name: str, group: list[_Entry]) -> list[_Entry]:
        """Drop the entries dpkg's path filters excluded; move diverted ones to where they are."""
        if not group:
            return group
        if self.filters:
            excluded = self.filters.excluded
            kept = [
                entry
                for entry in group
                if not (excluded(entry[0]) and self.absent(self.on_disk(name, entry[0])))
            ]
            self.filtered += len(group) - len(kept)
            group = kept
        diversions = self.diversions
        if diversions and not diversions.keys().isdisjoint([path for path, _ in group]):
            placed = []
            for path, digest in group:
                diversion = diversions.get(path)
                if diversion is not None and diversion.package != name:
                    path = diversion.diverted
                placed.append((path, digest))
            return placed
        return group

    def on_disk(self, name: str, path: bytes) -> bytes:
        """Where package `name`'s file `path` is on disk (elsewhere if another diverted it)."""
        diversion = self.diversions.get(path)
        return path if diversion is None or diversion.package == name else diversion.diverted

    def absent(self, path: bytes) -> bool:
        """Whether nothing is at `path`. The image's own path filters may excuse only that:
        a filtered file that is there (a binary the image's dpkg.cfg.d "excludes", then
        modifies) is verified like any other, or a hostile image could exempt any file."""
        try:
            self.root.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False  # cannot tell: kept, and its verification will say why
        return False

    def text(self, value: bytes, source: bytes, line: int, field_name: str) -> str:
        """A field as text: dpkg writes only ASCII here; anything else is reported, not guessed."""
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            shown = value.decode("ascii", "backslashreplace")
            self.problem(source, f"line {line}: {field_name} {shown!r} is not ASCII")
            return shown


def _info_names(
    name: bytes, arch: bytes | None, multiarch_same: bool, suffix: bytes
) -> tuple[bytes, ...]:
    """The info file names dpkg may have used for a package, the likelier first."""
    if arch is None:
        return (name + suffix,)
    plain, qualified = name + suffix, name + b":" + arch + suffix
    return (qualified, plain) if multiarch_same else (plain, qualified)
