"""Files named on the command line that someone else may have put there: FIFOs, devices, sparse
giants and JSON nested past reason give a clear answer at once, in bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import findings_tree
import pytest
from child import child_env

from scanner import jsonload
from scanner.cli import main

PEAK_RSS_KB = 150 * 1024
ADDRESS_SPACE = 4 << 30  # far above the bound tested, far below the machine


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> findings_tree.Tree:
    return findings_tree.build(tmp_path_factory.mktemp("inputs"), tamper=(findings_tree.BINARY,))


def hostile(kind: str, where: Path) -> str:
    """A path to a FIFO, a character device, or a sparse file of 2 GiB."""
    if kind == "fifo":
        path = where / "fifo"
        os.mkfifo(path)
        return str(path)
    if kind == "zero":
        return "/dev/zero"
    path = where / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)
    return str(path)


def run_child(argv: list[str], timeout: float = 20) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KB) of `scan-root ARGV` in a child process.

    The scan is a grandchild: its peak is RUSAGE_CHILDREN of a small Python, not of pytest.
    That Python ends it at `timeout` (a FIFO read would otherwise outlive the test) and caps
    its address space, so that code without these bounds fails here on a shared machine
    instead of reading /dev/zero into 20 GB.
    """
    probe = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        def limit():
            resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
        done = subprocess.run([sys.executable, "-m", "scanner.cli", *sys.argv[1:]],
                              capture_output=True, text=True, timeout={timeout},
                              preexec_fn=limit)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        sys.stderr.write(done.stderr)
        print(done.returncode, peak)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout + 10,
        check=True,
    )
    code, peak = done.stdout.split()
    return int(code), done.stderr, int(peak)


@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
@pytest.mark.parametrize(
    "option", ["--baseline", "--task-definition", "--policy", "--env-file", "--miner-digests"]
)
def test_untrusted_input_files_are_refused_at_once(
    tree: findings_tree.Tree, tmp_path: Path, option: str, kind: str
) -> None:
    path = hostile(kind, tmp_path)
    started = time.monotonic()
    code, stderr, peak = run_child([str(tree.root), *tree.options, option, path])
    assert code == 2, stderr
    assert time.monotonic() - started < 15
    assert peak < PEAK_RSS_KB, f"{peak} KB"
    assert "regular file" in stderr or "over the limit" in stderr or "larger" in stderr, stderr


@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_state_that_is_no_file_is_a_full_scan(
    tree: findings_tree.Tree, tmp_path: Path, kind: str
) -> None:
    """An in-root state swapped for a FIFO must not stop every later scan, nor a giant one
    exhaust memory: the state is not used (a problem), the scan is a full one and finds."""
    path = hostile(kind, tmp_path)
    before = os.stat(path)
    code, stderr, peak = run_child([str(tree.root), *tree.options, "--state", path])
    assert code == 1, stderr  # the tampered binary, found by the full scan
    assert peak < PEAK_RSS_KB, f"{peak} KB"
    after = os.stat(path)
    if kind != "sparse":  # a device or FIFO is never replaced by the state written after
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_digest_list_that_is_no_file_does_not_stall_a_rescan(
    tree: findings_tree.Tree, tmp_path: Path, kind: str
) -> None:
    """With --state, the digest lists are fingerprinted even when 426 does not run: read
    through the same bounded opener (a FIFO stalled every scan)."""
    path = hostile(kind, tmp_path)
    argv = [str(tree.root), "--no-process-env", "--checks", "448", "--miner-digests", path]
    code, stderr, peak = run_child([*argv, "--state", str(tmp_path / "scan.state")])
    assert code == 1, stderr  # the tampered binary
    assert peak < PEAK_RSS_KB, f"{peak} KB"


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("option", ["--baseline", "--task-definition"])
def test_deeply_nested_json_is_a_clear_error(
    tree: findings_tree.Tree,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    depth: int,
) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    assert main([str(tree.root), *tree.options, option, str(path)]) == 2
    assert "nested deeper than" in capsys.readouterr().err


def test_load_json_bounds() -> None:
    assert jsonload.load_json(b'{"a": [[1]]}', what="x", max_bytes=100) == {"a": [[1]]}
    with pytest.raises(jsonload.JSONInputError, match="over the limit"):
        jsonload.load_json(b"[]" * 100, what="x", max_bytes=10)
    with pytest.raises(jsonload.JSONInputError, match="nested deeper than 3"):
        jsonload.load_json(b"[[[[]]]]", what="x", max_bytes=100, max_depth=3)
    assert jsonload.load_json(b"[[[]]]", what="x", max_bytes=100, max_depth=3) == [[[]]]
    with pytest.raises(jsonload.JSONInputError, match="too long"):
        jsonload.load_json(b"1" * 5000, what="x", max_bytes=10_000)
    secret = "Tr0ub4dor-prod"
    with pytest.raises(jsonload.JSONInputError) as caught:
        jsonload.load_json('{"password": ' + secret + "}", what="x", max_bytes=100)
    assert secret not in str(caught.value)
    assert json.dumps(jsonload.load_json("{}", what="x", max_bytes=2)) == "{}"


