"""Real Debian roots made by debootstrap for the tests, built once and cached between runs.

The builder is testsupport/rootcache.py's (one cache, one lock per root, shared by tests and
benchmarks; pytest puts testsupport/ on sys.path: pyproject.toml's `pythonpath`); here it only
turns "cannot build" into a skip with the reason, which CI counts as a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import rootcache


def debootstrap_root(name: str = "minbase", include: tuple[str, ...] = ()) -> Path:
    """Path of a cached `debootstrap --variant=minbase` root (never modify it: copy it first)."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (./install.sh --test installs it)")
    return rootcache.ensure(name, include)


def copy_root(source: Path, destination: Path) -> Path:
    """A private copy of a cached root that a test may tamper with (hard links, symlinks kept)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(destination)], check=True)
    return destination
