"""pkgdb.dpkg: this machine's dpkg DB against dpkg's own tools, the real fixtures, and bad input."""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from debian import deb822

from pkgdb import DigestAlgorithm, RootFS, dpkg
from pkgdb.dpkg_files import parse_conffiles, parse_md5sums
from pkgdb.dpkg_filters import glob_to_regex
from pkgdb.stanzas import MalformedLines, Stanza, parse_stanzas

UBUNTU = "ubuntu-24.04-amd64-lxc"
UBUNTU_DEINSTALLED = {"git", "libglib2.0-0", "libmagic1", "libssl3", "tcpdump"}
HOST_HAS_DPKG = shutil.which("dpkg-query") is not None and Path("/var/lib/dpkg/status").is_file()
NOT_A_FIELD = "neither a 'Field: value' line nor a continuation line (ignored)"
needs_host_dpkg = pytest.mark.skipif(not HOST_HAS_DPKG, reason="this machine has no dpkg database")


# --- helpers -------------------------------------------------------------------------------


def read(root: Path | str) -> dpkg.DpkgDB:
    with RootFS(os.fspath(root)) as fs:
        return dpkg.read(fs)


def make_root(
    tmp_path: Path,
    status: bytes | None = None,
    info: dict[str, bytes] | None = None,
    files: dict[str, bytes] | None = None,
) -> Path:
    """A root with `var/lib/dpkg/status`, `info/<name>` files and any other `files`."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True, exist_ok=True)
    if status is not None:
        (root / "var/lib/dpkg/status").write_bytes(status)
    for name, data in (info or {}).items():
        (root / "var/lib/dpkg/info" / name).write_bytes(data)
    for name, data in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def stanza(package: str, status: str | None = "install ok installed", **extra: str) -> bytes:
    lines = [f"Package: {package}"]
    if status is not None:
        lines.append(f"Status: {status}")
    lines += ["Version: 1.0-1", "Architecture: amd64"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in extra.items()]
    return ("\n".join(lines) + "\n\n").encode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def records(db: dpkg.DpkgDB, package: str | None = None) -> set[tuple[bytes, str | None, bool]]:
    return {
        (f.path, f.digest.hex() if f.digest is not None else None, f.is_config)
        for f in db.files
        if package is None or f.package == package
    }


def messages(db: dpkg.DpkgDB) -> list[str]:
    return [f"{p.source.decode(errors='replace')}: {p.message}" for p in db.problems]


@pytest.fixture(scope="session")
def ubuntu_root(shared_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Ubuntu 24.04 status with all its info files, laid out as PROVENANCE.md says."""
    root = tmp_path_factory.mktemp("ubuntu") / "root"
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    shutil.copyfile(
        shared_fixtures / "dpkg/status" / f"{UBUNTU}.status", root / "var/lib/dpkg/status"
    )
    for source in (shared_fixtures / "dpkg/md5sums" / UBUNTU).iterdir():
        shutil.copyfile(source, info / source.name)
    return root


@pytest.fixture(scope="session")
def ubuntu_db(ubuntu_root: Path) -> dpkg.DpkgDB:
    return read(ubuntu_root)


# --- this machine's own dpkg DB, with dpkg's tools as referee -------------------------------


def dpkg_query(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], check=True, capture_output=True, text=True).stdout


def host_diversions() -> dict[bytes, tuple[bytes, str | None]]:
    """`dpkg-divert --list`: original -> (diverted to, diverting package or None if local)."""
    out = subprocess.run(["dpkg-divert", "--list"], check=True, capture_output=True).stdout
    found: dict[bytes, tuple[bytes, str | None]] = {}
    for line in out.splitlines():
        match = re.fullmatch(rb"(local )?diversion of (/\S+) to (/\S+)(?: by (\S+))?", line)
        assert match is not None, line
        package = None if match.group(1) else match.group(4).decode()
        found[match.group(2).lstrip(b"/")] = (match.group(3).lstrip(b"/"), package)
    return found


@pytest.fixture(scope="module")
def host_db() -> dpkg.DpkgDB:
    if not HOST_HAS_DPKG:
        pytest.skip("this machine has no dpkg database")
    return read("/")


# dpkg-query's second Status-Abbrev letter: the states whose files are on disk.
_ON_DISK_ABBREV = set("iUFWtH")


