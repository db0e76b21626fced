"""Real roots the tests and the benchmarks share, built once and cached: debootstrap and rpm.

Debian roots come from debootstrap (`bookworm-apps`, `bookworm-minbase`); the rpm root
`rpm-apps` is bookworm-apps' files repackaged with rpmbuild (testsupport/rpm_root.py). One cache
and one lock per root: a test and a benchmark never build one root twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import rpm_root

CACHE = Path(os.environ.get("SCANNER_TEST_CACHE", "/var/cache/scan-root-tests"))
MIRROR = os.environ.get("SCANNER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"

# A realistic application image: an interpreter or two, a compiler, VCS and network clients.
APPS = ("python3", "perl", "gcc", "git", "curl", "openssh-client")
# The rpm root made from bookworm-apps by rpm_root.py (not a Debian root: no suite prefix).
RPM_APPS = "rpm-apps"


def cached(name: str) -> Path | None:
    """The cached root `bookworm-<name>` if a build of it completed, else None."""
    return _complete(f"{SUITE}-{name}")


def rpm_cached() -> Path | None:
    """The cached rpm root `rpm-apps` if a build of it completed, else None."""
    return _complete(RPM_APPS)


def ensure(name: str = "apps", include: tuple[str, ...] = APPS) -> Path:
    """Build `bookworm-<name>` (minbase plus `include`) unless cached; the root's path."""
    if os.geteuid() != 0:
        raise PermissionError("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        raise FileNotFoundError("debootstrap is not installed (./install.sh --test installs it)")

    def debootstrap(building: Path) -> None:
        command = ["debootstrap", "--variant=minbase"]
        if include:
            command.append("--include=" + ",".join(include))
        command += [SUITE, str(building), MIRROR]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"debootstrap failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )

    return _build_once(f"{SUITE}-{name}", f".{name}.lock", debootstrap)


def ensure_rpm() -> Path:
    """Build `rpm-apps` unless cached (from `bookworm-apps`, built first if need be); its path.

    One rpm package (rpm_root.py) holding bookworm-apps' /usr, plus its /usr/share and
    /usr/lib/python3.11 again under /opt/app: about 16,000 files and 570 MB, a realistic size.
    """
    if os.geteuid() != 0:
        raise PermissionError("rpm --root needs root")
    apps = ensure("apps", APPS)
    sources = [
        (apps / "usr", "/usr"),
        (apps / "usr/share", "/opt/app/share"),
        (apps / "usr/lib/python3.11", "/opt/app/lib/python3.11"),
    ]

    def rpmbuild(building: Path) -> None:
        work = CACHE / f".{RPM_APPS}.rpmbuild"
        shutil.rmtree(work, ignore_errors=True)
        try:
            rpm_root.build(building, sources, work)
        finally:
            shutil.rmtree(
                work, ignore_errors=True
            )  # the buildroot and the .rpm: twice the root's size

    return _build_once(RPM_APPS, f".{RPM_APPS}.lock", rpmbuild)


# What the defender's image is built from: a change to any of it builds a new one.
IMAGE_SOURCES = ("scanner", "pkgdb", "_native", "console", "defender", "taskdef", "image")
IMAGE_FILES = ("setup.py", "pyproject.toml", "build_support.py", "MANIFEST.in")


def ensure_defender_image(repo: Path) -> Path:
    """`image/build-defender.sh`'s output for the checkout `repo`, built once per content."""
    digest = hashlib.sha256()
    paths = [repo / name for name in IMAGE_FILES]
    for top in IMAGE_SOURCES:
        paths += sorted(
            path
            for path in (repo / top).rglob("*")
            if path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix not in (".so", ".c")
        )
    for path in paths:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    name = f"defender-image-{digest.hexdigest()[:16]}"

    def build(building: Path) -> None:
        subprocess.run(
            [str(repo / "image" / "build-defender.sh"), str(building)],
            check=True,
            env={**os.environ, "PYTHON": sys.executable},
        )

    return _build_once(name, "defender-image.lock", build)


def _complete(directory: str) -> Path | None:
    if (CACHE / f"{directory}.complete").exists():
        return CACHE / directory
    return None


def _build_once(directory: str, lock_name: str, build: Callable[[Path], None]) -> Path:
    """CACHE/directory, made by `build(staging directory)` unless a completed build is cached.

    The `<directory>.complete` marker sits beside the root (nothing is added inside it) and is
    written only after the staging directory was renamed into place: a build that died half-way
    is never taken for a root.
    """
    target = CACHE / directory
    complete = CACHE / f"{directory}.complete"
    if complete.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a test and a benchmark may be building the same root
        if complete.exists():
            return target
        building = CACHE / f".{directory}.building"
        shutil.rmtree(building, ignore_errors=True)
        build(building)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        complete.touch()
    return target
