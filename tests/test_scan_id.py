"""Every scan names its report with a fresh UUID4 `scan_id`: library, JSON and SARIF."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import imagebuilder
import pytest
from child import run_cli

import scanner
from scanner.output import FORMATS
from scanner.report import Report, new_scan_id


def assert_uuid4(value: object) -> str:
    """`value` is a UUID4 in canonical form (lower-case hex, hyphens): what a console keys on."""
    assert isinstance(value, str)
    parsed = uuid.UUID(value)
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == value
    return value


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    return root


def test_two_library_scans_have_two_uuid4s(tmp_path: Path) -> None:
    root = _root(tmp_path)
    first = scanner.scan_root(root, checks=["426"])
    second = scanner.scan_root(root, checks=["426"])
    assert assert_uuid4(first.scan_id) != assert_uuid4(second.scan_id)
    assert first.to_dict()["scan_id"] == first.scan_id
    assert json.loads(first.to_json())["scan_id"] == first.scan_id


def test_an_image_scan_has_its_own_uuid4(tmp_path: Path) -> None:
    layer = imagebuilder.tar_tree(_root(tmp_path), tmp_path / "layer.tar")
    imagebuilder.write_oci_layout(tmp_path / "layout", [layer], imagebuilder.image_config())
    ids = {scanner.scan_image(tmp_path / "layout", checks=["426"]).scan_id for _ in range(2)}
    assert len(ids) == 2 and all(assert_uuid4(i) for i in ids)


def test_two_cli_runs_write_two_uuid4s(tmp_path: Path) -> None:
    """The JSON `scan-root --format json` writes, from two processes: ids never repeat."""
    root = _root(tmp_path)
    ids = []
    for _ in range(2):
        done = run_cli(tmp_path, str(root), "--format", "json", "--checks", "426")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert list(report)[:2] == ["schema", "scan_id"]  # named up front, next to the schema
        ids.append(assert_uuid4(report["scan_id"]))
    assert ids[0] != ids[1]


def test_sarif_carries_the_scan_id_as_the_runs_guid() -> None:
    report = Report(root="/", scanner_version="0", implementation="python", checks=())
    run = json.loads(FORMATS["sarif"](report, False))["runs"][0]
    assert run["automationDetails"] == {"guid": report.scan_id}
    assert run["properties"]["scan_id"] == report.scan_id


@pytest.mark.parametrize("count", [10_000])
def test_new_scan_ids_do_not_repeat(count: int) -> None:
    ids = {new_scan_id() for _ in range(count)}
    assert len(ids) == count
    assert all(assert_uuid4(i) for i in list(ids)[:100])
