"""The Debian roots the benchmarks scan, built by debootstrap once and cached like tests/debroot.py."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

# Same cache, mirror and naming as tests/debroot.py, so the two share their roots.
CACHE = Path(os.environ.get("SCANNER_TEST_CACHE", "/var/cache/scan-root-tests"))
MIRROR = os.environ.get("SCANNER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"

# A realistic application image: an interpreter or two, a compiler, VCS and network clients.
APPS = ("python3", "perl", "gcc", "git", "curl", "openssh-client")


def cached(name: str) -> Path | None:
    """The cached root `bookworm-<name>` if a build of it completed, else None."""
    if (CACHE / f"{SUITE}-{name}.complete").exists():
        return CACHE / f"{SUITE}-{name}"
    return None


def bench_root() -> Path | None:
    """The root the benchmarks use: `bookworm-apps`, else `bookworm-minbase`, else None."""
    return cached("apps") or cached("minbase")


def ensure(name: str = "apps", include: tuple[str, ...] = APPS) -> Path:
    """Build `bookworm-<name>` (minbase plus `include`) unless cached; the root's path."""
    if os.geteuid() != 0:
        raise PermissionError("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        raise FileNotFoundError("debootstrap is not installed (./install.sh --test installs it)")
    target = CACHE / f"{SUITE}-{name}"
    complete = CACHE / f"{SUITE}-{name}.complete"  # beside the root: nothing is added inside it
    if complete.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the tests may be building the same root
        if complete.exists():
            return target
        building = CACHE / f".{SUITE}-{name}.building"
        shutil.rmtree(building, ignore_errors=True)
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
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        complete.touch()
    return target


def package_paths(root: Path) -> list[bytes]:
    """Every distinct path dpkg lists for the root, resolved inside it (relative, bytes, sorted).

    Resolution is pkgdb's (`bin/ls` through `bin -> usr/bin`), never leaving the root; these are
    the paths check 448 hashes with `--all-files`.
    """
    from pkgdb import RootFS, dpkg

    with RootFS(os.fsencode(root)) as rootfs:
        return sorted({rootfs.resolve(item.path) for item in dpkg.read(rootfs).files})


def package_files(root: Path) -> list[tuple[bytes, int]]:
    """(path, size) of each package path that is a regular file on disk (what dpkg would hash)."""
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
    """`python3 bench/roots.py [apps|minbase]`: build the root unless cached, print its size."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    name = sys.argv[1] if len(sys.argv) > 1 else "apps"
    root = ensure(name, APPS if name == "apps" else ())
    files = package_files(root)
    size = sum(size for _path, size in files)
    print(f"{root}: {len(files)} package files, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
