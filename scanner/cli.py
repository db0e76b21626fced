"""The `scan-root` command line: argparse and exit codes, nothing else."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

import _native
from _native.throttle import CpuBudget

from . import baseline as baselines
from .errors import ScannerError, TargetError, UsageError
from .gate import (
    EXIT_BLOCKED,
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_USAGE,
    exit_code,
)
from .output import FORMATS
from .output.destination import check_destination, write_output
from .output.escape import terminal_safe
from .prefetch import start_early_prefetch
from .report import Severity
from .streams import discard, standard_streams
from .terminate import Terminated, terminating
from .version import __version__

if TYPE_CHECKING:
    from .policy import Policy

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_INCOMPLETE",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "main",
]

EPILOG = """\
exit codes:
  0  no findings, and every item was verified (with --exit-zero: whatever was found)
  1  at least one finding that gates: not baselined, and at least --fail-on's severity
     (any severity without --fail-on)
  2  usage error, a bad or unwritable baseline, or the target cannot be scanned at all
     (also with --exit-zero)
  3  no gating finding, but some items could not be verified (see "problems"):
     "could not verify" is a result, never a pass
  4  blocked: a policy rule's effect is "block" for a finding (never for a Fargate task);
     wins over 1 and 3, and over --fail-on and --baseline
  5  internal error: scan-root itself failed (a bug; the traceback is on stderr), also
     with --exit-zero
  143, 130  stopped by SIGTERM or SIGINT (128 + the signal), temporary files removed
"""


ROOT_DESCRIPTION = """\
Compliance and integrity scanner for container root filesystems: scans ROOT (default: /).

commands:
  scan-root [ROOT] [options]             scan a root directory (the options below)
  scan-root image IMAGE [options]        scan a container image (OCI layout or archive,
                                         `docker save`) without a Docker engine
  scan-root packages [ROOT] [options]    list what each package manager says is installed
  scan-root policy check FILE [options]  validate a policy file and explain its rules
  scan-root vulndb {import,status} ...   the offline advisory database --vulndb reads
Each command's --help lists its own options."""

IMAGE_DESCRIPTION = """\
Scan a container image without a Docker engine: an OCI image layout directory, an OCI archive
or a `docker save` tarball or directory (plain, gzip or zstd layers). The layers are applied in
order, whiteouts included, into a private temporary directory that is always removed; the report
is a root scan's, with target.kind "image", and the config's Env is a 424 source. Set TMPDIR to
keep the image's contents out of /dev/shm."""


