"""Image input: a real debootstrap root in every image format scans like the same root unpacked."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from debroot import copy_root, debootstrap_root
from imagebuilder import (
    Delete,
    Opaque,
    Put,
    apply_ops,
    build_layers,
    image_config,
    write_docker_save,
    write_oci_archive,
    write_oci_layout,
)

import _native
import scanner
from _native import Digest, Extents, HashStatus
from scanner.checks.custom.runner import Passed, run_custom_check
from scanner.policy.model import CustomCheckSpec, Policy
from scanner.report import Severity
from scanner.targets import image as image_module
from scanner.targets.image import ImageError, open_image

pytestmark = pytest.mark.debootstrap

CHECKS = ["448", "425", "426"]
TAGS = ["example.com/app:1.0", "example.com/app:latest"]
ENV = ["PATH=/usr/local/bin:/usr/bin", "TOKEN=a=b=c", "EMPTY="]
FORMATS = [
    "oci-dir",
    "oci-dir-none",
    "oci-archive",
    "docker-gzip",
    "docker-gzip-zlib",  # the standard library's gzip instead of ISA-L's (SCANNER_NO_ISAL=1)
    "docker-none",
    "docker-zstd",
]


def _findings(root: str | Path, extents: Extents | None = None) -> set[tuple[str, str, bytes]]:
    report = scanner.scan_root(
        root, checks=CHECKS, all_files=True, process_env=False, extents=extents
    )
    return {(f.check, f.kind, f.path) for f in report.findings}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = debootstrap_root()
    work = tmp_path_factory.mktemp("image")
    key = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519"], check=True, capture_output=True
    ).stdout
    ops = [
        Put("/usr/bin/ls", (source / "usr/bin/ls").read_bytes() + b"\0tampered"),
        Delete("/usr/bin/head"),
        Put("/tmp/xmrig", (source / "usr/bin/sleep").read_bytes()),
        Put("/root/.ssh/id_ed25519", key, 0o600),
        Opaque("/usr/share/doc/bash"),
    ]
    layers = build_layers(source, ops, work / "layers")
    unpacked = copy_root(source, work / "unpacked")
    apply_ops(unpacked, ops)
    return {"work": work, "layers": layers, "expected": _findings(unpacked)}


def _write(kind: str, fixture: dict[str, Any]) -> tuple[Path, str | None, str | None]:
    """(path, image id or None, manifest digest or None) of the image in format `kind`."""
    work, layers = fixture["work"], fixture["layers"]
    config = image_config(env=ENV, user="app", labels={"org.example": "yes"})
    if kind.startswith("oci-dir"):
        compression = "none" if kind == "oci-dir-none" else "gzip"
        digest = write_oci_layout(
            work / kind, layers, config, ref_name=TAGS[0], compression=compression
        )
        return work / kind, None, digest
    if kind == "oci-archive":
        digest = write_oci_archive(work / f"{kind}.tar", layers, config, ref_name=TAGS[0])
        return work / f"{kind}.tar", None, digest
    compression = kind.split("-")[1]
    if compression == "zstd":
        pytest.importorskip("zstandard")
    image_id = write_docker_save(work / f"{kind}.tar", layers, config, TAGS, compression)
    return work / f"{kind}.tar", image_id, None


@pytest.mark.parametrize("kind", FORMATS)
def test_image_scans_like_unpacked_root(
    kind: str, fixture: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "docker-gzip":
        pytest.importorskip("isal", reason="isal (ISA-L gzip) is not installed")
    elif kind == "docker-gzip-zlib":
        monkeypatch.setenv("SCANNER_NO_ISAL", "1")
    path, image_id, digest = _write(kind, fixture)
    try:
        with open_image(path) as image:
            root = image.root
            assert (os.stat(root).st_mode & 0o777) == 0o700
            found = _findings(root, image.extents)
            placed = image.extents is not None
    finally:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not os.path.exists(root)
    expected = fixture["expected"]
    assert found == expected
    # the layer-2 changes are really seen
    assert ("448", "modified", b"usr/bin/ls") in found
    assert any(c == "448" and p == b"usr/bin/head" for c, _k, p in found)
    assert any(c == "425" and p == b"root/.ssh/id_ed25519" for c, _k, p in found)
    assert any(c == "426" and p == b"tmp/xmrig" for c, _k, p in found)
    assert image.env == (("PATH", "/usr/local/bin:/usr/bin"), ("TOKEN", "a=b=c"), ("EMPTY", ""))
    assert image.user == "app"
    assert dict(image.labels) == {"org.example": "yes"}
    assert image.image_id.startswith("sha256:") and len(image.image_id) == 71
    if kind.startswith("docker"):
        assert image.image_id == image_id
        assert image.name == TAGS[0] and image.tags == tuple(TAGS)
        assert image.digest is None
    else:
        assert image.digest == digest
        assert image.name == TAGS[0] and image.tags == (TAGS[0],)
    assert any("device node" in problem for problem in image.problems)  # debootstrap's /dev
    # Uncompressed layers are read in place: their big files were never copied.
    assert placed == (kind in ("docker-none", "oci-dir-none"))


def _regular_files(root: str) -> list[bytes]:
    return [
        os.path.relpath(os.path.join(directory, name), root).encode("utf-8", "surrogateescape")
        for directory, _, names in os.walk(root)
        for name in names
        if os.path.isfile(os.path.join(directory, name))
        and not os.path.islink(os.path.join(directory, name))
    ]


@pytest.mark.parametrize("kind", ["docker-none", "oci-dir-none"])
def test_placed_files_hash_as_copied_ones(kind: str, fixture: dict[str, Any]) -> None:
    """Every file of the merged image, read through its extent or copied whole: same bytes.
    Layer 2 replaces a placed file of layer 1 (usr/bin/ls) and whites out another."""
    path, _, _ = _write(kind, fixture)
    wanted = Digest.SHA256 | Digest.MD5 | Digest.XXH3
    try:
        runs = []
        for place in (True, False):
            with open_image(path, place=place) as image:
                files = sorted(_regular_files(image.root))
                fd = os.open(image.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    results = _native.hash_files(
                        fd, [(name, wanted) for name in files], extents=image.extents
                    )
                finally:
                    os.close(fd)
                if place:
                    assert image.extents is not None
                    sparse = {
                        name
                        for name in files
                        if os.lstat(os.path.join(image.root, os.fsdecode(name))).st_blocks == 0
                        and os.path.getsize(os.path.join(image.root, os.fsdecode(name)))
                        > image_module.PLACE_OVER
                    }
                    assert len(sparse) >= 100 and b"usr/bin/ls" in sparse
                    assert not any(name.startswith(b"var/lib/dpkg/") for name in sparse)
                else:
                    assert image.extents is None
            runs.append([(r.path, r.status, r.sha256, r.md5, r.xxh3, r.size) for r in results])
    finally:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert runs[0] == runs[1]
    assert all(status is HashStatus.OK for _, status, *_ in runs[0])


@pytest.mark.root
def test_a_custom_check_reads_every_file_whole(fixture: dict[str, Any]) -> None:
    """A custom check's script reads the tree itself, so scan_image then copies every file: the
    script finds /usr/bin/ls's ELF header. In a tree with placed files it would read zeros."""
    path, _, _ = _write("docker-none", fixture)
    check = CustomCheckSpec(
        id="9001",
        name="ls is an ELF file",
        severity=Severity.HIGH,
        description="reads a big file of the image",
        script=b"#!/bin/sh\ngrep -q ELF /usr/bin/ls\n",  # (head is whited out)
        timeout=20.0,
    )
    policy = Policy(version=1, collections={}, rules=(), custom_checks=(check,))
    try:
        report = scanner.scan_image(path, checks=["9001"], process_env=False, policy=policy)
        with open_image(path) as image:  # placed: what the script must never be given
            assert image.extents is not None
            in_place = run_custom_check(check, image.root)
    finally:
        path.unlink()
    assert report.complete and not report.findings, (report.findings, report.problems)
    assert not isinstance(in_place, Passed)  # zeros: even the image's /bin/sh cannot run