def many_values(option: str, where: Path, count: int, value: bytes = b"{}") -> str:
    """A baseline, or a sealed state, whose JSON holds `count` small values: a few bytes each in
    the file, ~80 bytes each as Python objects."""
    values = b"[" + b",".join([value] * count) + b"]"
    if option == "--baseline":
        path = where / "baseline.json"
        head = b'{"schema": 1, "scanner": {"name": "scan-root"}, "entries": '
        path.write_bytes(head + values + b"}")
        return str(path)
    from scanner import state

    header = b'{"count": 0, "paths_length": 0, "x": ' + values + b"}"
    body = state.MAGIC + len(header).to_bytes(4, "little") + header
    path = where / "scan.state"
    path.write_bytes(body + hashlib.sha256(body).digest())
    return str(path)


@pytest.mark.parametrize("option", ["--baseline", "--state"])
def test_json_of_millions_of_values_is_refused_in_bounded_memory(
    tree: findings_tree.Tree, tmp_path: Path, option: str
) -> None:
    """Three million `{}` are a 9 MiB file, well within the size caps, and were 450 MB and more
    of Python objects: the values are counted before anything is parsed."""
    path = many_values(option, tmp_path, 3_000_000)
    code, stderr, peak = run_child([str(tree.root), *tree.options, "--quiet", option, path])
    assert peak < PEAK_RSS_KB, f"{peak} KB"
    if option == "--baseline":
        assert code == 2 and "more than 1000000 JSON values" in stderr, stderr
    else:
        assert code == 1, stderr  # the state refused, a full scan: the tampered binary found


def test_the_most_values_accepted_stay_in_bounded_memory(
    tree: findings_tree.Tree, tmp_path: Path
) -> None:
    """Just under the cap, the costliest small value (a fresh 2-character string each) still
    parses within the memory bound; the baseline is then refused for what it says."""
    path = many_values("--baseline", tmp_path, jsonload.DEFAULT_MAX_NODES - 10, b'"ab"')
    code, stderr, peak = run_child([str(tree.root), *tree.options, "--quiet", "--baseline", path])
    assert code == 2 and "entries[0]: not an object" in stderr, stderr
    assert peak < PEAK_RSS_KB, f"{peak} KB"


@pytest.mark.skipif(not os.path.exists("/dev/tty"), reason="no /dev/tty")
def test_a_device_is_never_opened(tmp_path: Path) -> None:
    """Opening a device acts (/dev/watchdog arms a reboot, a tape rewinds): a symlink to one, or
    one swapped in where a state file was, is refused before it is opened. /dev/tty shows it:
    in a session without a terminal, opening it fails with ENXIO."""
    link = tmp_path / "device"
    link.symlink_to("/dev/tty")
    probe = textwrap.dedent(
        """
        import sys
        from scanner import jsonload, memo, state
        path = sys.argv[1]
        for opener in (
            lambda: jsonload.read_bounded(path, what="input", max_bytes=100),
            lambda: memo.kept_state(path, state.decode, state.StateError),
        ):
            try:
                opener()
            except (jsonload.InputFileError, state.StateError) as error:
                print("refused:", error)
            except OSError as error:
                print("opened:", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(link)],
        capture_output=True, text=True, env=child_env(), timeout=30, start_new_session=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused:") for line in lines), (
        done.stdout + done.stderr
    )


def test_a_device_node_in_the_root_is_never_opened(tmp_path: Path) -> None:
    """A container with CAP_MKNOD (docker's default) can make a node with the numbers of the
    host's /dev/watchdog where a package database belongs; the scan on the host must not open
    it. /dev/tty's numbers show it: in a session without a terminal, opening fails ENXIO."""
    root = tmp_path / "root"
    for directory in ("var/lib/dpkg", "var/lib/rpm", "lib/apk/db"):
        (root / directory).mkdir(parents=True)
    try:
        for node in ("var/lib/dpkg/status", "var/lib/rpm/Packages", "lib/apk/db/installed"):
            os.mknod(root / node, 0o600 | stat.S_IFCHR, os.makedev(5, 0))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    probe = textwrap.dedent(
        """
        import errno, sys
        from pkgdb import RootFS
        root = RootFS(sys.argv[1])
        for node in (b"var/lib/dpkg/status", b"var/lib/rpm/Packages", b"lib/apk/db/installed"):
            for read in (root.open, root.read_bytes):
                try:
                    read(node)
                except OSError as error:
                    print(node.decode(), errno.errorcode[error.errno])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(root)],
        capture_output=True, text=True, env=child_env(), timeout=30, start_new_session=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and all(line.endswith(" EINVAL") for line in lines), (
        done.stdout + done.stderr
    )
    code, stderr, _ = run_child([str(root), "--checks", "448", "--quiet", "--format", "json"])
    assert code == 3, stderr
