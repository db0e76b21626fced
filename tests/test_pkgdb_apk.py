"""pkgdb.apk: the real installed DBs and sample root of ../shared, digest semantics, bad input."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import stat
from collections import Counter
from pathlib import Path

import pytest

from pkgdb import DigestAlgorithm, InstalledFile, PackageDB, RootFS, apk
from pkgdb.apk import ProtectedPaths, ProtectMode, parse_digest

DB = "lib/apk/db/installed"
SAMPLE = "alpine-3.19.1-aarch64-minirootfs-sample"
MOTD_346 = "Q1MaUHN/Rf32Lf67Owrq1BXQU7usE="
MOTD_314 = "Q1XmduVVNURHQ27TvYp1Lr5TMtFcA="
MOTD_318 = "Q1SLkS9hBidUbPwwrw+XR0Whv3ww8="
BUSYBOX_LINK = "Q1pcfTfDNEbNKQc2s1tia7da05M8Q="  # sha1(b"/bin/busybox"), bin/sh's Z:

# PROVENANCE.md, "EXPECTED", apk: packages, R: entries, a:0:0:777 entries, first two, etc/motd Z.
EXPECTED = {
    "alpine-3.4.6-x86_64-haconiwa-rootfs": (
        16,
        266,
        15,
        [("musl", "1.1.14-r14"), ("busybox", "1.24.2-r12")],
        MOTD_346,
    ),
    "alpine-3.6.0-x86_64-docker-export": (
        11,
        68,
        20,
        [("musl", "1.1.16-r9"), ("busybox", "1.26.2-r4")],
        MOTD_346,
    ),
    "alpine-3.14.0-armv7-rootfs": (
        26,
        292,
        38,
        [("musl", "1.2.2-r3"), ("alpine-keys", "2.3-r1")],
        MOTD_314,
    ),
    "alpine-3.16-x86_64-syft": (
        14,
        105,
        30,
        [("alpine-baselayout-data", "3.2.0-r22"), ("musl", "1.2.3-r0")],
        MOTD_314,
    ),
    "alpine-3.18-x86_64-scalibr": (
        15,
        109,
        32,
        [("alpine-baselayout", "3.4.3-r1"), ("alpine-baselayout-data", "3.4.3-r1")],
        MOTD_318,
    ),
    "alpine-3.19.1-aarch64-minirootfs": (
        15,
        111,
        32,
        [("alpine-baselayout", "3.4.3-r2"), ("alpine-baselayout-data", "3.4.3-r2")],
        MOTD_318,
    ),
    "alpine-3.23.3-aarch64-apktools3": (
        22,
        194,
        40,
        [("alpine-baselayout", "3.7.1-r8"), ("alpine-baselayout-data", "3.7.1-r8")],
        MOTD_318,
    ),
}
VERIFIED = [
    "alpine-3.4.6-x86_64-haconiwa-rootfs",
    "alpine-3.6.0-x86_64-docker-export",
    "alpine-3.14.0-armv7-rootfs",
    "alpine-3.19.1-aarch64-minirootfs",
]


# --- helpers -------------------------------------------------------------------------------


def make_root(tmp_path: Path, installed: bytes, files: dict[str, bytes] | None = None) -> Path:
    root = tmp_path / "root"
    (root / DB).parent.mkdir(parents=True, exist_ok=True)
    (root / DB).write_bytes(installed)
    for name, data in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def read(root: Path) -> PackageDB:
    with RootFS(os.fspath(root)) as fs:
        return apk.read(fs)


def read_text(tmp_path: Path, installed: bytes) -> PackageDB:
    return read(make_root(tmp_path, installed))


def fixture_db(shared_fixtures: Path, name: str, tmp_path: Path) -> PackageDB:
    return read(make_root(tmp_path, (shared_fixtures / "apk" / f"{name}.installed").read_bytes()))


def q1(digest: bytes) -> str:
    return "Q1" + base64.b64encode(digest).decode()


def sha1_on_disk(fs: RootFS, record: InstalledFile) -> bytes | None:
    """What apk audit would compute: SHA-1 of a file's content, or of a symlink's target string."""
    physical = fs.resolve(record.path)
    try:
        mode = os.lstat(physical, dir_fd=fs.fd).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        return hashlib.sha1(os.readlink(physical, dir_fd=fs.fd)).digest()
    return hashlib.sha1(fs.read_bytes(record.path)).digest()


def classify(root: Path) -> dict[tuple[str, bytes], str]:
    """ok / mismatch / absent for every record of the root's own DB."""
    with RootFS(os.fspath(root)) as fs:
        db = apk.read(fs)
        result = {}
        for record in db.files:
            assert record.algorithm is DigestAlgorithm.SHA1
            actual = sha1_on_disk(fs, record)
            if actual is None:
                result[(record.package, record.path)] = "absent"
            else:
                result[(record.package, record.path)] = (
                    "ok" if actual == record.digest else "mismatch"
                )
        return result


