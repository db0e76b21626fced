"""Check 448: package binaries must not be altered (digest vs the package manager's record).

Which files are "binaries" (the default scope; `--all-files` verifies every package file):
a file is a binary when any of these holds —
  * on disk it is a regular file with any execute bit, or its first bytes are an ELF header;
  * the manifest records an execute bit for it (rpm, apk record modes; dpkg does not);
  * its path lies in an executable directory (`bin/`, `sbin/`, `usr/bin/`, `usr/sbin/`,
    `usr/local/bin/`, `usr/local/sbin/`, `usr/libexec/`, `usr/games/`) or names a shared object
    (`*.so`, `*.so.N…`) — so a binary that was deleted, replaced by a symlink or had its execute
    bits stripped is still judged, although its on-disk form no longer says "binary";
  * for a manager that records no mode (dpkg): the file is a script on disk (`#!`), or it lies
    in a library tree (`lib/`, `usr/lib/`, ...) with no `.` in its name, outside the
    `terminfo/` and `locale/` data trees (see _helper_path_says_binary: why).
Everything else (documentation, data, conffiles) is verified only with `--all-files`; a changed
conffile is then the lower-severity kind `config-modified`, since conffiles change legitimately.

What is compared follows the record's `verify` (rpm's per-file `%verify`, as `rpm -V` honours
it: content by digest and size, the link target, the permissions, the file type), and an absent
file whose record is `missing_ok` (rpm `%config(missingok)`, `%ghost`) is no finding.
"""

from __future__ import annotations

import errno as errno_codes
import hashlib
import os
import re
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import _native
from _native import Digest, FileKind, HashResult, HashStatus, WalkEntry
from pkgdb import READERS, DigestAlgorithm, InstalledFile, Verify

from ..progress import Phase
from ..report import Finding, FindingKind, PackageRef, Problem, ProblemKind, Severity
from .base import LSTAT, Hit, ScanContext

__all__ = ["PackageBinariesCheck", "is_binary"]

ID = "448"
# Bump when a change could turn a clean verdict into a finding (or back): rescan states
# (scanner/state.py) recorded under another version are then dropped.
VERSION = 2
MANAGERS = ", ".join(reader.MANAGER for reader in READERS)
TITLE = "Package binaries should not be altered"
# Its most severe finding: a SARIF rule's default level must not depend on one run's findings.
WORST = Severity.HIGH

_EXEC_DIRS = (
    b"bin/",
    b"sbin/",
    b"usr/bin/",
    b"usr/sbin/",
    b"usr/local/bin/",
    b"usr/local/sbin/",
    b"usr/libexec/",
    b"usr/games/",
)
_SHARED_OBJECT = re.compile(rb"\.so(\.[0-9][0-9A-Za-z.]*)?$")
_ELF_MAGIC = b"\x7fELF"
# Plain ints, not Digest members: enum arithmetic costs microseconds per file on the hot path.
_DIGEST_FLAG = {
    DigestAlgorithm.MD5: int(Digest.MD5),
    DigestAlgorithm.SHA1: int(Digest.SHA1),
    DigestAlgorithm.SHA256: int(Digest.SHA256),
    DigestAlgorithm.SHA256_160: int(Digest.SHA256),
}
_RESULT_FIELD = {
    DigestAlgorithm.MD5: "md5",
    DigestAlgorithm.SHA1: "sha1",
    DigestAlgorithm.SHA256: "sha256",
    DigestAlgorithm.SHA256_160: "sha256",
}


def _path_says_binary(path: bytes) -> bool:
    return path.startswith(_EXEC_DIRS) or _SHARED_OBJECT.search(path) is not None


# Helper programs live in library trees (usr/lib/openssh/sftp-server, usr/lib/apt/methods/http:
# 314 such executables on a Debian 11 root). dpkg records no mode, so once one is deleted,
# replaced by a symlink or stripped of its execute bits, only its path is left to say what it
# was. Debian Policy 10.4 names programs without an extension (no `.sh`, `.pl`), while what else
# the library trees hold is named with one (`.so.N`, `.py`, `.pm`, `.conf`, `.service`), but for
# two data trees of one file per entry, whose names are data: terminfo (`x/xterm`) and locale
# (`C.utf8/LC_CTYPE`). A name without a `.` in a library tree outside those is therefore taken
# for a program. On a bookworm debootstrap root this catches 19 of the 20 programs of the
# library trees (not apt.systemd.daily) and adds 7 other files to the scope (`usr/lib/os-release`,
# `gconv-modules`, the sourced shell code of lib/lsb), none of which a slim image deletes: they
# strip usr/share (doc, man, locale) or filter it with path-exclude.
_LIB_TREES = (
    b"lib/",
    b"lib32/",
    b"lib64/",
    b"libx32/",
    b"usr/lib/",
    b"usr/lib32/",
    b"usr/lib64/",
    b"usr/libx32/",
    b"usr/local/lib/",
)
_DATA_TREES = re.compile(rb"/(?:terminfo|locale)/")
_SHEBANG = b"#!"


