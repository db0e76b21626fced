"""vulndb.versions against the reference implementations on this machine: dpkg itself (its
`--compare-versions`), rpm's own labelCompare (python3-rpm, under the system Python), and
apk-tools' published test vectors; plus edge cases, hostile input and generated properties."""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from vulndb.versions import MAX_VERSION_LENGTH, InvalidVersion, Manager, apk, compare, dpkg, rpm

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "versions"
# Pairs each referee must judge (issue 17's acceptance: at least 20,000 from real versions).
REQUIRED_PAIRS = 20_000
OPS = {-1: "lt", 0: "eq", 1: "gt"}
SYMBOLS = {"<": -1, "=": 0, ">": 1}


# --- the real version strings -------------------------------------------------------------

_STANZA_FIELD = re.compile(r"^(Version|Source): (.+)$", re.MULTILINE)


def dpkg_versions(shared: Path) -> list[str]:
    """Every Version:, and every version a Source: field gives in parentheses, of this machine's
    dpkg status and of the dpkg fixtures (status files and distroless status.d stanzas)."""
    files = [Path("/var/lib/dpkg/status")]
    files += sorted((shared / "dpkg" / "status").glob("*.status"))
    files += sorted(p for p in (shared / "dpkg" / "status.d").glob("*/*") if "." not in p.name)
    found = set()
    for path in files:
        if not path.is_file():
            continue
        for field, value in _STANZA_FIELD.findall(path.read_text(encoding="utf-8")):
            if field == "Version":
                found.add(value.strip())
            elif "(" in value:
                found.add(value.split("(", 1)[1].rstrip(")").strip())
    return sorted(found)


