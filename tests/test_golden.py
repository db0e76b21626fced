"""Golden reports: the JSON, table and SARIF of a fixed small root, byte for byte, on both cores.

An unintended change to any output shows up here as a diff; an intended one is committed with
`pytest tests/test_golden.py --regenerate-golden` (tests/golden/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import golden_root
import pytest

from scanner import __version__
from scanner.cli import main
from scanner.targets.ecs import EXECUTION_ENV, METADATA_ENV

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = {"json": "report.json", "table": "report.txt", "sarif": "report.sarif"}
# What normalise() puts in place of each volatile value.
BASE = "<BASE>"
VERSION = "<VERSION>"
IMPLEMENTATION = "<IMPLEMENTATION>"
HOST = "<HOST>"
SECONDS = "<SECONDS>"
SCAN_ID = "<SCAN_ID>"
# A UUID4 in canonical form: only a well-formed scan id is replaced, so a malformed one shows.
_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def normalise(form: str, text: str, base: Path) -> str:
    """The one place volatile parts of a report are replaced by placeholders before comparing.

    Volatile: the scanner's version, which core ran (cython or python: both must give the same
    report), the host name, the scan's duration, the scan's random id (JSON `scan_id`, SARIF
    `scan_id` and `automationDetails.guid`), and the temporary directory the root was built
    in (`base`, wherever it appears: root, env-file source, SARIF base URI). The text is edited
    in place, never parsed and re-written, so that layout, escaping, order and every other
    value are compared exactly as scan-root wrote them.
    """
    version = re.escape(__version__)
    if form == "table":
        # The header names version and core, the line after it the host, the summary the time.
        text = re.sub(
            rf"^scan-root {version} \((?:cython|python)\)",
            f"scan-root {VERSION} ({IMPLEMENTATION})",
            text,
        )
        text = re.sub(r"(?m)^  host .*$", f"  host {HOST}", text)
        text = re.sub(r"(?m) in \d+\.\d+ s$", f" in {SECONDS} s", text)
    else:  # json and sarif: the same keys (SARIF's driver and run.properties)
        text = re.sub(rf'"(version|semanticVersion)": "{version}"', rf'"\1": "{VERSION}"', text)
        text = re.sub(
            r'"implementation": "(?:cython|python)"', f'"implementation": "{IMPLEMENTATION}"', text
        )
        text = re.sub(r'"host": "(?:[^"\\]|\\.)*"', f'"host": "{HOST}"', text)
        text = re.sub(r'"seconds": [0-9.eE+-]+', f'"seconds": "{SECONDS}"', text)
        text = re.sub(rf'"(scan_id|guid)": "{_UUID4}"', rf'"\1": "{SCAN_ID}"', text)
    # SARIF's base URI spells the directory URI-escaped: a $TMPDIR with a space is still found.
    return text.replace(str(base), BASE).replace(quote(str(base)), BASE)


def _report(
    form: str, base: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    # Outside an ECS task, wherever the suite runs: the task's metadata would add a target.
    for name in (METADATA_ENV, EXECUTION_ENV):
        monkeypatch.delenv(name, raising=False)
    root, options = golden_root.build(base)
    capsys.readouterr()
    code = main([str(root), *options, "--format", form])
    out = capsys.readouterr().out
    assert code == 1, out  # findings: the exit code is part of what is pinned
    return normalise(form, out, base)


@pytest.mark.parametrize("form", sorted(FILES))
def test_golden_report(
    form: str,
    scan_impl: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    text = _report(form, tmp_path, capsys, monkeypatch)
    golden = GOLDEN / FILES[form]
    if request.config.getoption("--regenerate-golden"):
        golden.write_text(text, encoding="utf-8")
        return
    assert golden.exists(), f"{golden} is missing: run pytest {__file__} --regenerate-golden"
    expected = golden.read_text(encoding="utf-8")
    assert text == expected, (
        f"the {form} report of the golden root changed ({scan_impl} core); if on purpose, "
        f"regenerate (tests/golden/README.md) and commit the diff"
    )


def test_the_golden_root_is_the_same_twice(tmp_path: Path) -> None:
    """The builder decides every byte, name and time: two builds are identical."""
    first, _ = golden_root.build(tmp_path / "a")
    second, _ = golden_root.build(tmp_path / "b")

    def listing(root: Path) -> list[tuple[str, int, int, bytes]]:
        entries = []
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            entries.append((str(path.relative_to(root)), st.st_mode, st.st_mtime_ns, data))
        return entries

    assert listing(first) == listing(second)
    assert listing(first)  # not two empty trees


@pytest.mark.parametrize(
    ("form", "made"),
    [
        ("table", "scan-root 9.9 (python) — {base}/root\n  host box\n\n1 finding(s) in 3.25 s\n"),
        (
            "json",
            (
                '{"scan_id": "0f8fad5b-d9cb-469f-a165-70867728950e", '
                '"scanner": {"version": "9.9", "implementation": "cython"}, '
                '"target": {"root": "{base}/root", "host": "box"}, '
                '"stats": {"seconds": 3.25, "implementation": "cython", "jobs": 1}}'
            ),
        ),
    ],
)
def test_normalise_replaces_only_the_volatile(form: str, made: str, tmp_path: Path) -> None:
    text = made.replace("{base}", str(tmp_path)).replace("9.9", __version__)
    normal = normalise(form, text, tmp_path)
    for volatile in (str(tmp_path), "box", "3.25", "cython", "python", "0f8fad5b-d9cb"):
        assert volatile not in normal
    assert "jobs" not in normal or '"jobs": 1' in normal  # fixed by --jobs 1: compared


@pytest.mark.parametrize(
    "scan_id",
    [
        "0F8FAD5B-D9CB-469F-A165-70867728950E",  # not canonical: scan-root writes lower case
        "0f8fad5b-d9cb-169f-a165-70867728950e",  # a version 1 UUID
        "0f8fad5b-d9cb-469f-7165-70867728950e",  # not the RFC 4122 variant
        "not-a-uuid",
    ],
)
def test_normalise_keeps_a_malformed_scan_id(scan_id: str, tmp_path: Path) -> None:
    """Only a canonical UUID4 becomes <SCAN_ID>: anything else stays, so the golden diff shows it."""
    for form, key in (("json", "scan_id"), ("sarif", "guid")):
        text = f'{{"{key}": "{scan_id}"}}'
        assert normalise(form, text, tmp_path) == text
