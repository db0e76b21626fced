"""Runs `dpkg --verify` as the referee and parses what it reports."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pkgdb import RootFS


@dataclass(frozen=True)
class DpkgVerdict:
    path: bytes  # physical, root-relative (resolved through the root's symlinked dirs)
    flags: str  # "??5??????" or "missing"
    is_config: bool


def dpkg_verify(root: Path | str = "/") -> list[DpkgVerdict]:
    """Every line of `dpkg --verify` for `root`, with paths resolved as scan-root resolves them.

    dpkg prints `FLAGS A PATH` where FLAGS is 9 characters ("missing" padded) and A is `c` for
    conffiles (dpkg-query(1), --verify-format rpm). dpkg exits 0 even when it reports changes.
    """
    command = ["dpkg", "--verify"] if str(root) == "/" else ["dpkg", f"--root={root}", "--verify"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"dpkg --verify failed: {result.stderr.decode(errors='replace')}")
    verdicts = []
    with RootFS(str(root)) as fs:
        for line in result.stdout.splitlines():
            if len(line) < 13 or not line[12:].startswith(b"/"):
                continue
            flags = line[:9].decode().strip()
            is_config = line[10:11] == b"c"
            verdicts.append(DpkgVerdict(fs.resolve(line[12:]), flags, is_config))
    return verdicts