def rpm_versions(shared: Path) -> list[str]:
    """`[epoch:]version-release` of every header of the rpm fixtures, as rpm itself listed them
    (their *.expected.txt: `rpm -qa --qf '%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}'`)."""
    found = set()
    for path in sorted((shared / "rpm").glob("*/*.expected.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) >= 2:
                found.add(fields[1])
    return sorted(found)


def apk_versions(shared: Path) -> list[str]:
    """Every `V:` of the apk fixtures' installed databases."""
    found = set()
    for path in sorted((shared / "apk").glob("*.installed")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("V:"):
                found.add(line[2:])
    return sorted(found)


# Written to hit each rule: `~` and `^`, epochs, leading zeros, empty and odd segments, huge
# numbers, letters against digits, separators.
DPKG_EDGES = [
    "0", "0.0", "1.0", "1.0.0", "1.00", "01.0", "00001.0", "1.0~", "1.0~~", "1.0~~a", "1.0~rc1",
    "1.0~rc1~1", "1.0~rc2", "1.0+", "1.0+~", "1.0+b1", "1.0+dfsg", "1.0+dfsg-1", "1.0.",
    "1.0..", "1.0a", "1.0A", "1.0Z", "1.0z", "1.0-0", "1.0-1", "1.0-1.1", "1.0-01", "1.0-1~",
    "1.0-1~bpo12+1", "1.0-1+deb12u1", "1.0-1ubuntu1", "1.0-1ubuntu1~22.04.1", "1.0-1-2",
    "1.0-a", "1.0-~", "0:1.0", "1:0", "1:1.0-1", "2:0.1", "01:1.0", "2147483647:1",
    "+1:2", "-0:2", "1:2:3-4", "1:2:3",  # an upstream colon needs an epoch
    "9999999999999999999999999", "1.99999999999999999999", "1.0.0000000000000000000001",
    " 1.0", "1.0 ", "\t1.0\t", "a1.0", "~1", "1.0_1", "1.0=1", "1.0\n",  # dpkg warns, compares
]  # fmt: skip
RPM_EDGES = [
    "1.0", "1.0.0", "1.00", "01.0", "1..0", "1_0", "1.0.", "1.0a", "1.0A", "1.a", "a", "A",
    "1.0~rc1", "1.0~rc1~1", "1.0~", "1.0~~", "1.0^", "1.0^git1", "1.0^git1^2", "1.0^~",
    "1.0~^", "1.0.1", "1.0-1", "1.0-1.el9", "1.0-1.el9_2", "1.0-1.el9~1", "1.0-1^1",
    "0:1.0-1", "1:1.0-1", "00:1.0", ":1.0", "10:1", "999999999999999999999:1", "1.0-",
    "1.0--1", "2.0-0.rc1", "1.0+git", "1.0%{x}", "1.0é", "1.0éa", "é", "9999999999999999999999",
    "1.0.0000000000000000000001", "a:1", "1:a",
]  # fmt: skip


# --- the referees ---------------------------------------------------------------------------


def run_shell_batches(commands: list[str]) -> list[str]:
    """Run shell commands, each printing one line, in one `sh` per CPU; their lines in order.

    One dpkg process per comparison is what dpkg offers; a shell loop spares a Python fork
    per call, and the CPUs share the shards.
    """
    shards = max(1, min(os.cpu_count() or 1, 8))
    size = -(-len(commands) // shards)
    with tempfile.TemporaryDirectory(prefix="versions-referee-") as scratch:
        scripts = [Path(scratch) / f"shard{index}.sh" for index in range(shards)]
        outputs = [Path(scratch) / f"shard{index}.out" for index in range(shards)]
        running = []
        for index, (script, output) in enumerate(zip(scripts, outputs)):
            script.write_text("\n".join(commands[index * size : (index + 1) * size]) + "\n")
            with output.open("wb") as sink:
                running.append(subprocess.Popen(["sh", str(script)], stdout=sink, env=_c_env()))
        for process in running:
            assert process.wait() == 0
        lines = [line for output in outputs for line in output.read_text().splitlines()]
    assert len(lines) == len(commands)
    return lines


def _c_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}


def dpkg_statuses(checks: Iterable[tuple[str, str, str]]) -> list[int]:
    """Exit status of `dpkg --compare-versions -- a op b` for each (a, op, b): 0 true, 1 false,
    2 refused."""
    commands = [
        f"dpkg --compare-versions -- {shlex.quote(a)} {op} {shlex.quote(b)} 2>/dev/null; echo $?"
        for a, op, b in checks
    ]
    return [int(line) for line in run_shell_batches(commands)]


_RPM_REFEREE = """
import sys, rpm
for line in sys.stdin:
    a, b = line.rstrip("\\n").split("\\t")
    x, y = rpm.ver(a), rpm.ver(b)
    print(rpm.labelCompare((x.e, x.v, x.r), (y.e, y.v, y.r)))
"""


def rpm_label_compare(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's own answer for each pair of EVR strings, split by rpm.ver (rpm's parseEVR) and
    compared by rpm.labelCompare, in one system-Python process reading the pairs on stdin."""
    done = subprocess.run(
        ["/usr/bin/python3", "-c", _RPM_REFEREE],
        input="".join(f"{a}\t{b}\n" for a, b in pairs),
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    answers = [int(line) for line in done.stdout.split()]
    assert len(answers) == len(pairs)
    return answers


def have_rpm_binding() -> bool:
    if not Path("/usr/bin/python3").is_file():
        return False
    probe = subprocess.run(["/usr/bin/python3", "-c", "import rpm"], capture_output=True)
    return probe.returncode == 0


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
needs_rpm = pytest.mark.skipif(
    not have_rpm_binding(), reason="python3-rpm is not installed (install.sh --test installs it)"
)


def sample_pairs(versions: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` distinct unordered pairs of distinct versions (all of them if there are fewer)."""
    total = len(versions) * (len(versions) - 1) // 2
    if total <= count:
        return list(itertools.combinations(versions, 2))
    chosen: set[tuple[str, str]] = set()
    while len(chosen) < count:
        a, b = rng.sample(versions, 2)
        chosen.add((a, b) if a < b else (b, a))
    return sorted(chosen)


# --- dpkg -----------------------------------------------------------------------------------


@needs_dpkg
def test_dpkg_agrees_with_dpkg_itself_on_real_versions(shared_fixtures: Path) -> None:
    real = dpkg_versions(shared_fixtures)
    assert len(real) > 200, "too few real dpkg versions to draw from"
    versions = sorted(set(real) | set(DPKG_EDGES))
    pairs = sample_pairs(versions, REQUIRED_PAIRS, random.Random(17))
    assert len(pairs) >= REQUIRED_PAIRS
    # Both directions, each through dpkg itself: ours must say the same, and the two answers
    # must be mirror images.
    checks = []
    for a, b in pairs:
        ours = dpkg.compare(a, b)
        assert dpkg.compare(b, a) == -ours, (a, b)
        checks += [(a, OPS[ours], b), (b, OPS[-ours], a)]
    statuses = dpkg_statuses(checks)
    disagreements = [check for check, status in zip(checks, statuses) if status != 0]
    assert disagreements == [], f"{len(disagreements)} of {len(checks)} dpkg calls disagree"


@needs_dpkg
def test_dpkg_order_of_every_real_version_is_dpkg_order(shared_fixtures: Path) -> None:
    """Sorted by our comparison, each neighbour pair confirmed by dpkg (`lt` or `eq`): as dpkg's
    order is a total preorder, that confirms the order of every pair of the list."""
    versions = sorted(set(dpkg_versions(shared_fixtures)) | set(DPKG_EDGES))
    ordered = sorted(versions, key=functools.cmp_to_key(dpkg.compare))
    checks = [(a, OPS[dpkg.compare(a, b)], b) for a, b in itertools.pairwise(ordered)]
    assert all(op in ("lt", "eq") for _, op, _ in checks)
    assert dpkg_statuses(checks) == [0] * len(checks)


DPKG_REFUSED = [
    " ", "\t", "1.0 1", "1 :2", ":1", "a:1", "1a:1", "+:1", "-1:1", "2147483648:1",
    "99999999999999999999:1", "1:", "1.0-", "-1", "1:-1", "1.0:1", "1.0-1:2",
]  # fmt: skip


@needs_dpkg
@pytest.mark.parametrize("version", DPKG_REFUSED)
def test_dpkg_refuses_what_dpkg_refuses(version: str) -> None:
    with pytest.raises(InvalidVersion):
        dpkg.compare(version, "1")
    assert dpkg_statuses([(version, "eq", "1")]) == [2]


@needs_dpkg
def test_dpkg_compares_what_dpkg_only_warns_about() -> None:
    warned = ["a1.0", "~1", "1.0_1", "1.0=1", "1.0-1_1", "\n1:2", "1.0\x01"]
    checks = [(v, OPS[dpkg.compare(v, w)], w) for v in warned for w in ("1.0", "a1", "1:2")]
    assert dpkg_statuses(checks) == [0] * len(checks)


@needs_dpkg
def test_dpkg_refuses_exactly_what_dpkg_refuses_on_generated_strings() -> None:
    """Random strings over an alphabet with blanks, colons, hyphens and control characters
    (1,176 pairs, 839 of them refused): where we refuse, dpkg refuses (exit 2), and where we
    compare, dpkg agrees."""
    rng = random.Random(99)
    alphabet = "0019aZ.+-~:_ \t\n!/\x01"
    words = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 7))) for _ in range(3000)})
    rng.shuffle(words)
    checks, ours = [], []
    for a, b in zip(words[::2], words[1::2]):
        try:
            result: int | None = dpkg.compare(a, b)
        except InvalidVersion:
            result = None
        checks.append((a, OPS[result] if result is not None else "eq", b))
        ours.append(result)
    assert 200 < ours.count(None) < len(ours) - 200  # both kinds well represented
    statuses = dpkg_statuses(checks)
    wrong = [
        (check, result, status)
        for check, result, status in zip(checks, ours, statuses)
        if status != (2 if result is None else 0)
    ]
    assert wrong == []


