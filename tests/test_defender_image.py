"""The defender's image (image/build-defender.sh): built without a Docker engine, clean by our
own scan (no 448), and its entrypoint runs the Cython core."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import rootcache

from scanner import scan_image

pytestmark = [pytest.mark.debootstrap, pytest.mark.root]
REPO = Path(__file__).resolve().parent.parent
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@pytest.fixture(scope="module")
def built() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root")
    missing = [tool for tool in ("debootstrap", "umoci", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"./install.sh --test installs {', '.join(missing)}")
    return rootcache.ensure_defender_image(REPO)


def test_our_own_scan_of_the_image_finds_no_altered_package_file(built: Path) -> None:
    report = scan_image(built / "scan-root-defender.tar")
    assert not [finding for finding in report.findings if finding.check == "448"]
    # Device nodes are not made from a layer (docs/images.md): said, and nothing else is open.
    assert all(problem.kind == "image" for problem in report.problems), report.problems[:5]
    assert report.complete
    packages = {summary.manager: summary.packages for summary in report.managers}
    assert packages.get("dpkg", 0) > 80  # debootstrap minbase and python3
    archive = (built / "scan-root-defender.tar").stat().st_size
    layers = sum(
        path.stat().st_size for path in (built / "oci" / "blobs").rglob("*") if path.is_file()
    )
    print(
        f"defender image: docker-archive {archive / 2**20:.0f} MiB, OCI layout {layers / 2**20:.0f} MiB"
    )


def test_the_entrypoint_runs_the_cython_core(built: Path, tmp_path: Path) -> None:
    rootfs = built / "rootfs"
    version = subprocess.run(
        [CHROOT, str(rootfs), "/usr/local/bin/scan-root", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    from scanner.version import __version__

    assert version.strip() == f"scan-root {__version__} (cython implementation)"
    # A defender cycle outside ECS, once, inside the image's root: its report is spooled.
    done = subprocess.run(
        [
            CHROOT,
            str(rootfs),
            "/usr/local/bin/scan-root",
            "defend",
            "--once",
            "--host-root",
            "/etc",
            "--spool",
            "/tmp/spool-test",
            "--state-dir",
            "/tmp/state-test",
            "--policy-cache",
            "/tmp/policy-test",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    try:
        assert done.returncode == 0, done.stderr
        [spooled] = (rootfs / "tmp" / "spool-test").glob("*-*.json")
        report = json.loads(spooled.read_bytes())
        assert report["scanner"]["implementation"] == "cython"
    finally:
        for name in ("spool-test", "state-test", "policy-test"):
            shutil.rmtree(rootfs / "tmp" / name, ignore_errors=True)


def test_the_image_config_names_the_entrypoint_and_root(built: Path) -> None:
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"docker-archive:{built / 'scan-root-defender.tar'}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    config = inspected["config"]
    assert config["Entrypoint"] == ["/usr/local/bin/scan-root"] and config["Cmd"] == ["defend"]
    assert config.get("User", "0") in ("0", "")
    assert config["Labels"]["org.opencontainers.image.licenses"] == "GPL-3.0-or-later"
