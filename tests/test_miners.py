"""Check 426's detection rules (scanner/miners.py): names, scope, digest lists, content markers."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner import miners
from scanner.miners import (
    MARKER_GROUPS,
    MARKERS,
    DigestList,
    MarkerGroup,
    MinerDigestsError,
    MinerSignals,
    classify,
    in_scope,
    load_digests,
    marker_signal,
    name_signal,
    parse_digests,
)

REG = stat.S_IFREG

# (root-relative path, lstat mode, canonical name expected from the name signal or None).
# The name signal counts only in scope, so each case goes through `classify`.
NAME_CASES: list[tuple[bytes, int, str | None]] = [
    # the product's reference scenario: /bin/sleep copied to /tmp/xmrig (0755)
    (b"tmp/xmrig", REG | 0o755, "xmrig"),
    (b"/tmp/xmrig", REG | 0o755, "xmrig"),
    (b"usr/local/bin/xmrig-6.21.0", REG | 0o755, "xmrig"),
    (b"usr/bin/xmrig-6.21.0-linux-static-x64", REG | 0o755, "xmrig"),
    (b"usr/bin/XMRIG-6.21.0.EXE", REG | 0o755, "xmrig"),
    (b"opt/tools/bin/XMRig.exe", REG | 0o644, "xmrig"),  # exec location, no x bit
    (b"usr/libexec/helper/xmrig", REG | 0o644, "xmrig"),  # anywhere under libexec
    (b"app/xmrig2", REG | 0o700, "xmrig"),
    (b"app/xmrig-notls", REG | 0o755, "xmrig"),
    (b"usr/local/bin/xmrig-proxy", REG | 0o755, "xmrig-proxy"),
    (b"tmp/.kinsing", REG | 0o755, "kinsing"),  # hidden dropper
    (b"tmp/kdevtmpfsi", REG | 0o755, "kdevtmpfsi"),
    (b"usr/bin/xmr-stak-rx", REG | 0o755, "xmr-stak"),
    (b"usr/local/bin/xmr-stak", REG | 0o644, "xmr-stak"),
    (b"usr/bin/minerd", REG | 0o755, "minerd"),
    (b"root/cpuminer-multi", REG | 0o700, "cpuminer"),
    (b"usr/local/bin/cpuminer-opt", REG | 0o755, "cpuminer"),
    (b"usr/local/bin/cpuminer-avx2", REG | 0o755, "cpuminer"),
    (b"home/u/cgminer", REG | 0o755, "cgminer"),
    (b"srv/BFGMiner", REG | 0o755, "bfgminer"),
    (b"app/ethminer-0.19.0", REG | 0o755, "ethminer"),
    (b"app/ccminer-x64", REG | 0o755, "ccminer"),
    (b"app/t-rex", REG | 0o755, "t-rex"),
    (b"app/nbminer", REG | 0o755, "nbminer"),
    (b"app/lolMiner", REG | 0o755, "lolminer"),
    (b"app/PhoenixMiner", REG | 0o755, "phoenixminer"),
    (b"app/nanominer", REG | 0o755, "nanominer"),
    (b"app/SRBMiner-MULTI", REG | 0o755, "srbminer"),
    (b"app/teamredminer", REG | 0o755, "teamredminer"),
    (b"app/gminer", REG | 0o755, "gminer"),
    (b"home/u/.local/bin/ethminer", REG | 0o644, "ethminer"),
    (b"tmp/xmrig", 0o755, "xmrig"),  # a tar header's mode: no file-type bits
    # near misses
    (b"usr/share/doc/minergate-doc.txt", REG | 0o644, None),
    (b"usr/local/bin/mining-utils", REG | 0o755, None),
    (b"etc/xmrig.conf", REG | 0o644, None),  # not executable, not in an executable location
    (b"usr/bin/xmrig.conf", REG | 0o755, None),  # a config file name is not the miner's
    (b"opt/app/xmrig.json", REG | 0o644, None),
    (b"usr/local/bin/xmrig.sh", REG | 0o755, None),  # launcher: content markers judge it
    (b"usr/lib/x86_64-linux-gnu/libcryptonight.so", REG | 0o755, None),
    (b"usr/lib/python3/dist-packages/cryptominer/__init__.py", REG | 0o644, None),
    (b"usr/local/bin/miner", REG | 0o755, None),  # GMiner's binary name, far too generic
    (b"usr/bin/xmrigger", REG | 0o755, None),
    (b"usr/games/t-rex-runner", REG | 0o755, None),
    (b"usr/share/xmrig/README", REG | 0o644, None),
    (b"tmp/kdevtmpfsi", REG | 0o444, None),  # the Kinsing "vaccine" placeholder
    (b"home/u/xmrig", REG | 0o644, None),  # neither executable nor in an executable location
    (b"tmp/xmrig", stat.S_IFLNK | 0o777, None),  # symlinks are never followed or judged
    (b"tmp/xmrig", stat.S_IFDIR | 0o755, None),
    (b"tmp/xmr\xffig", REG | 0o755, None),
]


@pytest.mark.parametrize(
    ("path", "mode", "expected"), NAME_CASES, ids=[f"{c[0]!r}-{c[1]:o}" for c in NAME_CASES]
)
def test_name_signal_table(path: bytes, mode: int, expected: str | None) -> None:
    signals = classify(path, mode, digests=DigestList())
    assert signals.name == expected
    assert signals.flagged is (expected is not None)
    assert signals.signals == (("name",) if expected else ())


@pytest.mark.parametrize(
    ("path", "mode", "expected"),
    [
        (b"tmp/anything", REG | 0o755, True),
        (b"tmp/anything", REG | 0o644, False),
        (b"tmp/anything", REG | 0o010, True),  # any x bit, group only
        (b"bin/x", REG | 0o644, True),
        (b"usr/local/sbin/x", REG | 0o600, True),
        (b"opt/vendor/sbin/x", REG | 0o600, True),
        (b"opt/vendor/lib/x", REG | 0o600, False),
        (b"usr/bin/sub/x", REG | 0o644, False),  # directly inside only
        (b"usr/libexec/a/b/x", REG | 0o644, True),
        (b"var/tmp/x", REG | 0o644, False),
        (b"usr/bin/x", stat.S_IFLNK | 0o777, False),
        (b"usr/bin/x", stat.S_IFCHR | 0o755, False),
    ],
)
def test_in_scope(path: bytes, mode: int, expected: bool) -> None:
    assert in_scope(path, mode) is expected


# --------------------------------------------------------------------------------------------
# Digest lists

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def test_parse_digests_formats() -> None:
    text = (
        b"# comment\n"
        b"\n"
        + SHA_A.encode()
        + b"  xmrig 6.21 binary  # https://example.org/source\n"
        + SHA_B.upper().encode()
        + b" *xmrig-6.5.3-linux-x64.tar.gz\r\n"
    )
    parsed = parse_digests(text, "list.txt")
    assert parsed.problems == ()
    assert parsed.digests == {
        bytes.fromhex(SHA_A): "xmrig 6.21 binary",
        bytes.fromhex(SHA_B): "xmrig-6.5.3-linux-x64.tar.gz",
    }
    assert parsed.lookup(bytes.fromhex(SHA_B)) == "xmrig-6.5.3-linux-x64.tar.gz"
    assert parsed.lookup(None) is None
    assert len(parsed) == 2


def test_parse_digests_malformed_lines_are_problems() -> None:
    text = b"\n".join(
        [
            b"# header",
            SHA_A[:63].encode() + b"  too short",  # line 2
            b"z" * 64 + b"  not hex",  # line 3
            b"just some words",  # line 4
            SHA_B.encode() + b"  ok",  # line 5
            SHA_A.encode() + b" " + SHA_A.encode() + b"0",  # line 6: digest, then a label
        ]
    )
    parsed = parse_digests(text, "bad.txt")
    assert [(p.source, p.line) for p in parsed.problems] == [
        ("bad.txt", 2),
        ("bad.txt", 3),
        ("bad.txt", 4),
    ]
    assert "63" in parsed.problems[0].reason
    assert "non-hex" in parsed.problems[1].reason
    assert str(parsed.problems[0]).startswith("bad.txt:2: ")
    assert set(parsed.digests) == {bytes.fromhex(SHA_B), bytes.fromhex(SHA_A)}


def test_parse_digests_labels() -> None:
    text = (
        SHA_A.encode()
        + b"\n"  # no label
        + SHA_B.encode()
        + b"  caf\xe9 # only a comment after\n"
        + SHA_B.encode()
        + b"  second label loses\n"
    )
    parsed = parse_digests(text, "l.txt")
    assert parsed.digests[bytes.fromhex(SHA_A)] == "listed in l.txt"
    assert parsed.digests[bytes.fromhex(SHA_B)] == "caf\\xe9"  # undecodable: shown, not guessed
    hidden_label = parse_digests(SHA_A.encode() + b"   # source only", "c.txt")
    assert hidden_label.digests[bytes.fromhex(SHA_A)] == "listed in c.txt"


def test_parse_digests_never_crashes_on_garbage() -> None:
    parsed = parse_digests(bytes(range(256)) * 8 + b"\n\x00\x00\n" + b"#" * 100, "junk")
    assert parsed.digests == {}
    assert all(problem.line >= 1 for problem in parsed.problems)


def test_load_digests_merges_files_in_order(tmp_path: Path) -> None:
    first = tmp_path / "first.txt"
    second = tmp_path / "second.txt"
    first.write_bytes(SHA_A.encode() + b"  from first\nnot-a-line\n")
    second.write_bytes(SHA_A.encode() + b"  from second\n" + SHA_B.encode() + b"  only second\n")
    merged = load_digests(first, os.fsencode(second))
    assert merged.digests == {
        bytes.fromhex(SHA_A): "from first",
        bytes.fromhex(SHA_B): "only second",
    }
    assert [(p.source, p.line) for p in merged.problems] == [(str(first), 2)]
    assert load_digests().digests == {}


def test_load_digests_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MinerDigestsError, match="missing.txt"):
        load_digests(tmp_path / "missing.txt")
    with pytest.raises(MinerDigestsError):
        load_digests(tmp_path)  # a directory


def test_shipped_digest_list_parses_cleanly_and_cites_sources() -> None:
    shipped = miners.default_digests()
    assert miners.DEFAULT_DIGESTS is shipped
    assert shipped.problems == ()
    assert len(shipped) > 0
    text = (Path(miners.__file__).parent / "data" / "miner-digests.txt").read_text("ascii")
    source = None
    for line in text.splitlines():
        if line.startswith("# https://"):
            source = line
        elif line and not line.startswith("#"):
            assert source is not None, f"entry without a cited source: {line}"
    with pytest.raises(AttributeError):
        miners.NO_SUCH_NAME  # noqa: B018


def test_digest_signal_applies_out_of_scope(tmp_path: Path) -> None:
    archive = tmp_path / "payload.tar.gz"
    archive.write_bytes(b"pretend miner archive")
    digest = hashlib.sha256(archive.read_bytes()).digest()
    listing = tmp_path / "extra.txt"
    listing.write_text(f"{digest.hex()}  test miner archive\n")
    table = miners.default_digests().merged(load_digests(listing))
    signals = classify(b"tmp/payload.tar.gz", REG | 0o644, digest, digests=table)
    assert signals == MinerSignals(digest="test miner archive")
    assert signals.signals == ("digest",)
    assert not classify(b"tmp/other", REG | 0o644, b"\0" * 32, digests=table).flagged


# --------------------------------------------------------------------------------------------
# Content markers


def _ids(*texts: bytes) -> frozenset[int]:
    return frozenset(MARKERS.index(text) for text in texts)


def _found(data: bytes) -> frozenset[int]:
    """What the content engine reports: the index of every marker present (case-sensitive)."""
    return frozenset(i for i, marker in enumerate(MARKERS) if marker in data)


def test_marker_table_is_sound() -> None:
    assert len(set(MARKERS)) == len(MARKERS)
    assert len(MARKER_GROUPS) == len(MARKERS)
    assert set(MARKER_GROUPS) == set(MarkerGroup)
    assert all(marker.isascii() and len(marker) >= 5 for marker in MARKERS)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (frozenset(), None),
        (_ids(b"stratum+tcp://"), None),
        (_ids(b"cryptonight"), None),
        (_ids(b"stratum+tcp://", b"stratum+ssl://"), None),  # same group: pool
        (_ids(b"cryptonight", b"RandomX"), None),  # same group: algorithm
        (_ids(b"xmrig", b"XMRig", b"--donate-level"), None),  # same group: miner
        (_ids(b"stratum+tcp://", b"cryptonight"), ("stratum+tcp://", "cryptonight")),
        (_ids(b"--donate-level", b"randomx"), ("randomx", "--donate-level")),
        (_ids(b"nicehash", b"XMRig"), ("nicehash", "XMRig")),
        (
            _ids(b"donate.v2.xmrig.com", b"RandomX", b"POOL #%-7"),
            ("donate.v2.xmrig.com", "RandomX", "POOL #%-7"),
        ),
    ],
)
def test_marker_rule(found: frozenset[int], expected: tuple[str, ...] | None) -> None:
    assert marker_signal(found) == expected


@pytest.mark.parametrize("marker", MARKERS, ids=[m.decode() for m in MARKERS])
def test_each_marker_alone_is_not_a_finding(marker: bytes) -> None:
    # through the engine's eyes: one occurrence also reports every marker inside it
    # ("donate.v2.xmrig.com" holds "xmrig", "--randomx-1gb-pages" holds "randomx")
    assert marker_signal(_found(b"\0" + marker + b"\0")) is None


def test_marker_inside_another_still_counts_when_the_outer_is_absent() -> None:
    assert marker_signal(_ids(b"xmrig", b"randomx")) == ("randomx", "xmrig")
    assert marker_signal(_ids(b"donate.v2.xmrig.com", b"xmrig", b"randomx")) == (
        "donate.v2.xmrig.com",
        "randomx",
    )


def test_marker_ids_out_of_range_are_a_bug() -> None:
    with pytest.raises(ValueError):
        marker_signal({len(MARKERS)})
    with pytest.raises(ValueError):
        marker_signal({-1})


def test_content_signal_only_in_scope() -> None:
    script = b"#!/bin/sh\n./xmrig -o stratum+tcp://pool.example:3333 --donate-level 1\n"
    found = _found(script)
    signals = classify(b"usr/local/bin/start.sh", REG | 0o755, found=found, digests=DigestList())
    assert signals.signals == ("content",)
    assert signals.markers == ("stratum+tcp://", "--donate-level", "xmrig")
    # the same text in documentation (not executable, not in an executable location): no finding
    assert not classify(b"usr/share/doc/x/README", REG | 0o644, found=found).flagged


def test_one_stray_marker_is_not_a_finding() -> None:
    comment = b"/* cryptonight and randomx are memory-hard hashes; see RandomX spec */"
    assert marker_signal(_found(comment)) is None


def test_signals_combined() -> None:
    every = MinerSignals(name="xmrig", digest="x", markers=("xmrig", "randomx"))
    assert every.signals == ("name", "digest", "content")
    assert every.flagged
    assert MinerSignals().signals == () and not MinerSignals().flagged


# --------------------------------------------------------------------------------------------
# The product's reference scenario: `cp /bin/sleep /tmp/xmrig` must raise 426 — by name only.


def _walk(root: Path) -> Iterator[tuple[bytes, os.stat_result]]:
    for directory, dirs, files in os.walk(root):
        for entry in dirs + files:
            full = Path(directory, entry)
            yield os.fsencode(full.relative_to(root)), full.lstat()


def test_reference_scenario_sleep_copied_to_tmp_xmrig(tmp_path: Path) -> None:
    sleep = Path(shutil.which("sleep") or "/bin/sleep")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copy2(sleep, root / "bin" / "sleep")
    shutil.copyfile(sleep, root / "tmp" / "xmrig")  # what `cp /bin/sleep /tmp/xmrig` does
    (root / "tmp" / "xmrig").chmod(0o755)

    flagged = {}
    for path, st in _walk(root):
        data = (root / os.fsdecode(path)).read_bytes() if stat.S_ISREG(st.st_mode) else b""
        signals = classify(path, st.st_mode, hashlib.sha256(data).digest(), _found(data))
        if signals.flagged:
            flagged[path] = signals
    assert flagged == {b"tmp/xmrig": MinerSignals(name="xmrig")}
    assert flagged[b"tmp/xmrig"].signals == ("name",)


# --------------------------------------------------------------------------------------------
# Zero false positives on real systems: every file name, and the executables' content.

DEBIAN_ROOT = Path(os.environ.get("SCANNER_TEST_CACHE", "/var/cache/scan-root-tests"))
HOST_NAME_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/local/lib", "/usr/libexec")
CONTENT_DIRS = ("usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu")
QUICK_CAP = 4 << 20  # first 4 MiB of each file: the quick sweeps stay well under 20 s


def _all_names(tops: list[Path]) -> Iterator[tuple[Path, str]]:
    for top in tops:
        for directory, dirs, files in os.walk(top):
            for entry in dirs + files:
                yield Path(directory), entry


def _name_hits(tops: list[Path]) -> tuple[int, list[str]]:
    count, hits = 0, []
    for directory, entry in _all_names(tops):
        count += 1
        if name_signal(os.fsencode(entry)) is not None:
            hits.append(str(directory / entry))
    return count, hits


def _content_files(root: Path, recursive: bool) -> Iterator[Path]:
    for sub in CONTENT_DIRS:
        top = root / sub
        if not top.is_dir():
            continue
        if recursive:
            for directory, _dirs, files in os.walk(top):
                yield from (Path(directory, f) for f in files)
        elif sub.endswith("-gnu"):
            yield from (p for p in top.iterdir() if ".so" in p.name)
        else:
            yield from top.iterdir()


def _marker_hits(files: Iterator[Path], cap: int | None) -> tuple[int, int, list[str]]:
    count, size, hits = 0, 0, []
    for path in files:
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            with path.open("rb") as handle:
                data = handle.read() if cap is None else handle.read(cap)
        except OSError:
            continue
        count += 1
        size += len(data)
        markers = marker_signal(_found(data))
        if markers is not None:
            hits.append(f"{path}: {markers}")
    return count, size, hits


def _debian_root() -> Path:
    from debroot import debootstrap_root

    return debootstrap_root()


def test_name_sweep_host_has_no_hits() -> None:
    count, hits = _name_hits([Path(d) for d in HOST_NAME_DIRS if Path(d).is_dir()])
    assert count > 1000
    assert hits == []


@pytest.mark.debootstrap
def test_name_sweep_debian_root_has_no_hits() -> None:
    roots = [_debian_root()]
    apps = DEBIAN_ROOT / "bookworm-apps"
    if (DEBIAN_ROOT / "bookworm-apps.complete").exists():
        roots.append(apps)  # bigger package set when a bench run built it; names are cheap
    count, hits = _name_hits(roots)
    assert count > 5000
    assert hits == []


def test_marker_sweep_host_has_no_hits() -> None:
    count, _size, hits = _marker_hits(_content_files(Path("/"), recursive=False), QUICK_CAP)
    assert count > 100
    assert hits == []


@pytest.mark.debootstrap
def test_marker_sweep_debian_root_has_no_hits() -> None:
    count, _size, hits = _marker_hits(_content_files(_debian_root(), recursive=False), QUICK_CAP)
    assert count > 100
    assert hits == []


if os.environ.get("SCANNER_HEAVY_SWEEPS") == "1":
    # Defined only on request (bench runs): whole files, whole trees, every cached root. Not a
    # skip when absent, since CI counts skips as failures.

    def test_marker_sweep_heavy_whole_files() -> None:
        roots = [Path("/"), _debian_root()]
        for name in ("bookworm-apps", "rpm-apps"):
            if (DEBIAN_ROOT / f"{name}.complete").exists():
                roots.append(DEBIAN_ROOT / name)
        total, hits = 0, []
        for root in roots:
            count, _size, root_hits = _marker_hits(_content_files(root, recursive=True), None)
            total += count
            hits += root_hits
        assert total > 1000
        assert hits == []