def test_dpkg_documented_refusals() -> None:
    # dpkg's CLI reads "" as "no version" (dpkg_version_blank), but parseversion() refuses it;
    # non-ASCII bytes are ordered through a plain char, whose signedness is the platform's.
    for version in ("", "1.0é", "é"):
        with pytest.raises(InvalidVersion):
            dpkg.compare(version, "1.0")


def test_dpkg_parse() -> None:
    assert dpkg.parse("1:2.30-4ubuntu1") == dpkg.DpkgVersion(1, b"2.30", b"4ubuntu1")
    assert dpkg.parse("2.30") == dpkg.DpkgVersion(0, b"2.30", b"")
    assert dpkg.parse("1:2:3-4-5") == dpkg.DpkgVersion(1, b"2:3-4", b"5")
    assert dpkg.parse(" 7 ") == dpkg.DpkgVersion(0, b"7", b"")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0+b1", -1),
        ("1.0~~", "1.0~", -1),
        ("1.0a", "1.0+", -1),  # letters before non-letters
        ("1.0", "1.0a", -1),
        ("1:0.1", "2.0", 1),
        ("1.01", "1.1", 0),
        ("1.0-0", "1.0", 0),
        ("0:1.0", "1.0", 0),
        ("1.0-1", "1.0-1.0", -1),
        ("10", "9", 1),
        ("1.0.", "1.0", 1),
    ],
)
def test_dpkg_rules(a: str, b: str, expected: int) -> None:
    assert dpkg.compare(a, b) == expected
    assert dpkg.compare(b, a) == -expected


