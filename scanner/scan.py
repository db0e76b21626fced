"""Orchestration: open the root, read the manifests once, run the checks, stream what they find."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import TypedDict, Unpack

import _native
from _native import Extents
from _native.throttle import CpuBudget
from pkgdb import RootFS

from . import memo as memos
from .checks import Check, ContentCheck, describe_checks, select_checks
from .checks.base import ScanContext, ScanOptions
from .content import content_pass
from .environment import check_sources, read_task_definition
from .errors import TargetError, UsageError
from .manifests import read_manifests
from .memo import Memo
from .policy.evaluate import apply_policy
from .policy.model import CustomCheckSpec, Policy
from .priority import lower_priority
from .progress import Phase, Progress, progress_from
from .report import Finding, Problem, ProblemKind, Report, Stats
from .state import Rescan, StateSession, open_state
from .targets.ecs import EXECUTION_ENV, PLATFORM_LAUNCH_TYPES, read_task_metadata
from .targets.layout import image_format
from .version import __version__

__all__ = ["ScanArguments", "iter_scan", "open_root", "scan_image", "scan_root"]


def refuse_image(root: str | os.PathLike[str]) -> None:
    """TargetError when `root` is an image, not a root filesystem: scanned as a directory, a
    layout or a save would give a clean report about blobs, not the image's files."""
    kind = image_format(root)
    if kind is not None:
        raise TargetError(
            f"{root} is {kind}, not a root filesystem: did you mean `scan-root image {root}`? "
            "(scanner.scan_image)"
        )


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
    # 424: this process's environment instead (a defender scanning another container through
    # /proc/<pid>/root reads /proc/<pid>/environ); `process_env` still turns it off.
    process_pid: int | None
    miner_digests: Iterable[str]  # 426: extra known-miner digest lists
    content_limit: int | None  # 425/426: the largest file searched, in bytes
    image_env: Iterable[tuple[str, str]]  # 424: an image config's Env
    image_name: str | None  # how 424 names the image-config source
    extents: Extents | None  # files whose bytes lie in another file (scan_image's placed files)
    # Told each phase with its count and total (scanner/progress.py); a callable taking a str
    # (the older form) gets a short line instead.
    progress: Progress | Callable[[str], None] | None
    # Incremental rescans (scanner/state.py): the state file, how far to trust it ("stat" by
    # default, "content", "full"), whether it may lie inside the scanned root, and what it is
    # keyed to instead of the root directory's identity (scan_image: the image id).
    state: str | os.PathLike[str] | None
    rescan: str | None
    state_in_root: bool
    state_target: str | None
    # CPU time / wall time at most this (0.25: a quarter of one core), from the scan's start; or
    # a CpuBudget already started (the CLI's counts from the process's start, imports included).
    max_cpu: float | CpuBudget | None
    nice: bool  # lower this process's CPU and I/O priority first (irreversible: docs/fargate.md)
    # Decides each finding's rule and effect once the scan is done (scan_root and scan_image;
    # iter_scan streams undecided findings and refuses a policy rather than ignore it). Its
    # custom checks (ids 9000 and up) run after the built-in ones.
    policy: Policy | None
    # An advisory database (vulndb: `scan-root vulndb import`): the root's packages are matched
    # against it and the report gets `vulnerabilities` (scan_root, scan_image, a session's).
    vulndb: str | os.PathLike[str] | None


def _options(arguments: ScanArguments) -> ScanOptions:
    content_limit = arguments.get("content_limit")
    return ScanOptions(
        all_files=arguments.get("all_files", False),
        jobs=arguments.get("jobs") or 0,
        excludes=tuple(arguments.get("excludes", ())),
        task_definitions=tuple(arguments.get("task_definitions", ())),
        env_files=tuple(arguments.get("env_files", ())),
        process_env=arguments.get("process_env", True),
        process_pid=arguments.get("process_pid"),
        miner_digests=tuple(arguments.get("miner_digests", ())),
        image_env=tuple(arguments.get("image_env", ())),
        image_name=arguments.get("image_name"),
        extents=arguments.get("extents"),
        **({"content_limit": content_limit} if content_limit is not None else {}),
    )


def _budget(max_cpu: float | CpuBudget | None) -> CpuBudget | None:
    if max_cpu is None or isinstance(max_cpu, CpuBudget):
        return max_cpu
    try:
        return CpuBudget.start(max_cpu)
    except ValueError as error:
        raise UsageError(str(error)) from error


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
    return _iter_scan(root, report, arguments, memos.DEFAULT)


def _iter_scan(
    root: str | os.PathLike[str], report: Report | None, arguments: ScanArguments, memo: Memo
) -> Iterator[Finding | Problem]:
    """iter_scan with a session's memo."""
    if arguments.get("policy") is not None:
        raise UsageError("iter_scan streams undecided findings: pass the policy to scan_root")
    if arguments.get("vulndb") is not None and report is None:
        raise UsageError("iter_scan yields no vulnerabilities: pass a report, or use scan_root")
    refuse_image(root)
    yield from _stream(root, select_checks(arguments.get("checks")), report, arguments, memo)