def test_temp_dir_removed_after_exception(fixture: dict[str, Any]) -> None:
    path, _, _ = _write("docker-none", fixture)
    with pytest.raises(RuntimeError), open_image(path) as image:
        root = image.root
        assert os.path.isfile(os.path.join(root, "usr/bin/ls"))
        raise RuntimeError("boom")
    assert not os.path.exists(root)
    path.unlink()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_layouts_pass_skopeo_inspect(tmp_path: Path) -> None:
    """The builder's layouts are real ones: skopeo reads them (a small root keeps this fast)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("x\n")
    layers = build_layers(root, [Delete("/etc/hostname")], tmp_path / "layers")
    config = image_config(env=ENV)
    digest = write_oci_layout(tmp_path / "oci", layers, config)
    write_docker_save(tmp_path / "save.tar", layers, config, TAGS, "gzip")
    for reference, want in (
        (f"oci:{tmp_path / 'oci'}", digest),
        (f"docker-archive:{tmp_path / 'save.tar'}", None),
    ):
        out = subprocess.run(
            ["skopeo", "inspect", reference], check=True, capture_output=True, text=True
        )
        info = json.loads(out.stdout)
        assert info["Env"] == ENV and len(info["Layers"]) == 2
        if want is not None:
            assert info["Digest"] == want


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "work").mkdir()
    with (
        pytest.raises(ImageError, match="not an image"),
        open_image(tmp_path / "empty", workdir=str(tmp_path / "work")),
    ):
        pass
    assert not list((tmp_path / "work").iterdir())


# -- where the layers are extracted ----------------------------------------------------------


def _small_image(tmp_path: Path, payload: bytes, compression: str = "gzip") -> Path:
    layer_tar = tmp_path / "l.tar"
    with tarfile.open(layer_tar, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("big")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    archive_path = tmp_path / "image.tar"
    write_docker_save(archive_path, [layer_tar], image_config(), ["s:1"], compression=compression)
    return archive_path


def test_scratch_is_memory_unless_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _small_image(tmp_path, b"x" * 1000)
    monkeypatch.delenv("TMPDIR", raising=False)
    seen = []
    with open_image(path) as image:
        seen.append(os.path.dirname(image.root))
    if os.access("/dev/shm", os.W_OK):
        assert seen == ["/dev/shm"]
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with open_image(path) as image:
        assert os.path.dirname(image.root) == str(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("scan-root-image-")]


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="no writable /dev/shm here")
def test_placed_layers_need_little_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MB uncompressed layer: placed, its tree takes ~1/16 of it and goes to memory; copied,
    it would take all of it, over a third of the 3 MB this test leaves available."""
    path = _small_image(tmp_path, os.urandom(4 << 20), compression="none")
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(image_module, "_memory_available", lambda: 3 << 20)
    with open_image(path) as image:
        assert os.path.dirname(image.root) == "/dev/shm"
    with open_image(path, place=False) as image:
        assert os.path.dirname(image.root) == tempfile.gettempdir()


