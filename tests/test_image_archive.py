"""Hostile outer archives: in-archive link loops, compressed-archive bombs: clear errors, fast."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from imagebuilder import image_config

from scanner import cli
from scanner.targets.image import ImageError, ImageLimits, open_image

_MiB = 1 << 20
_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, 9, mtime=0),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def _layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _member(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def _save_members(layer_members: list[tarfile.TarInfo], layer_data: dict[str, bytes]) -> bytes:
    """A docker save archive, without its end blocks, whose manifest names `l/layer.tar`."""
    config_document = image_config()
    config_document["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]  # one layer, one diff_id
    config = json.dumps(config_document).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["t:1"], "Layers": ["l/layer.tar"]}])
    out = []
    for name, data in (("manifest.json", manifest.encode()), ("c.json", config)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.append(_member(info, data))
    for info in layer_members:
        out.append(_member(info, layer_data.get(info.name, b"")))
    return b"".join(out)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("links", "match"),
    [
        ([("l/layer.tar", "layer.tar")], "link loop"),  # a symlink to itself
        ([("l/layer.tar", "../m/layer.tar"), ("m/layer.tar", "../l/layer.tar")], "link loop"),
        ([("l/layer.tar", "l/layer.tar", tarfile.LNKTYPE)], "link loop"),
        ([("l/layer.tar", "../../etc/passwd")], "out of the archive"),
    ],
)
def test_a_layer_link_loop_is_a_clear_error(
    tmp_path: Path, links: list[tuple[str, ...]], match: str
) -> None:
    members = [
        _link(name, target, *(kind.encode() if isinstance(kind, str) else kind for kind in rest))
        for name, target, *rest in links
    ]
    archive = tmp_path / "loop.tar"
    archive.write_bytes(_save_members(members, {}) + bytes(1024))
    with pytest.raises(ImageError, match=match), open_image(archive, workdir=str(tmp_path)):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["loop.tar"]


def test_a_layer_link_is_followed(tmp_path: Path) -> None:
    """docker save links identical layers: a chain of links still reaches the layer."""
    data = _layer({"etc/hello": b"hi\n"})
    regular = tarfile.TarInfo("z/layer.tar")
    regular.size = len(data)
    members = [
        regular,
        _link("m/layer.tar", "../z/layer.tar"),
        _link("l/layer.tar", "../m/layer.tar"),
    ]
    archive = tmp_path / "linked.tar"
    archive.write_bytes(_save_members(members, {"z/layer.tar": data}) + bytes(1024))
    with open_image(archive, workdir=str(tmp_path), place=False) as image:
        assert Path(image.root, "etc/hello").read_bytes() == b"hi\n"


def test_a_layer_link_loop_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "loop.tar"
    archive.write_bytes(_save_members([_link("l/layer.tar", "layer.tar")], {}) + bytes(1024))
    assert cli.main(["image", str(archive), "--quiet", "--no-process-env"]) == 2
    assert "link loop" in capsys.readouterr().err


def _bomb(kind: str, mebibytes: int, *, head: bytes | None = None) -> bytes:
    """A compressed docker save archive whose last member is `mebibytes` MiB of zeros, made of
    concatenated compressed streams (gzip, bzip2 and xz readers all read on across them): one
    MiB of zeros compressed once and repeated, so a 64 GiB bomb is a few MB made in no time."""
    compress = _COMPRESSORS[kind]
    layer = _layer({"etc/hello": b"hi\n"})
    regular = tarfile.TarInfo("l/layer.tar")
    regular.size = len(layer)
    members = _save_members([regular], {"l/layer.tar": layer})
    padding = tarfile.TarInfo("padding")
    padding.size = mebibytes * _MiB
    before = head if head is not None else members + padding.tobuf(tarfile.GNU_FORMAT)
    return compress(before) + compress(bytes(_MiB)) * mebibytes + compress(bytes(1024))


@pytest.mark.parametrize("kind", sorted(_COMPRESSORS))
def test_a_compressed_archive_bomb_is_refused_quickly(tmp_path: Path, kind: str) -> None:
    """64 GiB of zeros from a few MB: refused once past the floor (16 MiB here), in well under a
    second; before, tarfile inflated all of it (a 1 TiB bzip2 bomb ran for hours). Gzip's best,
    ~1000:1, is under the layers' ratio, not under an archive's (100:1)."""
    archive = tmp_path / f"bomb.tar.{kind}"
    archive.write_bytes(_bomb(kind, 64 << 10))
    limits = ImageLimits(ratio_floor=16 * _MiB)
    started = time.monotonic()
    with pytest.raises(ImageError, match=r"decompression bomb: .* \(limit 100:1\)"):
        with open_image(archive, limits=limits, workdir=str(tmp_path)):
            pass
    assert time.monotonic() - started < 5
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]


@pytest.mark.parametrize("kind", sorted(_COMPRESSORS))
def test_a_compressed_archive_is_bounded_by_the_budget(tmp_path: Path, kind: str) -> None:
    """Under the ratio an archive still cannot inflate past the budget for what the image
    extracts (64 GiB by default)."""
    archive = tmp_path / f"big.tar.{kind}"
    archive.write_bytes(_bomb(kind, 64))
    limits = ImageLimits(max_total_bytes=32 * _MiB, max_archive_ratio=1 << 30)
    with pytest.raises(ImageError, match=r"inflates to more than 33554432 bytes \(limit\)"):
        with open_image(archive, limits=limits, workdir=str(tmp_path)):
            pass


@pytest.mark.parametrize("kind", sorted(_COMPRESSORS))
def test_a_compressed_archive_within_limits_is_scanned(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / f"ok.tar.{kind}"
    archive.write_bytes(_bomb(kind, 4))  # 4 MiB of padding: under the default floor
    with open_image(archive, workdir=str(tmp_path)) as image:
        assert Path(image.root, "etc/hello").read_bytes() == b"hi\n"


def test_a_compressed_archive_bomb_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default limits through the CLI: a 2 GiB gzip bomb (2 MB) stops past the 1 GiB floor."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(_bomb("gzip", 2 << 10))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    started = time.monotonic()
    assert cli.main(["image", str(archive), "--quiet", "--no-process-env"]) == 2
    assert "decompression bomb" in capsys.readouterr().err
    assert time.monotonic() - started < 15


def test_a_corrupt_compressed_archive_is_a_clear_error(tmp_path: Path) -> None:
    for kind, compress in _COMPRESSORS.items():
        data = bytearray(compress(_save_members([], {}) + bytes(1024)))
        archive = tmp_path / f"bad.tar.{kind}"
        archive.write_bytes(bytes(data[: len(data) // 2]))
        with pytest.raises(ImageError, match="corrupt or truncated|not a readable"):
            with open_image(archive, workdir=str(tmp_path)):
                pass


def test_a_zstd_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar.zst"
    archive.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))
    with pytest.raises(ImageError, match="zstd-compressed archive is not supported"):
        with open_image(archive, workdir=str(tmp_path)):
            pass


def test_members_read_out_of_order_are_bounded_in_all(tmp_path: Path) -> None:
    """Layers listed in the reverse of their order in a compressed archive: each read inflates
    it again from the start. One pass stays under the budget (8 MiB); all of them may not."""
    members, names = [], []
    for number in range(4):
        layer = _layer({f"f{number}": b"x"})
        info = tarfile.TarInfo(f"l{number}/layer.tar")
        info.size = len(layer)
        members.append(_member(info, layer))
        padding = tarfile.TarInfo(f"pad{number}")
        padding.size = _MiB
        members.append(_member(padding, os.urandom(_MiB)))  # incompressible: under the ratio
        names.append(info.name)
    config_document = image_config()
    config_document["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64] * len(names)
    config = json.dumps(config_document).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["t:1"], "Layers": names[::-1]}])
    head = [
        _member(_info("manifest.json", len(manifest)), manifest.encode()),
        _member(_info("c.json", len(config)), config),
    ]
    archive = tmp_path / "reversed.tar.gz"
    archive.write_bytes(gzip.compress(b"".join(head + members) + bytes(1024), 1))
    with open_image(archive, workdir=str(tmp_path), limits=ImageLimits(max_total_bytes=32 * _MiB)):
        pass  # within a budget: scanned, out of order or not
    limits = ImageLimits(max_total_bytes=8 * _MiB)
    with pytest.raises(ImageError, match="inflated to more than 8388608 bytes in all"):
        with open_image(archive, workdir=str(tmp_path), limits=limits):
            pass


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_a_symlink_without_a_target_is_not_extracted(
    tmp_path: Path, scan_impl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """symlink(2) refuses an empty target: such a member was an OSError (exit 5, found by the
    fuzz suite); it is not extracted, and the report says so (incomplete, exit 3)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(_link("etc/empty", ""))
        hello = tarfile.TarInfo("etc/hello")
        hello.size = 3
        archive.addfile(hello, io.BytesIO(b"hi\n"))
    data = layer.getvalue()
    regular = tarfile.TarInfo("l/layer.tar")
    regular.size = len(data)
    archive_path = tmp_path / "empty-link.tar"
    archive_path.write_bytes(_save_members([regular], {"l/layer.tar": data}) + bytes(1024))
    argv = ["image", str(archive_path), "--quiet", "--no-process-env", "--format", "json"]
    assert cli.main(argv) == 3
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any("'etc/empty' has no target" in problem["message"] for problem in problems)
