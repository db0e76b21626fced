"""Deep trees in image layers: extracted, whited out and removed in linear time, with few fds."""

from __future__ import annotations

import io
import json
import os
import resource
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagebuilder import image_config, write_docker_save

import _native
from _native import remove_py
from scanner import cli
from scanner.targets.image import open_image

DEPTH = 5000


@pytest.fixture
def few_fds() -> Iterator[int]:
    """The soft fd limit lowered to what is open now plus 600 (the extraction caches 256): a
    tree 5,000 deep must not need one fd per level (the soft limit is 1,024 in many places)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = len(os.listdir("/proc/self/fd")) + 600
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, soft), hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _chain(depth: int, name: str = "d") -> str:
    return f"{name}/" * depth


def _layer(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A GNU-format layer (long names as 'L' records); None data: a directory."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o755, 1_700_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def _nested(path: Path, depth: int, below: bytes = b"deep\n") -> Path:
    """`depth` nested directories, each a member, and a file at the bottom."""
    members: list[tuple[str, bytes | None]] = [(_chain(i), None) for i in range(1, depth + 1)]
    return _layer(path, [*members, (_chain(depth) + "f", below)])


def _save(tmp_path: Path, layers: list[Path]) -> Path:
    archive = tmp_path / "image.tar"
    write_docker_save(archive, layers, image_config(), ["deep:1"])
    return archive


def test_5000_nested_directories_scan_in_seconds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scan_impl: str,
    few_fds: int,
) -> None:
    """Before: 600 s (each member walked again from the root once 256 fds were cached, and each
    walk's prefix search cubic). Extraction, scan and removal now take about a second."""
    layer = _nested(tmp_path / "layer.tar", DEPTH)
    miner = _layer(tmp_path / "miner.tar", [("tmp/xmrig", Path("/bin/sleep").read_bytes())])
    archive = _save(tmp_path, [layer, miner])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it chose
    out = tmp_path / "report.json"
    started = time.monotonic()
    status = cli.main(
        ["image", str(archive), "--format", "json", "--quiet", "--no-process-env",
         "--output", str(out)]
    )  # fmt: skip
    elapsed = time.monotonic() - started
    report = json.loads(out.read_text())
    assert ("426", "/tmp/xmrig") in {(f["check"], f["path"]) for f in report["findings"]}
    assert status == cli.EXIT_FINDINGS
    assert elapsed < 10, elapsed
    assert not list(scratch.iterdir()), "the scratch tree must be removed, whatever its depth"


def test_deep_tree_extracted_whole(tmp_path: Path, few_fds: int) -> None:
    """Every level is there, with its member's mode and mtime, and the file at the bottom."""
    layer = _nested(tmp_path / "layer.tar", DEPTH)
    with open_image(_save(tmp_path, [layer]), workdir=str(tmp_path), place=False) as image:
        fd = os.open(image.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _level in range(DEPTH):
                st = os.stat("d", dir_fd=fd, follow_symlinks=False)
                assert (st.st_mode & 0o7777, st.st_mtime) == (0o755, 1_700_000_000)
                below = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = below
            data = os.open("f", os.O_RDONLY, dir_fd=fd)
            assert os.read(data, 100) == b"deep\n"
            os.close(data)
        finally:
            os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar", "layer.tar"]


def test_a_deep_tree_whited_out_or_made_opaque(tmp_path: Path, few_fds: int) -> None:
    """A whiteout of a 2,000-deep directory (shutil.rmtree recursed: RecursionError, exit 5),
    and an opaque directory over one (the clear recursed too), as later layers do."""
    lower = _nested(tmp_path / "lower.tar", 2000)
    whiteout = _layer(tmp_path / "whiteout.tar", [(".wh.d", b""), ("kept", b"k")])
    with open_image(_save(tmp_path, [lower, whiteout]), workdir=str(tmp_path)) as image:
        assert sorted(os.listdir(image.root)) == ["kept"]
    upper = _layer(
        tmp_path / "opaque.tar",
        [("d/", None), ("d/d/", None), ("d/d/new", b"n"), ("d/.wh..wh..opq", b"")],
    )
    with open_image(_save(tmp_path, [lower, upper]), workdir=str(tmp_path)) as image:
        assert os.listdir(os.path.join(image.root, "d")) == ["d"]
        assert os.listdir(os.path.join(image.root, "d/d")) == ["new"]


@pytest.mark.parametrize("name", sorted(_native.removers()))
def test_removers_take_deep_trees_with_few_fds(tmp_path: Path, name: str, few_fds: int) -> None:
    """Both twins: the native one held an fd per level (EMFILE past the limit), the Python one
    recursed (RecursionError past ~1,000 levels); the scratch tree was left behind."""
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(DEPTH):
        os.mkdir("d", dir_fd=fd)
        if level % 1000 == 0:
            os.mkdir("side", dir_fd=fd)  # siblings to come back up to
            (Path(f"/proc/self/fd/{fd}") / "side" / "file").write_bytes(b"x")
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(fd)
    started = time.monotonic()
    try:
        _native.removers()[name].remove_tree(str(top))
        left = top.exists()
    finally:
        if top.exists():  # never leave a tree pytest's own (recursive) cleanup cannot remove
            remove_py.remove_tree(str(top))
    assert not left
    # Linear, not quadratic: ~3 s on a quiet machine, 12 s under a load of 5; a walk that went
    # back to the top for every level would take many minutes at this depth.
    assert time.monotonic() - started < 60


def test_one_member_20000_directories_deep(tmp_path: Path, few_fds: int) -> None:
    """No member names its parents: they are made on the way, one fd at a time (each was
    cached: EMFILE past the fd limit), and each path prefix was sliced (quadratic)."""
    deep = _chain(20_000, "a")
    layer = _layer(tmp_path / "layer.tar", [(deep + "f", b"1"), (deep + "g", b"2")])
    started = time.monotonic()
    with open_image(_save(tmp_path, [layer]), workdir=str(tmp_path), place=False) as image:
        fd = os.open(image.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _level in range(20_000):
                below = os.open("a", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = below
            assert sorted(os.listdir(fd)) == ["f", "g"]
        finally:
            os.close(fd)
    assert time.monotonic() - started < 60  # ~3 s quiet, 25 s under a load of 5