@needs_host_dpkg
def test_host_packages_are_what_dpkg_query_says_is_installed(host_db: dpkg.DpkgDB) -> None:
    expected = set()
    for line in dpkg_query(
        "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Architecture}\n"
    ).splitlines():
        abbrev, name, arch = line.split("\t")
        if abbrev[1] in _ON_DISK_ABBREV:
            expected.add((name, arch))
    assert {(p.name, p.arch) for p in host_db.packages} == expected
    assert len(host_db.packages) == len(expected)  # no duplicates either
    assert host_db.problems == ()


@needs_host_dpkg
def test_host_versions_are_dpkg_query_versions(host_db: dpkg.DpkgDB) -> None:
    lines = dpkg_query("-W", "-f", "${Package}\t${Architecture}\t${Version}\n").splitlines()
    expected: dict[tuple[str, str | None], str] = {
        (name, arch): version for name, arch, version in (line.split("\t") for line in lines)
    }
    assert all(expected[(p.name, p.arch)] == p.version for p in host_db.packages)


def _sample_packages(db: dpkg.DpkgDB) -> list[str]:
    """Every 23rd package plus every one touched by a diversion or with a Multi-Arch name."""
    names = sorted({p.name + ":" + (p.arch or "") for p in db.packages})
    sample = set(names[::23])
    diverted = {path for path, _ in host_diversions().values()} | set(host_diversions())
    sample |= {f"{f.package}:" for f in db.files if f.path in diverted}
    return sorted(sample)


@needs_host_dpkg
def test_host_md5sums_records_equal_dpkg_control_show(host_db: dpkg.DpkgDB) -> None:
    diversions = host_diversions()
    arch_of = {p.name: p.arch for p in host_db.packages}
    checked = 0
    for spec in _sample_packages(host_db):
        name = spec.split(":")[0]
        out = subprocess.run(
            ["dpkg-query", "--control-show", f"{name}:{arch_of[name]}", "md5sums"],
            capture_output=True,
            check=False,
        )
        if out.returncode != 0:
            continue  # no md5sums control file; covered by the "no problems" assertion above
        expected = set()
        for line in out.stdout.splitlines():
            digest, path = line.split(None, 1)
            diverted = diversions.get(path)
            if diverted is not None and diverted[1] != name:
                path = diverted[0]
            expected.add((path, digest.decode(), False))
        mine = {r for r in records(host_db, name) if not r[2]}
        assert mine == expected, name
        checked += 1
    assert checked >= 20


@needs_host_dpkg
def test_host_conffiles_equal_dpkg_query(host_db: dpkg.DpkgDB) -> None:
    expected = set()
    out = dpkg_query("-W", "-f", "@@${db:Status-Abbrev}\t${Package}\n${Conffiles}\n")
    for block in out.split("@@")[1:]:
        head, _, body = block.partition("\n")
        abbrev, name = head.split("\t")
        if abbrev[1] not in _ON_DISK_ABBREV:
            continue
        for line in body.splitlines():
            words = line.split()
            if not words or words[-1] in ("obsolete", "remove-on-upgrade"):
                continue
            digest = None if words[-1] == "newconffile" else words[-1]
            path = line.strip().rsplit(None, 1)[0].lstrip("/").encode()
            expected.add((name, path, digest))
    mine = {
        (f.package, f.path, f.digest.hex() if f.digest else None)
        for f in host_db.files
        if f.is_config
    }
    assert mine == expected
    assert sum(f.is_config for f in host_db.files) == len(expected)


@needs_host_dpkg
def test_host_diverted_files_are_found_where_dpkg_put_them(host_db: dpkg.DpkgDB) -> None:
    """Reality check: each diverted record's digest is the md5 of the file at its new path."""
    diversions = host_diversions()
    if not diversions:
        pytest.skip("this machine has no dpkg diversions")
    moved = [
        f
        for f in host_db.files
        if any(f.path == to and f.package != by for to, by in diversions.values())
    ]
    assert moved, "diversions exist but no package's file was moved"
    for record in moved:
        assert record.digest is not None
        data = Path("/", os.fsdecode(record.path)).read_bytes()
        assert hashlib.md5(data).digest() == record.digest, record


@needs_host_dpkg
def test_host_status_parsed_like_python_debian() -> None:
    _assert_same_as_python_debian(Path("/var/lib/dpkg/status").read_bytes())


