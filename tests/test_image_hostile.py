"""Hostile image archives: each gives a clear ImageError or problem, nothing lands outside the temp dir."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from imagebuilder import image_config, write_docker_save, write_oci_layout

import _native
from scanner.errors import ScannerError
from scanner.targets import _tar
from scanner.targets.image import Image, ImageError, ImageLimits, open_image


def content(image: Image, name: str) -> bytes:
    """A file's bytes as the scan reads them: from its extent in the layer when it was placed
    there (an uncompressed layer's files are left sparse, open_image's `place`)."""
    path = Path(image.root, name)
    st = path.lstat()
    extents = image.extents
    placed = None
    if extents is not None and st.st_dev == extents.dev:
        placed = extents.by_inode.get(st.st_ino)
    if placed is None:
        return path.read_bytes()
    fd, offset, length = placed
    assert length == st.st_size
    return os.pread(fd, length, offset)


def member(name: str, data: bytes = b"x", **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if fields.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def layer(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_text("keep me\n")
    work = tmp_path / "work"
    work.mkdir()
    return {"tmp": tmp_path, "canary": canary, "work": work}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() if p.is_file() else b"" for p in sorted(directory.rglob("*"))}


def scan(
    env: dict[str, Path],
    blobs: list[bytes],
    *,
    limits: ImageLimits | None = None,
    check: Callable[[Image], None] | None = None,
) -> Image:
    """Write `blobs` as the layers of a docker save tarball, open it, assert the invariants."""
    paths = []
    for number, blob in enumerate(blobs):
        path = env["tmp"] / f"layer{number}"
        path.write_bytes(blob)
        paths.append(path)
    archive = env["tmp"] / "image.tar"
    write_docker_save(archive, paths, image_config(), ["hostile:1"], "none")
    before = snapshot(env["canary"])
    try:
        with open_image(archive, limits=limits or ImageLimits(), workdir=str(env["work"])) as image:
            if check is not None:
                check(image)
    finally:
        assert snapshot(env["canary"]) == before
        assert not (env["canary"] / "pwned").exists()
        assert not list(env["work"].iterdir()), "the temp dir must always be removed"
    return image


def test_dotdot_refused(env: dict[str, Path]) -> None:
    with pytest.raises(ImageError, match="path traversal"):
        scan(env, [layer(member("../canary/pwned"))])
    with pytest.raises(ImageError, match="path traversal"):
        scan(env, [layer(member("usr/../../canary/pwned"))])


def test_absolute_names_stay_inside(env: dict[str, Path]) -> None:
    name = f"{env['canary']}/pwned"

    def inside(image: Image) -> None:
        assert content(image, name.lstrip("/")) == b"x"

    image = scan(env, [layer(member(name))], check=inside)
    assert any("absolute" in problem for problem in image.problems)


def test_never_extracts_through_a_symlink(env: dict[str, Path]) -> None:
    link = member("a", type=tarfile.SYMTYPE, linkname=str(env["canary"]))
    with pytest.raises(ImageError, match="'a' is a symlink.*refusing"):
        scan(env, [layer(link), layer(member("a/pwned"))])
    with pytest.raises(ImageError, match="refusing"):
        scan(env, [layer(link, member("a/pwned"))])  # same layer
    relative = member("b", type=tarfile.SYMTYPE, linkname="../canary")
    with pytest.raises(ImageError, match="refusing"):
        scan(env, [layer(relative), layer(member("b/pwned"))])


def test_whiteouts_never_delete_through_a_symlink(env: dict[str, Path]) -> None:
    link = member("a", type=tarfile.SYMTYPE, linkname=str(env["canary"]))
    with pytest.raises(ImageError, match="refusing"):
        scan(env, [layer(link), layer(member("a/.wh.file", b""))])
    with pytest.raises(ImageError, match="refusing"):
        scan(env, [layer(link), layer(member("a/.wh..wh..opq", b""))])


def test_symlinks_out_of_the_root_are_data(env: dict[str, Path]) -> None:
    def created(image: Image) -> None:
        assert os.readlink(os.path.join(image.root, "etc-link")) == str(env["canary"])

    image = scan(
        env,
        [layer(member("etc-link", type=tarfile.SYMTYPE, linkname=str(env["canary"])))],
        check=created,
    )
    assert image.problems == ()


def test_hard_links_outside_or_missing_refused(env: dict[str, Path]) -> None:
    with pytest.raises(ImageError, match="path traversal"):
        scan(env, [layer(member("h", type=tarfile.LNKTYPE, linkname="../canary/file"))])
    with pytest.raises(ImageError, match="target not extracted"):
        scan(env, [layer(member("h", type=tarfile.LNKTYPE, linkname=str(env["canary"] / "file")))])
    with pytest.raises(ImageError, match="target not extracted"):
        scan(env, [layer(member("h", type=tarfile.LNKTYPE, linkname="later"), member("later"))])
    link = member("a", type=tarfile.SYMTYPE, linkname=str(env["canary"]))
    with pytest.raises(ImageError, match="refusing"):
        scan(env, [layer(link, member("h", type=tarfile.LNKTYPE, linkname="a/file"))])


def test_hard_link_inside_works(env: dict[str, Path]) -> None:
    def linked(image: Image) -> None:
        assert os.stat(os.path.join(image.root, "f")).st_nlink == 2

    scan(env, [layer(member("f"), member("g", type=tarfile.LNKTYPE, linkname="f"))], check=linked)


def test_devices_not_created_fifos_made(env: dict[str, Path]) -> None:
    def fifo_only(image: Image) -> None:
        assert os.listdir(image.root) == ["fifo"]
        assert stat.S_ISFIFO(os.lstat(os.path.join(image.root, "fifo")).st_mode)

    image = scan(
        env,
        [
            layer(
                member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
                member("sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
                member("fifo", type=tarfile.FIFOTYPE),
            )
        ],
        check=fifo_only,
    )
    assert sum("device node not created" in p for p in image.problems) == 2
    assert not image.unextracted


def test_setuid_kept_in_a_private_root(env: dict[str, Path]) -> None:
    def modes(image: Image) -> None:
        assert os.stat(os.path.join(image.root, "su")).st_mode & 0o7777 == 0o4755
        assert os.stat(image.root).st_mode & 0o777 == 0o700  # nobody else reaches it

    scan(env, [layer(member("su", mode=0o4755))], check=modes)


def test_duplicates_last_wins(env: dict[str, Path]) -> None:
    def last(image: Image) -> None:
        assert content(image, "f") == b"second"

    image = scan(env, [layer(member("f", b"first"), member("f", b"second"))], check=last)
    assert any("duplicate entry 'f'" in problem for problem in image.problems)


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (ImageLimits(max_entries=10), "more than 10 entries"),
        (ImageLimits(max_total_bytes=1000), "more than 1000 bytes"),
        (ImageLimits(max_member_bytes=100), "limit 100"),
    ],
)
def test_size_and_entry_limits(env: dict[str, Path], limits: ImageLimits, match: str) -> None:
    blob = layer(*(member(f"f{i}", b"y" * 200) for i in range(20)))
    with pytest.raises(ImageError, match=match):
        scan(env, [blob], limits=limits)


@pytest.fixture(params=["isal", "zlib"])
def gzip_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each gzip test on both decoders: ISA-L's (the optional isal package) and zlib's."""
    if request.param == "zlib":
        monkeypatch.setenv("SCANNER_NO_ISAL", "1")
    else:
        pytest.importorskip("isal", reason="isal (ISA-L gzip) is not installed")
    return str(request.param)