# --- rpm ------------------------------------------------------------------------------------


@needs_rpm
def test_rpm_agrees_with_rpm_label_compare_on_real_versions(shared_fixtures: Path) -> None:
    real = rpm_versions(shared_fixtures)
    assert len(real) > 150, "too few real rpm versions to draw from"
    versions = sorted(set(real) | set(RPM_EDGES))
    pairs = list(itertools.combinations(versions, 2))
    assert len(pairs) >= REQUIRED_PAIRS
    both = pairs + [(b, a) for a, b in pairs]
    answers = rpm_label_compare(both)
    ours = [rpm.compare(a, b) for a, b in both]
    disagreements = [
        (pair, theirs, mine) for pair, theirs, mine in zip(both, answers, ours) if theirs != mine
    ]
    assert disagreements == [], f"{len(disagreements)} of {len(both)} pairs disagree"


@needs_rpm
def test_rpm_agrees_with_rpm_on_generated_versions() -> None:
    """Short random strings over rpm's interesting characters: 20,000 pairs, many with equal
    prefixes, so that every branch of rpmvercmp is taken."""
    rng = random.Random(4)
    # Non-ASCII, control characters and blanks too: rpm separates segments with them.
    alphabet = "0001123aAbz.._~^+-:é!\x01 "
    generated = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(3000)})
    valid = []
    for version in generated:
        try:
            rpm.parse(version)
        except InvalidVersion:
            continue
        valid.append(version)
    pairs = sample_pairs(valid, REQUIRED_PAIRS, rng)
    answers = rpm_label_compare(pairs)
    assert [rpm.compare(a, b) for a, b in pairs] == answers


