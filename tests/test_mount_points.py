"""Mount points inside the root, bind mounts of the same file system included: never entered."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from findings_tree import BINARY, build
from trees import no_block  # noqa: F401 - no_block is an autouse fixture

import scanner
from _native import FileKind, WalkEntry, implementations, mounts
from scanner import state
from scanner.errors import UsageError

IMPLEMENTATIONS = implementations()
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root (CI runs as root)")

# The native walker is tried twice: with statx's mount ids (Linux >= 5.8) and with the
# /proc/self/mountinfo fallback it uses on older kernels; the twin always reads mountinfo.
_WALKERS = [
    name
    for name, implementation in (("c", "cython"), ("c-mountinfo", "cython"), ("py", "python"))
    if implementation in IMPLEMENTATIONS
]


@pytest.fixture(params=_WALKERS)
def walker(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    module: ModuleType = IMPLEMENTATIONS["python" if request.param == "py" else "cython"][0]
    if request.param != "c-mountinfo":
        yield module
        return
    module._use_statx(False)
    try:
        yield module
    finally:
        module._use_statx(True)


@contextmanager
def bound(source: Path | bytes, target: Path | bytes) -> Iterator[None]:
    """`mount --bind source target` for the block, unmounted whatever happens in it."""
    done = subprocess.run(
        ["mount", "--bind", os.fsencode(source), os.fsencode(target)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"mount --bind failed as root: {done.stderr.decode(errors='replace')}")
    try:
        yield
    finally:
        subprocess.run(["umount", os.fsencode(target)], capture_output=True, check=True)


def _entries(walker: ModuleType, root: Path, **options: object) -> dict[bytes, WalkEntry]:
    items = list(walker.walk(str(root), **options))
    assert all(isinstance(item, WalkEntry) for item in items), items
    return {item.path: item for item in items if isinstance(item, WalkEntry)}


def _flagged(entries: dict[bytes, WalkEntry]) -> set[bytes]:
    return {path for path, entry in entries.items() if entry.mount_point}


def _tree(root: Path) -> Path:
    """a/file, an empty data/ to mount on (with a file the mount hides) and z."""
    (root / "a").mkdir(parents=True)
    (root / "a/file").write_bytes(b"a file")
    (root / "data").mkdir()
    (root / "data/underneath").write_bytes(b"hidden by the mount")
    (root / "z").write_bytes(b"")
    return root


@ROOT_ONLY
def test_bind_of_a_directory_elsewhere_is_not_entered(walker: ModuleType, tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inside").write_bytes(b"same file system, another mount")
    assert os.stat(elsewhere).st_dev == os.stat(root).st_dev
    with bound(elsewhere, root / "data"):
        entries = _entries(walker, root)
        # Yielded as any mount point is (the mounted directory, as stat sees it), not entered.
        assert list(entries) == [b"a", b"a/file", b"data", b"z"]
        assert _flagged(entries) == {b"data"}
        assert entries[b"data"].ino == os.stat(elsewhere).st_ino
        assert entries[b"data"].kind is FileKind.DIRECTORY
        crossing = _entries(walker, root, one_file_system=False)
        assert list(crossing) == [b"a", b"a/file", b"data", b"data/inside", b"z"]
        assert _flagged(crossing) == {b"data"}
    # Unmounted: an ordinary directory again, entered.
    assert list(_entries(walker, root)) == [b"a", b"a/file", b"data", b"data/underneath", b"z"]


@ROOT_ONLY
def test_bind_of_a_directory_of_the_root_itself_is_not_walked_twice(
    walker: ModuleType, tmp_path: Path
) -> None:
    root = _tree(tmp_path)
    with bound(root / "a", root / "data"):
        entries = _entries(walker, root)
        assert list(entries) == [b"a", b"a/file", b"data", b"z"]
        assert _flagged(entries) == {b"data"}


@ROOT_ONLY
def test_bind_of_a_single_file_is_a_mount_point(walker: ModuleType, tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / "app.key").write_bytes(b"")
    (root / "plain").write_bytes(b"plain")
    secret = tmp_path / "secret"
    secret.write_bytes(b"mounted from elsewhere")
    with bound(secret, root / "app.key"):
        entries = _entries(walker, root)
        assert list(entries) == [
            b"a", b"a/file", b"app.key", b"data", b"data/underneath", b"plain", b"z"
        ]  # fmt: skip
        assert _flagged(entries) == {b"app.key"}
        mounted = entries[b"app.key"]
        assert mounted.kind is FileKind.REGULAR and mounted.size == len(b"mounted from elsewhere")
        # A rescan's unchanged-file shortcut never swallows a mount point: it stays an entry,
        # flagged, for the scan to leave unread.
        known = {
            path: (e.dev, e.ino, e.size, e.mtime_ns, e.ctime_ns, e.mode, 0)
            for path, e in entries.items()
            if e.kind is FileKind.REGULAR
        }
        matched: list[bytes] = []
        again = _entries(walker, root, unchanged=known, matched=matched)
        assert sorted(matched) == [b"a/file", b"data/underneath", b"plain", b"z"]
        assert [path for path, e in again.items() if e.kind is FileKind.REGULAR] == [b"app.key"]
        assert again[b"app.key"].mount_point


# Names /proc/self/mountinfo escapes (space, tab, newline, backslash) or that look escaped.
ODD_NAMES = (b"with space", b"tab\there", b"new\nline", b"back\\slash", b"oct\\040al", b"caf\xe9")


@ROOT_ONLY
def test_mount_points_with_odd_names_and_nested_mounts(walker: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    raw = bytes(root)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub/deeper").write_bytes(b"")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "innermost").write_bytes(b"")
    for name in ODD_NAMES:
        os.mkdir(raw + b"/" + name)
        os.mkdir(raw + b"/" + name + b"x")  # a sibling sharing the mount point's prefix
    with ExitStack() as stack:
        for name in ODD_NAMES:
            stack.enter_context(bound(source, raw + b"/" + name))
        # A mount inside a mount: never reached by the walk, entered with one_file_system=False.
        stack.enter_context(bound(inner, raw + b"/" + ODD_NAMES[0] + b"/sub"))
        entries = _entries(walker, root)
        assert list(entries) == sorted(
            [name for name in ODD_NAMES] + [name + b"x" for name in ODD_NAMES]
        )
        assert _flagged(entries) == set(ODD_NAMES)
        crossing = _entries(walker, root, one_file_system=False)
        nested = ODD_NAMES[0] + b"/sub"
        assert crossing[nested].mount_point and crossing[nested].ino == os.stat(inner).st_ino
        assert nested + b"/innermost" in crossing
        assert _flagged(crossing) == set(ODD_NAMES) | {nested}
        assert ODD_NAMES[1] + b"/sub/deeper" in crossing


@ROOT_ONLY
def test_a_root_that_is_itself_a_mount_point(walker: ModuleType, tmp_path: Path) -> None:
    source = _tree(tmp_path / "source")
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inside").write_bytes(b"")
    with bound(source, root), bound(elsewhere, root / "data"):
        entries = _entries(walker, root)
        assert list(entries) == [b"a", b"a/file", b"data", b"z"]
        assert _flagged(entries) == {b"data"}


@ROOT_ONLY
def test_a_root_with_an_odd_name_reached_through_a_symlink(
    walker: ModuleType, tmp_path: Path
) -> None:
    """mountinfo escapes the root's own path too; the walk's path may be a symlink to it."""
    root = Path(os.fsdecode(bytes(tmp_path) + b"/r oot\\040\n\xe9"))
    _tree(root)
    (tmp_path / "link").symlink_to(root)
    with bound(root / "a", root / "data"):
        for path in (root, tmp_path / "link"):
            entries = _entries(walker, path)
            assert list(entries) == [b"a", b"a/file", b"data", b"z"]
            assert _flagged(entries) == {b"data"}


@ROOT_ONLY
def test_a_tmpfs_mount_point_is_flagged_as_a_bind_is(walker: ModuleType, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "scan-root-test", str(root / "data")],
        check=False,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    try:
        (root / "data/inside").write_bytes(b"")
        entries = _entries(walker, root)
        assert list(entries) == [b"a", b"a/file", b"data", b"z"]
        assert _flagged(entries) == {b"data"}
    finally:
        subprocess.run(["umount", str(root / "data")], check=True)


def test_mountinfo_parsing() -> None:
    """The fallback's reading of mountinfo: escapes, prefixes, stacking, other trees."""
    text = (
        b"27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        b"40 27 254:0 /srv/x /srv/root/data rw shared:5 - ext4 /dev/vda rw\n"
        b"41 27 0:40 / /srv/root/with\\040space rw - tmpfs t rw\n"
        b"42 27 0:41 / /srv/root/back\\134040slash rw - tmpfs t rw\n"
        b"43 41 0:42 / /srv/root/with\\040space/nested rw - tmpfs t rw\n"
        b"44 27 0:43 / /srv/rootx/prefix rw - tmpfs t rw\n"  # beside the root, not below it
        b"45 27 0:44 / /srv/root rw - tmpfs t rw\n"  # stacked on the root's path since
        b"46 45 0:45 / /srv/root/on-the-stack rw - tmpfs t rw\n"  # not under the root's fd
        b"47 99 0:46 / /srv/root/orphan rw - tmpfs t rw\n"  # its parent is not in our tree
        b"not a mountinfo line\n"
    )
    parsed = mounts.parse_mountinfo(text)
    assert (41, 27, b"/srv/root/with space") in parsed
    assert (42, 27, b"/srv/root/back\\040slash") in parsed
    assert mounts.below(parsed, b"/srv/root", 27) == {
        b"data", b"with space", b"back\\040slash", b"with space/nested"
    }  # fmt: skip
    assert mounts.below(parsed, b"/srv/root/", 27) == mounts.below(parsed, b"/srv/root", 27)
    everything = mounts.below(parsed, b"/", 27)
    assert b"srv/rootx/prefix" in everything and b"" not in everything
    assert mounts.below(parsed, b"/srv/root", 45) == {b"on-the-stack"}