def _helper_path_says_binary(path: bytes) -> bool:
    return (
        path.startswith(_LIB_TREES)
        and b"." not in path.rpartition(b"/")[2]
        and _DATA_TREES.search(path) is None
    )


def is_binary(record: InstalledFile, physical: bytes, result: HashResult) -> bool:
    """The default scope of check 448 (see the module docstring)."""
    if record.mode is not None and record.mode & 0o111:
        return True
    head = result.head or b""
    if result.kind is FileKind.REGULAR and (result.mode & 0o111 or head.startswith(_ELF_MAGIC)):
        return True
    if _path_says_binary(record.path) or _path_says_binary(physical):
        return True
    if record.mode is not None:
        return False  # the recorded mode said "not executable"
    # dpkg: no recorded mode. A script stripped of its execute bits still starts with `#!`.
    if result.kind is FileKind.REGULAR and head.startswith(_SHEBANG):
        return True
    return _helper_path_says_binary(record.path) or _helper_path_says_binary(physical)


def _permissions(mode: int) -> int:
    return stat.S_IMODE(mode)


def _kind_name(result: HashResult) -> str:
    return result.kind.name.lower().replace("_", "-") if result.kind else "unknown"


def _digest_of(result: HashResult, algorithm: DigestAlgorithm) -> bytes | None:
    digest: bytes | None = getattr(result, _RESULT_FIELD[algorithm])
    if digest is not None and algorithm is DigestAlgorithm.SHA256_160:
        return digest[:20]
    return digest


def _digest_of_bytes(data: bytes, algorithm: DigestAlgorithm) -> bytes:
    """A digest of in-memory bytes (a symlink's target string), as the manifest records it."""
    if algorithm is DigestAlgorithm.SHA256_160:
        return hashlib.sha256(data).digest()[:20]
    return hashlib.new(algorithm.value, data).digest()


@dataclass(slots=True)
class VerifyPlan:
    """Every physical path to verify, the manifest records behind it, and the digests wanted."""

    records: dict[bytes, list[InstalledFile]] = field(default_factory=dict)
    flags: dict[bytes, int] = field(default_factory=dict)


class PlanMemo(Protocol):
    """What a scan session keeps for 448 between rescans (scanner/memo.py's Memo is one):
    typed here, so that the checks never import the session that holds them."""

    def plan(
        self,
        context: ScanContext,
        make: Callable[[ScanContext], Generator[Problem, None, VerifyPlan]],
        trusted: bool,
    ) -> Generator[Problem, None, tuple[VerifyPlan, str | None]]: ...


