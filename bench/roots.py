"""The roots the benchmarks scan, built once and cached like tests/debroot.py.

Debian roots come from debootstrap (`bookworm-apps`, `bookworm-minbase`); the rpm root
`rpm-apps` is bookworm-apps' files repackaged with rpmbuild (bench/rpm_root.py).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import rpm_root

# Same cache, mirror and naming as tests/debroot.py, so the two share their roots.
CACHE = Path(os.environ.get("SCANNER_TEST_CACHE", "/var/cache/scan-root-tests"))
MIRROR = os.environ.get("SCANNER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"

# A realistic application image: an interpreter or two, a compiler, VCS and network clients.
APPS = ("python3", "perl", "gcc", "git", "curl", "openssh-client")
# The rpm root made from bookworm-apps by bench/rpm_root.py (not a Debian root: no suite prefix).
RPM_APPS = "rpm-apps"


def cached(name: str) -> Path | None:
    """The cached root `bookworm-<name>` if a build of it completed, else None."""
    return _complete(f"{SUITE}-{name}")


def bench_root() -> Path | None:
    """The root the benchmarks use: `bookworm-apps`, else `bookworm-minbase`, else None."""
    return cached("apps") or cached("minbase")


def chosen_root(given: Path | None) -> Path | None:
    """The root a bench script was given, else bench_root(), resolved; None (and advice on
    stderr) when there is neither."""
    root = given or bench_root()
    if root is None:
        print(
            f"no root given and none cached in {CACHE}: run python3 bench/roots.py",
            file=sys.stderr,
        )
        return None
    return root.resolve()


def rpm_bench_root() -> Path | None:
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

    # The lock is named like tests/debroot.py's, so a test and a benchmark never build one root twice.
    return _build_once(f"{SUITE}-{name}", f".{name}.lock", debootstrap)


def ensure_rpm() -> Path:
    """Build `rpm-apps` unless cached (from `bookworm-apps`, built first if need be); its path.

    One rpm package (bench/rpm_root.py) holding bookworm-apps' /usr, plus its /usr/share and
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
        fcntl.flock(lock, fcntl.LOCK_EX)  # the tests may be building the same root
        if complete.exists():
            return target
        building = CACHE / f".{directory}.building"
        shutil.rmtree(building, ignore_errors=True)
        build(building)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        complete.touch()
    return target


def package_paths(root: Path) -> list[bytes]:
    """Every distinct path the root's package managers list, resolved inside it (relative, bytes, sorted).

    Every manager pkgdb detects (dpkg, rpm, apk) is read; resolution is pkgdb's (`bin/ls` through
    `bin -> usr/bin`), never leaving the root; these are the paths check 448 hashes with
    `--all-files`.
    """
    from pkgdb import READERS, RootFS

    with RootFS(os.fsencode(root)) as rootfs:
        return sorted({
            rootfs.resolve(item.path)
            for reader in READERS if reader.present(rootfs)
            for item in reader.read(rootfs).files
        })  # fmt: skip


def package_files(root: Path) -> list[tuple[bytes, int]]:
    """(path, size) of each package path that is a regular file on disk (what the managers hash)."""
    found = []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path in package_paths(root):
            try:
                st = os.lstat(path, dir_fd=root_fd)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((path, st.st_size))
    finally:
        os.close(root_fd)
    return found


def main() -> int:
    """`python3 bench/roots.py [apps|minbase|rpm-apps]`: build the root unless cached, print its size."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    name = sys.argv[1] if len(sys.argv) > 1 else "apps"
    if name == RPM_APPS:
        root = ensure_rpm()
    else:
        root = ensure(name, APPS if name == "apps" else ())
    files = package_files(root)
    size = sum(size for _path, size in files)
    print(f"{root}: {len(files)} package files, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
