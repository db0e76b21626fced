"""The command line with its standard streams closed or broken: the exit code still tells the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env


def _root(tmp_path: Path) -> Path:
    """A root with nothing to find: 425 over one plain file (exit 0 when the report is out)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_text("welcome\n")
    return root


def _cli(*argv: str, shell: str = "") -> list[str]:
    """`python -m scanner.cli ARGV`, through `sh -c` with `shell` redirections when given."""
    command = [sys.executable, "-m", "scanner.cli", *argv]
    return ["sh", "-c", f'exec "$@" {shell}', "sh", *command] if shell else command


def test_a_closed_stderr_neither_fails_the_scan_nor_loses_its_report(tmp_path: Path) -> None:
    root, output = _root(tmp_path), tmp_path / "report.json"
    argv = (str(root), "--checks", "425", "--format", "json")
    ran = subprocess.run(
        _cli(*argv, "--output", str(output), shell="2>&-"), env=child_env(), timeout=60
    )
    assert ran.returncode == 0
    assert json.loads(output.read_text())["complete"] is True
    ran = subprocess.run(
        _cli(*argv, shell="2>&-"), env=child_env(), stdout=subprocess.PIPE, timeout=60
    )
    assert ran.returncode == 0 and json.loads(ran.stdout)["findings"] == []


def test_a_closed_stdout_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    ran = subprocess.run(
        _cli(str(_root(tmp_path)), "--checks", "425", shell=">&-"),
        env=child_env(),
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2, ran.stderr
    assert "standard output" in ran.stderr and "Traceback" not in ran.stderr


@pytest.mark.parametrize("command", [("--checks", "425", "--format", "json"), ("policy", "--help")])
def test_a_reader_gone_from_stdout_is_a_clear_error_not_a_crash(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    argv = (str(_root(tmp_path)), *command) if command[0] != "policy" else command
    child = subprocess.Popen(
        _cli(*argv), env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None
    child.stdout.close()  # before the child writes: its output meets a pipe with no reader
    _, errors = child.communicate(timeout=60)
    message = errors.decode()
    # Not 5 (no bug of scan-root), nor 120 (the interpreter failing to flush stdout at exit).
    assert child.returncode == 2, message
    assert "Broken pipe" in message and "Traceback" not in message


def test_a_reader_gone_from_stderr_does_not_turn_an_error_into_findings(tmp_path: Path) -> None:
    # A usage error whose message cannot be written: still exit 2, never 1 ("findings").
    child = subprocess.Popen(
        _cli(str(tmp_path / "absent")), env=child_env(), stderr=subprocess.PIPE
    )
    assert child.stderr is not None
    child.stderr.close()
    assert child.wait(timeout=60) == 2
