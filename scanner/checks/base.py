"""The small interface every built-in check implements, and the context a scan hands it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pkgdb import RootFS

from ..manifests import Manifests
from ..report import Finding, Problem, Stats, display_path

__all__ = ["Check", "ScanContext", "ScanOptions"]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What the caller asked for, independent of how it was asked (CLI or library)."""

    all_files: bool = False
    jobs: int = 0
    excludes: tuple[str, ...] = ()
    # Paths per hash_files call: large, since each call ends with its slowest file alone.
    batch_size: int = 32768
    # 424's environment sources: task-definition and env-file paths; PID 1 when the root is "/".
    task_definitions: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    process_env: bool = True


@dataclass(slots=True)
class ScanContext:
    """What a check may use: the root, the package manifests, the hasher, the options."""

    root: RootFS
    options: ScanOptions
    manifests: Manifests
    stats: Stats
    progress: Callable[[str], None] = field(default=lambda _message: None)

    def excluded(self, physical: bytes) -> bool:
        """True when `--exclude` globs match the path as seen inside the container."""
        if not self.options.excludes:
            return False
        shown = display_path(physical)
        return any(fnmatch.fnmatchcase(shown, pattern) for pattern in self.options.excludes)


class Check(Protocol):
    """A built-in compliance check. Its `id` is permanent: policies and reports refer to it."""

    id: str
    title: str

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        """Yield findings and problems as they are found."""
        ...


def check_ids(checks: Sequence[Check]) -> tuple[str, ...]:
    return tuple(check.id for check in checks)