@ROOT_ONLY
def test_mount_points_of_the_live_root_include_a_bind_below_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "source").mkdir()
    live = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with bound(tmp_path / "source", tmp_path / "data"):
            found = mounts.mount_points(live)
            assert found is not None and b"proc" in found
            assert bytes(tmp_path / "data")[1:] in found
            assert bytes(tmp_path / "source")[1:] not in found
    finally:
        os.close(live)


@pytest.fixture
def mounted_tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A dpkg root whose /srv/data is a bind of a directory holding a key and a miner, whose
    /srv/app.key is a bind of a key file, and whose /usr/bin/tool (package-owned) is a bind of a
    changed binary; /srv/copy holds the same key and miner as ordinary files."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root (CI runs as root)")
    root = build(tmp_path).root
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(elsewhere / "key")],
        check=True,
        capture_output=True,
    )
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", elsewhere / "xmrig")
    (elsewhere / "tool").write_bytes((root / os.fsdecode(BINARY)).read_bytes() + b"trojan")
    shutil.copytree(elsewhere, root / "srv/copy")
    (root / "srv/data").mkdir()
    (root / "srv/app.key").write_bytes(b"")
    with ExitStack() as stack:
        stack.enter_context(bound(elsewhere, root / "srv/data"))
        stack.enter_context(bound(elsewhere / "key", root / "srv/app.key"))
        stack.enter_context(bound(elsewhere / "tool", root / os.fsdecode(BINARY)))
        yield root, tmp_path


