"""Builds and installs real rpm packages with Debian's rpmbuild/rpm, for tests that need them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RPM_DB = ["--dbpath", "/var/lib/rpm"]  # Debian's rpm defaults to ~/.rpmdb


def build_rpm(spec: str, top: Path) -> Path:
    """`rpmbuild -bb` of `spec` in the scratch `_topdir` `top`; the one x86_64 package it made."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed (./install.sh --test installs rpm)")
    (top / "package.spec").write_text(spec)
    subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", "__strip /bin/true",
         "--define", "debug_package %{nil}", str(top / "package.spec")],
        check=True, capture_output=True,
    )  # fmt: skip
    [rpm] = (top / "RPMS/x86_64").glob("*.rpm")
    return rpm


def install_rpm(root: Path, rpm: Path, *options: str) -> None:
    """A fresh rpmdb in `root` with `rpm` installed into it (no scripts, no dependencies)."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["rpm", "--root", str(root), *RPM_DB, "--initdb"], check=True, capture_output=True
    )
    subprocess.run(
        ["rpm", "--root", str(root), *RPM_DB, "-i", "--nodeps", "--noscripts", *options, str(rpm)],
        check=True, capture_output=True,
    )  # fmt: skip
