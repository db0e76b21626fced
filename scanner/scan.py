"""Orchestration: open the root, read the manifests once, run the checks, stream what they find."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict, Unpack

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
from .targets.ecs import read_task_metadata
from .version import __version__

__all__ = ["ScanArguments", "iter_scan", "open_root", "scan_image", "scan_root"]


def open_root(root: str | os.PathLike[str]) -> RootFS:
    try:
        return RootFS(os.fspath(root))
    except FileNotFoundError as error:
        raise TargetError(f"{root}: no such directory") from error
    except NotADirectoryError as error:
        raise TargetError(f"{root}: not a directory") from error
    except OSError as error:
        raise TargetError(f"{root}: cannot open: {error.strerror}") from error


class ScanArguments(TypedDict, total=False):
    """The options of `scan_root` and `iter_scan`, all keyword-only and optional."""

    checks: Iterable[str] | None  # check ids (default: every built-in check)
    jobs: int | None  # hashing threads (default: chosen by the native core)
    all_files: bool  # 448: every package file, not only binaries
    excludes: Iterable[str]  # globs on the path as seen in the container (`/usr/share/*`)
    task_definitions: Iterable[str]  # 424 sources: ECS task definition files
    env_files: Iterable[str]  # 424 sources: docker env files
    process_env: bool  # 424: PID 1's environment, read only when the root is the live "/"
    miner_digests: Iterable[str]  # 426: extra known-miner digest lists
    content_limit: int | None  # 425/426: the largest file searched, in bytes
    image_env: Iterable[tuple[str, str]]  # 424: an image config's Env
    image_name: str | None  # how 424 names the image-config source
    progress: Callable[[str], None] | None  # called with a short progress line


def _options(arguments: ScanArguments) -> ScanOptions:
    content_limit = arguments.get("content_limit")
    return ScanOptions(
        all_files=arguments.get("all_files", False),
        jobs=arguments.get("jobs") or 0,
        excludes=tuple(arguments.get("excludes", ())),
        task_definitions=tuple(arguments.get("task_definitions", ())),
        env_files=tuple(arguments.get("env_files", ())),
        process_env=arguments.get("process_env", True),
        miner_digests=tuple(arguments.get("miner_digests", ())),
        image_env=tuple(arguments.get("image_env", ())),
        image_name=arguments.get("image_name"),
        **({"content_limit": content_limit} if content_limit is not None else {}),
    )


def iter_scan(
    root: str | os.PathLike[str],
    *,
    report: Report | None = None,
    **arguments: Unpack[ScanArguments],
) -> Iterator[Finding | Problem]:
    """Scan `root` and yield each finding and problem as soon as it is known.

    Pass a `report` to have its managers and stats filled in as the scan goes (`scan_root` does).
    Raises TargetError when the root cannot be scanned at all and UsageError for unknown checks
    or unreadable input files.
    """
    selected = select_checks(arguments.get("checks"))
    options = _options(arguments)
    check_sources(options.task_definitions, options.env_files)  # a bad file fails before the walk
    started = time.perf_counter()
    stats = report.stats if report is not None else Stats()
    stats.implementation = _native.IMPLEMENTATION
    stats.jobs = options.jobs or _native.default_jobs()
    progress = arguments.get("progress") or (lambda _message: None)
    with open_root(root) as rootfs:
        manifests = read_manifests(rootfs)
        if report is not None:
            report.managers.extend(manifests.summaries)
        yield from manifests.problems
        context = ScanContext(
            root=rootfs, options=options, manifests=manifests, stats=stats, progress=progress
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


def _identify(report: Report, root: str | os.PathLike[str]) -> None:
    """Who is scanned: in an ECS task every container reports the task id as its host."""
    identity, problems = read_task_metadata()
    report.problems.extend(Problem(kind="task-metadata", message=message) for message in problems)
    if identity is None:
        report.target_details["host"] = socket.gethostname()
        return
    report.target_details["host"] = identity.host
    report.target_details["task"] = identity.task_dict()
    if identity.container is not None:
        report.target_details["container"] = identity.container.to_dict()
    if os.path.realpath(os.fspath(root)) == "/":
        report.target_kind = "task"  # the task's own live root, scanned from inside it


def scan_root(root: str | os.PathLike[str] = "/", **arguments: Unpack[ScanArguments]) -> Report:
    """Scan a root filesystem and return the whole report (see ScanArguments for the options)."""
    selected = select_checks(arguments.get("checks"))
    report = Report(
        root=os.fspath(root),
        scanner_version=__version__,
        implementation=_native.IMPLEMENTATION,
        checks=tuple(check.id for check in selected),
    )
    _identify(report, root)
    arguments["checks"] = report.checks  # resolved once: iter_scan runs the same checks
    for item in iter_scan(root, report=report, **arguments):
        if isinstance(item, Finding):
            report.findings.append(item)
        else:
            report.problems.append(item)
    return report


def scan_image(path: str | os.PathLike[str], **arguments: Unpack[ScanArguments]) -> Report:
    """Scan a container image (OCI layout or archive, `docker save` tarball) like a root.

    The layers are applied, whiteouts included, into a private temporary directory that is always
    removed; its config's Env is a 424 source. Raises ImageError for an unusable or hostile image.
    """
    from .targets.image import open_image  # tarfile & co. only when an image is scanned

    with open_image(path) as image:
        arguments.setdefault("image_env", image.env)
        arguments.setdefault("image_name", image.name or image.image_id)
        report = scan_root(image.root, **arguments)
        report.root = os.fspath(path)
        report.target_kind = "image"
        report.target_details["image"] = {
            "name": image.name,
            "tags": list(image.tags),
            "id": image.image_id,
            "digest": image.digest,
            "platform": image.platform,
            "user": image.user,
            "labels": dict(image.labels),
        }
        report.problems.extend(Problem(kind="image", message=message) for message in image.problems)
    return report
