"""`--output` never writes through a symlink, never into the scanned root, never half a file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import findings_tree
import pytest
from child import child_env

from scanner.cli import main


@pytest.fixture
def tree(tmp_path: Path) -> findings_tree.Tree:
    return findings_tree.build(tmp_path / "tree")


def _scan(tree: findings_tree.Tree, output: Path | str, *extra: str) -> int:
    argv = [str(tree.root), *tree.options, "--format", "json", "--output", str(output)]
    return main([*argv, *extra])


def test_a_symlink_at_the_output_path_is_not_followed(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    """Another user's link in /tmp (or one planted in a root) aims root's write at any file."""
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    assert _scan(tree, link) == 2
    assert victim.read_text() == "keep me\n"
    assert link.is_symlink()


def test_a_dangling_symlink_at_the_output_path_creates_nothing(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere" / "created"
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "report.json"
    link.symlink_to(target)
    assert _scan(tree, link) == 2
    assert not target.exists()


@pytest.mark.parametrize("where", ["srv/report.json", "srv/../tmp/report.json"])
def test_output_inside_the_scanned_root_is_refused(
    tree: findings_tree.Tree, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    assert _scan(tree, tree.root / where) == 2
    assert "inside the scanned target" in capsys.readouterr().err
    assert not (tree.root / "srv/report.json").exists()
    assert not (tree.root / "tmp/report.json").exists()


def test_output_through_a_symlinked_directory_into_the_root_is_refused(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    (tmp_path / "door").symlink_to(tree.root / "srv")
    assert _scan(tree, tmp_path / "door" / "report.json") == 2
    assert not (tree.root / "srv/report.json").exists()


def test_a_file_is_replaced_whole_and_a_device_written_to(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    out.write_text("old")
    before = out.stat().st_ino
    assert _scan(tree, out) == 0
    assert out.read_text().startswith("{") and out.stat().st_ino != before
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert _scan(tree, "/dev/null") == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_packages_output_follows_the_same_rules(tree: findings_tree.Tree, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / "list").symlink_to(victim)
    assert main(["packages", str(tree.root), "--output", str(tmp_path / "list")]) == 2
    assert victim.read_text() == "keep me\n"
    assert main(["packages", str(tree.root), "--output", str(tree.root / "srv/list")]) == 2


def test_a_fifo_nobody_reads_is_an_error_not_a_hang(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    argv = [str(tree.root), *tree.options, "--format", "json", "--output", str(fifo)]
    done = subprocess.run(  # a child: the hang this was fails here, bounded
        [sys.executable, "-m", "scanner.cli", *argv],
        capture_output=True, text=True, cwd=tmp_path, env=child_env(), timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "FIFO that nobody reads" in done.stderr


def test_a_fifo_of_another_user_is_not_written(tree: findings_tree.Tree, tmp_path: Path) -> None:
    """In a sticky /tmp, anyone can make a FIFO at the name the report goes to."""
    if os.geteuid() != 0:
        pytest.skip("making a FIFO of another user needs root")
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert _scan(tree, fifo) == 2
        assert os.read(reader, 1) == b""  # opened, found foreign, closed: nothing written
    finally:
        os.close(reader)


def test_a_fifo_with_a_reader_gets_the_report(tree: findings_tree.Tree, tmp_path: Path) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:  # the report is smaller than the pipe's 64 KiB: written whole before it is read
        assert _scan(tree, fifo) == 0
        data = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert json.loads(data)["findings"] == []


def test_dev_stdout_to_a_pipe_gets_the_report(tree: findings_tree.Tree) -> None:
    """`--output /dev/stdout` (a link root made, to our own pipe) is how a report is piped."""
    done = subprocess.run(
        [sys.executable, "-m", "scanner.cli", str(tree.root), *tree.options, "--format", "json"]
        + ["--output", "/dev/stdout"],
        env=child_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1, 3), done.stderr
    report = json.loads(done.stdout)  # the whole report, and nothing else, on the pipe
    assert report["checks"] and "findings" in report


def test_our_link_to_a_device_is_written_and_another_users_is_not(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    ours = tmp_path / "to-null"
    ours.symlink_to("/dev/null")
    assert _scan(tree, ours) in (0, 1, 3)
    assert ours.is_symlink()
    if os.geteuid() != 0:
        pytest.skip("making another user's link needs root (CI runs as root)")
    theirs = tmp_path / "their-link"
    theirs.symlink_to("/dev/null")
    os.lchown(theirs, 65534, 65534)
    assert _scan(tree, theirs) == 2