@needs_host_dpkg
def test_host_every_file_record_is_md5_and_relative(host_db: dpkg.DpkgDB) -> None:
    assert len(host_db.files) > 1000
    assert all(not f.path.startswith(b"/") for f in host_db.files)
    assert all(f.algorithm is DigestAlgorithm.MD5 for f in host_db.files if f.digest is not None)
    assert all(len(f.digest) == 16 for f in host_db.files if f.digest is not None)
    counts: dict[str, int] = {}
    for f in host_db.files:
        counts[f.package] = counts.get(f.package, 0) + 1
    # file_count is per (name, arch); sum it per name to compare with the per-name count
    per_name: dict[str, int] = {}
    for p in host_db.packages:
        per_name[p.name] = per_name.get(p.name, 0) + p.file_count
    assert {k: v for k, v in per_name.items() if v} == counts


# --- python-debian as referee for the stanza parser -----------------------------------------

_FIELDS = ["Package", "Status", "Version", "Architecture", "Multi-Arch", "Conffiles"]


def _assert_same_as_python_debian(data: bytes) -> None:
    ours = [s for s in parse_stanzas(data, frozenset(f.encode() for f in _FIELDS))]
    assert all(isinstance(s, Stanza) for s in ours)
    theirs = list(deb822.Deb822.iter_paragraphs(data.split(b"\n"), fields=_FIELDS))
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert isinstance(mine, Stanza)
        decoded = {k.decode(): v.decode() for k, v in mine.fields.items()}
        assert decoded == {k: v for k, v in reference.items()}


def test_fixture_status_parsed_like_python_debian(shared_fixtures: Path) -> None:
    _assert_same_as_python_debian(
        (shared_fixtures / "dpkg/status" / f"{UBUNTU}.status").read_bytes()
    )


# --- the real fixtures ----------------------------------------------------------------------


def test_ubuntu_installed_packages(ubuntu_db: dpkg.DpkgDB) -> None:
    names = {p.name for p in ubuntu_db.packages}
    assert len(ubuntu_db.packages) == 348
    assert not names & UBUNTU_DEINSTALLED
    assert ubuntu_db.problems == ()
    assert ubuntu_db.filtered == 0
    base_files = next(p for p in ubuntu_db.packages if p.name == "base-files")
    assert (base_files.version, base_files.arch) == ("13ubuntu10.4", "amd64")
    libc6 = next(p for p in ubuntu_db.packages if p.name == "libc6")
    assert libc6.version == "2.39-0ubuntu8.7"
    assert libc6.file_count > 0  # found as libc6:amd64.md5sums


def test_ubuntu_netbase_records(ubuntu_db: dpkg.DpkgDB) -> None:
    netbase = records(ubuntu_db, "netbase")
    assert (
        b"usr/share/doc/netbase/copyright",
        "78dd2c7c6f487348e4a0092c17a19d42",
        False,
    ) in netbase
    assert (b"etc/services", "3975f0d8c4e1ecb25f035edfb1ba27ac", True) in netbase
    assert len(netbase) == 6  # 2 md5sums lines + 4 conffiles


def test_ubuntu_counts_match_ground_truth(ubuntu_db: dpkg.DpkgDB, shared_fixtures: Path) -> None:
    """verify-summary.tsv counts every md5sums line and conffile, including 3 obsolete conffiles
    and 2 conffiles left by `config-files` packages, which we skip on purpose."""
    summary = (shared_fixtures / "dpkg/md5sums" / f"{UBUNTU}.verify-summary.tsv").read_text()
    entries = sum(
        int(line.split("\t")[1]) for line in summary.splitlines() if not line.startswith("#")
    )
    assert len(ubuntu_db.files) == entries - 3 - 2
    assert sum(f.is_config for f in ubuntu_db.files) == 267
    md5sums_lines = sum(
        len(path.read_bytes().splitlines())
        for path in (shared_fixtures / "dpkg/md5sums" / UBUNTU).glob("*.md5sums")
    )
    assert sum(not f.is_config for f in ubuntu_db.files) == md5sums_lines
    assert sum(p.file_count for p in ubuntu_db.packages) == len(ubuntu_db.files)