def test_compression_ratio_bomb(env: dict[str, Path], gzip_decoder: str) -> None:
    blob = gzip.compress(layer(member("zeros", bytes(16 << 20))), compresslevel=9)
    with pytest.raises(ImageError, match="decompression bomb"):
        scan(env, [blob], limits=ImageLimits(max_ratio=100, ratio_floor=1 << 20))


def test_truncated_and_corrupt_gzip(env: dict[str, Path], gzip_decoder: str) -> None:
    blob = gzip.compress(layer(*(member(f"f{i}", os.urandom(4096)) for i in range(20))))
    with pytest.raises(ImageError, match=r"layer 1 .*corrupt or truncated gzip"):
        scan(env, [blob[: len(blob) // 2]])
    corrupt = bytearray(blob)
    corrupt[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    with pytest.raises(ImageError, match=r"layer 1 .*(corrupt or truncated gzip|not a valid tar)"):
        scan(env, [bytes(corrupt)])


def test_garbage_layer(env: dict[str, Path]) -> None:
    with pytest.raises(ImageError, match="layer 1"):
        scan(env, [b"this is not a tar" * 100])


def test_image_error_is_a_scanner_error() -> None:
    assert issubclass(ImageError, ScannerError)


def test_oci_digest_cannot_traverse(env: dict[str, Path]) -> None:
    layout = env["tmp"] / "oci"
    (env["tmp"] / "l.tar").write_bytes(layer(member("f")))
    write_oci_layout(layout, [env["tmp"] / "l.tar"], image_config())
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../canary/file"
    (layout / "index.json").write_text(json.dumps(index))
    with (
        pytest.raises(ImageError, match="invalid or missing digest"),
        open_image(layout, workdir=str(env["work"])),
    ):
        pass
    assert not list(env["work"].iterdir())


def test_oci_layer_digest_verified(env: dict[str, Path]) -> None:
    layout = env["tmp"] / "oci"
    (env["tmp"] / "l.tar").write_bytes(layer(member("f")))
    write_oci_layout(layout, [env["tmp"] / "l.tar"], image_config(), compression="none")
    manifest_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest[7:]).read_text())
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    blob.write_bytes(layer(member("f", b"tampered")))
    with (
        pytest.raises(ImageError, match="digest mismatch"),
        open_image(layout, workdir=str(env["work"])),
    ):
        pass
    assert not list(env["work"].iterdir())


# -- malformed tar headers, through both header parsers and both read paths ------------------


@pytest.fixture(params=sorted(_native.untars()), ids=lambda n: {"cython": "c", "python": "py"}[n])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    module = _native.untars()[request.param]
    monkeypatch.setattr(_tar, "parse_header", module.parse_header)
    monkeypatch.setattr(_tar, "parse_pax", module.parse_pax)
    return str(request.param)


def _fix_sum(blob: bytearray, at: int) -> None:
    blob[at + 148 : at + 156] = b" " * 8
    blob[at + 148 : at + 156] = b"%06o\x00 " % sum(blob[at : at + 512])


_PAX, _SECOND = 1536, 2560  # a: header + 2 data blocks; b: pax header + records, then header


def _three_files() -> bytes:
    blob = layer(
        member("a", b"A" * 700),
        member("b", b"B" * 700, pax_headers={"comment": "forces a pax header"}),
        member("c", b"C" * 10),
    )
    assert blob[_PAX + 156 : _PAX + 157] == b"x" and blob[_SECOND : _SECOND + 1] == b"b"
    return blob


@pytest.mark.parametrize("packing", ["plain", "gzip"])
@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("checksum", "not a valid tar stream: header at .*: bad checksum"),
        ("negative size", "negative size"),
        ("octal", "size field is not octal"),
        ("truncated data", "truncated"),
        ("truncated header", "truncated"),
        ("pax overflow", "pax header at .*: record overflows"),
        ("pax size", r"is 1000000000000000000000 bytes \(limit"),
        ("long name", r"GNU long name at 0: 2000000 bytes \(limit 1048576\)"),
        ("dangling pax", "extended header at .* is not followed by a member"),
        ("pax mtime", "pax header at 2560: bad mtime"),
        ("huge mtime", "mtime .* out of range"),
    ],
)
def test_malformed_headers_are_clear_errors(
    env: dict[str, Path], parser: str, packing: str, damage: str, match: str
) -> None:
    blob = bytearray(_three_files())
    second = _SECOND
    if damage == "checksum":
        blob[second] ^= 0x20
    elif damage == "negative size":
        blob[second + 124 : second + 136] = b"\xff" * 12
        _fix_sum(blob, second)
    elif damage == "octal":
        blob[second + 124 : second + 136] = b"00000001x34\x00"
        _fix_sum(blob, second)
    elif damage == "truncated data":
        blob = blob[: second + 512 + 300]
    elif damage == "truncated header":
        blob = blob[: second + 200]
    elif damage in ("pax overflow", "pax size", "pax mtime"):
        pax = _PAX
        record = {
            "pax overflow": b"99 path=b\n",
            "pax size": b"31 size=1000000000000000000000\n",
            "pax mtime": b"13 mtime=inf\n",
        }[damage]
        blob[pax + 512 : pax + 1024] = record.ljust(512, b"\x00")
        blob[pax + 124 : pax + 136] = b"%011o\x00" % len(record)
        _fix_sum(blob, pax)
    elif damage == "huge mtime":
        blob[second + 136 : second + 148] = b"\x80" + bytes(5) + b"\x01" + bytes(5)
        _fix_sum(blob, second)
    elif damage == "long name":
        info = tarfile.TarInfo("././@LongLink")
        info.type, info.size = tarfile.GNUTYPE_LONGNAME, 2_000_000
        blob = bytearray(info.tobuf(tarfile.GNU_FORMAT)) + bytes(2_000_128) + blob
    elif damage == "dangling pax":
        blob = blob[:_SECOND] + bytes(1024)  # b's pax header and records, then the end blocks
    data = bytes(blob)
    with pytest.raises(ImageError, match=f"layer 1 .*{match}"):
        scan(env, [gzip.compress(data, 1) if packing == "gzip" else data])