@needs_rpm
def test_rpm_compare_evr_is_label_compare() -> None:
    evrs: list[tuple[str | None, str, str | None]] = [
        (None, "1.0", None), ("0", "1.0", None), (None, "1.0", "1"), ("0", "1.0", "1"),
        ("1", "0.1", "1"), ("00", "1.0", "1"), (None, "1.0", ""), ("2", "1.0~rc1", "1.el9"),
        (None, "1.0^git1", "1"), ("0", "1.0", "1.el9"), ("10", "1", None), ("9", "2", "1"),
    ]  # fmt: skip
    pairs = [(a, b) for a in evrs for b in evrs]
    code = (
        "import sys, rpm, json\n"
        "for a, b in json.load(sys.stdin): print(rpm.labelCompare(tuple(a), tuple(b)))\n"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-c", code],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    answers = [int(line) for line in done.stdout.split()]
    assert [rpm.compare_evr(a, b) for a, b in pairs] == answers


def test_rpm_parse() -> None:
    assert rpm.parse("1:2.0-3.el9") == rpm.Evr("1", "2.0", "3.el9")
    assert rpm.parse("2.0") == rpm.Evr(None, "2.0", None)
    assert rpm.parse(":2.0-a-b") == rpm.Evr("0", "2.0-a", "b")
    assert rpm.parse("a:1") == rpm.Evr(None, "a:1", None)
    for empty in ("", "1:", "-1", "1:-1"):
        with pytest.raises(InvalidVersion):
            rpm.parse(empty)
    assert rpm.compare_evr((1, "1", None), ("1", "1", None)) == 0
    for epoch in (-1, "x", ""):
        with pytest.raises(InvalidVersion):
            rpm.compare_evr((epoch, "1", None), (None, "1", None))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0^git1", -1),
        ("1.0^git1", "1.0.1", -1),
        ("1.0~rc1", "1.0^git1", -1),
        ("1.01", "1.1", 0),
        ("1_0", "1.0", 0),
        ("1.0a", "1.0.1", -1),  # a number beats letters
        ("1:0.1", "2.0", 1),
        ("1.0-1", "1.0", 1),  # a missing release is older
        ("10", "9", 1),
    ],
)
def test_rpm_rules(a: str, b: str, expected: int) -> None:
    assert rpm.compare(a, b) == expected
    assert rpm.compare(b, a) == -expected


# --- apk ------------------------------------------------------------------------------------


def apk_vectors(name: str) -> list[list[str]]:
    """The non-empty, comment-stripped lines of an apk-tools vector file, split in words."""
    rows = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append(line.split())
    return rows


def apk_judge(a: str, op: str, b: str) -> bool:
    """apk_version_match(a, op, b) as apk's vertest applies it to one vector."""
    negate = op.startswith("!")
    op = op.lstrip("!")
    fuzzy = "~" in op
    mask = {-1 for c in op if c == "<"} | {1 for c in op if c == ">"}
    if "=" in op or fuzzy:
        mask.add(0)
    result = apk.compare_fuzzy(a, b) if fuzzy else apk.compare(a, b)
    return (result in mask) != negate


def test_apk_agrees_with_every_apk_tools_vector() -> None:
    rows = apk_vectors("apk-tools-version.data")
    assert len(rows) == 733
    disagreements = []
    for a, op, b in rows:
        expected = SYMBOLS[op]
        if apk.compare(a, b) != expected or apk.compare(b, a) != -expected:
            disagreements.append((a, op, b))
    assert disagreements == []


def test_apk_agrees_with_the_later_apk_tools_vectors() -> None:
    rows = apk_vectors("apk-tools-unit-version-tail.data")
    comparisons = [row for row in rows if len(row) == 3]
    validity = [row[0] for row in rows if len(row) == 1]
    assert (len(comparisons), len(validity)) == (21, 31)
    assert [row for row in comparisons if not apk_judge(*row)] == []
    for a, op, b in comparisons:
        if op in SYMBOLS:
            assert apk.compare(b, a) == -SYMBOLS[op]
    for word in validity:
        expected = not word.startswith("!")
        version = word if expected else word[1:]
        assert apk.is_valid(version) is expected, word