@pytest.mark.root
def test_full_memory_filesystem_falls_back_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, disk = tmp_path / "small", tmp_path / "disk"
    small.mkdir()
    disk.mkdir()
    # 2 MiB of zeros gzip to ~2 KiB: the size guess says it fits in 1 MiB; it does not.
    path = _small_image(tmp_path, bytes(2 << 20))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        monkeypatch.delenv("TMPDIR", raising=False)
        monkeypatch.setattr(image_module, "_MEMORY_DIR", str(small))
        monkeypatch.setattr(tempfile, "tempdir", str(disk))
        with open_image(path) as image:
            assert os.path.dirname(image.root) == str(disk)
            assert os.path.getsize(os.path.join(image.root, "big")) == 2 << 20
        assert not list(small.iterdir()) and not list(disk.iterdir())
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_an_image_file_changed_during_the_scan_is_not_a_verified_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    """Placed files are read from the archive during the scan, after its digests were checked:
    if the archive changes meanwhile, the report says so and is not complete (exit 3)."""
    path = _small_image(tmp_path, os.urandom(100_000), compression=compression)
    report = scanner.scan_image(path, checks=["426"], process_env=False)
    assert report.complete and not [p for p in report.problems if p.kind == "image-changed"]

    real = scanner.scan._scan

    def scan_then_touch(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        with open(path, "ab") as archive:  # someone appends to the archive mid-scan
            archive.write(bytes(512))
        return result

    monkeypatch.setattr(scanner.scan, "_scan", scan_then_touch)
    report = scanner.scan_image(path, checks=["426"], process_env=False)
    (problem,) = [p for p in report.problems if p.kind == "image-changed"]
    assert "changed while it was scanned" in problem.message
    assert not report.complete
