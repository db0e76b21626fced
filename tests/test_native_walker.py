"""The walker, on both implementations: order, kinds, symlinks, special files, errors, mounts."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from trees import as_nobody, make_tree, no_block  # noqa: F401 - no_block is an autouse fixture

from _native import FileKind, WalkEntry, WalkError, implementations

Impl = tuple[ModuleType, ModuleType]


def reference_walk(root: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, int, int, int]]:
    """The expected sequence, from os.lstat on absolute paths (no dir_fd, no shared code)."""
    for name in sorted(os.listdir(os.path.join(root, prefix) if prefix else root)):
        rel = prefix + b"/" + name if prefix else name
        st = os.lstat(os.path.join(root, rel))
        yield rel, st.st_mode, st.st_ino, st.st_size
        if stat.S_ISDIR(st.st_mode):
            yield from reference_walk(root, rel)


def summary(items: list[WalkEntry | WalkError]) -> list[tuple[bytes, int, int, int]]:
    assert all(isinstance(item, WalkEntry) for item in items), items
    return [
        (item.path, item.mode, item.ino, item.size) for item in items if isinstance(item, WalkEntry)
    ]


def test_walk_matches_lstat_reference(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    make_tree(tmp_path)
    items = list(walker.walk(str(tmp_path)))
    assert summary(items) == list(reference_walk(bytes(tmp_path)))
    assert [item.path for item in items][:4] == [b"a", b"a/b", b"a/b/c", b"a/b/c/deep.txt"]


def test_entry_fields_and_kinds(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    make_tree(tmp_path)
    entries = {item.path: item for item in walker.walk(bytes(tmp_path))}
    kinds = {
        b"a": FileKind.DIRECTORY,
        b"a/file": FileKind.REGULAR,
        b"fifo": FileKind.FIFO,
        b"null": FileKind.CHAR_DEVICE,
        b"loop1": FileKind.SYMLINK,
        b"dangling": FileKind.SYMLINK,
        b"outside": FileKind.SYMLINK,
        b"caf\xe9/na\xefve \n name": FileKind.REGULAR,
    }
    for path, kind in kinds.items():
        entry = entries[path]
        st = os.lstat(bytes(tmp_path) + b"/" + path)
        assert entry == WalkEntry(
            path,
            kind,
            st.st_mode,
            st.st_size,
            st.st_dev,
            st.st_ino,
            st.st_nlink,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )
    assert entries[b"a/file"].nlink == 2
    assert entries[b"a/file"].ino == entries[b"a/file.hardlink"].ino


def test_symlinks_are_never_followed(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    make_tree(tmp_path)
    paths = [item.path for item in walker.walk(tmp_path.as_posix())]
    assert b"outside" in paths and b"a/b/up" in paths
    assert not [path for path in paths if path.startswith((b"outside/", b"a/b/up/", b"loop1/"))]
    assert len(paths) == len(set(paths))


def test_skip_is_neither_yielded_nor_descended(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    make_tree(tmp_path)
    paths = [item.path for item in walker.walk(str(tmp_path), skip=[b"skipme", b"a/b"])]
    assert b"a" in paths and b"a/file" in paths
    assert not [path for path in paths if path.startswith((b"skipme", b"a/b"))]


def test_root_errors_raise(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        list(walker.walk(str(tmp_path / "file")))
    with pytest.raises(FileNotFoundError):
        list(walker.walk(str(tmp_path / "absent")))


def test_empty_root(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    assert list(walker.walk(str(tmp_path))) == []


def test_open_fds_do_not_grow_with_depth(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    deep = tmp_path
    for level in range(60):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"")
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    count = 0
    for _ in walker.walk(str(tmp_path)):
        most = max(most, len(os.listdir("/proc/self/fd")))
        count += 1
    assert count == 61
    assert most <= before + 2  # the root fd, plus the listdir above's own fd


def test_mount_point_not_crossed(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    mount = tmp_path / "mnt"
    mount.mkdir()
    (tmp_path / "z").write_bytes(b"")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "scan-root-test", str(mount)], check=False, capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        (mount / "inside").write_bytes(b"on another device")
        paths = [item.path for item in walker.walk(str(tmp_path))]
        assert paths == [b"mnt", b"z"]
        crossing = [item.path for item in walker.walk(str(tmp_path), one_file_system=False)]
        assert crossing == [b"mnt", b"mnt/inside", b"z"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def world_tree() -> Iterator[Path]:
    """A tree outside pytest's 0700 tmp dir, so an unprivileged child can reach it."""
    root = Path(tempfile.mkdtemp(prefix="scan-root-walk-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path in (root / "locked", root / "noexec"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(root)


@pytest.mark.parametrize("name", sorted(implementations()))
def test_unreadable_directory_is_an_error_and_the_walk_goes_on(name: str, world_tree: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 (root itself is never denied)")
    (world_tree / "a").mkdir()
    (world_tree / "locked").mkdir()
    (world_tree / "locked/secret").write_bytes(b"")
    (world_tree / "noexec").mkdir()
    (world_tree / "noexec/entry").write_bytes(b"")
    (world_tree / "z").write_bytes(b"")
    (world_tree / "locked").chmod(0o000)
    (world_tree / "noexec").chmod(0o644)  # names readable, entries not stat-able
    walker = implementations()[name][0]
    found = as_nobody(
        lambda: [
            [item.path.decode(), getattr(item, "errno", 0), type(item).__name__]
            for item in walker.walk(str(world_tree))
        ]
    )
    assert found == [
        ["a", 0, "WalkEntry"],
        ["locked", 0, "WalkEntry"],
        ["locked", errno.EACCES, "WalkError"],
        ["noexec", 0, "WalkEntry"],
        ["noexec/entry", errno.EACCES, "WalkError"],
        ["z", 0, "WalkEntry"],
    ]


@pytest.mark.native_only
@pytest.mark.parametrize("root", ["/usr/share", "/etc", "generated"])
def test_implementations_agree(root: str, tmp_path: Path) -> None:
    if root == "generated":
        root = str(make_tree(tmp_path))
    runs = [list(walker.walk(root)) for walker, _ in implementations().values()]
    assert runs[0] == runs[1]
    assert len(runs[0]) > 5


@pytest.mark.native_only
def test_a_wide_batch_read_on_two_threads_agrees(tmp_path: Path) -> None:
    """20 sibling directories: a batch long enough (_THREADED_DIRS, 8) for the helper thread
    where two CPUs are usable; shorter batches are read on the calling thread alone."""
    for directory in range(20):
        (tmp_path / f"d{directory:02}").mkdir()
        for name in range(5):
            (tmp_path / f"d{directory:02}" / f"f{name}").write_bytes(b"x" * name)
    runs = [list(walker.walk(str(tmp_path))) for walker, _ in implementations().values()]
    assert runs[0] == runs[1]
    assert len(runs[0]) == 120


def _identities(items: list[WalkEntry | WalkError]) -> dict[bytes, tuple[int, ...]]:
    """{path: (dev, ino, size, mtime_ns, ctime_ns, mode, 0)} of the regular files, as a state
    records them (one trailing field the walker must ignore)."""
    return {
        item.path: (item.dev, item.ino, item.size, item.mtime_ns, item.ctime_ns, item.mode, 0)
        for item in items
        if isinstance(item, WalkEntry) and item.kind is FileKind.REGULAR
    }


def test_unchanged_files_go_to_matched_not_to_the_walk(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    for directory in range(12):  # wide enough for the native walker's two-thread batches
        (tmp_path / f"d{directory:02}").mkdir()
        for name in range(3):
            (tmp_path / f"d{directory:02}" / f"f{name}").write_bytes(b"x" * name)
    make_tree(tmp_path / "tree")
    everything = list(walker.walk(str(tmp_path)))
    known = _identities(everything)
    edited, renamed, grown = b"d01/f1", b"d02/f2", b"d03/f0"
    known[b"not/here"] = (1, 2, 3, 4, 5, 6, 0)  # a recorded path the walk no longer meets
    known[b"d04"] = (0,) * 7  # a directory is never matched, whatever is recorded
    known[b"d05/f0"] = ("bad",)  # a malformed record is a mismatch, not an error
    time.sleep(0.05)  # past the kernel's coarse timestamp tick: the edits' ctimes are new
    time_ns = os.stat(tmp_path / os.fsdecode(edited)).st_mtime_ns
    (tmp_path / os.fsdecode(edited)).write_bytes(b"y")  # same size; mtime put back: ctime moved
    os.utime(tmp_path / os.fsdecode(edited), ns=(time_ns, time_ns))
    os.rename(tmp_path / os.fsdecode(renamed), tmp_path / "elsewhere")
    (tmp_path / "elsewhere").rename(tmp_path / os.fsdecode(renamed))  # same inode, new ctime
    with open(tmp_path / os.fsdecode(grown), "ab") as handle:
        handle.write(b"z")
    matched: list[bytes] = []
    rest = list(walker.walk(str(tmp_path), unchanged=known, matched=matched))
    changed = {edited, renamed, grown, b"d05/f0"}
    assert sorted(matched) == sorted(set(known) - changed - {b"not/here", b"d04"})
    walked = [item.path for item in rest]
    assert set(walked).isdisjoint(matched)
    assert sorted(walked + matched) == sorted(item.path for item in everything)
    assert changed <= set(walked) and b"d04" in walked
    # what is yielded is exactly the plain walk's entries, in its order, minus the matched ones
    assert rest == [item for item in walker.walk(str(tmp_path)) if item.path not in matched]


def test_unchanged_never_matches_a_skipped_path(impl: Impl, tmp_path: Path) -> None:
    walker, _ = impl
    (tmp_path / "skipme").write_bytes(b"x")
    (tmp_path / "kept").write_bytes(b"x")
    known = _identities(list(walker.walk(str(tmp_path))))
    matched: list[bytes] = []
    assert (
        list(walker.walk(str(tmp_path), skip=[b"skipme"], unchanged=known, matched=matched)) == []
    )
    assert matched == [b"kept"]
    with pytest.raises(TypeError):
        list(walker.walk(str(tmp_path), unchanged=known))


@pytest.mark.native_only
def test_unchanged_implementations_agree(tmp_path: Path) -> None:
    make_tree(tmp_path)
    known = _identities(list(implementations()["python"][0].walk(str(tmp_path))))
    for path in list(known)[::2]:  # every other file recorded with another inode
        known[path] = (known[path][0], known[path][1] + 1, *known[path][2:])
    runs = []
    for walker, _ in implementations().values():
        matched: list[bytes] = []
        runs.append((list(walker.walk(str(tmp_path), unchanged=known, matched=matched)), matched))
    assert runs[0] == runs[1]
    assert runs[0][1]
