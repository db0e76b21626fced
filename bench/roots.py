"""The roots the benchmarks scan: the shared cache's (testsupport/rootcache.py), and the package
files in them.

Debian roots come from debootstrap (`bookworm-apps`, `bookworm-minbase`); the rpm root
`rpm-apps` is bookworm-apps' files repackaged with rpmbuild (testsupport/rpm_root.py).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

# The builders the tests use too live in testsupport/, which neither tests/ nor bench/ owns.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testsupport"))
from rootcache import APPS, CACHE, RPM_APPS, cached, ensure, ensure_rpm, rpm_cached

__all__ = ["APPS", "CACHE", "RPM_APPS", "bench_root", "chosen_root", "ensure", "ensure_rpm"]


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
    return rpm_cached()


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
