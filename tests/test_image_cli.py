"""`scan-root image`: a docker-save tarball scanned end to end, with the image's own Env."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from imagebuilder import Delete, Put, build_layers, image_config, write_docker_save

from scanner import cli

SECRET = "ghp_" + "Zq9xW2" * 6  # a well-formed, fake GitHub token


@pytest.fixture
def image(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(root / "srv/server.key")],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.copy2("/bin/true", root / "usr/bin/tool")
    sleep = Path("/bin/sleep").read_bytes()
    layers = build_layers(
        root,
        [Put("tmp/xmrig", sleep, 0o755), Delete("usr/bin/tool")],
        tmp_path / "layers",
    )
    config = image_config(env=[f"GITHUB_TOKEN={SECRET}", "PATH=/usr/bin"])
    tarball = tmp_path / "image.tar"
    write_docker_save(tarball, layers, config, ["example/app:1.0"], compression="gzip")
    return tarball


def test_image_scan_reports_findings_and_the_image(
    image: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"  # a private $TMPDIR: other processes share /tmp and /dev/shm
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it chose
    status = cli.main(["image", str(image), "--format", "json", "--quiet", "--no-process-env"])
    out = capsys.readouterr().out
    assert status == cli.EXIT_FINDINGS
    assert SECRET not in out and SECRET[4:12] not in out  # never print the value
    report = json.loads(out)
    assert report["target"]["kind"] == "image"
    assert report["target"]["image"]["name"] == "example/app:1.0"
    assert report["target"]["image"]["id"].startswith("sha256:")
    found = {(f["check"], f.get("path")) for f in report["findings"]}
    assert ("425", "/srv/server.key") in found
    assert ("426", "/tmp/xmrig") in found
    assert ("424", None) in found
    assert not any(f.get("path") == "/usr/bin/tool" for f in report["findings"])  # whited out
    env = next(f for f in report["findings"] if f["check"] == "424")
    assert env["source"] == "image-config:example/app:1.0"
    assert not list(scratch.iterdir()), "the image's temp dir must be removed"


def test_not_an_image_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tarball")
    assert cli.main(["image", str(junk)]) == cli.EXIT_USAGE
    assert "scan-root:" in capsys.readouterr().err
