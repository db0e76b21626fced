"""Nothing from the target reaches a terminal as a control sequence: names, versions, messages
and custom-check output are shown with visible escapes, and no line can be forged."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from scanner.cli import main
from scanner.output.escape import terminal_safe

# What a hostile name tries: clear the screen, set the title, a fake hyperlink (OSC 8), CR back
# over the line, a new line forging the verdict, a one-byte CSI, a bidi override.
HOSTILE = (
    "x\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://127.0.0.1/\x07link\x1b]8;;\x07"
    "\rno findings; 0 files walked\n\x9b31m\u202egnp.exe\u2028z"
)
# Our own table may use ESC only for its colours, and only with a terminal: none here.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_terminal_safe_escapes_every_control() -> None:
    safe = terminal_safe(HOSTILE)
    assert not CONTROL.search(safe) and "\n" not in safe
    assert "\\x1b[2J" in safe and "\\u202e" in safe and "\\x9b" in safe
    assert terminal_safe("plain /usr/bin/ls café") == "plain /usr/bin/ls café"


@pytest.fixture
def hostile_root(tmp_path: Path) -> Path:
    """A dpkg root whose package name, version and file name carry escapes; the file is
    tampered (a finding) and a second one is missing (another finding)."""
    root = tmp_path / "root"
    name = HOSTILE.replace("/", "_").replace("\n", "N").encode("utf-8")
    (root / "usr/bin").mkdir(parents=True)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    binary = b"usr/bin/" + name
    with open(bytes(root) + b"/" + binary, "wb") as handle:
        handle.write(b"\x7fELF tampered")
    md5 = hashlib.md5(b"\x7fELF").hexdigest().encode()
    (root / "var/lib/dpkg/info/tool.md5sums").write_bytes(md5 + b"  " + binary + b"\n")
    version = HOSTILE.replace("\n", " ").replace("\r", " ")
    (root / "var/lib/dpkg/status").write_text(
        f"Package: tool\nStatus: install ok installed\nVersion: 1.0{version}\n"
        "Architecture: amd64\nDescription: t\n\n"
    )
    os.symlink("x" * 10, root / ("link" + HOSTILE.replace("/", "_")))
    return root


def test_the_table_shows_hostile_names_escaped(
    hostile_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(hostile_root), "--no-process-env", "--all-files", "--format", "table"])
    out = capsys.readouterr().out
    assert code == 1
    assert not CONTROL.search(out), [m.group() for m in CONTROL.finditer(out)][:5]
    verdicts = [line for line in out.splitlines() if line.startswith(("no findings", "1 finding"))]
    assert len(verdicts) == 1 and verdicts[0] == out.splitlines()[-1]
    assert "\\x1b[2J" in out  # shown, not obeyed


def test_packages_table_shows_hostile_names_escaped(
    hostile_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["packages", str(hostile_root)]) == 0
    out = capsys.readouterr().out
    assert not CONTROL.search(out) and "\\x1b" in out


def test_errors_on_stderr_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / ("nope" + HOSTILE.replace("/", "_"))
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert not CONTROL.search(err.replace("\n", ""))


@pytest.mark.parametrize("checks", [" ", ",", " , ,"])
def test_checks_naming_nothing_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checks: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(tmp_path), "--checks", checks])
    assert caught.value.code == 2
    assert "names no check" in capsys.readouterr().err