def test_unknown_members_are_not_extracted(env: dict[str, Path], parser: str) -> None:
    weird = member("odd", b"data", type=b"Z")[0]
    weird.size = 4
    blob = layer(member("a", b"A"))
    raw = bytearray(weird.tobuf(tarfile.USTAR_FORMAT)) + b"data".ljust(512, b"\x00")
    image = scan(env, [raw + blob])
    assert any("unsupported tar type b'Z'" in problem for problem in image.unextracted)


def test_a_refused_compressed_layer_leaves_no_decoding_thread(
    env: dict[str, Path], gzip_decoder: str
) -> None:
    """The layer is decoded ahead by a second thread: refusing the layer part way (a traversal
    in its first member, megabytes still to decode) stops that thread, and the error is ours."""
    blob = gzip.compress(
        layer(member("../escape"), *(member(f"f{i}", os.urandom(1 << 20)) for i in range(24))), 1
    )
    with pytest.raises(ImageError, match="path traversal"):
        scan(env, [blob])
    assert not [t for t in threading.enumerate() if t.name == "scan-root-layer-decode"]


def test_a_whiteout_carrying_data_is_not_verified(env: dict[str, Path], parser: str) -> None:
    """Found by the fuzz suite: a key renamed `.wh..wh..opq` (or `.wh.NAME`) vanished and the
    image was clean. A whiteout's name is all a runtime applies; data or a link in one is not
    extracted, so the report is incomplete."""
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    for name in (".wh..wh..opq", "srv/.wh.app"):
        image = scan(env, [layer(member("srv/keep", b"k"), member(name, key))])
        assert any(repr(name) in problem for problem in image.unextracted), name
    linked = member("srv/.wh.x", type=tarfile.SYMTYPE, linkname="/etc/shadow")
    assert scan(env, [layer(linked)]).unextracted
    empty = scan(env, [layer(member("srv/keep", b"k"), member("srv/.wh.gone", b""))])
    assert empty.unextracted == ()