def test_ubuntu_sample_root_matches_expected_verify(shared_fixtures: Path) -> None:
    root = shared_fixtures / "dpkg/rootfs" / f"{UBUNTU}-sample"
    db = read(root)  # in place, read-only
    expected = set()
    obsolete = set()
    left_by_removed_packages = set()
    for line in (root.parent / f"{UBUNTU}-sample.expected-verify.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        package, source, path, digest, _result = line.split("\t")
        row = (package, path.lstrip("/").encode(), digest, source != "md5sums")
        if source == "conffile(obsolete)":
            obsolete.add(row)
        elif package in UBUNTU_DEINSTALLED:
            left_by_removed_packages.add(row)
        else:
            expected.add(row)
    mine = {
        (f.package, f.path, f.digest.hex() if f.digest else "newconffile", f.is_config)
        for f in db.files
    }
    assert mine == expected
    assert len(obsolete) == 3 and len(left_by_removed_packages) == 2
    assert len(db.packages) == 348
    # the other 342 installed packages have no info files in this sample: each says so
    assert len(db.problems) == 342
    assert all("no md5sums file and no file list" in p.message for p in db.problems)


def test_distroless_static_without_md5sums(shared_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(
        shared_fixtures / "dpkg/status.d/distroless-static-debian11", root / "var/lib/dpkg/status.d"
    )
    db = read(root)
    assert {(p.name, p.version, p.arch) for p in db.packages} == {
        ("base-files", "11.1+deb11u1", "amd64"),  # from the file named `base`
        ("netbase", "6.3", "all"),
        ("tzdata", "2021a-1+deb11u2", "all"),
    }
    assert db.files == ()
    assert sorted(messages(db)) == [
        f"var/lib/dpkg/status.d: package {name}: no md5sums file: its files cannot be verified"
        for name in ("base-files", "netbase", "tzdata")
    ]


def test_distroless_libsqlite3_with_md5sums(shared_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(
        shared_fixtures / "dpkg/status.d/distroless-libsqlite3-0-arm64",
        root / "var/lib/dpkg/status.d",
    )
    db = read(root)
    assert [(p.name, p.version, p.arch, p.file_count) for p in db.packages] == [
        ("libsqlite3-0", "3.34.1-3", "arm64", 6)
    ]
    assert db.problems == ()
    assert (
        b"usr/lib/aarch64-linux-gnu/libsqlite3.so.0.8.6",
        "e11d70c96979a1328ae4e7e50542782b",
        False,
    ) in records(db)
    # the last line has no final newline and must not lose its last character
    assert (
        b"usr/share/doc/libsqlite3-0/copyright",
        "be64db3e095486e5e105652c51199358",
        False,
    ) in records(db)


def test_status_d_md5sums_named_after_the_package_in_a_multi_stanza_file(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        files={
            "var/lib/dpkg/status.d/bundle": stanza("a", None) + stanza("b", None),
            "var/lib/dpkg/status.d/b.md5sums": f"{md5(b'b')}  usr/bin/b\n".encode(),
        },
    )
    db = read(root)
    assert records(db) == {(b"usr/bin/b", md5(b"b"), False)}
    assert messages(db) == [
        "var/lib/dpkg/status.d: package a: no md5sums file: its files cannot be verified"
    ]


# --- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "installed", "problem"),
    [
        ("install ok installed", True, None),
        ("hold ok installed", True, None),
        ("deinstall ok installed", True, None),  # marked for removal, still on disk
        ("install ok unpacked", True, None),
        ("install ok half-configured", True, None),
        ("install ok triggers-pending", True, None),
        ("install ok triggers-awaited", True, None),
        ("install reinstreq half-installed", True, "half-installed"),
        ("install reinstreq installed", True, "reinstall required"),
        ("deinstall ok config-files", False, None),
        ("purge ok not-installed", False, None),
        ("install ok exploded", False, "unknown status"),
        ("install installed", False, "not 'want flag status'"),
    ],
)
def test_status_values(tmp_path: Path, status: str, installed: bool, problem: str | None) -> None:
    conffiles = "\n /etc/p.conf " + md5(b"conf")
    root = make_root(
        tmp_path,
        stanza("p", status, Conffiles=conffiles),
        {"p.md5sums": f"{md5(b'x')}  usr/bin/p\n".encode()},
    )
    db = read(root)
    assert [p.name for p in db.packages] == (["p"] if installed else [])
    assert len(db.files) == (2 if installed else 0)
    found = messages(db)
    # dpkg deletes the md5sums of a package it removes: left behind, they are a problem
    orphan = "var/lib/dpkg/info: md5sums of no installed package: p.md5sums; "
    assert [m for m in found if m.startswith(orphan)] == ([] if installed else [found[-1]])
    found = [m for m in found if not m.startswith(orphan)]
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]


def test_stanza_without_status_in_status_file_is_a_problem(tmp_path: Path) -> None:
    db = read(make_root(tmp_path, stanza("nostatus", None) + stanza("ok")))
    assert [p.name for p in db.packages] == ["ok"]
    assert any("package nostatus: no Status field" in m for m in messages(db))


# --- md5sums --------------------------------------------------------------------------------


def test_md5sums_malformed_lines_are_problems_and_the_rest_is_used(tmp_path: Path) -> None:
    good = md5(b"good")
    md5sums = (
        f"{good}  usr/bin/good\n"
        f"{good[:-1]}x  usr/bin/badhex\n"
        f"{good}\n"
        f"{good}  usr/share/doc/p/file with  spaces \n"
        "\n"
        f"{good}  usr/bin/last"  # no final newline
    ).encode()
    db = read(make_root(tmp_path, stanza("p"), {"p.md5sums": md5sums}))
    assert records(db) == {
        (b"usr/bin/good", good, False),
        (b"usr/share/doc/p/file with  spaces ", good, False),
        (b"usr/bin/last", good, False),
    }
    assert messages(db) == [
        "var/lib/dpkg/info/p.md5sums: line 2: not an MD5 digest (32 hex digits): "
        + repr(f"{good[:-1]}x".encode())
        + " (ignored)",
        "var/lib/dpkg/info/p.md5sums: line 3: no path after the digest (ignored)",
    ]
    assert db.packages[0].file_count == 3


def test_md5sums_non_utf8_filename_survives_as_bytes(tmp_path: Path) -> None:
    name = b"usr/share/doc/p/caf\xe9-\xff.txt"  # Latin-1, not UTF-8
    db = read(
        make_root(tmp_path, stanza("p"), {"p.md5sums": md5(b"x").encode() + b"  " + name + b"\n"})
    )
    assert [f.path for f in db.files] == [name]
    assert db.problems == ()


@pytest.mark.parametrize(
    ("data", "entries", "errors"),
    [
        (b"", [], []),
        (b"\n\n", [], []),
        (
            b"0123456789abcdef0123456789ABCDEF  a b\n",
            [(b"a b", bytes.fromhex("0123456789abcdef0123456789abcdef"))],
            [],
        ),
        (
            b"0123456789abcdef0123456789abcdef\tx\n",
            [(b"x", bytes.fromhex("0123456789abcdef0123456789abcdef"))],
            [],
        ),
        (
            b"0123456789abcdef0123456789abcdef  /abs\n",
            [(b"abs", bytes.fromhex("0123456789abcdef0123456789abcdef"))],
            [],
        ),
        (
            b"0123456789abcdef0123456789abcde  short\n",
            [],
            [(1, "not an MD5 digest (32 hex digits): b'0123456789abcdef0123456789abcde'")],
        ),
        (b"\x00\xff garbage\n", [], [(1, "not an MD5 digest (32 hex digits): b'\\x00\\xff'")]),
    ],
)
def test_parse_md5sums_table(
    data: bytes, entries: list[tuple[bytes, bytes]], errors: list[tuple[int, str]]
) -> None:
    assert parse_md5sums(data) == (entries, errors)


def test_multiarch_same_md5sums_named_with_arch(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        stanza("libx", Multi_Arch="same"),
        {"libx:amd64.md5sums": f"{md5(b'so')}  usr/lib/x86_64-linux-gnu/libx.so.1\n".encode()},
    )
    db = read(root)
    assert records(db) == {(b"usr/lib/x86_64-linux-gnu/libx.so.1", md5(b"so"), False)}
    assert db.problems == ()


@pytest.mark.parametrize(
    ("list_file", "problem"),
    [
        (None, "package p: no md5sums file and no file list: its files cannot be verified"),
        (b"/.\n/usr\n/usr/share\n/usr/share/doc\n", None),  # only directories: nothing to verify
        (
            b"/.\n/usr\n/usr/bin\n/usr/bin/p\n",
            "package p: no md5sums file: 1 listed files cannot be verified",
        ),
        (b"/usr/bin/gone\n", "package p: no md5sums file: 1 listed files cannot be verified"),
        (b"/usr/bin/link\n", None),  # a symlink has no md5sums entry anyway
    ],
)
def test_package_without_md5sums(
    tmp_path: Path, list_file: bytes | None, problem: str | None
) -> None:
    root = make_root(
        tmp_path,
        stanza("p"),
        {"p.list": list_file} if list_file is not None else {},
        {"usr/bin/p": b"binary", "usr/share/doc/.keep": b""},
    )
    (root / "usr/bin/link").symlink_to("p")
    db = read(root)
    assert [p.name for p in db.packages] == ["p"] and db.files == ()
    assert messages(db) == ([] if problem is None else [f"var/lib/dpkg/info: {problem}"])


def test_hostile_symlinked_md5sums_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md5sums"
    outside.write_bytes(f"{md5(b'x')}  etc/shadow\n".encode())
    root = make_root(tmp_path, stanza("p"))
    (root / "var/lib/dpkg/info/p.md5sums").symlink_to(outside)
    db = read(root)
    assert db.files == ()
    assert len(db.problems) == 1 and "cannot read" in db.problems[0].message


# --- conffiles ------------------------------------------------------------------------------


def test_conffiles(tmp_path: Path) -> None:
    conffiles = "\n".join(
        [
            "",
            f" /etc/p/a.conf {md5(b'a')}",
            " /etc/p/new.conf newconffile",
            f" /etc/p/old.conf {md5(b'old')} obsolete",
            " /etc/p/gone.conf newconffile remove-on-upgrade",
            f" /etc/p/with space.conf {md5(b's')}",
            f" /etc/p/shared {md5(b'conf')}",
            " /etc/p/bad notadigest",
        ]
    )
    md5sums = f"{md5(b'bin')}  usr/bin/p\n{md5(b'payload')}  etc/p/shared\n".encode()
    db = read(make_root(tmp_path, stanza("p", Conffiles=conffiles), {"p.md5sums": md5sums}))
    assert records(db) == {
        (b"usr/bin/p", md5(b"bin"), False),
        (b"etc/p/a.conf", md5(b"a"), True),
        (b"etc/p/new.conf", None, True),
        (b"etc/p/with space.conf", md5(b"s"), True),
        (b"etc/p/shared", md5(b"conf"), True),  # in both: the conffile wins
    }
    new = next(f for f in db.files if f.path == b"etc/p/new.conf")
    assert new.algorithm is None
    assert len(db.problems) == 1 and "Conffiles line 8" in db.problems[0].message


def test_parse_conffiles_flags() -> None:
    conffiles, errors = parse_conffiles(
        b"\n /etc/a 0123456789abcdef0123456789abcdef obsolete remove-on-upgrade"
    )
    assert errors == []
    assert [(c.path, c.obsolete, c.remove_on_upgrade) for c in conffiles] == [
        (b"etc/a", True, True)
    ]


# --- corrupt status -------------------------------------------------------------------------


def test_status_cut_mid_stanza(ubuntu_root: Path, ubuntu_db: dpkg.DpkgDB, tmp_path: Path) -> None:
    data = (ubuntu_root / "var/lib/dpkg/status").read_bytes()
    netbase = data.index(b"Package: netbase\n")
    cut = data.index(b" /etc/services 3975f", netbase) + len(b" /etc/services 3975f")
    root = tmp_path / "root"
    shutil.copytree(ubuntu_root, root)
    (root / "var/lib/dpkg/status").write_bytes(data[:cut])
    db = read(root)
    names = [p.name for p in db.packages]
    full = [p.name for p in ubuntu_db.packages]
    assert names == full[: full.index("netbase") + 1]
    line = data.count(b"\n", 0, netbase) + 1
    problems = messages(db)
    assert (
        problems[0]
        == "var/lib/dpkg/status: does not end with a newline: the last stanza may be truncated"
    )
    assert len(problems) == 3 and problems[1].startswith(
        f"var/lib/dpkg/status: line {line}: package netbase: Conffiles line "
    )
    assert "neither MD5 nor 'newconffile'" in problems[1]
    # the packages cut off left their md5sums: said
    assert problems[2].startswith("var/lib/dpkg/info: md5sums of no installed package: ")
    netbase_files = records(db, "netbase")
    assert (
        b"usr/share/doc/netbase/copyright",
        "78dd2c7c6f487348e4a0092c17a19d42",
        False,
    ) in netbase_files
    assert not any(path == b"etc/services" for path, _, _ in netbase_files)


def test_status_binary_garbage_is_an_error(tmp_path: Path) -> None:
    garbage = random.Random(448).randbytes(64 * 1024)
    with pytest.raises(dpkg.DpkgDBError, match="no package stanza found"):
        read(make_root(tmp_path, garbage))


def test_status_garbage_between_stanzas_is_a_problem(tmp_path: Path) -> None:
    status = stanza("a") + b"\x00\x01\x02binary\xff\n\xfe\xfd more\n\n" + stanza("b")
    db = read(make_root(tmp_path, status, {"a.list": b"", "b.list": b""}))
    assert [p.name for p in db.packages] == ["a", "b"]
    assert messages(db) == [
        "var/lib/dpkg/status: lines 6-7: " + NOT_A_FIELD,
    ]


def test_status_garbage_inside_a_stanza_keeps_the_good_fields(tmp_path: Path) -> None:
    status = b"Package: a\nStatus: install ok installed\n\x00junk\n\x01junk\nVersion: 2\n\n"
    db = read(make_root(tmp_path, status, {"a.list": b"/.\n"}))
    assert [(p.name, p.version) for p in db.packages] == [("a", "2")]
    assert messages(db) == ["var/lib/dpkg/status: lines 3-4: " + NOT_A_FIELD]


def test_status_unreadable_is_an_error(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/dpkg/status").mkdir()
    with pytest.raises(dpkg.DpkgDBError, match="cannot read"):
        read(root)


def test_empty_status_is_an_empty_db(tmp_path: Path) -> None:
    db = read(make_root(tmp_path, b""))
    assert (db.packages, db.files, db.problems) == ((), (), ())


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"var/lib/dpkg/status": b""}, True),
        ({"var/lib/dpkg/status.d/x": b""}, True),
        ({"etc/os-release": b""}, False),
    ],
)
def test_present(tmp_path: Path, layout: dict[str, bytes], expected: bool) -> None:
    for name, data in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with RootFS(os.fspath(tmp_path)) as fs:
        assert dpkg.present(fs) is expected


