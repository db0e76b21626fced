"""The `scan-root` command line: argparse and exit codes, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import _native
from pkgdb import PkgDBError

from .errors import ScannerError, TargetError, UsageError
from .output import FORMATS
from .scan import scan_root
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scan-root",
        description="Compliance and integrity scanner for container root filesystems.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", nargs="?", default="/", help="root directory to scan (default: /)")
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
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--version",
        action="version",
        version=f"scan-root {__version__} ({_native.IMPLEMENTATION} implementation)",
    )
    return parser


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def show(message: str) -> None:
        if enabled:
            sys.stderr.write(f"\r\033[Kscan-root: {message}")
            sys.stderr.flush()

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    checks = None
    if args.checks:
        checks = [part for part in args.checks.split(",") if part.strip()]
    show_progress = not args.quiet and sys.stderr.isatty()
    try:
        report = scan_root(
            args.root,
            checks=checks,
            jobs=args.jobs,
            all_files=args.all_files,
            excludes=args.exclude,
            progress=_progress_printer(show_progress),
        )
    except (UsageError, TargetError) as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ScannerError, PkgDBError) as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if show_progress:
            sys.stderr.write("\r\033[K")
    color = args.output is None and args.format == "table" and sys.stdout.isatty()
    text = FORMATS[args.format](report, color)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            print(f"scan-root: cannot write {args.output}: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    if report.findings:
        return EXIT_FINDINGS
    return EXIT_CLEAN if report.complete else EXIT_INCOMPLETE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
