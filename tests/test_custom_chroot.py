"""Custom checks in chroot isolation, what a Fargate sidecar can build (no CAP_SYS_ADMIN):
verdicts, reads as root, nothing of the target changed, no network, nothing left running."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from child import child_env
from debroot import copy_root, debootstrap_root
from test_custom_checks import spec

from scanner.checks.custom.runner import CHROOT_UIDS, Errored, Failed, Passed, run_custom_check
from scanner.checks.custom.spec import Isolation
from scanner.policy.loader import parse_policy

pytestmark = [pytest.mark.root, pytest.mark.debootstrap]
REPO = Path(__file__).resolve().parent.parent
SECRET = b"only root may read this\n"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the debootstrap root, with a file only root may read."""
    root = copy_root(debootstrap_root(), tmp_path_factory.mktemp("chroot") / "root")
    secret = root / "root" / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry's mode, owner, size, mtime and inode: any change to the tree shows."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            seen[full] = (info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns, info.st_ino)
    return seen


def chrooted(script: bytes, root: Path, timeout: float = 10.0, **changes: object):  # type: ignore[no-untyped-def]
    checked = dataclasses.replace(
        spec(script, timeout=timeout), isolation=Isolation.CHROOT, **changes
    )
    return run_custom_check(checked, os.fspath(root))