def _parser(image: bool = False) -> argparse.ArgumentParser:
    """The scan's parser: `scan-root [ROOT]`, or `scan-root image IMAGE` (image=True), whose
    --help lists only what applies to an image."""
    parser = argparse.ArgumentParser(
        prog="scan-root image" if image else "scan-root",
        usage="%(prog)s IMAGE[:TAG] [options]"
        if image
        else "%(prog)s [ROOT] [options]\n"
        "       scan-root {image,packages,policy} ... (see the commands below)",
        description=IMAGE_DESCRIPTION if image else ROOT_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if image:
        parser.add_argument(
            "root",
            metavar="IMAGE",
            help="an OCI image layout directory, an OCI archive or a `docker save` tarball or "
            "directory; IMAGE:TAG picks one image of several",
        )
        parser.add_argument("--tag", metavar="TAG", help="the image of IMAGE to scan, by tag")
    else:
        parser.add_argument(
            "root", nargs="?", default="/", help="root directory to scan (default: /)"
        )
    checks = parser.add_argument_group("what is checked")
    checks.add_argument(
        "--checks",
        metavar="IDS",
        help="comma-separated check ids to run (default: all built-in checks; e.g. 448)",
    )
    checks.add_argument(
        "--all-files",
        action="store_true",
        help="448: verify every package file (as dpkg --verify does), not only binaries",
    )
    checks.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip paths matching GLOB as seen in the container, e.g. '/usr/share/*' (repeatable)",
    )
    checks.add_argument(
        "--task-definition",
        action="append",
        default=[],
        metavar="FILE",
        help="424: check the environment of an ECS task definition (register-task-definition "
        "JSON or describe-task-definition output; repeatable)",
    )
    checks.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="424: check a `docker run --env-file` file (repeatable)",
    )
    checks.add_argument(
        "--no-process-env",
        action="store_true",
        # An image is never the live /: accepted there (scripts pass it to both), never listed.
        help=argparse.SUPPRESS
        if image
        else "424: do not read PID 1's environment (/proc/1/environ) when scanning the live /",
    )
    checks.add_argument(
        "--miner-digests",
        action="append",
        default=[],
        metavar="FILE",
        help="426: more known-miner SHA-256 digests, `<hex>  <label>` per line (repeatable)",
    )
    checks.add_argument(
        "--max-content-size",
        type=int,
        metavar="BYTES",
        help="425/426: files larger than this are not searched, and are reported as skipped "
        "(default: 256 MiB)",
    )
    checks.add_argument(
        "--policy",
        metavar="FILE",
        help="a policy file (YAML): collections and ordered rules decide each finding's effect "
        "(ignore, alert, block); see `scan-root policy check FILE`",
    )
    checks.add_argument(
        "--vulndb",
        metavar="PATH",
        help="match the installed packages against this advisory database (made by "
        "`scan-root vulndb import`) and report their vulnerabilities",
    )
    report = parser.add_argument_group("report and exit code")
    report.add_argument(
        "--format", choices=sorted(FORMATS), default="table", help="report format (default: table)"
    )
    report.add_argument("--output", metavar="FILE", help="write the report to FILE, not stdout")
    gate = report.add_mutually_exclusive_group()
    gate.add_argument(
        "--fail-on",
        choices=[str(severity) for severity in Severity],
        metavar="SEVERITY",
        help="exit 1 only for a finding of this severity or above: low, medium, high, critical "
        "(default: any finding); with --vulndb, a vulnerability of it or above too",
    )
    gate.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whatever was found or could not be verified (errors still exit 2)",
    )
    report.add_argument(
        "--baseline",
        metavar="FILE",
        help="accept the findings listed in FILE (reported, marked baselined, not failing); "
        "when FILE does not exist, write it from this scan's findings",
    )
    report.add_argument(
        "--update-baseline",
        action="store_true",
        help="rewrite the --baseline FILE from this scan's findings",
    )
    report.add_argument("--quiet", action="store_true", help="no progress display")
    rescans = parser.add_argument_group("incremental rescans")
    rescans.add_argument(
        "--state",
        metavar="FILE",
        help="incremental rescans: reuse the verdicts FILE recorded for unchanged files, then "
        "rewrite it (a missing, damaged or foreign FILE means a full scan)",
    )
    rescans.add_argument(
        "--rescan",
        choices=("stat", "content", "full"),
        help="with --state: stat (default) skips files whose inode, size, mtime and ctime are "
        "unchanged; content re-reads every file for an xxh3 comparison; full ignores the state",
    )
    rescans.add_argument(
        "--state-in-root",
        action="store_true",
        # An image's root is a private temporary directory no --state FILE can be inside.
        help=argparse.SUPPRESS
        if image
        else "allow the --state FILE inside the scanned root (e.g. scanning / from inside)",
    )
    resources = parser.add_argument_group("resources")
    resources.add_argument(
        "--jobs", type=int, metavar="N", help="hashing threads (default: chosen from the CPUs)"
    )
    resources.add_argument(
        "--max-cpu",
        type=float,
        metavar="FRACTION",
        help="keep the scan's CPU time at most FRACTION of its wall time, e.g. 0.25 for a "
        "quarter of one core (the scan sleeps whenever it is ahead)",
    )
    resources.add_argument(
        "--nice",
        action="store_true",
        help="lowest CPU priority (nice 19) and the idle I/O class, best-effort",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"scan-root {__version__} ({_native.IMPLEMENTATION} implementation)",
    )
    return parser


def _packages_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root packages",
        usage="%(prog)s [ROOT] [options]",
        description="List what every package manager found in ROOT says is installed (dpkg, rpm\n"
        "and apk databases): each package with its version, architecture and file count.",
        epilog="exit codes:\n  0  listed\n  2  ROOT cannot be read, or the output not written\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "root",
        nargs="?",
        default="/",
        help="root directory (default: /), or an image as `scan-root image` takes it",
    )
    parser.add_argument("--tag", metavar="TAG", help="with an image: the one to list, by tag")
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="list format (default: table)"
    )
    parser.add_argument("--output", metavar="FILE", help="write the list to FILE, not stdout")
    return parser


