"""`scan-root image`: a docker-save tarball scanned end to end, with the image's own Env."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from imagebuilder import (
    Delete,
    Put,
    build_layers,
    image_config,
    write_docker_save,
    write_oci_layout,
)

from scanner import cli
from scanner.inventory import list_packages

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


STATUS = b"""Package: hello
Status: install ok installed
Version: 2.10-3
Architecture: amd64

"""


@pytest.mark.parametrize("kind", ["docker-save", "oci-layout", "tagged"])
def test_packages_of_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`scan-root packages IMAGE` lists the image's packages (it listed nothing, exit 0)."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_bytes(STATUS)
    (root / "var/lib/dpkg/info/hello.md5sums").write_text(
        "d41d8cd98f00b204e9800998ecf8427e  usr/bin/hello\n"
    )
    layers = build_layers(root, [Put("usr/bin/hello", b"")], tmp_path / "layers")
    if kind == "docker-save":
        path = tmp_path / "image.tar"
        write_docker_save(path, layers, image_config(), ["example/hello:2"])
        argument = str(path)
    else:
        path = tmp_path / "layout"
        write_oci_layout(path, layers, image_config(), ref_name="2")
        argument = f"{path}:2" if kind == "tagged" else str(path)
    assert cli.main(["packages", argument, "--format", "json"]) == cli.EXIT_CLEAN
    listed = json.loads(capsys.readouterr().out)
    assert [(p["manager"], p["name"], p["version"], p["files"]) for p in listed["packages"]] == [
        ("dpkg", "hello", "2.10-3", 1)
    ]
    assert listed["problems"] == [] and listed["root"] == argument
    assert list_packages(path, tag="2" if kind != "docker-save" else None).packages
    assert cli.main(["packages", str(path), "--tag", "nope"]) == cli.EXIT_USAGE
    assert "no image tagged 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["oci-layout", "docker-save-dir", "archive"])
def test_an_image_given_as_a_root_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`scan-root DIR` on an image scanned its blobs as a root: clean, exit 0, nothing seen."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    layers = build_layers(root, [], tmp_path / "layers")
    if kind == "oci-layout":
        path = tmp_path / "layout"
        write_oci_layout(path, layers, image_config())
    else:
        path = tmp_path / "image.tar"
        write_docker_save(path, layers, image_config(), ["example/app:1"])
        if kind == "docker-save-dir":
            with tarfile.open(path) as archive:
                archive.extractall(tmp_path / "save", filter="tar")
            path = tmp_path / "save"
    assert cli.main([str(path), "--quiet", "--no-process-env"]) == cli.EXIT_USAGE
    assert f"did you mean `scan-root image {path}`?" in capsys.readouterr().err


def test_a_root_with_its_own_manifest_json_is_still_a_root(tmp_path: Path) -> None:
    """A web app's /manifest.json (an object) does not make a root an image."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "manifest.json").write_text('{"name": "app", "icons": []}')
    assert cli.main([str(root), "--quiet", "--no-process-env", "--checks", "425"]) in (0, 3)