def _stream(
    root: str | os.PathLike[str],
    selected: tuple[Check | ContentCheck, ...],
    report: Report | None,
    arguments: ScanArguments,
    memo: Memo,
) -> Iterator[Finding | Problem]:
    """iter_scan's work, with the checks already chosen (built-in and custom); a rescan keeps
    what it may reuse in `memo` (the session's)."""
    options = _options(arguments)
    check_sources(options.task_definitions, options.env_files)  # a bad file fails before the walk
    started = time.perf_counter()
    # Started before anything else of the scan, so that every phase is paced against it.
    budget = _budget(arguments.get("max_cpu"))
    if arguments.get("nice", False):
        for message in lower_priority():
            yield Problem(kind=ProblemKind.PRIORITY, message=f"--nice: {message}")
    stats = report.stats if report is not None else Stats()
    stats.implementation = _native.IMPLEMENTATION
    stats.jobs = options.jobs or _native.default_jobs()
    progress = progress_from(arguments.get("progress"))
    started_ns = time.time_ns()
    level = _rescan_level(arguments)
    with open_root(root) as rootfs, ExitStack() as cleanup:
        state: StateSession | None = None
        if level is not None:
            state, trouble, notice = open_state(
                arguments["state"],  # type: ignore[arg-type]  # _rescan_level checked it
                level,
                root_path=os.fspath(root),
                root_fd=rootfs.fd,
                target=arguments.get("state_target"),
                checks={check.id: getattr(check, "version", 1) for check in selected},
                all_files=options.all_files,
                excludes=options.excludes,
                content_limit=options.content_limit,
                miner_digests=options.miner_digests,
                allow_in_root=arguments.get("state_in_root", False),
                started_ns=started_ns,
                memo=memo,
            )
            # save() releases what it holds; a scan that ends early (an error, an iter_scan
            # abandoned) too, or a long-lived caller leaks a descriptor per failed scan.
            cleanup.callback(state.close)
            if trouble is not None:
                # Not an unverified item: the scan that follows is a full one.
                yield Problem(kind=ProblemKind.STATE, message=trouble)
            if notice is not None and report is not None:
                report.notices.append(notice)
        progress.update(Phase.PACKAGES)
        # With a state, a rescan reuses the manifests this session read, if their files are
        # unchanged (scanner/memo.py); --rescan full reads them again.
        trusted = level is not None and level is not Rescan.FULL
        manifests = (
            read_manifests(rootfs) if level is None else memo.manifests(rootfs, trusted=trusted)
        )
        if budget is not None:
            budget.pace()  # the manifests are read in Python, in one go
        if report is not None:
            report.managers.extend(manifests.summaries)
        yield from manifests.problems
        database = arguments.get("vulndb")
        if database is not None and report is not None:
            from .vulnerabilities import match_root

            report.vulnerabilities, gaps = match_root(rootfs, manifests.packages, database)
            yield from gaps
        context = ScanContext(
            root=rootfs,
            options=options,
            manifests=manifests,
            stats=stats,
            progress=progress,
            cpu_budget=budget,
            memo=memo if level is not None else None,
            trust_memo=trusted,
        )
        # One walk and one read per file for every content check, 448 included. A check that
        # can also run alone (448: its plan's files, read in manifest order) joins the walk
        # only when there is one anyway, or a state needs the identities the walk gives.
        # (Each check's kinds asked once: a runtime Protocol check costs ~50 us on 3.11.)
        content = [check for check in selected if isinstance(check, ContentCheck)]
        alone = [check for check in selected if isinstance(check, Check)]
        runs_alone = {id(check) for check in alone}
        walking = content
        if state is None and all(id(check) in runs_alone for check in content):
            walking = []
        if walking:
            yield from content_pass(context, walking, state)
        walked = {id(check) for check in walking}
        for check in alone:
            if id(check) not in walked:
                yield from check.run(context)
                context.pace()
        if report is not None:
            report.notices.extend(context.notices)
        if state is not None:
            failure = state.save()
            if failure is not None:
                yield Problem(kind=ProblemKind.STATE, message=failure)
    if budget is not None:
        budget.pace()  # what the last phase ran ahead is slept off before the scan returns
    stats.seconds = time.perf_counter() - started


def _rescan_level(arguments: ScanArguments) -> Rescan | None:
    """The rescan level asked for (stat when only a state is given); None without a state."""
    rescan = arguments.get("rescan")
    if arguments.get("state") is None:
        if rescan is not None:
            raise UsageError("rescan needs a state file (--state FILE)")
        return None
    try:
        return Rescan(rescan or "stat")
    except ValueError:
        raise UsageError(f"unknown rescan level {rescan!r} (stat, content or full)") from None


