"""Orchestration: open the root, read the manifests once, run the checks, stream what they find."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

import _native
from pkgdb import RootFS

from .checks import ContentCheck, select_checks
from .checks.base import ScanContext, ScanOptions
from .checks.package_binaries import PackageBinariesCheck
from .content import content_pass
from .environment import check_sources
from .errors import TargetError
from .manifests import read_manifests
from .report import Finding, Problem, Report, Stats
from .version import __version__

__all__ = ["iter_scan", "open_root", "scan_root"]


def open_root(root: str | os.PathLike[str]) -> RootFS:
    try:
        return RootFS(os.fspath(root))
    except FileNotFoundError as error:
        raise TargetError(f"{root}: no such directory") from error
    except NotADirectoryError as error:
        raise TargetError(f"{root}: not a directory") from error
    except OSError as error:
        raise TargetError(f"{root}: cannot open: {error.strerror}") from error


def iter_scan(
    root: str | os.PathLike[str],
    *,
    checks: Iterable[str] | None = None,
    jobs: int | None = None,
    all_files: bool = False,
    excludes: Iterable[str] = (),
    task_definitions: Iterable[str] = (),
    env_files: Iterable[str] = (),
    process_env: bool = True,
    miner_digests: Iterable[str] = (),
    content_limit: int | None = None,
    report: Report | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Finding | Problem]:
    """Scan `root` and yield each finding and problem as soon as it is known.

    Pass a `report` to have its managers and stats filled in as the scan goes (`scan_root` does).
    Raises TargetError when the root cannot be scanned at all and UsageError for unknown checks.
    """
    selected = select_checks(checks)
    options = ScanOptions(
        all_files=all_files,
        jobs=jobs or 0,
        excludes=tuple(excludes),
        task_definitions=tuple(task_definitions),
        env_files=tuple(env_files),
        process_env=process_env,
        miner_digests=tuple(miner_digests),
        **({"content_limit": content_limit} if content_limit is not None else {}),
    )
    check_sources(options.task_definitions, options.env_files)  # a bad file fails before the walk
    started = time.perf_counter()
    stats = report.stats if report is not None else Stats()
    stats.implementation = _native.IMPLEMENTATION
    stats.jobs = jobs or _native.default_jobs()
    with open_root(root) as rootfs:
        manifests = read_manifests(rootfs)
        if report is not None:
            report.managers.extend(manifests.summaries)
        yield from manifests.problems
        context = ScanContext(
            root=rootfs,
            options=options,
            manifests=manifests,
            stats=stats,
            progress=progress or (lambda _message: None),
        )
        content_checks = [check for check in selected if isinstance(check, ContentCheck)]
        binaries = next((c for c in selected if isinstance(c, PackageBinariesCheck)), None)
        if content_checks:
            # One walk and one read per file for the content checks and 448 together.
            yield from content_pass(context, content_checks, binaries)
        for check in selected:
            if check in content_checks or (content_checks and check is binaries):
                continue
            yield from check.run(context)  # type: ignore[union-attr]
    stats.seconds = time.perf_counter() - started


def scan_root(
    root: str | os.PathLike[str] = "/",
    *,
    checks: Iterable[str] | None = None,
    jobs: int | None = None,
    all_files: bool = False,
    excludes: Iterable[str] = (),
    task_definitions: Iterable[str] = (),
    env_files: Iterable[str] = (),
    process_env: bool = True,
    miner_digests: Iterable[str] = (),
    content_limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Scan a root filesystem and return the whole report.

    `checks` is a list of check ids (default: every built-in check); `jobs` the number of hashing
    threads (default: chosen by the native core); `all_files` verifies every package file, not
    only binaries; `excludes` are globs on the path as seen in the container (`/usr/share/*`).
    `task_definitions`, `env_files` and `process_env` (PID 1's environment, read only when
    `root` is the live "/") are the environment sources of check 424. `miner_digests` are extra
    known-miner digest lists (426); `content_limit` the largest file 425/426 search (bytes).
    """
    selected = select_checks(checks)
    report = Report(
        root=os.fspath(root),
        scanner_version=__version__,
        implementation=_native.IMPLEMENTATION,
        checks=tuple(check.id for check in selected),
    )
    for item in iter_scan(
        root,
        checks=report.checks,
        jobs=jobs,
        all_files=all_files,
        excludes=excludes,
        task_definitions=task_definitions,
        env_files=env_files,
        process_env=process_env,
        miner_digests=miner_digests,
        content_limit=content_limit,
        report=report,
        progress=progress,
    ):
        if isinstance(item, Finding):
            report.findings.append(item)
        else:
            report.problems.append(item)
    return report