class PackageBinariesCheck:
    """Hashes every package-owned file once and compares it with the manifest's digest.

    Run alone (`run`) it reads its plan's paths in manifest order; in the content pass it is a
    ListingCheck: its plan's paths are its `listed`, judged from the walk's one read of each,
    and those the walk did not meet afterwards.
    """

    id = ID
    version = VERSION
    title = TITLE
    worst: Severity | None = WORST
    markers: tuple[bytes, ...] = ()
    capture: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self._plan = VerifyPlan()  # made by prepare()
        # The kept plan's fingerprint (scanner/memo.py), or None: the state computes it.
        self.fingerprint: str | None = None

    @property
    def verify_plan(self) -> VerifyPlan:
        """The plan prepare() made (empty before)."""
        return self._plan

    @property
    def listed(self) -> dict[bytes, int]:
        return self._plan.flags

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        """Verify every package file on its own (when no other check reads the files)."""
        plan = yield from self.plan(context)
        paths = list(plan.flags)
        size = context.options.batch_size
        context.progress.update(Phase.HASH, 0, len(paths))
        for first in range(0, len(paths), size):
            batch = paths[first : first + size]
            results = _native.hash_files(
                context.root.fd,
                [(path, plan.flags[path]) for path in batch],
                jobs=context.options.jobs,
                extents=context.options.extents,
                cpu_budget=context.cpu_budget,
            )
            for path, result in zip(batch, results, strict=True):
                yield from self.verify_path(context, plan, path, result)
            context.pace()
            context.progress.update(Phase.HASH, first + len(batch), len(paths))

    def prepare(self, context: ScanContext) -> Iterator[Finding | Problem]:
        """Make the plan; with a state, the session's kept one if it still holds (memo.py)."""
        if context.memo is None:
            self._plan = yield from self.plan(context)
            self.fingerprint = None
        else:
            self._plan, self.fingerprint = yield from context.memo.plan(
                context, self.plan, context.trust_memo
            )

    def wants(self, entry: WalkEntry) -> int:
        flags = self._plan.flags.get(entry.path)
        return 0 if flags is None else flags | LSTAT  # a record of no digest is judged too

    def judge(
        self, context: ScanContext, entry: WalkEntry, result: HashResult, hits: list[Hit]
    ) -> Iterator[Finding | Problem]:
        """Verdicts on a listed path the walk met (the content pass counts its read)."""
        return self._verdicts(context, self._plan, entry.path, result)

    def judge_unmet(
        self, context: ScanContext, path: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        return self.verify_path(context, self._plan, path, result)

    def plan(self, context: ScanContext) -> Generator[Problem, None, VerifyPlan]:
        """Resolve every manifest path inside the root; what cannot be resolved is a problem."""
        if not context.manifests.summaries and not context.manifests.problems:
            # A scratch or distroless-static image: said, not treated as a failure to verify.
            yield Problem(
                kind=ProblemKind.NO_PACKAGE_DB,
                message=f"no package manager database ({MANAGERS}) found: no package files to verify",
                check=ID,
            )
        plan = VerifyPlan()
        for number, record in enumerate(context.manifests.files):
            if not number & 4095:
                context.pace()
            try:
                physical = context.root.resolve(record.path)
            except OSError as error:
                yield self._unverified(
                    record, record.path, error.errno, os.strerror(error.errno or 0)
                )
                continue
            if context.excluded(physical):
                continue
            records = plan.records.get(physical)
            if records is None:
                plan.records[physical] = [record]
                plan.flags[physical] = 0
            else:
                records.append(record)
            if (
                record.algorithm is not None
                and record.digest is not None
                and record.verify & Verify.DIGEST
            ):
                plan.flags[physical] |= _DIGEST_FLAG[record.algorithm]
        return plan

    def verify_path(
        self, context: ScanContext, plan: VerifyPlan, path: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        """Verdicts for every manifest record of one physical path, from one hash result (which
        is counted as a file hashed when it read a digest)."""
        stats = context.stats
        if result.status is HashStatus.OK and plan.flags[path]:
            stats.files_hashed += 1
            stats.bytes_hashed += result.size
        return self._verdicts(context, plan, path, result)

    def _verdicts(
        self, context: ScanContext, plan: VerifyPlan, path: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        stats = context.stats
        intact = result.status is HashStatus.OK
        for record in plan.records[path]:
            stats.files_checked += 1
            # Fast path for the common case, an intact file: nothing to judge.
            if (
                intact
                and record.algorithm is not None
                and record.digest is not None
                and record.digest == _digest_of(result, record.algorithm)
                and (record.mode is None or _permissions(record.mode) == _permissions(result.mode))
            ):
                continue
            yield from self._judge(context, record, path, result)

    def _judge(
        self, context: ScanContext, record: InstalledFile, physical: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        status = result.status
        if status is HashStatus.ERROR:
            # Could not read it: never a pass, whatever the scope.
            yield self._unverified(record, physical, result.errno, os.strerror(result.errno))
            return
        binary = is_binary(record, physical, result)
        if not (binary or context.options.all_files):
            return
        severity = (
            Severity.LOW if record.is_config else Severity.HIGH if binary else Severity.MEDIUM
        )
        recorded_link = record.mode is not None and stat.S_ISLNK(record.mode)
        verify = record.verify
        if status is HashStatus.MISSING:
            if not record.missing_ok:
                yield self._finding(record, physical, severity, FindingKind.MISSING)
        elif recorded_link:
            yield from self._judge_symlink(record, physical, result, severity)
        elif status is HashStatus.SYMLINK:
            # rpm -V: a symlink's target against the (empty) recorded one, if LINKTO is verified
            if verify & Verify.LINK_TARGET:
                target = (result.link_target or b"").decode("utf-8", "backslashreplace")
                yield self._finding(
                    record,
                    physical,
                    severity,
                    FindingKind.REPLACED_BY_SYMLINK,
                    detail=f"symlink to {target}",
                )
        elif status is HashStatus.NOT_REGULAR:
            if verify & Verify.FILE_TYPE:
                yield self._finding(
                    record,
                    physical,
                    severity,
                    FindingKind.NOT_A_REGULAR_FILE,
                    detail=_kind_name(result),
                )
        else:
            yield from self._judge_regular(record, physical, result, severity)

    def _judge_regular(
        self, record: InstalledFile, physical: bytes, result: HashResult, severity: Severity
    ) -> Iterator[Finding | Problem]:
        changed = FindingKind.CONFIG_MODIFIED if record.is_config else FindingKind.MODIFIED
        verify = record.verify
        if verify & Verify.SIZE and record.size is not None and record.size != result.size:
            # As rpm -V: a size mismatch is a modification, whatever the digest would say.
            actual = _digest_of(result, record.algorithm) if record.algorithm else None
            yield self._finding(
                record,
                physical,
                severity,
                changed,
                actual=actual.hex() if actual else None,
                detail=f"size {result.size}, recorded {record.size}",
            )
        elif verify & Verify.DIGEST:  # else the package asks not to (rpm %verify(not md5))
            yield from self._judge_digest(record, physical, result, severity, changed)
        if (
            verify & Verify.PERMISSIONS
            and record.mode is not None
            and _permissions(record.mode) != _permissions(result.mode)
        ):
            yield self._mode_finding(record, physical, result)

    def _judge_digest(
        self,
        record: InstalledFile,
        physical: bytes,
        result: HashResult,
        severity: Severity,
        changed: FindingKind,
    ) -> Iterator[Finding | Problem]:
        if record.digest is None or record.algorithm is None:
            yield self._unverified(
                record, physical, None, "the package manager records no digest for this file"
            )
            return
        actual = _digest_of(result, record.algorithm)
        if actual is None:
            yield self._unverified(record, physical, errno_codes.EIO, "digest not computed")
        elif actual != record.digest:
            yield self._finding(record, physical, severity, changed, actual=actual.hex())

    def _judge_symlink(
        self, record: InstalledFile, physical: bytes, result: HashResult, severity: Severity
    ) -> Iterator[Finding | Problem]:
        if result.status is not HashStatus.SYMLINK:
            # rpm -V sees this through MODE (the type) or, for a regular file, digest and size
            if record.verify & (Verify.FILE_TYPE | Verify.DIGEST | Verify.SIZE):
                yield self._finding(
                    record,
                    physical,
                    severity,
                    FindingKind.NOT_A_SYMLINK,
                    detail=f"a {_kind_name(result)} where a symlink was recorded",
                )
            return
        if not record.verify & Verify.LINK_TARGET:
            return
        target = result.link_target or b""
        shown = target.decode("utf-8", "backslashreplace")
        if record.link_target is not None:
            if target != record.link_target:
                yield self._finding(
                    record,
                    physical,
                    severity,
                    FindingKind.LINK_CHANGED,
                    actual=shown,
                    expected=record.link_target.decode("utf-8", "backslashreplace"),
                )
        elif record.digest is not None and record.algorithm is not None:
            # apk records a digest of the target string (apk-tools apk_fileinfo_get), not a target.
            if _digest_of_bytes(target, record.algorithm) != record.digest:
                yield self._finding(
                    record,
                    physical,
                    severity,
                    FindingKind.LINK_CHANGED,
                    detail=f"symlink to {shown}",
                )
        else:
            yield self._unverified(record, physical, None, "no recorded target for this symlink")

    def _mode_finding(self, record: InstalledFile, physical: bytes, result: HashResult) -> Finding:
        recorded, actual = _permissions(record.mode or 0), _permissions(result.mode)
        # Gaining setuid/setgid or world-write is an escalation path, not housekeeping.
        risky = (actual & ~recorded) & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
        return self._finding(
            record,
            physical,
            Severity.HIGH if risky else Severity.LOW,
            FindingKind.MODE_CHANGED,
            expected=f"{recorded:04o}",
            actual=f"{actual:04o}",
        )

    def _finding(
        self,
        record: InstalledFile,
        physical: bytes,
        severity: Severity,
        kind: FindingKind,
        *,
        actual: str | None = None,
        expected: str | None = None,
        detail: str | None = None,
    ) -> Finding:
        """A finding; `expected` defaults to the recorded digest (then `algorithm` names it)."""
        algorithm = None
        if expected is None and record.digest is not None and record.algorithm is not None:
            expected, algorithm = record.digest.hex(), record.algorithm.value
        return Finding(
            check=ID,
            title=TITLE,
            severity=severity,
            kind=kind,
            path=physical,
            package=PackageRef(record.package, record.version, record.manager),
            expected=expected,
            actual=actual,
            algorithm=algorithm,
            detail=detail,
            config=record.is_config,
        )

    @staticmethod
    def _unverified(record: InstalledFile, path: bytes, error: int | None, reason: str) -> Problem:
        return Problem(
            kind=ProblemKind.COULD_NOT_VERIFY,
            message=f"could not verify: {reason}",
            path=path,
            check=ID,
            package=PackageRef(record.package, record.version, record.manager),
            errno=error,
        )