def _identify(report: Report, root: str | os.PathLike[str]) -> None:
    """Who is scanned: in a Fargate task every container reports the task id as its host; an
    EC2 (or ECS Anywhere) task runs on an instance, and the instance is its host."""
    identity, problems = read_task_metadata()
    report.problems.extend(
        Problem(kind=ProblemKind.TASK_METADATA, message=message) for message in problems
    )
    # The platform says where we are, endpoint or not, and is trusted over the endpoint's
    # LaunchType: a block must never be applied to a Fargate task, nor lifted from a host.
    platform = PLATFORM_LAUNCH_TYPES.get(os.environ.get(EXECUTION_ENV, ""))
    if platform is not None:
        report.target_details["launch_type"] = platform
    if identity is None:
        report.target_details["host"] = socket.gethostname()
        return
    # Fargate or not as the policy decides it (policy/evaluate.py `_is_fargate`): the platform's
    # word first, then the endpoint's LaunchType, and a task that says neither is Fargate.
    fargate = (platform or identity.launch_type or "FARGATE") == "FARGATE"
    report.target_details["host"] = identity.host if fargate else socket.gethostname()
    report.target_details["task"] = identity.task_dict()
    if identity.container is not None:
        report.target_details["container"] = identity.container.to_dict()
    if os.path.realpath(os.fspath(root)) == "/":
        report.target_kind = "task"  # the task's own live root, scanned from inside it


def scan_root(root: str | os.PathLike[str] = "/", **arguments: Unpack[ScanArguments]) -> Report:
    """Scan a root filesystem and return the whole report (see ScanArguments for the options).

    A defender running inside the task it protects should pass `nice=True` (nice 19 and the
    idle I/O class for this process, irreversibly; a refusal is a `priority` problem, not a
    failure) and, to hold a share of one core, `max_cpu=0.25`. Both are off by default: a
    library must not lower its caller's priority unasked.
    """
    return _scan_root(root, arguments, memos.DEFAULT)


def _scan_root(root: str | os.PathLike[str], arguments: ScanArguments, memo: Memo) -> Report:
    """scan_root with a session's memo."""
    policy = arguments.pop("policy", None)
    refuse_image(root)
    report = _scan(root, _custom_checks(policy), arguments, memo)
    if policy is not None:
        apply_policy(report, policy)
    return report


def _custom_checks(policy: Policy | None) -> tuple[CustomCheckSpec, ...]:
    return policy.custom_checks if policy is not None else ()


def _scan(
    root: str | os.PathLike[str],
    custom: tuple[CustomCheckSpec, ...],
    arguments: ScanArguments,
    memo: Memo,
) -> Report:
    """The whole report, its findings not yet decided by a policy."""
    selected = select_checks(arguments.get("checks"), custom)
    report = Report(
        root=os.fspath(root),
        scanner_version=__version__,
        implementation=_native.IMPLEMENTATION,
        checks=tuple(check.id for check in selected),
        check_info=describe_checks(selected),
    )
    _identify(report, root)
    definitions = [read_task_definition(path) for path in arguments.get("task_definitions", ())]
    if definitions:
        # What the task runs as, when it is described offline: rules scope by its family.
        report.target_details["task_definitions"] = [
            {"family": d.family, "revision": d.revision, "compatibilities": list(d.compatibilities)}
            for d in definitions
        ]
    for item in _stream(root, selected, report, arguments, memo):
        if isinstance(item, Finding):
            report.findings.append(item)
        else:
            report.problems.append(item)
    return report


def scan_image(
    path: str | os.PathLike[str], *, tag: str | None = None, **arguments: Unpack[ScanArguments]
) -> Report:
    """Scan a container image (OCI layout or archive, `docker save` tarball) like a root.

    The layers are applied, whiteouts included, into a private temporary directory that is always
    removed; its config's Env is a 424 source. `tag` (or `PATH:TAG`) picks one image of several.
    Raises ImageError for an unusable or hostile image.
    """
    return _scan_image(path, tag, arguments, memos.DEFAULT)


def _scan_image(
    path: str | os.PathLike[str], tag: str | None, arguments: ScanArguments, memo: Memo
) -> Report:
    """scan_image with a session's memo."""
    # Imported here: tarfile, zipfile and the layer code cost every root scan ~15 ms otherwise.
    from .targets.image import open_image

    policy = arguments.pop("policy", None)  # applied once the image's identity is known
    custom = _custom_checks(policy)
    # A custom check's script reads the tree itself: every file must then hold its bytes.
    progress = progress_from(arguments.get("progress"))
    with open_image(path, tag=tag, place=not custom, progress=progress) as image:
        arguments.setdefault("image_env", image.env)
        if image.extents is not None:
            arguments.setdefault("extents", image.extents)
        arguments.setdefault("image_name", image.name or image.image_id)
        if image.image_id:  # each scan unpacks to a new directory: key the state to the image
            arguments.setdefault("state_target", f"image {image.image_id}")
        report = _scan(image.root, custom, arguments, memo)
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
        report.problems.extend(
            Problem(kind=ProblemKind.IMAGE, message=message) for message in image.problems
        )
        report.problems.extend(
            Problem(kind=ProblemKind.IMAGE_MEMBER_SKIPPED, message=message)
            for message in image.unextracted
        )
        trouble = image.changed()
        if trouble is not None:  # the scan may not describe image.image_id: not verified
            report.problems.append(Problem(kind=ProblemKind.IMAGE_CHANGED, message=trouble))
    if policy is not None:
        apply_policy(report, policy)
    return report
