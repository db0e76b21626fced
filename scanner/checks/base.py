"""The small interface every built-in check implements, and the context a scan hands it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from _native import Extents, HashResult, WalkEntry
from _native.throttle import CpuBudget
from pkgdb import RootFS

from ..manifests import Manifests
from ..progress import Progress, Silent
from ..report import Finding, PackageRef, Problem, Severity, Stats, display_path

if TYPE_CHECKING:
    from .package_binaries import PlanMemo

__all__ = ["LSTAT", "Check", "ContentCheck", "Hit", "ListingCheck", "ScanContext", "ScanOptions"]

# A want of no read (ContentCheck.wants): the file is judged on the hasher's lstat alone. A bit
# above every Digest flag; the content pass clears it before asking the hasher.
LSTAT = 1 << 16

# A marker found in a file: (the check's own marker index, the file offset where it starts).
Hit = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What the caller asked for, independent of how it was asked (CLI or library)."""

    all_files: bool = False
    jobs: int = 0
    excludes: tuple[str, ...] = ()
    # Paths per hash_files call: large, since each call ends with its slowest file alone.
    batch_size: int = 32768
    # ... and fewer when the captured windows they could return (content.py) pass this many bytes.
    batch_bytes: int = 128 << 20
    # 424's environment sources: task-definition and env-file paths; PID 1 when the root is "/".
    task_definitions: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    process_env: bool = True
    process_pid: int | None = None  # whose environ 424 reads (None: PID 1 of a live "/")
    # Content checks (425, 426): files larger than this are not searched, and are reported so.
    content_limit: int = 256 << 20
    miner_digests: tuple[str, ...] = ()  # extra digest lists for 426 (--miner-digests)
    # When the target is an image: its config's Env (a 424 source) and its name for reports.
    image_env: tuple[tuple[str, str], ...] = ()
    image_name: str | None = None
    # Files whose bytes the hasher reads from another file (an image's placed files).
    extents: Extents | None = None


@dataclass(slots=True)
class ScanContext:
    """What a check may use: the root, the package manifests, the hasher, the options."""

    root: RootFS
    options: ScanOptions
    manifests: Manifests
    stats: Stats
    progress: Progress = field(default_factory=Silent)
    cpu_budget: CpuBudget | None = None  # --max-cpu, started with the scan
    # With a state: the session's memo (scanner/memo.py), and whether what it kept may be
    # reused (not under --rescan full).
    memo: PlanMemo | None = None
    trust_memo: bool = False
    # What the user should know that is neither a finding nor a problem (the report's notices):
    # how each custom check was isolated.
    notices: list[str] = field(default_factory=list)
    _owners: dict[bytes, PackageRef] | None = None

    def pace(self) -> None:
        """--max-cpu for the Python phases: sleep while the process is ahead of its budget."""
        if self.cpu_budget is not None:
            self.cpu_budget.pace()

    def owner(self, physical: bytes) -> PackageRef | None:
        """The package that installed the file at this physical path, if any."""
        if self._owners is None:
            owners: dict[bytes, PackageRef] = {}
            for record in self.manifests.files:
                try:
                    resolved = self.root.resolve(record.path)
                except OSError:
                    continue  # 448 reports the unresolvable path; ownership is only a label here
                owners.setdefault(
                    resolved, PackageRef(record.package, record.version, record.manager)
                )
            self._owners = owners
        return self._owners.get(physical)

    def excluded(self, physical: bytes) -> bool:
        """True when `--exclude` globs match the path as seen inside the container."""
        if not self.options.excludes:
            return False
        shown = display_path(physical)
        return any(fnmatch.fnmatchcase(shown, pattern) for pattern in self.options.excludes)


@runtime_checkable
class Check(Protocol):
    """A built-in compliance check. Its `id` is permanent: policies and reports refer to it."""

    id: str
    title: str
    worst: Severity | None  # its most severe finding (None: only what it found says)

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        """Yield findings and problems as they are found."""
        ...


@runtime_checkable
class ContentCheck(Protocol):
    """A check that looks at every file of the walk; the scan reads each wanted file once.

    `markers` are literals the one content pass searches for on the check's behalf; a hit of a
    marker listed in `capture` comes with the bytes around it (`windows`).
    """

    id: str
    title: str
    worst: Severity | None  # its most severe finding (None: only what it found says)
    markers: tuple[bytes, ...]
    capture: frozenset[int]

    def prepare(self, context: ScanContext) -> Iterator[Finding | Problem]:
        """Once before the walk (load data files, say what is not possible)."""
        ...

    def wants(self, entry: WalkEntry) -> int:
        """Digest flags (with Digest.CONTENT to be searched) this check needs, or LSTAT for no
        read; 0: not this file."""
        ...

    def judge(
        self,
        context: ScanContext,
        entry: WalkEntry,
        result: HashResult,
        hits: list[Hit],
    ) -> Iterator[Finding | Problem]:
        """Verdicts for one file from its one read; `result.windows` holds captured bytes."""
        ...


@runtime_checkable
class ListingCheck(ContentCheck, Protocol):
    """A content check that also judges a list of paths made in `prepare` (448: the package
    files) wherever they are: met by the walk (then `wants` asks for them) or not (missing,
    replaced by a symlink, on another mount): those are read after the walk, for `judge_unmet`.
    """

    @property
    def listed(self) -> Mapping[bytes, int]:
        """The listed paths (root-relative, as the walk spells them) and their digest flags."""
        ...

    def judge_unmet(
        self, context: ScanContext, path: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        """Verdicts for a listed path the walk did not meet, read after it."""
        ...