def test_apk_real_versions_are_valid_and_totally_ordered(shared_fixtures: Path) -> None:
    real = apk_versions(shared_fixtures)
    assert len(real) > 60
    assert [v for v in real if not apk.is_valid(v)] == []
    assert_total_preorder(apk.compare, real)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0_alpha", "1.0_beta", -1),
        ("1.0_rc1", "1.0", -1),
        ("1.0", "1.0_p1", -1),
        ("1.0_git20240101", "1.0_p1", -1),  # cvs < svn < git < hg < p
        ("1.0_cvs", "1.0_svn", -1),
        ("1.0_hg1", "1.0_git9", 1),
        ("1.0", "1.0a", -1),
        ("1.0a", "1.0.1", -1),
        ("1.0-r1", "1.0-r10", -1),
        ("1.0~abc", "1.0~abd", -1),
        # A part sorts above the end of the string when its kind is lower (the hash's is
        # below the revision's): "1.0" < "1.0-r1" < "1.0~abc".
        ("1.0~abc", "1.0", 1),
        ("1.0~abc", "1.0-r1", 1),
        ("1.0~abc-r1", "1.0~abc", 1),
        ("1.01", "1.1", -1),  # a later leading zero: string order
        ("01.1", "1.1", 0),  # the first number: numeric
        ("1.0", "1.0bc", -1),  # invalid after the letter: compared as far as valid
        ("1.0bc", "1.0bd", 0),
        ("18446744073709551617", "1", 0),  # apk's uint64_t wraps
    ],
)
def test_apk_rules(a: str, b: str, expected: int) -> None:
    assert apk.compare(a, b) == expected
    assert apk.compare(b, a) == -expected


def test_apk_documented_refusals() -> None:
    for version in ("1.0é", "é"):
        with pytest.raises(InvalidVersion):
            apk.compare(version, "1.0")
        with pytest.raises(InvalidVersion):
            apk.is_valid(version)


# --- all three: the dispatcher, hostile input, properties -----------------------------------


def test_manager_dispatch() -> None:
    assert [m.value for m in Manager] == ["dpkg", "rpm", "apk"]
    assert compare(Manager.DPKG, "1.0~rc1", "1.0") == -1
    assert compare(Manager.RPM, "1.0^1", "1.0") == 1
    assert compare(Manager.APK, "1.0_rc1", "1.0") == -1
    # The same strings, three orders.
    assert compare(Manager.DPKG, "1.0a", "1.0.1") == -1
    assert compare(Manager.RPM, "1.0-1", "1.0") == 1
    assert compare(Manager.DPKG, "1.0-1", "1.0") == 1
    assert compare(Manager.APK, "1.0-1", "1.0") == -1  # "-1" is no apk revision: invalid


MANAGERS = list(Manager)


@pytest.mark.parametrize("manager", MANAGERS, ids=lambda m: m.value)
def test_hostile_lengths_are_refused_at_once(manager: Manager) -> None:
    long = "1." * 5000 + "1"  # 10 kB
    start = time.perf_counter()
    for a, b in ((long, "1.0"), ("1.0", long), (long, long)):
        with pytest.raises(InvalidVersion, match="long"):
            compare(manager, a, b)
    assert time.perf_counter() - start < 0.05
    # Multi-byte text counts by its bytes: 400 characters, 1200 bytes.
    with pytest.raises(InvalidVersion):
        compare(manager, "1.0" + "€" * 400, "1.0")


