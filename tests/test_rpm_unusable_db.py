"""An rpm database path that exists but cannot be used is a problem (exit 3), never "no package
manager database" (exit 0): a fifo, a device, a socket or a directory where the file belongs,
and an rpmdb directory whose path loops."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import scanner
from pkgdb import RootFS
from pkgdb.rpm import RpmDBError, present, read
from scanner import cli


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")


def _socket(path: Path) -> None:
    # bound under a short directory, then moved: a socket path is limited to 108 bytes
    with tempfile.TemporaryDirectory() as short, socket.socket(socket.AF_UNIX) as server:
        server.bind(os.path.join(short, "s"))
        os.rename(os.path.join(short, "s"), path)


def _directory(path: Path) -> None:
    path.mkdir()


MAKERS: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "device": _device,
    "socket": _socket,
    "directory": _directory,
}
PLACES = [
    "var/lib/rpm/Packages",
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/Packages.db",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
]


def _loop_self(root: Path) -> None:
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("rpm")


def _loop_pair(root: Path) -> None:
    (root / "var/lib").mkdir(parents=True)
    (root / "usr/lib/sysimage").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    (root / "usr/lib/sysimage/rpm").symlink_to("/var/lib/rpm")


def assert_unusable_is_a_problem(root: Path) -> None:
    with RootFS(root) as fs:
        assert present(fs)
        with pytest.raises(RpmDBError):
            read(fs)
    report = scanner.scan_root(root, checks=["448"])
    kinds = [p.kind for p in report.problems]
    assert "package-db" in kinds and "no-package-db" not in kinds
    assert not report.complete
    out = root.parent / "report.json"
    assert cli.main([str(root), "--quiet", "--format", "json", "--output", str(out)]) == (
        cli.EXIT_INCOMPLETE
    )


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("place", PLACES)
def test_unusable_database_file_is_a_problem(tmp_path: Path, place: str, kind: str) -> None:
    root = tmp_path / "root"
    (root / place).parent.mkdir(parents=True)
    MAKERS[kind](root / place)
    assert_unusable_is_a_problem(root)


@pytest.mark.parametrize("make", [_loop_self, _loop_pair], ids=["self", "pair"])
def test_looping_rpmdb_directory_is_a_problem(tmp_path: Path, make: Callable[[Path], None]) -> None:
    root = tmp_path / "root"
    make(root)
    with RootFS(root) as fs:
        with pytest.raises(RpmDBError, match="cannot be looked up"):
            read(fs)
    assert_unusable_is_a_problem(root)


def test_no_rpm_directory_at_all_is_still_no_database(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").write_bytes(b"")  # a plain file where the directory would be
    with RootFS(root) as fs:
        assert not present(fs)
    kinds = [p.kind for p in scanner.scan_root(root, checks=["448"]).problems]
    assert kinds == ["no-package-db"]