def test_scan_does_not_read_what_is_mounted_inside_the_root(
    scan_impl: str, mounted_tree: tuple[Path, Path]
) -> None:
    root, _base = mounted_tree
    report = scanner.scan_root(root, checks=["425", "426", "448"], process_env=False)
    found = sorted((f.check, f.to_dict()["path"]) for f in report.findings)
    assert found == [
        ("425", "/srv/copy/key"),
        ("426", "/srv/copy/xmrig"),
        # 448 judges every package-owned path, wherever it leads: a file bound over a package
        # binary is still verified (scanner/content.py: "on another mount").
        ("448", "/usr/bin/tool"),
    ]
    assert report.complete, report.problems


def test_state_file_on_a_bind_mount_inside_the_root_is_outside_it(
    mounted_tree: tuple[Path, Path],
) -> None:
    """Not walked, so not inside: --state there needs no --state-in-root (as on a volume)."""
    root, _base = mounted_tree
    on_bind = root / "srv/data/scan.state"
    report = scanner.scan_root(root, checks=["448"], state=on_bind, process_env=False)
    assert on_bind.exists() and report.complete
    with pytest.raises(UsageError, match="inside the scanned root"):
        scanner.scan_root(root, checks=["448"], state=root / "srv/scan.state")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root_mount = mounts.mount_id(root_fd)
    finally:
        os.close(root_fd)
    assert root_mount is not None
    root_dev = os.stat(root).st_dev
    assert not state._inside(str(on_bind), str(root), root_dev, root_mount)
    assert state._inside(str(root / "srv/scan.state"), str(root), root_dev, root_mount)
    # Without the root's mount id (no /proc), the device alone decides, as before.
    assert state._inside(str(on_bind), str(root), root_dev)