def tsv_rows(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [line.split("\t") for line in lines if line and not line.startswith("#")]


def stanza(*lines: str, name: str = "pkg") -> bytes:
    return ("\n".join([f"P:{name}", "V:1.0-r0", "A:x86_64", *lines]) + "\n\n").encode()


def messages(db: PackageDB) -> list[str]:
    return [problem.message for problem in db.problems]


# --- the real DBs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_db_matches_provenance(shared_fixtures: Path, tmp_path: Path, name: str) -> None:
    packages, files, symlinks, first_two, motd = EXPECTED[name]
    db = fixture_db(shared_fixtures, name, tmp_path)
    assert db.problems == ()
    assert len(db.packages) == packages
    assert len(db.files) == files == sum(p.file_count for p in db.packages)
    assert sum(stat.S_ISLNK(f.mode or 0) for f in db.files) == symlinks
    assert [(p.name, p.version) for p in db.packages[:2]] == first_two
    assert all(p.manager == "apk" and p.arch and p.epoch is None for p in db.packages)
    (record,) = [f for f in db.files if f.path == b"etc/motd"]
    assert q1(record.digest or b"") == motd
    assert record.algorithm is DigestAlgorithm.SHA1 and record.is_config
    assert record.mode == stat.S_IFREG | 0o644 and record.size is None


@pytest.mark.parametrize("name", VERIFIED)
def test_every_verify_row_is_a_record(shared_fixtures: Path, tmp_path: Path, name: str) -> None:
    db = fixture_db(shared_fixtures, name, tmp_path)
    records = {(f.package, f.version, f.path, f.digest) for f in db.files}
    rows = tsv_rows(shared_fixtures / "apk" / f"{name}.verify.tsv")
    assert len(rows) == len(db.files)
    for package, version, path, kind, z, _result in rows:
        assert z.startswith("Q1")
        assert (package, version, path.encode(), base64.b64decode(z[2:])) in records
        mode = next(f.mode for f in db.files if f.path == path.encode())
        assert stat.S_ISLNK(mode or 0) == (kind == "link"), path


def test_sample_root_digest_semantics(shared_fixtures: Path) -> None:
    root = shared_fixtures / "apk" / "rootfs" / SAMPLE
    rows = tsv_rows(shared_fixtures / "apk" / "rootfs" / f"{SAMPLE}.expected-verify.tsv")
    expected = {(package, path.encode()): result for package, _v, path, _t, _z, result in rows}
    got = classify(root)
    assert got == expected
    assert Counter(got.values()) == {"ok": 55, "mismatch": 1, "absent": 55}
    assert [path for path, result in got.items() if result == "mismatch"] == [
        ("alpine-baselayout-data", b"etc/shadow")
    ]


def copy_sample(shared_fixtures: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(shared_fixtures / "apk" / "rootfs" / SAMPLE, root, symlinks=True)
    for directory, _dirs, names in os.walk(root):
        os.chmod(directory, 0o755)
        for name in names:
            os.chmod(os.path.join(directory, name), 0o644)
    return root


def test_tampered_sample_root_flags_exactly_the_tampered_files(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    root = copy_sample(shared_fixtures, tmp_path)
    before = classify(root)
    motd = bytearray((root / "etc/motd").read_bytes())
    motd[10] ^= 0x01  # same size, one bit
    (root / "etc/motd").write_bytes(bytes(motd))
    (root / "etc/profile").unlink()
    (root / "etc/modprobe.d/kms.conf").unlink()
    (root / "etc/modprobe.d/kms.conf").symlink_to("aliases.conf")
    after = classify(root)
    changed = {key: after[key] for key in after if after[key] != before[key]}
    assert changed == {
        ("alpine-baselayout", b"etc/motd"): "mismatch",
        ("alpine-baselayout-data", b"etc/profile"): "absent",
        ("alpine-baselayout", b"etc/modprobe.d/kms.conf"): "mismatch",
    }


def test_symlink_digest_is_of_the_target_string(shared_fixtures: Path, tmp_path: Path) -> None:
    root = copy_sample(shared_fixtures, tmp_path)
    (root / "bin").mkdir()
    (root / "bin/sh").symlink_to("/bin/busybox")  # dangling here: the target is never read
    key = ("busybox-binsh", b"bin/sh")
    assert classify(root)[key] == "ok"
    with RootFS(os.fspath(root)) as fs:
        (record,) = [f for f in apk.read(fs).files if f.path == b"bin/sh"]
    assert record.mode == stat.S_IFLNK | 0o777 and q1(record.digest or b"") == BUSYBOX_LINK
    assert record.link_target is None
    (root / "bin/sh").unlink()
    (root / "bin/sh").symlink_to("busybox")
    assert classify(root)[key] == "mismatch"


def test_protected_paths_make_config_files(shared_fixtures: Path, tmp_path: Path) -> None:
    db = fixture_db(shared_fixtures, "alpine-3.19.1-aarch64-minirootfs", tmp_path)
    config = {f.path for f in db.files if f.is_config}
    assert config and all(path.startswith(b"etc/") for path in config)
    assert {b"etc/motd", b"etc/shadow", b"etc/ssl/openssl.cnf"} <= config
    assert b"etc/apk/keys/alpine-devel@lists.alpinelinux.org-524d27bb.rsa.pub" in config
    assert b"usr/share/apk/keys/aarch64/alpine-devel@lists.alpinelinux.org-58199dcc.rsa.pub" in {
        f.path for f in db.files if not f.is_config
    }


def test_protected_paths_d_lists_are_read(shared_fixtures: Path, tmp_path: Path) -> None:
    installed = (
        shared_fixtures / "apk" / "alpine-3.19.1-aarch64-minirootfs.installed"
    ).read_bytes()
    root = make_root(
        tmp_path,
        installed,
        {
            "etc/apk/protected_paths.d/local.list": b"# comment\n\n-etc/motd\nusr/share/apk\n",
            "etc/apk/protected_paths.d/ignored.txt": b"+lib\n",
        },
    )
    db = read(root)
    config = {f.path: f.is_config for f in db.files}
    assert config[b"etc/motd"] is False  # '-' is "ignore": audited like any file
    assert config[b"etc/shadow"] is True
    assert all(config[p] for p in config if p.startswith(b"usr/share/apk/"))
    assert not any(config[p] for p in config if p.startswith(b"lib/"))


@pytest.mark.parametrize(
    ("lines", "directory", "name", "mode"),
    [
        ([b"+etc", b"@etc/init.d", b"!etc/apk"], b"etc", b"motd", ProtectMode.CHANGED),
        ([b"+etc", b"@etc/init.d", b"!etc/apk"], b"etc/init.d", b"x", ProtectMode.SYMLINKS_ONLY),
        ([b"+etc", b"@etc/init.d", b"!etc/apk"], b"etc/apk/keys", b"k", ProtectMode.ALL),
        ([b"+etc", b"@etc/init.d", b"!etc/apk"], b"usr/etc", b"x", ProtectMode.NONE),
        ([b"+etc"], b"", b"etc", ProtectMode.NONE),  # the root directory gets no rules
        ([b"etc/*.conf"], b"etc", b"a.conf", ProtectMode.CHANGED),
        ([b"etc/*.conf"], b"etc", b"a.cnf", ProtectMode.NONE),
        ([b"etc/*.conf"], b"etc/sub", b"a.conf", ProtectMode.NONE),
        ([b"+etc", b"-etc/x"], b"etc/x/y", b"f", ProtectMode.IGNORE),
        ([b"+/etc/"], b"etc", b"f", ProtectMode.CHANGED),  # slashes trimmed
        ([b"-etc", b"+etc"], b"etc", b"f", ProtectMode.CHANGED),  # the last match wins
    ],
)
def test_protected_path_rules(
    lines: list[bytes], directory: bytes, name: bytes, mode: ProtectMode
) -> None:
    assert ProtectedPaths(lines).mode(directory, name) is mode


# --- digests and modes ---------------------------------------------------------------------

SHA1_20 = bytes(range(20))
SHA256_32 = bytes(range(32))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (q1(SHA1_20).encode(), (SHA1_20, DigestAlgorithm.SHA1)),
        (b"X1" + SHA1_20.hex().encode(), (SHA1_20, DigestAlgorithm.SHA1)),
        (b"X1" + SHA1_20.hex().upper().encode(), (SHA1_20, DigestAlgorithm.SHA1)),
        (b"Q2" + base64.b64encode(SHA256_32), (SHA256_32, DigestAlgorithm.SHA256)),
        (b"X2" + SHA256_32.hex().encode(), (SHA256_32, DigestAlgorithm.SHA256)),
        (b"Q1" + base64.b64encode(SHA256_32), (SHA256_32, DigestAlgorithm.SHA256)),
        (bytes(range(16)).hex().encode(), (bytes(range(16)), DigestAlgorithm.MD5)),
        (b"Q1SLkS9hBidUbPwwrw+XR0Whv3ww8", None),  # no padding
        (b"Q1SLkS9hBidUbPwwrw+XR0Whv3w!8=", None),
        (b"Q1" + base64.b64encode(bytes(16)), None),
        (b"Q2" + base64.b64encode(SHA1_20), None),
        (b"X1" + SHA1_20.hex().encode()[:-1], None),
        (b"X1 " + SHA1_20.hex().encode(), None),
        (b"Y1" + base64.b64encode(SHA1_20), None),
        (b"Q3" + base64.b64encode(SHA1_20), None),
        (b"Q", None),
        (b"", None),
        (b"0123", None),
    ],
)
def test_parse_digest(value: bytes, expected: tuple[bytes, DigestAlgorithm] | None) -> None:
    parsed = parse_digest(value)
    if expected is None:
        assert isinstance(parsed, str)
    else:
        assert parsed == expected


@pytest.mark.parametrize(
    ("acl", "mode"),
    [
        (None, stat.S_IFREG | 0o644),
        ("a:0:0:755", stat.S_IFREG | 0o755),
        ("a:0:0:777", stat.S_IFLNK | 0o777),
        ("a:1000:1000:777", stat.S_IFLNK | 0o777),
        ("a:0:0:4755", stat.S_IFREG | 0o4755),
        ("a:0:42:2755:Q1" + base64.b64encode(SHA1_20).decode(), stat.S_IFREG | 0o2755),
        ("a:0:0:xyz", None),
    ],
)
def test_file_modes(tmp_path: Path, acl: str | None, mode: int | None) -> None:
    lines = ["F:usr/bin", "R:tool", *([acl] if acl else []), "Z:" + q1(SHA1_20)]
    db = read_text(tmp_path, stanza(*lines))
    (record,) = db.files
    assert (record.path, record.mode, record.digest) == (b"usr/bin/tool", mode, SHA1_20)
    assert (mode is None) == bool(db.problems)


def test_sha256_and_hex_digests_are_kept(tmp_path: Path) -> None:
    db = read_text(
        tmp_path,
        stanza(
            "F:usr/lib",
            "R:a",
            "Z:Q2" + base64.b64encode(SHA256_32).decode(),
            "R:b",
            "Z:X1" + SHA1_20.hex(),
        ),
    )
    assert db.problems == ()
    assert [(f.path, f.digest, f.algorithm) for f in db.files] == [
        (b"usr/lib/a", SHA256_32, DigestAlgorithm.SHA256),
        (b"usr/lib/b", SHA1_20, DigestAlgorithm.SHA1),
    ]


def test_sha256_160_package_digests_are_truncated_sha256(tmp_path: Path) -> None:
    data = stanza("f:S", "F:usr/bin", "R:a", "Z:" + q1(SHA1_20), "R:b", "Z:" + q1(SHA1_20))
    db = read_text(tmp_path, data + stanza("F:etc", "R:c", "Z:" + q1(SHA1_20), name="other"))
    assert [(f.path, f.digest, f.algorithm) for f in db.files] == [
        (b"usr/bin/a", SHA1_20, DigestAlgorithm.SHA256_160),
        (b"usr/bin/b", SHA1_20, DigestAlgorithm.SHA256_160),
        (b"etc/c", SHA1_20, DigestAlgorithm.SHA1),
    ]
    assert messages(db) == []


def test_files_in_the_root_directory(tmp_path: Path) -> None:
    db = read_text(tmp_path, stanza("F:", "R:top", "Z:" + q1(SHA1_20), "F:etc/", "R:x"))
    assert [(f.path, f.digest) for f in db.files] == [(b"top", SHA1_20), (b"etc/x", None)]
    assert db.problems == ()


# --- bad input -----------------------------------------------------------------------------


def test_unknown_field_letters_are_ignored(tmp_path: Path) -> None:
    data = stanza("F:etc", "j:whatever", "R:x", "7:seven", "Z:" + q1(SHA1_20), "~:tilde")
    db = read_text(tmp_path, data)
    assert db.problems == ()
    assert [(f.path, f.digest) for f in db.files] == [(b"etc/x", SHA1_20)]


@pytest.mark.parametrize(
    "z",
    [
        "Q1SLkS9hBidUbPwwrw+XR0Whv3w!8=",  # bad base64
        "Q1" + base64.b64encode(bytes(16)).decode(),  # 16 bytes
        "Q1" + base64.b64encode(bytes(24)).decode(),  # 24 bytes
        "Q2" + base64.b64encode(SHA1_20).decode(),  # Q2 must be 32 bytes
    ],
)
def test_bad_digest_is_a_problem_naming_package_and_file(tmp_path: Path, z: str) -> None:
    data = stanza("F:etc", "R:bad", f"Z:{z}", "R:good", "Z:" + q1(SHA1_20), name="victim")
    db = read_text(tmp_path, data)
    assert [(f.path, f.digest, f.algorithm) for f in db.files] == [
        (b"etc/bad", None, None),
        (b"etc/good", SHA1_20, DigestAlgorithm.SHA1),
    ]
    (message,) = messages(db)
    assert message.startswith("line 6: package victim: etc/bad: bad digest"), message


def test_db_cut_mid_stanza(shared_fixtures: Path, tmp_path: Path) -> None:
    installed = (shared_fixtures / "apk" / "alpine-3.14.0-armv7-rootfs.installed").read_bytes()
    cut = installed.index(b"\nZ:Q1", len(installed) // 2) + 10  # inside a Z: value
    db = read_text(tmp_path, installed[:cut])
    whole = read(make_root(tmp_path / "whole", installed))
    assert 0 < len(db.packages) < len(whole.packages)
    assert db.files[-1].digest is None
    assert set(db.files[:-1]) <= set(whole.files)
    text = " | ".join(messages(db))
    assert "bad digest" in text and "no final newline" in text


def test_r_before_any_f(tmp_path: Path) -> None:
    db = read_text(tmp_path, stanza("R:orphan", "a:0:0:755", "Z:" + q1(SHA1_20), "F:etc", "R:x"))
    assert [f.path for f in db.files] == [b"etc/x"]
    assert messages(db) == [
        "line 4: package pkg: R:orphan before any F: line (ignored)",
        "line 5: package pkg: a: without an R: line (ignored)",
        "line 6: package pkg: Z: without an R: line (ignored)",
    ]


def test_a_and_z_after_a_new_f_do_not_attach_to_the_previous_file(tmp_path: Path) -> None:
    db = read_text(tmp_path, stanza("F:etc", "R:x", "F:usr", "Z:" + q1(SHA1_20)))
    assert [(f.path, f.digest) for f in db.files] == [(b"etc/x", None)]
    assert messages(db) == ["line 7: package pkg: Z: without an R: line (ignored)"]


def test_binary_garbage_is_an_error(tmp_path: Path) -> None:
    garbage = random.Random(448).randbytes(64 * 1024)
    with pytest.raises(apk.ApkDBError, match="no package stanza found"):
        read_text(tmp_path, garbage)


def test_garbage_lines_are_bounded_problems(tmp_path: Path) -> None:
    garbage = b"\n".join(b"garbage line %d" % i for i in range(1000))
    db = read_text(tmp_path, stanza("F:etc", "R:x") + garbage + b"\n\n" + stanza(name="second"))
    assert [p.name for p in db.packages] == ["pkg", "second"]
    assert len(db.problems) == apk.MAX_LINE_PROBLEMS + 1
    assert db.problems[0].message == "line 7: not a 'X:value' line: 'garbage line 0' (ignored)"
    assert db.problems[-1].message == "980 more malformed lines not listed"


def test_non_utf8_paths_stay_bytes(tmp_path: Path) -> None:
    data = b"P:pkg\nV:1\nF:usr/share/caf\xe9\nR:\xff\xfe.txt\nZ:" + q1(SHA1_20).encode() + b"\n\n"
    db = read_text(tmp_path, data)
    assert db.problems == ()
    assert [f.path for f in db.files] == [b"usr/share/caf\xe9/\xff\xfe.txt"]


def test_nul_bytes_in_paths_are_problems(tmp_path: Path) -> None:
    db = read_text(tmp_path, b"P:pkg\nV:1\nF:e\0tc\nR:x\nF:usr\nR:a\0b\nR:ok\n\n")
    assert [f.path for f in db.files] == [b"usr/ok"]
    assert len(db.problems) == 2


def test_non_ascii_package_name_is_reported(tmp_path: Path) -> None:
    db = read_text(tmp_path, b"P:caf\xe9\nV:1\n\n")
    assert [p.name for p in db.packages] == ["caf\\xe9"]
    assert "not ASCII" in messages(db)[0]


def test_empty_file_is_an_empty_db_and_a_problem(tmp_path: Path) -> None:
    # apk-tools is itself a package: an empty DB hides every package, it is not a clean root
    for where, data in ((tmp_path, b""), (tmp_path / "blank", b"\n\n\n")):
        db = read_text(where, data)
        assert (db.packages, db.files) == ((), ())
        assert messages(db) == ["lists no package (empty): no package's files can be verified"]


def test_stanza_problems(tmp_path: Path) -> None:
    data = (
        b"V:1\nF:etc\nR:x\n\n"  # no P:
        b"P:nover\nF:etc\nR:y\n\n"
        + stanza("f:Sq", name="flags")
        + stanza("F:etc", "R:x", "R:x", name="dup")
    )
    db = read_text(tmp_path, data)
    assert [(p.name, p.version, p.file_count) for p in db.packages] == [
        ("nover", "", 1),
        ("flags", "1.0-r0", 0),
        ("dup", "1.0-r0", 2),
    ]
    assert messages(db) == [
        "line 1: stanza without a P: line (1 files ignored)",
        "line 5: package nover: no V: line",
        (
            "line 9: package flags: unknown f: flag(s) 'q' (apk-tools would refuse this DB as "
            "too new); digests read as usual"
        ),
        "line 19: package dup: etc/x is also listed by dup; both records kept",
    ]


def test_single_byte_line_ends_a_stanza_like_apk(tmp_path: Path) -> None:
    db = read_text(tmp_path, b"P:a\nV:1\nx\nP:b\nV:2\n\n")
    assert [p.name for p in db.packages] == ["a", "b"]
    assert messages(db) == [
        "line 3: not a 'X:value' line: 'x' (taken as the end of a stanza, as apk does)"
    ]


def test_seeded_mutations_never_crash(shared_fixtures: Path, tmp_path: Path) -> None:
    installed = (shared_fixtures / "apk" / "alpine-3.14.0-armv7-rootfs.installed").read_bytes()
    rng = random.Random(3)
    root = make_root(tmp_path, b"")
    with RootFS(os.fspath(root)) as fs:
        for _ in range(300):
            data = bytearray(installed[: rng.randrange(len(installed) + 1)])
            for _ in range(rng.randrange(8)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            (root / DB).write_bytes(bytes(data))
            try:
                db = apk.read(fs)
            except apk.ApkDBError:
                continue
            assert sum(p.file_count for p in db.packages) == len(db.files)
            assert all(b"\0" not in f.path for f in db.files)


# --- where the DB is, and what cannot be read ----------------------------------------------


def test_present_and_usr_lib_location(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with RootFS(os.fspath(tmp_path / "empty")) as fs:
        assert not apk.present(fs)
        with pytest.raises(apk.ApkDBError, match="no apk installed database"):
            apk.read(fs)
    root = tmp_path / "usrmerged"
    (root / "usr/lib/apk/db").mkdir(parents=True)
    (root / "usr/lib/apk/db/installed").write_bytes(stanza("F:etc", "R:x"))
    with RootFS(os.fspath(root)) as fs:
        assert apk.present(fs)
        assert [p.name for p in apk.read(fs).packages] == ["pkg"]
    (root / "lib").symlink_to("usr/lib")
    with RootFS(os.fspath(root)) as fs:
        assert [p.name for p in apk.read(fs).packages] == ["pkg"]


def test_hostile_symlinked_db_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(stanza("F:etc", "R:secret", name="host"))
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / DB).symlink_to(outside)
    with RootFS(os.fspath(root)) as fs:
        assert apk.present(fs)
        with pytest.raises(apk.ApkDBError, match="cannot read"):
            apk.read(fs)


def test_db_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "root" / DB).mkdir(parents=True)
    with RootFS(os.fspath(tmp_path / "root")) as fs, pytest.raises(apk.ApkDBError, match="read"):
        apk.read(fs)


def test_unreadable_protected_paths_list_is_a_problem(tmp_path: Path) -> None:
    root = make_root(tmp_path, stanza("F:etc", "R:x"))
    (root / "etc/apk/protected_paths.d/bad.list").mkdir(parents=True)
    db = read(root)
    assert [f.is_config for f in db.files] == [True]
    assert [(p.source, p.message) for p in db.problems] == [
        (b"etc/apk/protected_paths.d/bad.list", "cannot read: not a regular file")
    ]
