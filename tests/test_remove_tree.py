"""remove_tree, on both implementations: everything below goes, nothing a symlink points at does."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from trees import as_nobody, make_tree, no_block  # noqa: F401 - no_block is an autouse fixture

import _native

REMOVERS = _native.removers()


@pytest.fixture(params=sorted(REMOVERS), ids=sorted(REMOVERS))
def remover(request: pytest.FixtureRequest) -> ModuleType:
    return REMOVERS[request.param]


def _canary(path: Path) -> str:
    """Names, modes and contents of everything under `path` (what removal must not touch)."""
    digest = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(directory, name)
            st = os.lstat(full)
            digest.update(f"{full} {st.st_mode} {st.st_ino}".encode())
            if stat.S_ISREG(st.st_mode):
                digest.update(Path(full).read_bytes())
    return digest.hexdigest()


def _wide_tree(root: Path, outside: Path) -> None:
    """make_tree() plus 30 top directories of 12 subdirectories (work for two threads), each
    with files and symlinks out of the tree, to a file and to a directory, absolute and relative."""
    make_tree(root)
    for top in range(30):
        for sub in range(12):
            directory = root / f"t{top:02}" / f"s{sub:02}"
            (directory / "deeper/still").mkdir(parents=True)
            (directory / "file").write_bytes(b"x" * sub)
            (directory / "deeper/still/file").write_bytes(b"y")
            os.symlink(outside, directory / "to-outside-dir")
            os.symlink(outside / "keep.txt", directory / "to-outside-file")
            os.symlink("../../../../outside", directory / "deeper/relative")


def test_removes_everything_and_follows_no_symlink(remover: ModuleType, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_bytes(b"keep me")
    (outside / "sub/also").write_bytes(b"and me")
    before = _canary(outside)
    root = tmp_path / "root"
    _wide_tree(root, outside)
    os.symlink(outside, root / "top-level-link")
    remover.remove_tree(str(root))
    assert not root.exists()
    assert _canary(outside) == before


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_thread_counts_and_bytes_paths(remover: ModuleType, tmp_path: Path, threads: int) -> None:
    root = tmp_path / "root"
    _wide_tree(root, tmp_path)
    remover.remove_tree(bytes(root), threads=threads)
    assert not root.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_an_empty_tree_and_a_missing_one(remover: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    remover.remove_tree(str(tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()
    with pytest.raises(FileNotFoundError):
        remover.remove_tree(str(tmp_path / "absent"))


def test_a_symlink_as_the_tree_itself_is_refused(remover: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/file").write_bytes(b"x")
    os.symlink("real", tmp_path / "link")
    with pytest.raises(OSError):
        remover.remove_tree(str(tmp_path / "link"))
    assert (tmp_path / "real/file").exists()


@pytest.mark.root
def test_unwritable_directories_as_nobody(remover: ModuleType) -> None:
    """An image may hold 0500 directories: without root they are opened up, then removed."""
    base = Path(tempfile.mkdtemp(prefix="scan-root-remove-"))
    try:
        root = base / "root"
        (root / "locked/inner").mkdir(parents=True)
        (root / "locked/inner/file").write_bytes(b"x")
        (root / "locked/file").write_bytes(b"x")
        os.chmod(root / "locked/inner", 0o500)
        os.chmod(root / "locked", 0o500)
        os.chmod(base, 0o777)
        for directory, dirs, files in os.walk(base):
            for name in dirs + files + [""]:
                os.lchown(os.path.join(directory, name), 65534, 65534)

        def remove() -> bool:
            remover.remove_tree(str(root))
            return root.exists()

        assert as_nobody(remove) is False
    finally:
        shutil.rmtree(base)
