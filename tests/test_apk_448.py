"""Check 448 on apk roots: the real sample root read in place, and a root built from a real DB."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

import scanner

SAMPLE = "apk/rootfs/alpine-3.19.1-aarch64-minirootfs-sample"
REAL_DB = "apk/alpine-3.19.1-aarch64-minirootfs.installed"


def _q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def test_sample_root_in_place_matches_its_ground_truth(shared_fixtures: Path) -> None:
    """--all-files on the real sample root reports exactly the tsv's mismatch and absent rows."""
    expected: dict[str, str] = {}
    for line in (shared_fixtures / f"{SAMPLE}.expected-verify.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        _package, _version, path, _kind, _z, result = line.split("\t")
        if result != "ok":
            expected["/" + path] = {"mismatch": "config-modified", "absent": "missing"}[result]
    report = scanner.scan_root(shared_fixtures / SAMPLE, checks=["448"], all_files=True)
    digests = {f.to_dict()["path"]: f.kind for f in report.findings if f.kind != "mode-changed"}
    assert digests == expected
    # ../shared is laid out read-only (0444/0555), so recorded modes such as 0644 differ here.
    modes = {f.actual for f in report.findings if f.kind == "mode-changed"}
    assert modes <= {"0444", "0555"}
    assert [m.manager for m in report.managers] == ["apk"]
    assert report.complete


def _build_root(shared_fixtures: Path, root: Path) -> Path:
    """Lay out every file the real DB lists, with synthetic content, and record its Q1 digest.

    The package set, directories, names, modes and symlink entries are the real Alpine ones;
    only file contents are ours (the sample root lacks the executables), so the DB is rewritten
    with the digests of what we wrote, exactly as apk would have recorded them.
    """
    db = (shared_fixtures / REAL_DB).read_bytes()
    directory, current = b"", None
    for line in db.split(b"\n"):
        if line.startswith(b"F:"):
            directory = line[2:]
            (root / os.fsdecode(directory)).mkdir(parents=True, exist_ok=True)
        elif line.startswith(b"R:"):
            current = (directory + b"/" if directory else b"") + line[2:]
            full = root / os.fsdecode(current)
            full.write_bytes(b"\x7fELF synthetic " + current)
            full.chmod(0o644)  # apk's default when no a: line follows
        elif line.startswith(b"a:") and current is not None:
            mode = int(line.split(b":")[3], 8)
            full = root / os.fsdecode(current)
            if mode == 0o777:  # apk marks symlinks this way
                full.unlink()
                full.symlink_to("busybox-target")
            else:
                full.chmod(mode)
    (root / "lib/apk/db").mkdir(parents=True, exist_ok=True)
    (root / "lib/apk/db/installed").write_bytes(_rehash(root, db))
    return root


def _rehash(root: Path, db: bytes) -> bytes:
    """Recompute every Z: from what is on disk now (symlinks included)."""
    out, directory, current = [], b"", None
    for line in db.split(b"\n"):
        if line.startswith(b"F:"):
            directory = line[2:]
        elif line.startswith(b"R:"):
            current = (directory + b"/" if directory else b"") + line[2:]
        elif line.startswith(b"Z:") and current is not None:
            full = root / os.fsdecode(current)
            data = os.fsencode(os.readlink(full)) if full.is_symlink() else full.read_bytes()
            line = f"Z:{_q1(data)}".encode()
        out.append(line)
    return b"\n".join(out)


@pytest.fixture
def apk_root(shared_fixtures: Path, tmp_path: Path) -> Path:
    return _build_root(shared_fixtures, tmp_path / "root")


def test_built_root_is_clean(apk_root: Path) -> None:
    report = scanner.scan_root(apk_root, checks=["448"], all_files=True)
    assert report.findings == [] and report.complete
    assert report.managers[0].manager == "apk" and report.managers[0].packages == 15


def test_tampering_is_reported_exactly(apk_root: Path) -> None:
    busybox = apk_root / "bin/busybox"
    data = bytearray(busybox.read_bytes())
    data[5] ^= 1
    busybox.write_bytes(bytes(data))  # same size, one bit
    (apk_root / "sbin/apk").unlink()  # missing
    (apk_root / "usr/bin/ssl_client").unlink()
    (apk_root / "usr/bin/ssl_client").symlink_to("/tmp/x")  # replaced by a symlink
    (apk_root / "bin/sh").unlink()
    (apk_root / "bin/sh").symlink_to("/tmp/evil")  # a recorded symlink retargeted
    (apk_root / "usr/bin/scanelf").chmod(0o4755)  # setuid added
    report = scanner.scan_root(apk_root, checks=["448"])
    found = sorted((f.to_dict()["path"], f.kind) for f in report.findings)
    assert found == [
        ("/bin/busybox", "modified"),
        ("/bin/sh", "link-changed"),
        ("/sbin/apk", "missing"),
        ("/usr/bin/scanelf", "mode-changed"),
        ("/usr/bin/ssl_client", "replaced-by-symlink"),
    ]
