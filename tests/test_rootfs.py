"""RootFS: symlinked directories resolve inside the root, never outside, final component kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pkgdb import RootFS


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/bin").mkdir(parents=True)
    (r / "usr/lib64").mkdir(parents=True)
    (r / "usr/bin/ls").write_bytes(b"\x7fELF ls")
    (r / "usr/lib64/ld.so").write_bytes(b"ld")
    os.symlink("usr/bin", r / "bin")  # merged /usr, relative
    os.symlink("/usr/lib64", r / "lib64")  # absolute: means <root>/usr/lib64
    os.symlink("../../..", r / "usr/bin/up")  # tries to climb out
    os.symlink("/etc", r / "hostetc")  # must not reach the scanner's /etc
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("ls", r / "usr/bin/ls-link")
    return r


@pytest.mark.parametrize(
    ("manifest_path", "physical"),
    [
        (b"bin/ls", b"usr/bin/ls"),
        (b"/bin/ls", b"usr/bin/ls"),
        (b"lib64/ld.so", b"usr/lib64/ld.so"),
        (b"usr/bin/ls", b"usr/bin/ls"),
        (b"usr/bin/up/usr/bin/ls", b"usr/bin/ls"),  # `..` stops at the root
        (b"hostetc/passwd", b"etc/passwd"),  # absolute link re-rooted: root's /etc, absent here
        (b"bin/ls-link", b"usr/bin/ls-link"),  # final component never followed
        (b"bin", b"bin"),
        (b"nonexistent/dir/file", b"nonexistent/dir/file"),
    ],
)
def test_resolve_stays_inside_root(root: Path, manifest_path: bytes, physical: bytes) -> None:
    with RootFS(root) as fs:
        assert fs.resolve(manifest_path) == physical


def test_symlink_loop_is_eloop(root: Path) -> None:
    with RootFS(root) as fs:
        with pytest.raises(OSError) as info:
            fs.resolve(b"loop1/file")
        assert info.value.errno == errno.ELOOP
        # cached failures are raised again, not turned into a pass
        with pytest.raises(OSError):
            fs.resolve(b"loop1/other")


def test_read_bytes_does_not_follow_final_symlink(root: Path) -> None:
    with RootFS(root) as fs:
        assert fs.read_bytes(b"bin/ls") == b"\x7fELF ls"
        with pytest.raises(OSError) as info:
            fs.read_bytes(b"usr/bin/ls-link")
        assert info.value.errno == errno.ELOOP


def test_read_bytes_refuses_fifo_without_blocking(root: Path) -> None:
    os.mkfifo(root / "fifo")
    with RootFS(root) as fs, pytest.raises(OSError):
        fs.read_bytes(b"fifo")


def test_listdir_through_symlinked_dir(root: Path) -> None:
    with RootFS(root) as fs:
        assert sorted(fs.listdir(b"bin")) == sorted([b"ls", b"up", b"ls-link"])


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        RootFS(tmp_path / "absent")
