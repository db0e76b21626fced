"""Early read-ahead (_native._prefetch and its twin): what it advises, and what it never touches."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
from child import run_python

import _native
import pkgdb.dpkg
from scanner.prefetch import DPKG_INFO_DIR, DPKG_MANIFEST_SUFFIX, start_early_prefetch

REPO = Path(__file__).resolve().parent.parent
PREFETCHERS = _native.prefetchers()
INFO = DPKG_INFO_DIR.decode()
MIB = 1 << 20


@pytest.fixture(params=sorted(PREFETCHERS), ids=lambda name: {"cython": "c", "python": "py"}[name])
def prefetch(request: pytest.FixtureRequest) -> ModuleType:
    return PREFETCHERS[request.param]


def _write(root: Path, relative: str, size: int) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def _manifest(root: Path, name: str, paths: list[str]) -> None:
    info = root / INFO
    info.mkdir(parents=True, exist_ok=True)
    (info / f"{name}.md5sums").write_bytes(
        b"".join(b"0123456789abcdef0123456789abcdef  " + os.fsencode(p) + b"\n" for p in paths)
    )


def _start(module: ModuleType, root: Path, **options: int | bool) -> tuple[int, int]:
    handle = module.start(os.fsencode(root), DPKG_INFO_DIR, DPKG_MANIFEST_SUFFIX, **options)
    return handle.wait()  # type: ignore[no-any-return]


@pytest.fixture
def hostile_root(tmp_path: Path) -> tuple[Path, int, int]:
    """A root whose manifest lists 3 advisable files among every kind that must be skipped."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    _write(outside, "secret", 4096)
    _write(root, "usr/bin/tool", 3000)
    _write(root, "usr/lib/libx.so.1", 2 * MIB)
    _write(root, "usr/share/doc/with space", 10)
    (root / "usr/share/empty").write_bytes(b"")
    (root / "bin").symlink_to("usr/bin")  # merged /usr: skipped, the hasher gets it
    (root / "usr/bin/escape").symlink_to(outside / "secret")
    (root / "usr/lib/up").symlink_to("../../..")
    os.mkfifo(root / "usr/bin/fifo")  # would block a plain open
    _manifest(
        root,
        "pkg",
        [
            "/usr/bin/tool",  # absolute, as some manifests write them
            "usr/lib/libx.so.1",
            "usr/share/doc/with space",
            "usr/share/empty",
            "bin/tool",
            "usr/bin/escape",
            "usr/lib/up/outside/secret",
            "../outside/secret",
            "usr/./bin/tool",
            "usr//bin/tool",
            "usr/bin/fifo",
            "usr/bin/missing",
            "",
        ],
    )
    (root / INFO / "not-a-manifest.list").write_bytes(b"x  usr/bin/tool\n")
    return root, 3, 3000 + 2 * MIB + 10


def test_advises_only_regular_files_beneath_the_root(
    prefetch: ModuleType, hostile_root: tuple[Path, int, int]
) -> None:
    root, files, size = hostile_root
    assert _start(prefetch, root, probe=False, budget=1 << 40) == (files, size)


def test_probe_skips_what_is_cached(
    prefetch: ModuleType, hostile_root: tuple[Path, int, int]
) -> None:
    root, _files, _size = hostile_root
    expected = [
        (p, p.stat().st_size)
        for p in (
            root / "usr/bin/tool",
            root / "usr/lib/libx.so.1",
            root / "usr/share/doc/with space",
        )
    ]
    uncached = []
    for path, size in expected:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        except OSError:
            uncached.append(size)
        finally:
            os.close(fd)
    assert _start(prefetch, root) == (len(uncached), sum(uncached))


def test_budget_stops_after_the_largest_file_first(
    prefetch: ModuleType, hostile_root: tuple[Path, int, int]
) -> None:
    root, _files, _size = hostile_root
    # The hasher claims files of >= 1 MiB first, largest first: so does the read-ahead.
    assert _start(prefetch, root, probe=False, budget=1) == (1, 2 * MIB)


@pytest.mark.parametrize("directory", ["var/lib/dpkg/info", "nowhere"])
def test_nothing_to_read(prefetch: ModuleType, tmp_path: Path, directory: str) -> None:
    (tmp_path / directory).mkdir(parents=True, exist_ok=True)
    assert _start(prefetch, tmp_path, probe=False) == (0, 0)
    assert _start(prefetch, tmp_path / "absent", probe=False) == (0, 0)


def test_bad_arguments_advise_nothing(
    prefetch: ModuleType, hostile_root: tuple[Path, int, int]
) -> None:
    root, _files, _size = hostile_root
    for directory in (b"../root/" + DPKG_INFO_DIR, b"/" + DPKG_INFO_DIR, b"var\0lib"):
        handle = prefetch.start(os.fsencode(root), directory, DPKG_MANIFEST_SUFFIX, probe=False)
        assert handle.wait() == (0, 0)
    assert _start(prefetch, root, probe=False, budget=0) == (0, 0)


def test_stop_is_prompt_and_repeatable(
    prefetch: ModuleType, hostile_root: tuple[Path, int, int]
) -> None:
    root, files, size = hostile_root
    handle = prefetch.start(os.fsencode(root), DPKG_INFO_DIR, DPKG_MANIFEST_SUFFIX, probe=False)
    first = handle.stop()
    assert first[0] <= files and first[1] <= size
    assert handle.stop() == first


def test_scanner_names_match_the_dpkg_reader() -> None:
    assert DPKG_INFO_DIR == pkgdb.dpkg.INFO_DIR


def test_only_started_when_448_runs(tmp_path: Path) -> None:
    assert start_early_prefetch(str(tmp_path), ["425", "426"]) is None
    for checks in (None, ["425", " 448"]):
        handle = start_early_prefetch(str(tmp_path), checks)
        assert handle is not None
        assert handle.stop() == (0, 0)  # type: ignore[attr-defined]


def test_cli_import_leaves_the_scan_modules_for_later() -> None:
    # The read-ahead starts in cli.main before these load: importing them first would undo it.
    code = "import sys, scanner.cli; print(sorted(m for m in ('scanner.scan', 'pkgdb') if m in sys.modules))"
    assert run_python(code).strip() == "[]"
