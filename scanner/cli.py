"""The `scan-root` command line: argparse and exit codes, nothing else."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence

import _native

from .errors import ScannerError, TargetError, UsageError
from .output import FORMATS
from .prefetch import start_early_prefetch
from .version import __version__

__all__ = ["EXIT_CLEAN", "EXIT_FINDINGS", "EXIT_INCOMPLETE", "EXIT_USAGE", "main"]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

EPILOG = """\
exit codes:
  0  no findings, and every item was verified
  1  at least one finding
  2  usage error, or the target cannot be scanned at all
  3  no findings, but some items could not be verified (see "problems"):
     "could not verify" is a result, never a pass
"""


def _parser(image: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root image" if image else "scan-root",
        description="Compliance and integrity scanner for container root filesystems.\n"
        "`scan-root image IMAGE` scans a container image with the same options;\n"
        "`scan-root packages [ROOT]` lists the installed packages instead.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if image:
        parser.add_argument(
            "root",
            metavar="IMAGE",
            help="an OCI image layout directory, an OCI archive or a `docker save` tarball",
        )
    else:
        parser.add_argument(
            "root", nargs="?", default="/", help="root directory to scan (default: /)"
        )
    parser.add_argument(
        "--checks",
        metavar="IDS",
        help="comma-separated check ids to run (default: all built-in checks; e.g. 448)",
    )
    parser.add_argument(
        "--all-files",
        action="store_true",
        help="448: verify every package file (as dpkg --verify does), not only binaries",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="hashing threads (default: chosen from the CPUs)"
    )
    parser.add_argument("--format", choices=sorted(FORMATS), default="table")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE, not stdout")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip paths matching GLOB as seen in the container, e.g. '/usr/share/*' (repeatable)",
    )
    parser.add_argument(
        "--task-definition",
        action="append",
        default=[],
        metavar="FILE",
        help="424: check the environment of an ECS task definition (register-task-definition "
        "JSON or describe-task-definition output; repeatable)",
    )
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="424: check a `docker run --env-file` file (repeatable)",
    )
    parser.add_argument(
        "--no-process-env",
        action="store_true",
        help="424: do not read PID 1's environment (/proc/1/environ) when scanning the live /",
    )
    parser.add_argument(
        "--miner-digests",
        action="append",
        default=[],
        metavar="FILE",
        help="426: more known-miner SHA-256 digests, `<hex>  <label>` per line (repeatable)",
    )
    parser.add_argument(
        "--max-content-size",
        type=int,
        metavar="BYTES",
        help="425/426: files larger than this are not searched, and are reported as skipped "
        "(default: 256 MiB)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--version",
        action="version",
        version=f"scan-root {__version__} ({_native.IMPLEMENTATION} implementation)",
    )
    return parser


def _packages_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root packages",
        description="List what every package manager found in ROOT says is installed.",
    )
    parser.add_argument("root", nargs="?", default="/", help="root directory (default: /)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--output", metavar="FILE", help="write the list to FILE, not stdout")
    return parser


def _write(text: str, output: str | None) -> int:
    if output is None:
        sys.stdout.write(text)
        return EXIT_CLEAN
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        print(f"scan-root: cannot write {output}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CLEAN


def _packages(argv: Sequence[str]) -> int:
    from .inventory import list_packages

    args = _packages_parser().parse_args(argv)
    try:
        inventory = list_packages(args.root)
    except ScannerError as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return EXIT_USAGE
    text = inventory.to_json() if args.format == "json" else inventory.to_table()
    return _write(text, args.output)


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def show(message: str) -> None:
        if enabled:
            sys.stderr.write(f"\r\033[Kscan-root: {message}")
            sys.stderr.flush()

    return show


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["packages"]:
        return _packages(arguments[1:])
    image = arguments[:1] == ["image"]
    parser = _parser(image)
    args = parser.parse_args(arguments[1:] if image else arguments)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    checks = None
    if args.checks:
        checks = [part for part in args.checks.split(",") if part.strip()]
    show_progress = not args.quiet and sys.stderr.isatty()
    # One short-lived scan: its records form no cycles worth collecting, and the collector's
    # passes over ~20k live records per 700 allocations cost ~2-3% of a whole 448 run.
    gc.disable()
    # Started before the scan's modules are imported, so the disk works meanwhile (cold cache).
    early = None if image else start_early_prefetch(args.root, checks)
    # Imported here, after the read-ahead started: together ~0.1 s of start-up.
    from pkgdb import PkgDBError

    from .scan import scan_image, scan_root

    try:
        report = (scan_image if image else scan_root)(
            args.root,
            checks=checks,
            jobs=args.jobs,
            all_files=args.all_files,
            excludes=args.exclude,
            task_definitions=args.task_definition,
            env_files=args.env_file,
            process_env=not args.no_process_env,
            miner_digests=args.miner_digests,
            content_limit=args.max_content_size,
            progress=_progress_printer(show_progress),
        )
    except (UsageError, TargetError) as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ScannerError, PkgDBError) as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if early is not None:
            early.stop()
        if show_progress:
            sys.stderr.write("\r\033[K")
    color = args.output is None and args.format == "table" and sys.stdout.isatty()
    if _write(FORMATS[args.format](report, color), args.output) != EXIT_CLEAN:
        return EXIT_USAGE
    if report.findings:
        return EXIT_FINDINGS
    return EXIT_CLEAN if report.complete else EXIT_INCOMPLETE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