def test_stanza_parser_reports_malformed_runs() -> None:
    items = list(
        parse_stanzas(
            b" orphan continuation\nPackage: a\n\n\n  \nPackage: b\nVersion: 1\n",
            frozenset({b"Package"}),
        )
    )
    assert items == [
        MalformedLines(1, 1, "continuation line with no field to continue"),
        Stanza(1, {b"Package": b"a"}),
        Stanza(6, {b"Package": b"b"}),
    ]


# --- diversions -----------------------------------------------------------------------------


def _diverted_root(tmp_path: Path, diversions: bytes) -> Path:
    return make_root(
        tmp_path,
        stanza("p") + stanza("q") + stanza("r"),
        {
            "p.md5sums": f"{md5(b'p-sh')}  usr/bin/sh\n{md5(b'p-ls')}  usr/bin/ls\n".encode(),
            "q.md5sums": f"{md5(b'q-sh')}  usr/bin/sh\n".encode(),
            "r.md5sums": f"{md5(b'r-ls')}  usr/bin/ls\n".encode(),
        },
        {"var/lib/dpkg/diversions": diversions},
    )


def test_diversions(tmp_path: Path) -> None:
    diversions = b"/usr/bin/sh\n/usr/bin/sh.distrib\nq\n/usr/bin/ls\n/usr/bin/ls.orig\n:\n"
    db = read(_diverted_root(tmp_path, diversions))
    assert db.problems == ()
    assert records(db, "p") == {
        (b"usr/bin/sh.distrib", md5(b"p-sh"), False),
        (b"usr/bin/ls.orig", md5(b"p-ls"), False),
    }
    assert records(db, "q") == {
        (b"usr/bin/sh", md5(b"q-sh"), False)
    }  # the diverter's own file stays
    assert records(db, "r") == {
        (b"usr/bin/ls.orig", md5(b"r-ls"), False)
    }  # local: everyone's moves


