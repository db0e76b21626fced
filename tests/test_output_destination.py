"""`--output` never writes through a symlink, never into the scanned root, never half a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import findings_tree
from scanner.cli import main


@pytest.fixture
def tree(tmp_path: Path) -> findings_tree.Tree:
    return findings_tree.build(tmp_path / "tree")


def _scan(tree: findings_tree.Tree, output: Path | str, *extra: str) -> int:
    return main([str(tree.root), *tree.options, "--format", "json", "--output", str(output), *extra])


def test_a_symlink_at_the_output_path_is_not_followed(tree: findings_tree.Tree, tmp_path: Path) -> None:
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
