"""The environment of a child Python that must import the very scanner this test session imports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import scanner

# site-packages of the venv in CI (where the Cython build lives), the checkout in development.
IMPORT_ROOT = Path(scanner.__file__).resolve().parent.parent
# The builders tests and benchmarks share (pyproject.toml's pytest `pythonpath`): a child that
# imports a test module needs them too.
SUPPORT = Path(__file__).resolve().parent.parent / "testsupport"


def child_env(*extra_paths: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with PYTHONPATH set to IMPORT_ROOT first,
    then `extra_paths`, then SUPPORT.

    PYTHONSAFEPATH keeps the child's working directory off sys.path: a checkout without an
    in-place build there would otherwise shadow the installed package (and its compiled core).
    """
    env = dict(os.environ if base is None else base)
    paths = (IMPORT_ROOT, *extra_paths, SUPPORT)
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
    env["PYTHONSAFEPATH"] = "1"
    return env


def run_cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m scanner.cli ARGV` in a child process, run from `cwd`; never raises on its exit."""
    return subprocess.run(
        [sys.executable, "-m", "scanner.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(),
        check=False,
    )


def run_python(source: str) -> str:
    """`python -c SOURCE` in a child process importing this session's scanner; its stdout.
    Raises CalledProcessError when it fails."""
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    ).stdout


# The peak RSS of this process's own memory, in KiB, as source for a child Python. Not
# getrusage's ru_maxrss: a forked child starts with its parent's high-water mark, and exec keeps
# it, so a child of a large pytest process would report pytest's peak. VmHWM is the high-water
# mark of the memory exec gave it.
PEAK_RSS_SOURCE = (
    "int(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
)


def peak_rss_kib() -> int:
    """This process's own peak RSS in KiB (see PEAK_RSS_SOURCE)."""
    return int(eval(PEAK_RSS_SOURCE))