def test_truncated_diversions_file(tmp_path: Path) -> None:
    diversions = b"/usr/bin/sh\n/usr/bin/sh.distrib\nq\n/usr/bin/ls\n/usr/bin/ls.orig\n"
    db = read(_diverted_root(tmp_path, diversions))
    assert messages(db) == [
        "var/lib/dpkg/diversions: line 4: truncated: last entry has 2 of 3 lines (ignored)"
    ]
    assert records(db, "p") == {
        (b"usr/bin/sh.distrib", md5(b"p-sh"), False),
        (b"usr/bin/ls", md5(b"p-ls"), False),
    }


# --- path filters ---------------------------------------------------------------------------

SLIM_FILTERS = b"""# as in debian:*-slim images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude="/usr/share/locale/*"
path-exclude /usr/share/info/*
"""


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (b"usr/share/doc/p/changelog.gz", True),
        (b"usr/share/doc/p/copyright", False),  # re-included: the later rule wins
        (b"usr/share/doc/p/examples/deep/copyright", False),  # `*` matches `/` too
        (b"usr/share/man/man1/p.1.gz", True),
        (b"usr/share/locale/de/LC_MESSAGES/p.mo", True),
        (b"usr/share/doc-base/p", False),
        (b"usr/bin/p", False),
    ],
)
def test_slim_image_filters(tmp_path: Path, path: bytes, excluded: bool) -> None:
    root = make_root(
        tmp_path,
        stanza("p"),
        {"p.md5sums": md5(b"x").encode() + b"  " + path + b"\n"},
        {
            "etc/dpkg/dpkg.cfg.d/docker": SLIM_FILTERS,
            "etc/dpkg/dpkg.cfg.d/ignored.dpkg-old": b"path-exclude /*\n",
        },
    )
    db = read(root)
    assert [f.path for f in db.files] == ([] if excluded else [path])
    assert db.filtered == (1 if excluded else 0)
    assert db.packages[0].file_count == (0 if excluded else 1)
    assert len(db.filters) == 5 and db.problems == ()


