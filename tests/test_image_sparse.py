"""Sparse members (GNU tar --sparse, old GNU and pax 0.0/0.1/1.0) are extracted as GNU tar does,
on both header parsers and both read paths; members that are not extracted leave the report
incomplete."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from imagebuilder import image_config, write_docker_save

import _native
from _native import TarFormatError
from scanner import cli
from scanner.targets import _tar
from scanner.targets.image import ImageError, ImageLimits, open_image

FORMATS = {
    "gnu": ["--format=gnu"],
    "pax-0.0": ["--format=pax", "--sparse-version=0.0"],
    "pax-0.1": ["--format=pax", "--sparse-version=0.1"],
    "pax-1.0": ["--format=pax", "--sparse-version=1.0"],
}
_MiB = 1 << 20


@pytest.fixture(params=sorted(_native.untars()), ids=lambda n: {"cython": "c", "python": "py"}[n])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    module = _native.untars()[request.param]
    monkeypatch.setattr(_tar, "parse_header", module.parse_header)
    monkeypatch.setattr(_tar, "parse_pax", module.parse_pax)
    monkeypatch.setattr(_tar, "parse_sparse", module.parse_sparse)
    return str(request.param)


def _holey(path: Path, regions: list[tuple[int, bytes]], size: int) -> None:
    """A file that is `regions` of data in holes, `size` bytes long."""
    with open(path, "wb") as out:
        for offset, data in regions:
            out.seek(offset)
            out.write(data)
        out.truncate(size)


def _sources(root: Path) -> dict[str, bytes]:
    """Files with holes: data at 0 then a hole; a hole first; 50 regions (old GNU needs
    extension blocks past 4); a hole at the end; and one without holes."""
    (root / "usr/bin").mkdir(parents=True)
    _holey(root / "usr/bin/head", [(0, b"\x7fELF head"), (_MiB, b"tail")], 2 * _MiB)
    _holey(root / "hole-first", [(3 * _MiB, b"KEY" * 100)], 3 * _MiB + 300)
    _holey(root / "many", [(i * 65536, b"R%d" % i) for i in range(50)], 50 * 65536 + 10)
    _holey(root / "hole-last", [(0, b"x")], 2 * _MiB)
    (root / "dense").write_bytes(os.urandom(3000))
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _gnu_tar(root: Path, out: Path, options: list[str]) -> Path:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    subprocess.run(
        ["tar", "--sparse", *options, "-C", str(root), "-cf", str(out), "."],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _docker_save(tmp_path: Path, layer: Path, compression: str = "none") -> Path:
    archive = tmp_path / "image.tar"
    write_docker_save(archive, [layer], image_config(), ["sparse:1"], compression)
    return archive


@pytest.mark.parametrize("packing", ["none", "gzip"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_gnu_tar_sparse_members_are_extracted(
    tmp_path: Path, parser: str, fmt: str, packing: str
) -> None:
    """Made by GNU tar itself; before, each was a problem entry, the file absent, exit 0."""
    root = tmp_path / "root"
    expected = _sources(root)
    layer = _gnu_tar(root, tmp_path / "layer.tar", FORMATS[fmt])
    with tarfile.open(layer) as archive:
        sparse = sorted(m.name.lstrip("./") for m in archive if m.issparse())
    assert len(sparse) >= 4, "tar made no sparse members: the test shows nothing"
    archive = _docker_save(tmp_path, layer, packing)
    work = tmp_path / "work"
    work.mkdir()
    with open_image(archive, workdir=str(work), place=False) as image:
        got = {
            str(path.relative_to(image.root)): path.read_bytes()
            for path in sorted(Path(image.root).rglob("*"))
            if path.is_file()
        }
        head = os.stat(os.path.join(image.root, "usr/bin/head"))
        assert head.st_blocks * 512 < _MiB  # extracted sparse, as GNU tar does
        assert not image.problems and not image.unextracted
    assert got == expected  # pax 0.1/1.0: the real names, never ./GNUSparseFile.N/...


def test_pax_sparse_names_the_real_path(tmp_path: Path, parser: str) -> None:
    """pax 0.1 and 1.0 headers carry a made-up name (./GNUSparseFile.PID/NAME), the real one in
    GNU.sparse.name: the member is known by the real name (the problem named the made-up one)."""
    root = tmp_path / "root"
    root.mkdir()
    _holey(root / "f", [(_MiB, b"data")], 2 * _MiB)
    for version in ("0.1", "1.0"):
        layer = _gnu_tar(root, tmp_path / "l.tar", ["--format=pax", f"--sparse-version={version}"])
        assert b"GNUSparseFile" in layer.read_bytes()
        with open(layer, "rb") as stream:
            blocks = _tar.StreamBlocks(stream)
            names = []
            for member in _tar.members(blocks):
                names.append(member.name)
                blocks.skip(member.size)
        assert names == ["./", "./f"]


def _private_key(path: Path) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path.read_bytes()


def _scan(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, Any]]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it chose
    out = tmp_path / "report.json"
    status = cli.main(
        ["image", str(archive), "--format", "json", "--quiet", "--no-process-env",
         "--output", str(out)]
    )  # fmt: skip
    return status, json.loads(out.read_text())


@pytest.mark.parametrize("fmt", ["gnu", "pax-1.0"])
def test_a_key_and_a_miner_in_sparse_members_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_impl: str, fmt: str
) -> None:
    """Before: both members were problem entries, the report complete, exit 0."""
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "tmp").mkdir()
    key = _private_key(tmp_path / "key.pem")
    _holey(root / "srv/server.key", [(0, key)], len(key) + 2 * _MiB)
    sleep = Path("/bin/sleep").read_bytes()
    _holey(root / "tmp/xmrig", [(0, sleep[:4096]), (_MiB, sleep[4096:])], _MiB + len(sleep))
    (root / "tmp/xmrig").chmod(0o755)
    layer = _gnu_tar(root, tmp_path / "layer.tar", FORMATS[fmt])
    status, report = _scan(_docker_save(tmp_path, layer), tmp_path, monkeypatch)
    found = {(f["check"], f["path"]) for f in report["findings"]}
    assert ("425", "/srv/server.key") in found
    assert ("426", "/tmp/xmrig") in found
    assert status == cli.EXIT_FINDINGS
    assert report["complete"] is True


def _raw_member(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def test_members_not_extracted_make_the_report_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_impl: str
) -> None:
    """An unknown typeflag (its data may be a key or a miner): before, a problem entry in a
    complete report, exit 0. A device node stays a plain problem (it has no content, and is
    never made); a FIFO is made, as a runtime makes it."""
    unknown = tarfile.TarInfo("usr/bin/odd")
    unknown.type, unknown.size, unknown.mode = b"Z", 4, 0o755
    device = tarfile.TarInfo("dev/sda")
    device.type, device.devmajor = tarfile.BLKTYPE, 8
    fifo = tarfile.TarInfo("run/pipe")
    fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o640
    layer = tmp_path / "layer.tar"
    layer.write_bytes(
        _raw_member(unknown, b"data") + _raw_member(device) + _raw_member(fifo) + bytes(1024)
    )
    archive = _docker_save(tmp_path, layer)
    status, report = _scan(archive, tmp_path, monkeypatch)
    skipped = [p["message"] for p in report["problems"] if p["kind"] == "image-member-skipped"]
    assert len(skipped) == 1 and "'usr/bin/odd': unsupported tar type b'Z'" in skipped[0]
    image_problems = [p["message"] for p in report["problems"] if p["kind"] == "image"]
    assert any("'dev/sda': device node not created" in message for message in image_problems)
    assert report["complete"] is False
    assert status == cli.EXIT_INCOMPLETE
    with open_image(archive, workdir=str(tmp_path / "scratch")) as image:
        st = os.lstat(os.path.join(image.root, "run/pipe"))
        assert (st.st_mode & 0o170000, st.st_mode & 0o7777) == (0o010000, 0o640)
        assert not os.path.lexists(os.path.join(image.root, "usr/bin/odd"))


# -- hostile sparse maps: clear errors on both parsers and both read paths --------------------


def _fix_sum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)


def _number(value: int) -> bytes:
    """A 12-byte tar number: octal, or GNU base-256 past 11 octal digits."""
    return b"%011o\x00" % value if value < 8**11 else b"\x80" + value.to_bytes(11, "big")


def _old_gnu(
    regions: list[tuple[int, int]], realsize: int, extended: bool = False, stored: int | None = None
) -> bytearray:
    """An old GNU 'S' header with up to 4 map entries."""
    info = tarfile.TarInfo("s")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = sum(length for _, length in regions) if stored is None else stored
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    for index, (start, length) in enumerate(regions):
        at = 386 + 24 * index
        block[at : at + 24] = _number(start) + _number(length)
    block[482] = int(extended)
    block[483:495] = _number(realsize)
    _fix_sum(block)
    return block


def _with_data(header: bytes, size: int, extra: bytes = b"") -> bytes:
    return header + extra + b"d" * size + bytes(-size % 512) + bytes(1024)


def _pax(records: dict[str, str] | list[tuple[str, str]], name: str, data: bytes) -> bytes:
    pairs = records.items() if isinstance(records, dict) else records
    body = b""
    for key, value in pairs:
        record = f" {key}={value}\n".encode()
        length = len(record) + len(str(len(record)))
        length = len(record) + len(str(length))
        body += str(length).encode() + record
    header = tarfile.TarInfo("PaxHeaders/x")
    header.type, header.size = tarfile.XHDTYPE, len(body)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return _raw_member(header, body) + _raw_member(info, data) + bytes(1024)


def _one_region_10(numbers: bytes) -> bytes:
    return (numbers + bytes(-len(numbers) % 512)) + b"d" * 4


_TIB = 1 << 40
HOSTILE = {
    "overlap": (_with_data(_old_gnu([(0, 10), (5, 10)], 100), 20), "overlaps"),
    "past the real size": (_with_data(_old_gnu([(95, 10)], 100), 10), "passes the real size"),
    "sizes disagree": (_with_data(_old_gnu([(0, 10)], 100, stored=512), 512), "hold 10 bytes"),
    "unsorted": (_with_data(_old_gnu([(50, 10), (0, 10)], 100), 20), "overlaps"),
    "map ends before extension": (
        _with_data(_old_gnu([(0, 10)], 100, extended=True), 10, bytes(512)),
        "ends before its extension",
    ),
    "endless extensions": (
        _with_data(
            _old_gnu([(i, 1) for i in range(4)], 100, extended=True),
            4,
            (b"".join(b"%011o\x00%011o\x00" % (10 + i, 1) for i in range(21)) + b"\x01").ljust(
                512, b"\x00"
            )
            * 2100,
        ),
        "more than 2048 extension blocks",
    ),
    "1 TiB of holes": (_with_data(_old_gnu([(0, 10)], _TIB), 10), r"is 1099511627776 bytes"),
    "2 GiB of holes": (
        _with_data(_old_gnu([(0, 10)], 2 << 30), 10),
        r"decompression bomb: a sparse file of 2147483648 bytes from 10 stored",
    ),
    "pax 0.0 out of order": (
        _pax(
            [("GNU.sparse.size", "100"), ("GNU.sparse.numbytes", "4"), ("GNU.sparse.offset", "0")],
            "s",
            b"dddd",
        ),
        "out of order",
    ),
    "pax 0.1 bad number": (
        _pax({"GNU.sparse.size": "100", "GNU.sparse.map": "0,x"}, "s", b"dddd"),
        "'x' is not a number",
    ),
    "pax 0.1 odd map": (
        _pax({"GNU.sparse.size": "100", "GNU.sparse.map": "0,4,9"}, "s", b"dddd"),
        "odd length",
    ),
    "pax 0.1 numblocks": (
        _pax(
            {"GNU.sparse.size": "100", "GNU.sparse.numblocks": "2", "GNU.sparse.map": "0,4"},
            "s",
            b"dddd",
        ),
        "numblocks disagrees",
    ),
    "pax 1.0 unknown version": (
        _pax({"GNU.sparse.major": "2", "GNU.sparse.minor": "0"}, "s", b"dddd"),
        "sparse format 2.0 unknown",
    ),
    "pax 1.0 map truncated": (
        _pax(
            {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "100"},
            "s",
            b"5\n0\n4\n",
        ),
        "malformed, truncated or too long",
    ),
    "pax 1.0 map not numbers": (
        _pax(
            {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "100"},
            "s",
            _one_region_10(b"1\n0\n-4\n"),
        ),
        "'-4' is not a number",
    ),
    "pax 1.0 no real size": (
        _pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}, "s", _one_region_10(b"1\n0\n4\n")),
        "real size '' is not a number",
    ),
}


@pytest.mark.parametrize("packing", ["none", "gzip"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_sparse_maps_are_clear_errors(
    tmp_path: Path, parser: str, case: str, packing: str
) -> None:
    blob, match = HOSTILE[case]
    layer = tmp_path / "layer.tar"
    layer.write_bytes(blob if packing == "none" else gzip.compress(blob, 1))
    archive = _docker_save(tmp_path, layer)
    with pytest.raises(ImageError, match=f"layer 1 .*{match}"):
        with open_image(archive, workdir=str(tmp_path), limits=ImageLimits()):
            pass


def test_a_well_formed_hand_made_map(tmp_path: Path, parser: str) -> None:
    """The same builders, well formed, extract: the hostile cases fail for their one fault."""
    layer = tmp_path / "layer.tar"
    layer.write_bytes(
        _with_data(_old_gnu([(0, 10), (50, 10)], 100), 20)[:-1024]
        + _pax(
            {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.realsize": "100",
                "GNU.sparse.name": "t",
            },
            "GNUSparseFile.0/t",
            _one_region_10(b"1\n96\n4\n"),
        )
    )
    with open_image(_docker_save(tmp_path, layer), workdir=str(tmp_path), place=False) as image:
        s = Path(image.root, "s").read_bytes()
        t = Path(image.root, "t").read_bytes()
    assert s == b"d" * 10 + bytes(40) + b"d" * 10 + bytes(40)
    assert t == bytes(96) + b"dddd"


# -- the old GNU sparse map parser: both implementations agree ------------------------------

_SPARSE_BLOCK = bytes(_old_gnu([(0, 10), (1 << 40, 3), (77, 0)], 1 << 41, extended=True))


@seed(20261204)
@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)), max_size=12),
    st.booleans(),
)
def test_sparse_map_fuzz_both_agree(edits: list[tuple[int, int]], extension: bool) -> None:
    """parse_sparse of both cores: the same map, or the same error, on damaged blocks."""
    block = bytearray(_SPARSE_BLOCK)
    for index, value in edits:
        block[index] = value
    outcomes = {}
    for name, module in _native.untars().items():
        try:
            outcomes[name] = repr(module.parse_sparse(bytes(block), 9, extension))
        except TarFormatError as error:
            outcomes[name] = f"error: {error}"
    assert len(set(outcomes.values())) == 1, outcomes


def test_sparse_map_parsed_as_written(parser: str) -> None:
    entries, extended, realsize = _tar.parse_sparse(_SPARSE_BLOCK, 0, False)
    assert (entries, extended, realsize) == ([(0, 10), (1 << 40, 3), (77, 0)], True, 1 << 41)
    with pytest.raises(TarFormatError, match="truncated sparse header at 3"):
        _tar.parse_sparse(_SPARSE_BLOCK[:100], 3, True)