@pytest.mark.parametrize("manager", MANAGERS, ids=lambda m: m.value)
def test_comparison_is_linear_up_to_the_bound(manager: Manager) -> None:
    """The worst inputs at the bound cost about ten times those at a tenth of it: linear."""

    def worst(length: int) -> tuple[str, str]:
        body = ("1." * length)[: length - 2]
        return body + "1", body + "2"

    def cost(length: int) -> float:
        a, b = worst(length)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                compare(manager, a, b)
            best = min(best, time.perf_counter() - start)
        return best

    assert len(worst(MAX_VERSION_LENGTH)[0]) == MAX_VERSION_LENGTH - 1
    assert compare(manager, *worst(MAX_VERSION_LENGTH)) == -1
    ratio = cost(MAX_VERSION_LENGTH) / cost(MAX_VERSION_LENGTH // 10)
    assert ratio < 30, ratio  # quadratic would be about 100


@pytest.mark.parametrize("manager", MANAGERS, ids=lambda m: m.value)
@pytest.mark.parametrize("bad", ["1.0\x00", "\x001", "1\udcff", b"1.0", None, 1])
def test_nul_undecodable_and_non_text_are_refused(manager: Manager, bad: object) -> None:
    with pytest.raises(InvalidVersion):
        compare(manager, bad, "1.0")  # type: ignore[arg-type]
    with pytest.raises(InvalidVersion):
        compare(manager, "1.0", bad)  # type: ignore[arg-type]


def test_rpm_compares_non_ascii_as_rpm_separators() -> None:
    # rpm's risalnum() is ASCII-only: other bytes separate segments, as '.' does (the referee
    # agrees: RPM_EDGES holds such versions).
    assert rpm.compare("1.0é", "1.0") == 0
    assert rpm.compare("1é0", "1.0") == 0


def assert_total_preorder(cmp: Callable[[str, str], int], versions: list[str]) -> None:
    """Antisymmetric on every pair, and consistent with the order sorting by it produces."""
    for a, b in itertools.combinations(versions, 2):
        assert cmp(a, b) == -cmp(b, a), (a, b)
    ordered = sorted(versions, key=functools.cmp_to_key(cmp))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            assert cmp(a, b) <= 0, (a, b)


def _valid(parse: Callable[[str], object]) -> Callable[[str], bool]:
    def accepts(version: str) -> bool:
        try:
            parse(version)
        except InvalidVersion:
            return False
        return True

    return accepts


DPKG_TEXT = st.text(alphabet="0012389.+~-:aAz_", min_size=1, max_size=10).filter(_valid(dpkg.parse))
RPM_TEXT = st.text(alphabet="0012389.~^_-:aAz", min_size=1, max_size=10).filter(_valid(rpm.parse))
APK_TEXT = st.one_of(
    st.text(alphabet="0129._-~rabcfgpl", min_size=0, max_size=12),
    st.from_regex(
        r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,3}[a-c]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]{0,2})"
        r"{0,2}(~[0-9a-f]{1,4})?(-r[0-9]{1,2})?\Z",
        fullmatch=True,
    ),
)
GENERATED = {
    Manager.DPKG: DPKG_TEXT,
    Manager.RPM: RPM_TEXT,
    Manager.APK: APK_TEXT,
}


@pytest.mark.parametrize("manager", MANAGERS, ids=lambda m: m.value)
def test_generated_versions_are_antisymmetric_and_transitive(manager: Manager) -> None:
    strategy = GENERATED[manager]

    @seed(20261205)
    @settings(max_examples=400, deadline=None, database=None)
    @given(a=strategy, b=strategy, c=strategy)
    def check(a: str, b: str, c: str) -> None:
        ab, bc, ac = compare(manager, a, b), compare(manager, b, c), compare(manager, a, c)
        assert ab in (-1, 0, 1)
        assert compare(manager, a, a) == 0
        assert compare(manager, b, a) == -ab
        if ab <= 0 and bc <= 0:
            assert ac <= 0
            if ab == 0 and bc == 0:
                assert ac == 0
        if ab >= 0 and bc >= 0:
            assert ac >= 0

    check()


@needs_dpkg
def test_dpkg_agrees_with_dpkg_on_generated_versions() -> None:
    """Random strings over dpkg's interesting characters, 2,000 pairs through dpkg itself."""
    rng = random.Random(5)
    alphabet = "0001123aAz.+~~-:"
    valid = []
    for _ in range(3000):
        version = "".join(rng.choices(alphabet, k=rng.randint(1, 8)))
        if _valid(dpkg.parse)(version):
            valid.append(version)
    pairs = sample_pairs(sorted(set(valid)), 2000, rng)
    checks = [(a, OPS[dpkg.compare(a, b)], b) for a, b in pairs]
    assert dpkg_statuses(checks) == [0] * len(checks)