def script_uids() -> list[int]:
    """Running processes of a chrooted script's uid (a zombie, dead and waiting for the init it
    was handed to, is not running)."""
    low, high = CHROOT_UIDS
    found = []
    for name in os.listdir("/proc"):
        try:
            if not name.isdigit() or not low <= os.stat(f"/proc/{name}").st_uid < high:
                continue
            with open(f"/proc/{name}/stat", "rb") as handle:
                state = handle.read().rpartition(b")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state != b"Z":
            found.append(int(name))
    return found


@pytest.fixture
def nothing_left() -> Iterator[None]:
    yield
    assert script_uids() == [], "a chrooted script's process outlived its check"


@pytest.mark.usefixtures("nothing_left")
def test_pass_and_fail_and_the_isolation_named(target: Path) -> None:
    passed = chrooted(b"test -x /bin/sh && exit 0", target)
    assert isinstance(passed, Passed) and passed.isolation.startswith("chroot"), passed
    failed = chrooted(b"echo found a problem; exit 1", target)
    assert isinstance(failed, Failed) and failed.output == "found a problem"
    errored = chrooted(b"exit 3", target)
    assert isinstance(errored, Errored) and "status 3" in errored.reason


@pytest.mark.usefixtures("nothing_left")
def test_it_reads_what_root_reads_as_a_uid_of_its_own(target: Path) -> None:
    result = chrooted(
        b"id -u; cat /root/secret; head -c0 /etc/shadow && echo shadow; exit 1", target
    )
    assert isinstance(result, Failed), result
    uid, secret, shadow = result.output.splitlines()
    assert CHROOT_UIDS[0] <= int(uid) < CHROOT_UIDS[1]
    assert secret.encode() + b"\n" == SECRET and shadow == "shadow"


@pytest.mark.usefixtures("nothing_left")
def test_a_hostile_script_changes_nothing_of_the_target(target: Path) -> None:
    before = snapshot(target)
    attempts = [
        "echo x >> /etc/passwd",
        ": > /etc/hostname",
        "rm -f /etc/os-release",
        "rm -rf /usr/bin",
        "mkdir /tmp/d",
        "ln -s / /tmp/l",
        "ln /etc/passwd /tmp/h",
        "mv /etc/hosts /tmp/",
        "chmod 777 /etc",
        "chown 0 /tmp",
        "touch -d 2000-01-01 /etc/passwd",
        "mknod /tmp/p p",
        "truncate -s0 /etc/passwd",
        "echo data > /tmp/made",
        "cp /bin/sleep /tmp/xmrig",
    ]
    hostile = "\n".join(f"( {attempt} ) 2>/dev/null" for attempt in attempts) + "\nexit 0\n"
    result = chrooted(hostile.encode(), target)
    assert isinstance(result, Passed), result
    after = snapshot(target)
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    # What the isolation cannot stop (docs/checks.md): an empty file created in a directory
    # anyone may write in; never a byte of content, never anything else.
    made = {str(target / "tmp" / name) for name in ("made", "xmrig")}
    assert changed <= {str(target / "tmp"), *made}, sorted(changed)
    for path in made & set(after):
        assert after[path][2] == 0
        os.unlink(path)


@pytest.mark.usefixtures("nothing_left")
def test_no_sockets_and_no_signals_to_others(target: Path) -> None:
    victim = subprocess.Popen(["sleep", "30"])
    try:
        script = (
            b"perl -e 'use Socket; socket(my $s, PF_INET, SOCK_STREAM, 0) or print qq(refused $!\\n)';"
            b"perl -e 'use Socket; socket(my $s, PF_UNIX, SOCK_STREAM, 0) or print qq(refused $!\\n)';"
            + f"kill -9 {victim.pid} 1 || echo kill refused; exit 1".encode()
        )
        result = chrooted(script, target)
        assert isinstance(result, Failed), result
        assert result.output.splitlines()[:2] == ["refused Permission denied"] * 2
        assert "kill refused" in result.output
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_what_it_leaves_running_is_killed_and_a_timeout_too(target: Path) -> None:
    started = time.monotonic()
    result = chrooted(b"setsid sleep 300 & sleep 300 & exit 0", target)
    assert isinstance(result, Passed) and time.monotonic() - started < 5, result
    assert script_uids() == []
    result = chrooted(b"setsid sleep 300 & sleep 300", target, timeout=1.0)
    assert isinstance(result, Errored) and "timed out" in result.reason
    assert script_uids() == []


@pytest.mark.usefixtures("nothing_left")
def test_processes_and_output_are_bounded(target: Path) -> None:
    bomb = b"i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; wait; exit 0"
    result = chrooted(bomb, target, timeout=20.0, processes=16)
    # Forks past the limit fail (RLIMIT_NPROC of the script's own uid): never 200 sleepers.
    assert isinstance(result, Passed | Errored), result
    assert "fork" in result.output.lower() or "resource" in result.output.lower(), result.output[
        :500
    ]
    chatty = chrooted(b"yes | head -c 1000000; exit 1", target)
    assert isinstance(chatty, Failed) and "more bytes of output not kept" in chatty.output


@pytest.mark.usefixtures("nothing_left")
def test_a_shebang_runs_the_targets_interpreter_reading_the_script(target: Path) -> None:
    result = chrooted(b"#!/usr/bin/perl -w\nprint qq(perl $^V\\n); exit 1;\n", target)
    assert isinstance(result, Failed) and result.output.startswith("perl v5"), result
    missing = chrooted(b"#!/usr/bin/python9\nprint(1)\n", target)
    assert isinstance(missing, Errored), missing
    relative = chrooted(b"#!perl\n", target)
    assert isinstance(relative, Errored) and "absolute path" in relative.reason


def test_without_cap_sys_admin_auto_runs_in_the_chroot_and_namespaces_demanded_errors(
    target: Path,
) -> None:
    # As in a Fargate task: root without CAP_SYS_ADMIN. The policy leaves isolation to auto in
    # one check, demands namespaces in the other.
    policy = """\
version: 1
custom_checks:
  - id: 9001
    name: auto
    severity: high
    description: d
    script: "cat /root/secret >/dev/null && exit 1"
  - id: 9002
    name: demanded
    severity: high
    description: d
    isolation: namespaces
    script: "exit 1"
"""
    code = (
        "import json, sys; from scanner import scan_root; "
        "from scanner.policy.loader import parse_policy; "
        f"report = scan_root({os.fspath(target)!r}, checks=['9001', '9002'], "
        "policy=parse_policy(sys.stdin.read())); print(json.dumps(report.to_dict()))"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--", sys.executable, "-c", code],
        input=policy,
        env=child_env(REPO / "tests"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    findings = [finding for finding in report["findings"] if finding["check"] == "9001"]
    assert len(findings) == 1 and findings[0]["isolation"].startswith("chroot")
    problems = [problem for problem in report["problems"] if problem.get("check") == "9002"]
    assert len(problems) == 1 and "demands isolation: namespaces" in problems[0]["message"]
    assert any("9001" in notice and "chroot" in notice for notice in report["notices"])
    assert report["complete"] is False


def test_the_policy_names_the_isolation() -> None:
    text = """\
version: 1
custom_checks:
  - {id: 9001, name: a, severity: low, description: d, script: "exit 0", isolation: chroot}
  - {id: 9002, name: b, severity: low, description: d, script: "exit 0"}
"""
    checks = parse_policy(text).custom_checks
    assert [check.isolation for check in checks] == [Isolation.CHROOT, Isolation.AUTO]
    with pytest.raises(Exception, match="unknown isolation 'jail'"):
        parse_policy(text.replace("isolation: chroot", "isolation: jail"))
