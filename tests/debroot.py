"""Real Debian roots made by debootstrap for the tests, built once and cached between runs."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("SCANNER_TEST_CACHE", "/var/cache/scan-root-tests"))
MIRROR = os.environ.get("SCANNER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"


def debootstrap_root(name: str = "minbase", include: tuple[str, ...] = ()) -> Path:
    """Path of a cached `debootstrap --variant=minbase` root (never modify it: copy it first)."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (./install.sh --test installs it)")
    target = CACHE / f"{SUITE}-{name}"
    complete = CACHE / f"{SUITE}-{name}.complete"  # beside the root: nothing is added inside it
    if complete.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build the same root
        if complete.exists():
            return target
        building = CACHE / f".{SUITE}-{name}.building"
        shutil.rmtree(building, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase"]
        if include:
            command.append("--include=" + ",".join(include))
        command += [SUITE, str(building), MIRROR]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"debootstrap failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        complete.touch()
    return target


def copy_root(source: Path, destination: Path) -> Path:
    """A private copy of a cached root that a test may tamper with (hard links, symlinks kept)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(destination)], check=True)
    return destination
