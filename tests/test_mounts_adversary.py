"""Mount points told by mountinfo, attacked: a root whose own name looks removed, a state file on
a bind of the root's own directory."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
from test_mount_points import ROOT_ONLY, _entries, _flagged, _tree, bound, walker  # noqa: F401
from trees import no_block  # noqa: F401 - no_block is an autouse fixture

import scanner
from _native import mounts
from scanner import state
from scanner.errors import UsageError


@ROOT_ONLY
def test_a_root_whose_name_ends_like_a_removed_directory(
    walker: ModuleType,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    # /proc gives a removed directory's path with " (deleted)" appended; a live directory may
    # bear that name, and its bind mounts were then crossed (no mount point told but by device).
    root = _tree(tmp_path / "root (deleted)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inside").write_bytes(b"another mount")
    with bound(elsewhere, root / "data"):
        entries = _entries(walker, root)
        assert list(entries) == [b"a", b"a/file", b"data", b"z"]
        assert _flagged(entries) == {b"data"}


@ROOT_ONLY
def test_mount_points_of_a_removed_root_are_not_guessed(tmp_path: Path) -> None:
    root = tmp_path / "gone"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root.rmdir()
        (tmp_path / "gone (deleted)").mkdir()  # what the path /proc gives would lead to
        assert mounts.mount_points(fd) is None
    finally:
        os.close(fd)


def test_where_a_mount_shows_its_file_system() -> None:
    text = (
        b"27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        b"40 27 254:0 /srv/root/y /srv/root/x rw - ext4 /dev/vda rw\n"
        b"41 27 254:0 /with\\040space /mnt/b\\134 rw - ext4 /dev/vda rw\n"
    )
    assert mounts.in_file_system(text, 27, b"/srv/root") == b"/srv/root"
    assert mounts.in_file_system(text, 27, b"/") == b"/"
    assert mounts.in_file_system(text, 40, b"/srv/root/x") == b"/srv/root/y"
    assert mounts.in_file_system(text, 40, b"/srv/root/x/deeper") == b"/srv/root/y/deeper"
    assert mounts.in_file_system(text, 41, b"/mnt/b\\/c") == b"/with space/c"
    assert mounts.in_file_system(text, 40, b"/srv/root/xx") is None  # not below its mount point
    assert mounts.in_file_system(text, 99, b"/srv") is None


@ROOT_ONLY
def test_a_state_file_on_a_bind_of_the_roots_own_directory_is_inside_it(tmp_path: Path) -> None:
    # Such a file is in the walked tree (where the walk meets the bound directory): writing it
    # there without --state-in-root wrote into the scanned root, and the walk did not skip it.
    root = _tree(tmp_path / "root")
    (root / "own").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with bound(root / "own", root / "data"), bound(elsewhere, root / "a"):
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            root_dev, root_mount = os.fstat(fd).st_dev, mounts.mount_id(fd)
        finally:
            os.close(fd)
        assert root_mount is not None
        on_own = root / "data/scan.state"
        assert state._inside(str(on_own), str(root), root_dev, root_mount)
        assert not state._inside(str(root / "a/scan.state"), str(root), root_dev, root_mount)
        with pytest.raises(UsageError, match="inside the scanned root"):
            scanner.scan_root(root, checks=["448"], state=on_own, process_env=False)
        assert not (root / "own/scan.state").exists()


@ROOT_ONLY
def test_a_state_file_in_the_directory_the_root_is_a_bind_of_is_inside_it(tmp_path: Path) -> None:
    # The root is a bind of `source`: a state file under `source` is in the walked tree though
    # its path is not under the root's.
    source = _tree(tmp_path / "source")
    root = tmp_path / "root"
    root.mkdir()
    with bound(source, root):
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            root_dev, root_mount = os.fstat(fd).st_dev, mounts.mount_id(fd)
        finally:
            os.close(fd)
        assert state._inside(str(source / "a/scan.state"), str(root), root_dev, root_mount)
        assert not state._inside(str(tmp_path / "scan.state"), str(root), root_dev, root_mount)
        # Without the root's mount id (no /proc), a path elsewhere is taken as outside, as before.
        assert not state._inside(str(source / "a/scan.state"), str(root), root_dev)
        with pytest.raises(UsageError, match="inside the scanned root"):
            scanner.scan_root(root, checks=["448"], state=source / "a/scan.state")