def test_filter_order_across_config_files(tmp_path: Path) -> None:
    """cfg.d files in byte order, then dpkg.cfg: the last matching rule decides."""
    root = make_root(
        tmp_path,
        stanza("p"),
        {"p.md5sums": f"{md5(b'a')}  opt/a\n{md5(b'b')}  opt/b\n".encode()},
        {
            "etc/dpkg/dpkg.cfg.d/10-exclude": b"path-exclude=/opt/*\n",
            "etc/dpkg/dpkg.cfg.d/20-include": b"path-include=/opt/a\n",
            "etc/dpkg/dpkg.cfg": b"path-exclude /opt/[a]\n",
        },
    )
    db = read(root)
    assert db.files == () and db.filtered == 2
    assert [(f.include, f.pattern) for f in db.filters] == [
        (False, b"/opt/*"),
        (True, b"/opt/a"),
        (False, b"/opt/[a]"),
    ]


_libc = ctypes.CDLL(None)
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


def _glibc_fnmatch(pattern: bytes, name: bytes) -> bool:
    return bool(_libc.fnmatch(pattern, name, 0) == 0)


_PATTERNS = [
    b"/usr/share/doc/*",
    b"/usr/share/doc/*/copyright",
    b"/usr/*/READ*",
    b"/usr/share/?an/*",
    b"/etc/[a-c]*",
    b"/etc/[!a-c]*",
    b"/etc/[^a-c]*",
    b"/etc/[]x]*",
    b"/etc/\\*",
    b"/etc/*.[ch]",
    b"/etc/[[:digit:]]*",
    b"/etc/.hidden*",
    b"*",
    b"/usr/share/locale/*/LC_MESSAGES/*.mo",
    b"/etc/[unclosed",
]
_NAMES = [
    b"/usr/share/doc/p/copyright",
    b"/usr/share/doc/p",
    b"/usr/share/doc/package/README",
    b"/usr/share/man/man1/x.1.gz",
    b"/usr/share/doc",
    b"/etc/apt",
    b"/etc/dpkg",
    b"/etc/]x",
    b"/etc/*",
    b"/etc/x",
    b"/etc/a.c",
    b"/etc/9lives",
    b"/etc/.hidden-file",
    b"/etc/[unclosed",
    b"/usr/share/locale/de/LC_MESSAGES/a.mo",
    b"/caf\xe9/\xff",
]


@pytest.mark.parametrize("pattern", _PATTERNS)
def test_glob_matches_like_glibc_fnmatch_without_flags(pattern: bytes) -> None:
    """dpkg calls fnmatch(pattern, name, 0); glibc itself is the referee."""
    regex = glob_to_regex(pattern)
    for name in _NAMES:
        assert (regex.fullmatch(name) is not None) == _glibc_fnmatch(pattern, name), (pattern, name)


def test_unbalanced_quotes_in_filter_config_is_a_problem(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, stanza("p"), {}, {"etc/dpkg/dpkg.cfg": b'path-exclude "/usr/share/doc/*\n'}
    )
    db = read(root)
    assert db.filters == ()
    assert any("unbalanced quotes" in m for m in messages(db))
