"""Check 448 on this machine's own root equals `dpkg --verify` (conffiles aside)."""

from __future__ import annotations

import os
import shutil

import pytest
from dpkg_verify import dpkg_verify

import scanner


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@pytest.mark.skipif(not os.path.exists("/var/lib/dpkg/status"), reason="not a dpkg system")
def test_live_root_matches_dpkg_verify() -> None:
    referee = {
        "/" + v.path.decode("utf-8", "backslashreplace")
        for v in dpkg_verify("/")
        if not v.is_config
    }
    report = scanner.scan_root("/", checks=["448"], all_files=True)
    ours = {finding.to_dict()["path"] for finding in report.findings if not finding.config}
    assert ours == referee
    assert report.stats.files_checked > 10_000