POLICY_HELP = """\
usage: scan-root policy check FILE [options]

Policy files (YAML): collections of targets, ordered rules that decide each finding's effect
(ignore, alert, block), custom checks. A scan applies one with `scan-root [ROOT] --policy FILE`.

commands:
  check FILE  validate FILE and explain it: its collections, its rules in evaluation order, its
              custom checks; with target fields, which rule decides each check for that target
              (`scan-root policy check --help` lists its options)
"""


def _policy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root policy check",
        description="Validate a policy file and explain it: its collections, its rules in the "
        "order they\nare evaluated, its custom checks; with target fields, which rule decides "
        "each check for\nthat target.",
        epilog="exit codes:\n  0  the policy is valid\n  2  it is not (each error names its "
        "line and field)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the policy file")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="H",
        help="the target's host; for a Fargate task its family and/or task id (repeatable)",
    )
    parser.add_argument(
        "--image", action="append", default=[], metavar="I", help="image name (repeatable)"
    )
    parser.add_argument("--container", metavar="C", help="container name")
    parser.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="a label (repeatable)"
    )
    parser.add_argument(
        "--fargate", action="store_true", help="the target is a Fargate task (block is not applied)"
    )
    return parser


def _policy(argv: Sequence[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        return _write(POLICY_HELP, None)
    if argv[:1] != ["check"]:
        print(
            "usage: scan-root policy check FILE [options] (see scan-root policy --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    parser = _policy_parser()
    args = parser.parse_args(argv[1:])
    from .policy import PolicyError, Target, load_policy
    from .policy.explain import explain

    for label in args.label:
        if "=" not in label:
            parser.error(f"--label {label!r}: expected key=value")
    try:
        policy = load_policy(args.file)
    except PolicyError as error:
        _print_lines(str(error))
        return EXIT_USAGE
    target = None
    if args.host or args.image or args.container or args.label or args.fargate:
        target = Target(
            hosts=tuple(args.host),
            images=tuple(args.image),
            containers=(args.container,) if args.container else (),
            labels=tuple(args.label),
            fargate=args.fargate,
        )
    return _write(explain(policy, target), None)


def _print_lines(text: str) -> None:
    """Lines of an error on stderr, each made terminal-safe (they may quote the input)."""
    for line in text.splitlines():
        print(terminal_safe(line), file=sys.stderr)


def _write(text: str, output: str | None) -> int:
    if output is None:
        if sys.stdout is None:  # closed by the caller: the report has nowhere to go
            print("scan-root: cannot write to standard output: it is closed", file=sys.stderr)
            return EXIT_USAGE
        try:
            sys.stdout.write(text)
            sys.stdout.flush()  # here, not at exit: a reader gone is this command's error
        except OSError as error:
            discard(sys.stdout.fileno())  # what stays buffered must not fail again at exit
            print(
                f"scan-root: cannot write to standard output: {error.strerror}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return EXIT_CLEAN
    try:
        write_output(output, text)
    except OSError as error:
        print(f"scan-root: cannot write {terminal_safe(output)}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CLEAN


def _packages(argv: Sequence[str]) -> int:
    from .inventory import list_packages

    args = _packages_parser().parse_args(argv)
    try:
        if args.output is not None:
            check_destination(args.output, args.root)
        inventory = list_packages(args.root, tag=args.tag)
    except ScannerError as error:
        print(f"scan-root: {terminal_safe(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    text = inventory.to_json() if args.format == "json" else inventory.to_table()
    return _write(text, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns its exit code (EPILOG). A failure of scan-root itself is exit 5
    with its traceback, never Python's 1, which would read as "findings"."""
    with standard_streams():  # a closed or broken stderr costs its messages, not the exit code
        return _guarded(argv)


def _guarded(argv: Sequence[str] | None) -> int:
    try:
        with terminating():  # a `finally` that removes an image's scratch tree runs on SIGTERM
            return _main(argv)
    except Terminated as stop:
        print(
            f"scan-root: stopped by {signal.Signals(stop.signum).name}; no report "
            "(temporary files removed)",
            file=sys.stderr,
        )
        return 128 + stop.signum  # what a shell shows for a process its signal ended
    except Exception:  # noqa: BLE001 - reported in full, then a distinct exit code
        traceback.print_exc()
        print(
            f"scan-root {__version__}: internal error (a bug in scan-root, not a verdict on the "
            "target); please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["packages"]:
        return _packages(arguments[1:])
    if arguments[:1] == ["policy"]:
        return _policy(arguments[1:])
    image = arguments[:1] == ["image"]
    parser = _parser(image)
    args = parser.parse_args(arguments[1:] if image else arguments)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.max_cpu is not None and not 0 < args.max_cpu < float("inf"):
        parser.error("--max-cpu must be a number above 0, e.g. 0.25")
    if args.update_baseline and args.baseline is None:
        parser.error("--update-baseline needs --baseline FILE")
    if args.rescan is not None and args.state is None:
        parser.error("--rescan needs --state FILE")
    checks = None
    if args.checks is not None:
        checks = [part.strip() for part in args.checks.split(",") if part.strip()]
        if not checks:  # `--checks " "` would run nothing and pass: never a verdict
            parser.error("--checks names no check (e.g. --checks 448,424)")
    progress = None
    if not args.quiet and sys.stderr.isatty():  # never in a pipe, a file or a log
        from .terminal_progress import TerminalProgress

        progress = TerminalProgress(sys.stderr)
    # One short-lived scan: its records form no cycles worth collecting, and the collector's
    # passes over ~20k live records per 700 allocations cost ~2-3% of a whole 448 run.
    gc.disable()
    # Started before the scan's modules are imported, so the disk works meanwhile (cold cache).
    early = None if image else start_early_prefetch(args.root, checks)
    # Imported here, after the read-ahead started: together ~0.1 s of start-up.
    from pkgdb import PkgDBError

    from .policy import PolicyError, load_policy
    from .scan import ScanArguments, scan_image, scan_root

    policy: Policy | None = None
    if args.policy is not None:
        try:
            policy = load_policy(args.policy)
        except PolicyError as error:
            if early is not None:
                early.stop()
            _print_lines(str(error))  # each line: FILE:LINE: field: message
            return EXIT_USAGE
    accepted = None
    try:
        if args.output is not None:  # said before the scan, not after it
            check_destination(args.output, args.root)
        if args.vulndb is not None:  # an unusable database fails before the scan, not after
            from .vulnerabilities import check_database

            trouble = check_database(args.vulndb)
            if trouble is not None:
                raise UsageError(trouble)
        if args.baseline is not None:  # read before the scan: a bad baseline fails fast
            accepted = baselines.prepare(args.baseline, args.root, update=args.update_baseline)
        options = ScanArguments(
            checks=checks,
            jobs=args.jobs,
            all_files=args.all_files,
            excludes=args.exclude,
            task_definitions=args.task_definition,
            env_files=args.env_file,
            process_env=not args.no_process_env,
            miner_digests=args.miner_digests,
            content_limit=args.max_content_size,
            state=args.state,
            rescan=args.rescan,
            state_in_root=args.state_in_root,
            # From the process's start: the interpreter's start-up is this command's CPU too.
            max_cpu=None if args.max_cpu is None else CpuBudget.since_process_start(args.max_cpu),
            nice=args.nice,
            progress=progress,
            policy=policy,
            vulndb=args.vulndb,
        )
        if image:
            report = scan_image(args.root, tag=args.tag, **options)
        else:
            report = scan_root(args.root, **options)
    except (UsageError, TargetError) as error:
        print(f"scan-root: {terminal_safe(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except (ScannerError, PkgDBError) as error:
        print(f"scan-root: {terminal_safe(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if early is not None:
            early.stop()
        if progress is not None:
            progress.close()
    if args.baseline is not None:
        try:
            baselines.settle(report, args.baseline, accepted)
        except baselines.BaselineError as error:
            print(f"scan-root: {terminal_safe(str(error))}", file=sys.stderr)
            return EXIT_USAGE
    color = (
        args.output is None
        and args.format == "table"
        and sys.stdout is not None
        and sys.stdout.isatty()
    )
    if _write(FORMATS[args.format](report, color), args.output) != EXIT_CLEAN:
        return EXIT_USAGE
    fail_on = None if args.fail_on is None else Severity[args.fail_on.upper()]
    return exit_code(report, fail_on=fail_on, exit_zero=args.exit_zero)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
