"""Progress people can read: phases, and bars with count, percentage and rate, on a terminal only."""

from __future__ import annotations

import ast
import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import golden_root
import pytest
from child import child_env, run_python
from imagebuilder import Put, build_layers, image_config, write_docker_save

import scanner
from scanner import scan_root
from scanner.checks import select_checks
from scanner.policy.model import CustomCheckSpec, Policy
from scanner.progress import Phase
from scanner.report import Severity
from scanner.terminal_progress import TerminalProgress

# The phases' names as a person reads them (Phase's values).
PACKAGES, WALKING, HASHING, LAYERS = (
    b"reading package databases",
    b"walking",
    b"hashing",
    b"extracting layers",
)
DEADLINE = 60.0  # seconds for one child scan of a tiny root, on a loaded machine


class Recorder:
    """A Progress that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Phase, int, int | None, str]] = []

    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None:
        self.calls.append((phase, done, total, detail))

    def phases(self) -> list[Phase]:
        return list(dict.fromkeys(call[0] for call in self.calls))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return golden_root.build(tmp_path_factory.mktemp("progress"))


def _on_a_terminal(*argv: str) -> tuple[int, bytes]:
    """`scan-root ARGV` in a child whose stderr is a pseudo-terminal (stdout: /dev/null); its
    exit code and everything it wrote to the terminal."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "scanner.cli", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=child_env(),
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + DEADLINE
    try:
        # Read while it runs: once the child is gone, Linux may drop what the pty still holds.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif child.poll() is not None:
                break
        else:
            child.kill()
            pytest.fail(f"scan-root {argv} still ran after {DEADLINE} s")
        return child.wait(timeout=DEADLINE), seen
    finally:
        os.close(leader)


def test_a_terminal_shows_the_phases(root: tuple[Path, list[str]]) -> None:
    path, options = root
    code, seen = _on_a_terminal(str(path), *options, "--format", "json")
    assert code == 1  # findings, as without a terminal
    assert PACKAGES in seen and WALKING in seen, seen
    assert seen.index(PACKAGES) < seen.index(WALKING)  # in the order they run
    assert b"files [" in seen  # the walk's count and rate (no total known in advance)
    assert seen.endswith(b"\r")  # the last bar cleared: the terminal's next line is clean


def test_a_terminal_shows_hashing_as_a_bar(root: tuple[Path, list[str]]) -> None:
    path, options = root
    # 448 alone hashes the package files it knows in advance: a bar with a total.
    code, seen = _on_a_terminal(str(path), *options, "--checks", "448")
    assert code == 1
    assert HASHING in seen, seen
    assert b"/5 [" in seen and b"%|" in seen  # count of the total, percentage
    assert b"files/s" in seen  # rate