@pytest.mark.parametrize("field", ["uid", "gid"])
@pytest.mark.parametrize("value", [b"\xff" * 8, b"\x80" + b"\xff" * 7])
def test_owner_ids_out_of_range_are_clear_errors(
    env: dict[str, Path], parser: str, field: str, value: bytes
) -> None:
    """Found by the fuzz suite: a base-256 uid of -1 reached fchown (OverflowError, exit 5)."""
    blob = bytearray(layer(member("a", b"A")))
    at = {"uid": 108, "gid": 116}[field]
    blob[at : at + 8] = value
    _fix_sum(blob, 0)
    with pytest.raises(ImageError, match=f"(negative {field}|{field} .* out of range)"):
        scan(env, [bytes(blob)])


def test_pax_owner_ids_out_of_range_are_clear_errors(env: dict[str, Path], parser: str) -> None:
    for records in ({"uid": "-1"}, {"gid": "4294967295"}, {"uid": "9" * 40}):
        info, data = member("a", b"A")
        info.pax_headers = {**records, "path": "a"}
        with pytest.raises(ImageError, match="(uid|gid)"):
            scan(env, [layer((info, data))])


@pytest.mark.parametrize("name", ["", ".", "./"])
def test_a_file_named_as_the_root_is_not_verified(
    env: dict[str, Path], parser: str, name: str
) -> None:
    """Found by the fuzz suite: a key member renamed "" was dropped as "the root itself" and
    the image scanned clean."""
    info, data = member("x", b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    raw = bytearray(layer((info, data)))
    raw[0:100] = name.encode().ljust(100, b"\0")
    _fix_sum(raw, 0)
    image = scan(env, [bytes(raw)])
    assert any("not a directory" in problem for problem in image.unextracted)


@pytest.mark.parametrize("field", ["size", "pax"])
def test_outer_archive_numbers_past_64_bits_are_clear_errors(
    env: dict[str, Path], field: str
) -> None:
    """Found by the fuzz suite: Python's tarfile raises ValueError/OverflowError (not TarError)
    on a base-256 size or a pax offset past 64 bits in the outer archive: exit 5 before."""
    archive = env["tmp"] / "image.tar"
    write_docker_save(archive, [], image_config(), ["hostile:1"], "none")
    blob = bytearray(archive.read_bytes())
    if field == "size":
        blob[124:136] = b"\x80" + b"\xff" * 11
        _fix_sum(blob, 0)
    else:
        record = b"30 size=99999999999999999999999\n"
        header = tarfile.TarInfo("././@PaxHeader")
        header.type, header.size = tarfile.XHDTYPE, len(record)
        blob[0:0] = header.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    archive.write_bytes(bytes(blob))
    with pytest.raises(ImageError, match="not a readable image archive"):
        with open_image(archive, limits=ImageLimits(), workdir=str(env["work"])):
            pass
    assert not list(env["work"].iterdir())


def test_an_outer_member_sized_past_any_offset_is_a_clear_error(tmp_path: Path) -> None:
    """A GNU base-256 size of 2**70 in the outer archive: tarfile's seek to the next header
    raised ValueError (exit 5) instead of a refusal."""
    giant = tarfile.TarInfo("manifest.json")
    giant.size = 2**70
    header = giant.tobuf(format=tarfile.GNU_FORMAT)
    path = tmp_path / "image.tar"
    path.write_bytes(header + bytes(1024))
    with pytest.raises(ImageError, match="not a readable image archive"):
        with open_image(path):
            pass


@pytest.mark.parametrize("compressed", [False, True])
def test_a_member_after_a_lone_zero_block_is_not_hidden(
    env: dict[str, Path], compressed: bool
) -> None:
    """One zero block, then more members: the parser stopped at the zero block and the image
    scanned clean (exit 0) with a key after it, which `tar -i` extracts (docker refuses it)."""
    first = layer(member("etc/os-release", b"ID=test\n"))
    end = first.rstrip(b"\0")
    end += bytes(-len(end) % 512)
    hidden = layer(member("srv/app/key", b"-----BEGIN OPENSSH PRIVATE KEY-----\n"))
    blob = end + bytes(512) + hidden
    if compressed:
        blob = gzip.compress(blob)
    with pytest.raises(ImageError, match="lone zero block"):
        scan(env, [blob])


def test_two_zero_blocks_and_trailing_zeros_still_end_a_layer(env: dict[str, Path]) -> None:
    blob = layer(member("etc/os-release", b"ID=test\n")) + bytes(8192)
    scan(env, [blob], check=lambda image: content(image, "etc/os-release") == b"ID=test\n")
