"""Checks 425 and 426 end to end on a real Debian root: planted keys, the reference miner test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from debroot import copy_root, debootstrap_root

import scanner

pytestmark = pytest.mark.debootstrap

TASK = (
    Path(__file__).resolve().parent.parent.parent / "shared/examples/fargate-task-definition.json"
)


def _keys(directory: Path) -> dict[str, tuple[str, bool]]:
    """Real keys made by real tools: file name -> (expected key_type, encrypted)."""
    directory.mkdir(parents=True)
    made: dict[str, tuple[str, bool]] = {}

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True)

    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
        "-out", str(directory / "server.key"))  # fmt: skip
    made["server.key"] = ("pkcs8", False)
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-aes256", "-pass", "pass:x", "-out", str(directory / "ec-encrypted.pem"))  # fmt: skip
    made["ec-encrypted.pem"] = ("pkcs8-encrypted", True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id_ed25519"))
    made["id_ed25519"] = ("openssh", False)
    return made


@pytest.fixture(scope="module")
def scanned(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, tuple[str, bool]], scanner.Report]:
    for tool in ("openssl", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    root = copy_root(debootstrap_root(), tmp_path_factory.mktemp("content") / "root")
    planted = _keys(root / "srv/app/keys")
    # The reference Fargate task: `cp /bin/sleep /tmp/xmrig` (see ../shared/examples).
    shutil.copy2(root / "usr/bin/sleep", root / "tmp/xmrig")
    report = scanner.scan_root(root, checks=["425", "426"])
    return root, planted, report


def test_reference_task_scenario_gives_exactly_one_426(
    scanned: tuple[Path, dict, scanner.Report],
) -> None:
    if TASK.exists():
        assert "/tmp/xmrig" in json.dumps(json.loads(TASK.read_text()))
    _root, _planted, report = scanned
    miners = [f for f in report.findings if f.check == "426"]
    assert [(f.to_dict()["path"], f.extra["signals"]) for f in miners] == [("/tmp/xmrig", ["name"])]


def test_planted_keys_found_with_type_and_vendored_keys_carry_their_package(
    scanned: tuple[Path, dict, scanner.Report],
) -> None:
    _root, planted, report = scanned
    keys = [f for f in report.findings if f.check == "425"]
    ours = {f.to_dict()["path"]: f for f in keys if not f.extra["vendored"]}
    assert set(ours) == {f"/srv/app/keys/{name}" for name in planted}
    for name, (_key_type, encrypted) in planted.items():
        finding = ours[f"/srv/app/keys/{name}"]
        assert finding.extra["encrypted"] is encrypted
        assert finding.extra["fingerprint"].startswith("sha256:")
    vendored = [f for f in keys if f.extra["vendored"]]
    for finding in vendored:
        assert finding.package is not None and finding.package.manager == "dpkg"
    # Debian's libgnutls30 carries complete self-test private keys inside the library.
    assert any(f.package and f.package.name == "libgnutls30" for f in vendored)


def test_no_key_material_in_any_output(scanned: tuple[Path, dict, scanner.Report]) -> None:
    root, planted, report = scanned
    text = report.to_json() + repr(report.findings)
    for name in planted:
        body = (root / "srv/app/keys" / name).read_text().splitlines()[1:-1]
        for line in body:
            if len(line) >= 16:
                assert line[:16] not in text