def test_a_terminal_shows_image_layers(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("hello\n")
    layers = build_layers(tree, [Put("etc/issue", b"hi\n", 0o644)], tmp_path / "layers")
    image = tmp_path / "image.tar"
    write_docker_save(image, layers, image_config(), ["example/two:1"])
    code, seen = _on_a_terminal("image", str(image), "--no-process-env", "--exit-zero")
    assert code == 0
    assert LAYERS in seen and b"/2 [" in seen, seen
    assert seen.index(LAYERS) < seen.index(PACKAGES)


def test_quiet_shows_nothing(root: tuple[Path, list[str]]) -> None:
    path, options = root
    code, seen = _on_a_terminal(str(path), *options, "--checks", "448", "--quiet")
    assert code == 1
    assert seen == b""


def test_a_pipe_gets_no_progress(root: tuple[Path, list[str]]) -> None:
    path, options = root
    result = subprocess.run(
        [sys.executable, "-m", "scanner.cli", str(path), *options, "--checks", "448"],
        capture_output=True,
        env=child_env(),
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == b""  # stderr a pipe: not one byte of progress (nor anything else)
    assert b"hashing" not in result.stdout


def test_a_bar_with_a_total_shows_count_percentage_and_rate() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(Phase.HASH, 5, 10)
    time.sleep(0.25)  # past the redraw throttle (0.2 s), so that the next call draws
    progress.update(Phase.HASH, 8, 10)
    progress.close()
    text = stream.getvalue()
    assert "scan-root: hashing" in text
    assert "5/10" in text and "50%" in text  # the first drawing: where the phase already is
    assert "8/10" in text and "80%" in text
    assert " files/s]" in text and "?" not in text.rsplit("8/10", 1)[1]  # a rate, measured


def test_a_bar_without_a_total_shows_count_and_rate() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(Phase.WALK, 1234)
    progress.close()
    assert "scan-root: walking: 1234 files [" in stream.getvalue()
    assert "%" not in stream.getvalue()


def test_names_from_the_target_cannot_drive_the_terminal() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(Phase.CUSTOM, 0, 2, "9001: \x1b[2J")  # a title from the policy
    progress.update(Phase.CUSTOM, 1, 2, "9\x1b]0;t\x07")  # the next one's, on the same bar
    time.sleep(0.25)  # past the redraw throttle: the second title is drawn too
    progress.update(Phase.CUSTOM, 2, 2, "9\x1b]0;t\x07")
    progress.close()
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "9001: \\x1b[2J" in text and "9\\x1b]0;t\\x07" in text


def test_the_scan_reports_its_phases_to_a_progress(
    root: tuple[Path, list[str]], scan_impl: str
) -> None:
    path, _ = root
    everything, alone = Recorder(), Recorder()
    scan_root(path, all_files=True, process_env=False, progress=everything)
    scan_root(path, all_files=True, process_env=False, checks=["448"], progress=alone)
    assert everything.phases() == [Phase.PACKAGES, Phase.WALK]
    assert everything.calls[-1][:2] == (Phase.WALK, 23)  # every file walked, counted
    assert alone.phases() == [Phase.PACKAGES, Phase.HASH]
    hashing = [call for call in alone.calls if call[0] is Phase.HASH]
    assert hashing[0][1:3] == (0, 5) and hashing[-1][1:3] == (5, 5)


def test_custom_checks_are_counted(root: tuple[Path, list[str]]) -> None:
    path, _ = root
    specs = tuple(
        CustomCheckSpec(
            id=check_id,
            name=f"check {check_id}",
            severity=Severity.LOW,
            description="progress under test",
            script=b"exit 0\n",  # the golden root has no shell: an error, quickly
            timeout=5.0,
        )
        for check_id in ("9001", "9002")
    )
    policy = Policy(version=1, collections={}, rules=(), custom_checks=specs)
    recorder = Recorder()
    scan_root(path, checks=["9001", "9002"], process_env=False, policy=policy, progress=recorder)
    custom = [call[1:] for call in recorder.calls if call[0] is Phase.CUSTOM]
    assert custom == [
        (0, 2, "9001: check 9001"),
        (1, 2, "9001: check 9001"),
        (1, 2, "9002: check 9002"),
        (2, 2, "9002: check 9002"),
    ]
    assert [check.position for check in select_checks(None, specs)[-2:]] == [(1, 2), (2, 2)]


def test_a_line_callback_still_gets_lines(root: tuple[Path, list[str]]) -> None:
    """The library's older `progress=` form, a callable taking a str, keeps working."""
    path, _ = root
    lines: list[str] = []
    scan_root(path, all_files=True, process_env=False, progress=lines.append)
    assert lines[0] == "reading package databases"
    assert lines[-1] == "23 files walked"


def test_the_scan_core_never_imports_the_display_library(root: tuple[Path, list[str]]) -> None:
    path, _ = root
    source = (
        "import sys, scanner\n"
        f"scanner.scan_root({str(path)!r}, process_env=False, progress=lambda line: None)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('tqdm', 'rich')))\n"
    )
    assert run_python(source).strip() == "[]"
    # And in the source: only the command line's display module imports tqdm.
    package = Path(scanner.__file__).parent
    importers = []
    for module in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "tqdm" for name in names):
                importers.append(module.relative_to(package).as_posix())
    assert importers == ["terminal_progress.py"]


def test_a_long_title_leaves_room_for_the_count() -> None:
    stream = io.StringIO()  # not a terminal: 80 columns
    progress = TerminalProgress(stream)
    progress.update(Phase.CUSTOM, 0, 3, "9001: " + "a very long custom check title " * 8)
    progress.close()
    (drawn,) = [line for line in stream.getvalue().split("\r") if "custom checks" in line]
    assert len(drawn) <= 80
    assert "…" in drawn and "0/3 [" in drawn and "checks/s]" in drawn


def test_a_phase_that_starts_over_is_drawn_afresh() -> None:
    """An image extraction that moves on to disk counts its layers again from 0."""
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(Phase.LAYERS, 2, 3)
    progress.update(Phase.LAYERS, 0, 3)
    progress.close()
    lines = [line for line in stream.getvalue().split("\r") if "layers" in line]
    assert "2/3" in lines[0] and "0/3" in lines[-1]
    assert "-" not in lines[-1].split("[", 1)[1]  # no negative time or rate
