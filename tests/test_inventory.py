"""`scan-root packages`: the inventory equals what the package managers' own tools list."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from debroot import debootstrap_root
from scanner import cli


@pytest.mark.debootstrap
def test_dpkg_inventory_equals_dpkg_query(capsys: pytest.CaptureFixture[str]) -> None:
    root = debootstrap_root()
    referee = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = sorted(tuple(line.split("|")[1:]) for line in referee if line.startswith("ii"))
    assert cli.main(["packages", str(root), "--format", "json"]) == cli.EXIT_CLEAN
    listed = json.loads(capsys.readouterr().out)
    assert listed["schema"] == 1
    ours = sorted((p["name"], p["version"], p["arch"]) for p in listed["packages"])
    assert ours == expected
    assert all(p["manager"] == "dpkg" and p["release"] is None for p in listed["packages"])
    coreutils = next(p for p in listed["packages"] if p["name"] == "coreutils")
    md5sums = (root / "var/lib/dpkg/info/coreutils.md5sums").read_text().splitlines()
    assert coreutils["files"] == len(md5sums)


def test_table_format_and_bad_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["packages", str(tmp_path)]) == cli.EXIT_CLEAN
    assert capsys.readouterr().out.startswith("MANAGER  NAME")
    assert cli.main(["packages", str(tmp_path / "absent")]) == cli.EXIT_USAGE
