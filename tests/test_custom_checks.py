"""Custom checks run in their sandbox against a real debootstrap root: verdicts, isolation, wiring."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import jsonschema
import pytest
from child import child_env
from debroot import copy_root, debootstrap_root
from imagebuilder import Put, build_layers, image_config, write_docker_save
from test_sarif import validator  # noqa: F401 - the fixture
from trees import as_nobody

from scanner import UsageError, cli, scan_root
from scanner.checks import select_checks
from scanner.checks.custom import _cgroup
from scanner.checks.custom.runner import (
    OUTPUT_LIMIT,
    CheckResult,
    Errored,
    Failed,
    Passed,
    Skipped,
    run_custom_check,
)
from scanner.output.sarif import to_sarif
from scanner.policy.model import CustomCheckSpec, Policy
from scanner.report import Severity
from scanner.scan import scan_image

REPO = Path(__file__).resolve().parent.parent


def spec(script: bytes, timeout: float = 20.0, check_id: str = "9001") -> CustomCheckSpec:
    return CustomCheckSpec(
        id=check_id,
        name="Custom test check",
        severity=Severity.HIGH,
        description="a script under test",
        script=script,
        timeout=timeout,
    )


def tree_digest(path: Path) -> str:
    """Names, modes, link targets and contents of everything under `path`."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(directory, name)
            info = os.lstat(full)
            digest.update(f"{full}\0{info.st_mode}\0{info.st_mtime_ns}\0".encode())
            if os.path.islink(full):
                digest.update(os.readlink(full).encode())
            elif os.path.isfile(full):
                with open(full, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


def sandbox_leftovers() -> tuple[set[str], list[str]]:
    """Work directories in the temp dir, and mounts of them visible to the scanner."""
    directories = {
        name for name in os.listdir(tempfile.gettempdir()) if name.startswith("scan-root-check-")
    }
    with open("/proc/self/mountinfo") as handle:
        mounts = [line for line in handle if "scan-root-check-" in line]
    return directories, mounts


@pytest.fixture(scope="module")
def root() -> Path:
    return debootstrap_root()


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    """A private copy for the scripts that try to write: were the sandbox ever broken, they would
    damage this copy, not the root every other test shares."""
    return copy_root(root, tmp_path_factory.mktemp("custom") / "root")


@contextlib.contextmanager
def unchanged_root(root: Path) -> Iterator[None]:
    """The root and the host's temp dir are exactly as before (nothing leaks, nothing is left)."""
    etc_before, top_before = tree_digest(root / "etc"), sorted(os.listdir(root))
    # A private temp dir for the runner's work directories: other test runs on the machine
    # cannot make this look dirty.
    private = tempfile.mkdtemp(prefix="custom-check-test-")
    with mock.patch.object(tempfile, "tempdir", private):
        yield
        directories, mounts = sandbox_leftovers()
    os.rmdir(private)  # fails if anything was left in it
    assert tree_digest(root / "etc") == etc_before
    assert sorted(os.listdir(root)) == top_before
    assert not directories and not mounts, (directories, mounts)


@pytest.fixture
def unchanged(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    tmp_path_factory.getbasetemp()  # made now, so not inside the private temp dir below
    with unchanged_root(root):
        yield


def run(script: bytes, root: Path | str, **kwargs: float) -> CheckResult:
    return run_custom_check(spec(script, **kwargs), os.fspath(root))


# -- verdicts -------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
class TestVerdicts:
    def test_exit_0_passes(self, root: Path) -> None:
        result = run(b"#!/bin/sh\necho all good\nexit 0\n", root)
        assert isinstance(result, Passed), result
        assert result.output == "all good"
        assert result.isolation == "overlay"

    def test_exit_1_fails_with_its_output_as_cause(self, root: Path) -> None:
        result = run(b"echo 'PermitRootLogin is yes'\necho on stderr >&2\nexit 1\n", root)
        assert isinstance(result, Failed), result
        assert result.output == "PermitRootLogin is yes\non stderr"

    def test_exit_2_is_an_error_not_a_verdict(self, root: Path) -> None:
        result = run(b"echo half done\nexit 2\n", root)
        assert isinstance(result, Errored), result
        assert result.reason == "exited with status 2"
        assert result.output == "half done"

    def test_killed_by_a_signal_is_an_error(self, root: Path) -> None:
        result = run(b"kill -9 $$\n", root)
        assert isinstance(result, Errored), result
        assert result.reason == "killed by signal 9"

    def test_timeout_kills_everything_quickly(self, root: Path) -> None:
        marker = str(7000 + os.getpid() % 1000)  # a unique sleep length to find leftovers by
        script = f"setsid sleep {marker} &\nsleep {marker} &\nsleep {marker}\n".encode()
        started = time.monotonic()
        result = run(script, root, timeout=1.0)
        elapsed = time.monotonic() - started
        assert isinstance(result, Errored), result
        assert result.reason == "timed out after 1 s (the sandbox was killed)"
        assert elapsed < 15, elapsed  # generous: the machine is shared; a hang would be 60 s+
        # Even the setsid one (out of the process group) is gone: its pid namespace died.
        deadline = time.monotonic() + 5
        while (left := _processes(["sleep", marker])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left

    def test_output_is_bounded_and_decoded_safely(self, root: Path) -> None:
        script = (
            b"printf 'caf\\351 \\033[31mred\\302\\233\\n'\n"  # C1 CSI is U+009B: \302\233
            b"head -c 1000000 /dev/zero | tr '\\0' x\nexit 1\n"
        )
        result = run(script, root)
        assert isinstance(result, Failed), result
        first, _, rest = result.output.partition("\n")
        assert first == "caf\\xe9 \\x1b[31mred\\x9b"  # no raw escape sequence reaches a terminal
        assert rest.endswith(f"[{1000000 + 16 - OUTPUT_LIMIT} more bytes of output not kept]")
        assert len(result.output) < OUTPUT_LIMIT + 100

    def test_signals_and_umask_are_reset(self, root: Path) -> None:
        # An inherited SIG_IGN for SIGPIPE would make `yes` fail with EPIPE instead of dying quietly.
        result = run(b"#!/bin/bash\nyes | head -n 2\necho ${PIPESTATUS[0]}\numask\nexit 1\n", root)
        assert isinstance(result, Failed), result
        assert result.output.splitlines() == ["y", "y", str(128 + signal.SIGPIPE), "0022"]

    def test_a_large_script_is_delivered_whole(self, root: Path) -> None:
        script = b"#" * 300_000 + b"\necho end of a large script\nexit 1\n"
        result = run(script, root)
        assert isinstance(result, Failed), result
        assert result.output == "end of a large script"

    def test_environment_is_fixed_never_the_scanners(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCAN_ROOT_TEST_SECRET", "hunter2")
        result = run(b"env\nexit 1\n", root)
        assert isinstance(result, Failed), result
        variables = dict(line.split("=", 1) for line in result.output.splitlines())
        assert (
            variables.pop("PATH") == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        assert variables.pop("HOME") == "/root"
        assert variables.pop("LANG") == "C"
        assert variables.pop("TMPDIR") == "/dev/shm"  # the sandbox's scratch space
        assert set(variables) <= {"PWD", "SHLVL", "_", "OLDPWD"}, variables  # set by the shell


# -- which interpreter runs it --------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
class TestInterpreter:
    def test_bash_shebang_runs_the_targets_bash(self, root: Path) -> None:
        result = run(b'#!/bin/bash\necho "$BASH_VERSION"; readlink /proc/$$/exe; exit 1\n', root)
        assert isinstance(result, Failed), result
        version, exe = result.output.splitlines()
        assert version.startswith("5.2.")  # bookworm's bash
        assert exe == "/usr/bin/bash"

    def test_no_shebang_runs_the_targets_sh(self, root: Path) -> None:
        result = run(b"readlink /proc/$$/exe\ncat /etc/debian_version\nexit 1\n", root)
        assert isinstance(result, Failed), result
        exe, version = result.output.splitlines()
        assert exe == "/usr/bin/dash"  # the target's /bin/sh -> dash
        assert version == (root / "etc/debian_version").read_text().strip()

    def test_a_root_without_sh_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / "tmp").mkdir()  # no /bin/sh: the host's shell must not stand in for it
        result = run(b"exit 0\n", tmp_path)
        assert isinstance(result, Errored), result
        assert "cannot start the script" in result.reason and "/bin/sh" in result.reason

    def test_hostile_mount_points_are_replaced_not_followed(self, tmp_path: Path) -> None:
        # /tmp, /dev and /proc as symlinks out of the root: the sandbox must mount its own
        # directories (in the throw-away layer), never follow them. No shell: it stops at exec.
        for name, target in (("tmp", "/etc"), ("dev", "/"), ("proc", "../../..")):
            os.symlink(target, tmp_path / name)
        result = run(b"exit 0\n", tmp_path)
        assert isinstance(result, Errored), result
        assert result.reason.startswith("cannot start the script"), result.reason
        assert all(os.path.islink(tmp_path / name) for name in ("tmp", "dev", "proc"))
        readonly = run_custom_check(spec(b"exit 0\n"), os.fspath(tmp_path), overlay=False)
        assert isinstance(readonly, Errored), readonly
        assert "no /dev" in readonly.reason  # read-only: refuses rather than follow the link

    def test_a_missing_shebang_interpreter_is_an_error(self, root: Path) -> None:
        result = run(b"#!/usr/bin/python3\nraise SystemExit(0)\n", root)  # not in minbase
        assert isinstance(result, Errored), result
        assert "cannot start the script" in result.reason


# -- isolation ------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
class TestIsolation:
    def test_writes_go_to_a_throw_away_layer(self, scratch_root: Path, tmp_path: Path) -> None:
        root = scratch_root
        canary_dir = tmp_path / "canary"
        canary_dir.mkdir()
        host_tmp = Path("/tmp") / f"scan-root-canary-{uuid.uuid4().hex}"
        script = (
            f"echo 'evil::0:0::/:/bin/sh' >> /etc/passwd || exit 3\n"
            f"grep -q '^evil:' /etc/passwd || exit 3\n"  # the write worked, inside
            f"echo pwned > /etc/pwned || exit 3\n"
            f"mkdir -p {canary_dir} && echo pwned > {canary_dir}/file || exit 3\n"
            f"echo pwned > {host_tmp} || exit 3\n"
            f"echo pwned > /pwned || exit 3\n"
            "exit 0\n"
        ).encode()
        with unchanged_root(root):
            result = run(script, root)
        assert isinstance(result, Passed), result
        assert list(canary_dir.iterdir()) == []
        assert not host_tmp.exists()
        assert not (root / "etc/pwned").exists() and not (root / "pwned").exists()
        assert b"evil:" not in (root / "etc/passwd").read_bytes()
        # The next run starts from the untouched root again.
        again = run(b"grep -q '^evil:' /etc/passwd && exit 1\nexit 0\n", root)
        assert isinstance(again, Passed), again

    def test_read_only_fallback_refuses_writes(self, scratch_root: Path) -> None:
        script = (
            b"echo x >> /etc/passwd && exit 1\n"
            b"echo x > /tmp/in-target && exit 1\n"  # the target's /tmp is the target's: read-only
            b'echo ok > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"\n'
        )
        with unchanged_root(scratch_root):
            result = run_custom_check(spec(script), os.fspath(scratch_root), overlay=False)
        assert isinstance(result, Passed), result
        assert result.output.count("Read-only file system") == 2, result.output
        assert result.output.endswith("ok")
        assert result.isolation.startswith("read-only bind")

    def test_the_scanners_network_is_unreachable(self, root: Path) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = listener.getsockname()[1]
            script = (
                f"#!/bin/bash\n"
                f"if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo reached the host; exit 1; fi\n"
                f"exit 0\n"
            ).encode()
            result = run(script, root)
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody came
        assert isinstance(result, Passed), result
        assert "Network is unreachable" in result.output or "refused" in result.output

    def test_no_privilege_to_undo_the_sandbox(self, root: Path) -> None:
        script = (
            b"mount -t tmpfs x /mnt 2>/dev/null && echo mounted\n"
            b"chroot / true 2>/dev/null && echo chrooted\n"
            b"mknod /tmp/disk b 8 0 2>/dev/null && echo made a block device\n"
            b"ip link 2>/dev/null | grep -v '^ *link' | grep -v ': lo:'\n"
            # Harmless if it worked (drops clean caches), but it must not: /proc/sys is read-only.
            b"(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo sysctl written\n"
            b"(echo 1 > /proc/sys/vm/drop_caches) 2>&1 | grep -q 'Read-only' || echo writable\n"
            b"grep -c . /proc/kcore 2>/dev/null | grep -qv '^0$' && echo kcore readable\n"
            b"ls /proc | grep -c '^[0-9]'\n"  # only the sandbox's own processes are visible
            b"exit 1\n"
        )
        result = run(script, root)
        assert isinstance(result, Failed), result
        count = int(result.output.splitlines()[-1])
        assert result.output.splitlines()[:-1] == []
        assert 1 <= count <= 6, count

    def test_the_live_root_is_not_written_either(self) -> None:
        name = f"/etc/scan-root-canary-{uuid.uuid4().hex}"
        result = run(f"echo x > {name} && cat {name}\n".encode(), "/")
        assert isinstance(result, Passed), result
        assert result.output == "x" and result.isolation == "overlay"
        assert not os.path.lexists(name)


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
def test_a_root_on_overlayfs_gets_its_own_overlay(root: Path, tmp_path: Path) -> None:
    # As inside a container (the live root of a Fargate task is an overlay): overlay on overlay.
    for name in ("upper", "work", "merged"):
        (tmp_path / name).mkdir()
    options = f"lowerdir={root},upperdir={tmp_path}/upper,workdir={tmp_path}/work"
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, tmp_path / "merged"], check=True
    )
    try:
        result = run(b"echo x >> /etc/passwd && tail -n 1 /etc/passwd\n", tmp_path / "merged")
    finally:
        subprocess.run(["umount", tmp_path / "merged"], check=True)
    assert isinstance(result, Passed), result
    assert result.output == "x" and result.isolation == "overlay"
    assert list((tmp_path / "upper").iterdir()) == []  # not even the container's own layer


@pytest.mark.root
@pytest.mark.debootstrap
def test_namespaces_demanded_without_cap_sys_admin_is_an_error_never_unisolated(
    root: Path,
) -> None:
    # Root without CAP_SYS_ADMIN, as in an ECS/Fargate task: the namespace sandbox cannot be
    # built; demanded by the policy, the script never runs (no fallback). The unshare refusal
    # itself is what the runner would meet without its CAP_SYS_ADMIN probe.
    code = (
        "import dataclasses; from test_custom_checks import spec; "
        "from scanner.checks.custom.runner import run_custom_check, _run; "
        "from scanner.checks.custom.spec import Isolation; "
        "demanded = dataclasses.replace(spec(b'echo ran; exit 0'), "
        "isolation=Isolation.NAMESPACES); "
        f"print(repr(run_custom_check(demanded, {os.fspath(root)!r})))"
    )
    environment = child_env(REPO / "tests")
    shown = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--", sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert shown.startswith(
        "Errored(reason='the policy demands isolation: namespaces, which needs CAP_SYS_ADMIN"
    ), shown


def _processes(argv: list[str]) -> list[int]:
    found = []
    wanted = "\0".join(argv).encode() + b"\0"
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if handle.read() == wanted:
                        found.append(int(entry))
            except OSError:
                continue  # the process ended while we looked
    return found


# -- not root -------------------------------------------------------------------------------------


def _as_nobody_result(root: str) -> CheckResult:
    return run_custom_check(spec(b"exit 0\n"), root)


@pytest.mark.root
@pytest.mark.debootstrap
def test_not_root_is_skipped_never_passed(root: Path) -> None:
    result = as_nobody(lambda: _as_nobody_result(os.fspath(root)))
    assert isinstance(result, Skipped), result
    assert result.reason == "custom checks need root to build their sandbox (running as uid 65534)"


@pytest.mark.root
@pytest.mark.debootstrap
def test_not_root_scan_is_incomplete(root: Path) -> None:
    policy = Policy(version=1, collections={}, rules=(), custom_checks=(spec(b"exit 0\n"),))

    def scan() -> tuple[list[str], bool, int]:
        report = scan_root(root, checks=["9001"], policy=policy)
        return [p.kind for p in report.problems], report.complete, len(report.findings)

    kinds, complete, findings = as_nobody(scan)  # type: ignore[misc]
    assert "custom-check-skipped" in kinds
    assert complete is False and findings == 0


# -- wiring ---------------------------------------------------------------------------------------


def test_selection_by_id_and_order() -> None:
    specs = (spec(b"exit 0\n", check_id="9001"), spec(b"exit 0\n", check_id="9002"))
    assert [c.id for c in select_checks(["9002", "448"], specs)] == ["448", "9002"]
    assert [c.id for c in select_checks(None, specs)][-2:] == ["9001", "9002"]
    with pytest.raises(UsageError, match="unknown check id"):
        select_checks(["9001"])  # no policy, no custom check
    with pytest.raises(UsageError, match="9001"):
        select_checks(None, specs + specs[:1])
    with pytest.raises(UsageError, match="448"):
        select_checks(None, (spec(b"", check_id="448"),))


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
def test_scan_root_end_to_end(
    root: Path,
    validator: jsonschema.protocols.Validator,  # noqa: F811 - the fixture imported above
) -> None:
    policy = Policy(
        version=1,
        collections={},
        rules=(),
        custom_checks=(
            spec(b"grep -q '^root:' /etc/passwd && echo 'root can log in'; exit 1\n"),
            spec(b"exit 0\n", check_id="9002"),
            spec(b"exit 7\n", check_id="9003"),
        ),
    )
    report = scan_root(root, checks=["9001", "9002", "9003"], policy=policy)
    assert report.checks == ("9001", "9002", "9003")
    document = json.loads(report.to_json())
    # Which limits were in force depends on the machine (cgroup v2 or the fallback): named always.
    limits = document["findings"][0].pop("limits")
    assert limits.startswith("memory 256 MiB"), limits
    assert document["findings"] == [
        {
            "check": "9001",
            "title": "Custom test check",
            "severity": "high",
            "kind": "custom-check-failed",
            "detail": "root can log in",
            "rule": "default",  # the policy decided it: no rule names 9001, so the default alerts
            "effect": "alert",
            "isolation": "overlay",
        }
    ]
    errors = [p for p in document["problems"] if p["kind"] == "custom-check-error"]
    assert errors == [
        {
            "kind": "custom-check-error",
            "message": "custom check 9003 (Custom test check) could not decide: "
            f"exited with status 7 (limits: {limits})",
            "check": "9003",
        }
    ]
    assert document["complete"] is False  # an error is not a pass
    # The SARIF log names the custom check as a rule and validates against the official schema.
    log = to_sarif(report)
    validator.validate(log)
    (run_log,) = log["runs"]
    assert [rule["id"] for rule in run_log["tool"]["driver"]["rules"]] == ["9001", "9002", "9003"]
    assert [result["ruleId"] for result in run_log["results"]] == ["9001"]


@pytest.mark.root
@pytest.mark.debootstrap
def test_custom_checks_run_after_builtins(root: Path) -> None:
    policy = Policy(version=1, collections={}, rules=(), custom_checks=(spec(b"exit 1\n"),))
    seen: list[str] = []
    report = scan_root(root, checks=["424", "9001"], policy=policy, progress=seen.append)
    assert report.checks == ("424", "9001")
    assert [f.check for f in report.findings][-1] == "9001"
    assert any(line.startswith("custom check 9001") for line in seen)


POLICY = """\
version: 1
rules:
  - name: custom-gate
    effects: {"9001": block}
custom_checks:
  - id: 9001
    name: root has no login shell
    severity: critical
    description: root must not log in interactively
    script: |
      #!/bin/bash
      if grep -q '^root:.*:/bin/bash$' /etc/passwd; then echo "root logs in with bash"; exit 1; fi
  - id: 9002
    name: bookworm
    severity: low
    description: the target is Debian 12
    script: |
      grep -q '^12\\.' /etc/debian_version
"""


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("checks", "status"),
    [("9001,9002", cli.EXIT_BLOCKED), ("9002", cli.EXIT_CLEAN), ("9003", cli.EXIT_USAGE)],
)
def test_cli_policy_custom_checks(
    root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checks: str,
    status: int,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    argv = [str(root), "--policy", str(policy), "--checks", checks, "--format", "json", "--quiet"]
    assert cli.main(argv) == status
    if status == cli.EXIT_USAGE:
        assert "unknown check id(s): 9003" in capsys.readouterr().err
        return
    document = json.loads(capsys.readouterr().out)
    assert document["checks"] == checks.split(",")
    assert document["complete"] is True
    if status == cli.EXIT_BLOCKED:  # the rule blocks 9001
        (finding,) = document["findings"]
        assert finding["check"] == "9001" and finding["detail"] == "root logs in with bash"
        assert (finding["rule"], finding["effect"], finding["severity"]) == (
            "custom-gate",
            "block",
            "critical",
        )


@pytest.mark.root
def test_image_scan_runs_custom_checks_against_the_image(tmp_path: Path) -> None:
    # The image has no shell: the host's /bin/sh must not run the script in its place.
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "etc").mkdir()
    layers = build_layers(root, [Put("etc/motd", b"hello\n", 0o644)], tmp_path / "layers")
    tarball = tmp_path / "image.tar"
    write_docker_save(tarball, layers, image_config(), ["example/empty:1"])
    policy = Policy(version=1, collections={}, rules=(), custom_checks=(spec(b"exit 0\n"),))
    report = scan_image(tarball, checks=["9001"], policy=policy)
    (problem,) = [p for p in report.problems if p.check == "9001"]
    assert problem.kind == "custom-check-error" and "cannot start the script" in problem.message
    assert report.target_kind == "image" and not report.complete


# -- the target as it is: its /tmp, and the script's own scratch space ----------------------------

# The check that goes with the product's reference Fargate task (../shared/examples): the task
# copies /bin/sleep to /tmp/xmrig, a miner's name in a place the container writes to.
MINER_CHECK = b'if [ -e /tmp/xmrig ]; then echo "a miner at /tmp/xmrig"; exit 1; fi\nexit 0\n'


def reference_miner(shared_fixtures: Path) -> tuple[str, str]:
    """(source, destination) of the `cp` the reference task definition runs."""
    definition = shared_fixtures.parent.parent / "examples" / "fargate-task-definition.json"
    (container,) = json.loads(definition.read_text())["containerDefinitions"]
    command = " ".join(container["command"])
    assert "cp /bin/sleep /tmp/xmrig" in command, command
    return "/bin/sleep", "/tmp/xmrig"


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "read-only"])
def test_the_reference_miner_in_tmp_is_seen(
    scratch_root: Path, shared_fixtures: Path, overlay: bool
) -> None:
    source, destination = reference_miner(shared_fixtures)
    miner = scratch_root / destination.lstrip("/")
    shutil.copy2(scratch_root / source.lstrip("/"), miner)  # what the task's command does
    try:
        with unchanged_root(scratch_root):
            found = run_custom_check(spec(MINER_CHECK), os.fspath(scratch_root), overlay=overlay)
    finally:
        miner.unlink()
    assert isinstance(found, Failed), found
    assert found.output == "a miner at /tmp/xmrig"
    clean = run_custom_check(spec(MINER_CHECK), os.fspath(scratch_root), overlay=overlay)
    assert isinstance(clean, Passed), clean


@pytest.mark.root
@pytest.mark.debootstrap
def test_the_targets_tmp_is_never_written_and_scratch_is_its_own(scratch_root: Path) -> None:
    (scratch_root / "tmp/left-by-the-target").write_text("kept\n")
    before = sorted(os.listdir(scratch_root / "tmp"))
    script = (
        b"cat /tmp/left-by-the-target\n"
        b"echo x > /tmp/written-in-the-sandbox || exit 3\n"  # the throw-away layer takes it
        b'echo y > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"\n'
        b'[ "$TMPDIR" != /tmp ] && [ ! -e /tmp/scratch ] && echo separate\n'
        b"exit 1\n"
    )
    try:
        with unchanged_root(scratch_root):
            result = run(script, scratch_root)
        assert isinstance(result, Failed), result
        assert result.output.splitlines() == ["kept", "y", "separate"]
        assert sorted(os.listdir(scratch_root / "tmp")) == before
    finally:
        (scratch_root / "tmp/left-by-the-target").unlink()


@pytest.mark.root
def test_no_socket_file_reaches_a_host_daemon() -> None:
    # Through the read-only fallback's bind, a socket file in the target is the host's very socket
    # (an ssh-agent's in the live root's /tmp): AF_UNIX sockets are refused to the script.
    directory = Path(tempfile.mkdtemp(prefix="scan-root-test-", dir="/var/tmp"))  # on the root fs
    path = directory / "agent.sock"
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(os.fspath(path))
            listener.listen()
            listener.setblocking(False)
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(os.fspath(path))  # the socket works from outside
                listener.accept()[0].close()
            script = (
                "#!/usr/bin/python3\nimport ctypes, os, socket\n"
                # io_uring would make and connect the socket without the system calls.
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                "params = ctypes.create_string_buffer(120)\n"  # io_uring_setup: 425 on both
                "ring = libc.syscall(425, 1, params)\n"
                "print('io_uring', ring, os.strerror(ctypes.get_errno()))\n"
                f"socket.socket(socket.AF_UNIX).connect({os.fspath(path)!r})\n"
                "print('connected')\n"
            ).encode()
            results = [
                run_custom_check(spec(script), "/", overlay=overlay) for overlay in (False, True)
            ]
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody came
    finally:
        shutil.rmtree(directory)
    for result in results:
        assert isinstance(result, Failed), result
        assert result.output.startswith("io_uring -1 Operation not permitted\n"), result.output
        assert result.output.endswith("PermissionError: [Errno 1] Operation not permitted")


# -- kernel keyrings ------------------------------------------------------------------------------

# Reads the keyrings from inside the sandbox (the live root's python3, by system call number).
KEYRING_PROBE = """\
#!/usr/bin/python3
import ctypes, os
ADD_KEY, REQUEST_KEY, KEYCTL = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}[
    os.uname().machine
]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
DESCRIPTION = DESCRIPTION_HERE

def call(*args):
    ctypes.set_errno(0)
    result = libc.syscall(*args)
    return f"{result} {os.strerror(ctypes.get_errno()) if result < 0 else ''}".strip()

buffer = ctypes.create_string_buffer(4096)
for name, keyring in (("session", -3), ("user", -4), ("user-session", -5)):
    print("search", name, call(KEYCTL, 10, keyring, b"user", DESCRIPTION, 0))
    print("read", name, call(KEYCTL, 11, keyring, buffer, 4096))
print("request_key", call(REQUEST_KEY, b"user", DESCRIPTION, None, 0))
print("add_key", call(ADD_KEY, b"user", b"planted", b"x", 1, -3))
for name in ("/proc/keys", "/proc/key-users"):
    with open(name) as handle:
        print(name, repr(handle.read()))
"""

KEYRING_CHILD = """\
import ctypes, json, os, subprocess, sys
from scanner.policy.model import CustomCheckSpec
from scanner.checks.custom.runner import run_custom_check
from scanner.report import Severity

KEYCTL = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# This child's own new session keyring: nothing of the host's is touched.
assert libc.syscall(KEYCTL, 1, b"scan-root-test-session") > 0
description = DESCRIPTION_HERE
secret = b"not-a-real-secret-" + os.urandom(8).hex().encode()
ADD_KEY = KEYCTL - 2
assert libc.syscall(ADD_KEY, b"user", description, secret, len(secret), -3) > 0
probe = sys.argv[1].encode()
outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
spec = CustomCheckSpec(id="9001", name="keys", severity=Severity.HIGH, description="d",
                       script=probe, timeout=20.0)
result = run_custom_check(spec, "/")
print(json.dumps({"outside": outside, "inside": result.output, "kind": type(result).__name__}))
"""


@pytest.mark.root
def test_the_script_sees_no_keyring_of_the_host() -> None:
    description = f"scan-root-test-{uuid.uuid4().hex}".encode()
    probe = KEYRING_PROBE.replace("DESCRIPTION_HERE", repr(description))
    source = KEYRING_CHILD.replace("DESCRIPTION_HERE", repr(description))
    shown = subprocess.run(
        [sys.executable, "-c", source, probe],
        env=child_env(REPO / "tests"),
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    document = json.loads(shown)
    outside = dict(line.split(" ", 1) for line in document["outside"].splitlines()[:1])
    assert int(outside["search"].split()[1]) > 0, document  # the probe finds the key outside
    assert document["kind"] == "Passed", document
    inside = document["inside"].splitlines()
    assert inside == [
        "search session -1 Operation not permitted",
        "read session -1 Operation not permitted",
        "search user -1 Operation not permitted",
        "read user -1 Operation not permitted",
        "search user-session -1 Operation not permitted",
        "read user-session -1 Operation not permitted",
        "request_key -1 Operation not permitted",
        "add_key -1 Operation not permitted",
        "/proc/keys ''",
        "/proc/key-users ''",
    ], document


# -- memory and process limits --------------------------------------------------------------------

ALLOCATE_1_GIB = b"#!/usr/bin/python3\nblock = bytearray(1 << 30)\nprint('allocated 1 GiB')\n"
# Forks until refused, then says how many children it had at once (the live root's python3).
COUNT_FORKS = b"""\
#!/usr/bin/python3
import os, time
children = []
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError as error:
        print("refused:", error.strerror)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print(len(children))
"""


def limited(script: bytes, root: Path | str, *, cgroup: bool = True, **limits: int) -> CheckResult:
    check = dataclasses.replace(spec(script), **limits)
    return run_custom_check(check, os.fspath(root), cgroup=cgroup)


def cgroup_in_force(result: CheckResult) -> bool:
    assert isinstance(result, (Passed, Failed, Errored)) and result.limits, result
    return "(cgroup v2)" in result.limits


def per_namespace_pid_max() -> bool:
    major, minor = os.uname().release.split(".")[:2]
    return (int(major), int(minor.split("-")[0])) >= (6, 14)


@pytest.mark.root
class TestRlimitFallback:
    """Without a cgroup v2 (asked for here; also what a cgroup v1 machine gets)."""

    def test_1_gib_is_refused_and_never_passes(self) -> None:
        result = limited(ALLOCATE_1_GIB, "/", cgroup=False)
        assert not isinstance(result, Passed), result
        assert result.output.endswith("MemoryError"), result.output
        assert result.limits.startswith("memory 256 MiB per process (RLIMIT_AS), "), result.limits
        assert "cgroup v2 not used: not asked for" in result.limits

    @pytest.mark.debootstrap
    def test_a_shell_that_runs_out_is_an_error(self, root: Path) -> None:
        script = b"x=$(head -c 1073741824 /dev/zero | tr '\\0' x)\necho ${#x}\nexit 0\n"
        result = limited(script, root, cgroup=False)
        assert isinstance(result, Errored), result

    def test_the_policys_memory_limit_is_used(self) -> None:
        script = b"#!/usr/bin/python3\nblock = bytearray(300 << 20)\nprint('allocated')\n"
        assert not isinstance(limited(script, "/", cgroup=False), Passed)
        result = limited(script, "/", cgroup=False, memory_mib=512)
        assert isinstance(result, Passed), result
        assert result.output == "allocated"
        assert result.limits.startswith("memory 512 MiB per process (RLIMIT_AS)"), result.limits

    def test_processes_are_bounded(self) -> None:
        started = time.monotonic()
        result = limited(COUNT_FORKS, "/", cgroup=False, processes=8)
        assert time.monotonic() - started < 15
        assert isinstance(result, Passed), result
        if per_namespace_pid_max():
            # The script and 7 children: 8 processes.
            assert result.output.splitlines() == ["refused: Resource temporarily unavailable", "7"]
            assert "8 processes (the pid namespace's pid_max)" in result.limits, result.limits
        else:
            assert "processes not limited" in result.limits, result.limits


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.usefixtures("unchanged")
def test_a_fork_bomb_ends_in_bounded_time(root: Path) -> None:
    # Each level waits for two more: it never ends by itself, and grows as fast as it can fork.
    bomb = b"bomb() { bomb | bomb; }\nbomb\n"
    for cgroup in (True, False):
        started = time.monotonic()
        result = dataclasses.replace(spec(bomb, timeout=2.0), processes=16)
        outcome = run_custom_check(result, os.fspath(root), cgroup=cgroup)
        assert time.monotonic() - started < 20
        assert isinstance(outcome, Errored), outcome
        if cgroup_in_force(outcome):
            assert outcome.reason.startswith("reached its limit of 16 processes"), outcome
        elif per_namespace_pid_max():
            assert "Cannot fork" in outcome.output, outcome  # the limit, before the timeout


@pytest.mark.root
def test_the_default_limits_are_named_and_hold() -> None:
    # Whichever the machine gives: a cgroup v2 child, or the fallback (which says why).
    result = limited(ALLOCATE_1_GIB, "/")
    assert not isinstance(result, Passed), result
    if cgroup_in_force(result):
        assert isinstance(result, Errored) and result.reason.startswith("ran out of memory")
        assert result.limits == "memory 256 MiB, 64 processes (cgroup v2)"
    else:
        assert "; cgroup v2 not used: " in result.limits, result.limits


# -- the cgroup v2 path ---------------------------------------------------------------------------

# What the kernel puts in a new cgroup v2 directory (the parts the runner reads and writes).
KERNEL_FILES = {
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "pids.max": "max\n",
    "pids.events": "max 0\n",
}


@pytest.fixture
def fake_cgroupfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A parent cgroup whose children the kernel would fill; this machine's cgroup v2 has neither
    memory nor pids (they are bound to cgroup v1), so the real one cannot be shown here."""
    parent = tmp_path / "cgroup"
    parent.mkdir()
    real_mkdir, real_rmdir = os.mkdir, os.rmdir

    # Everything else (tempfile, shutil) goes on to the real calls.
    def mkdir(path: str, mode: int = 0o777, **kwargs: int) -> None:
        real_mkdir(path, mode, **kwargs)
        if not kwargs and os.path.dirname(path) == os.fspath(parent):
            for name, text in KERNEL_FILES.items():
                Path(path, name).write_text(text)

    def rmdir(path: str, **kwargs: int) -> None:
        if not kwargs and os.path.dirname(path) == os.fspath(parent):
            for name in os.listdir(path):  # the kernel's files go with the directory
                os.unlink(os.path.join(path, name))
        real_rmdir(path, **kwargs)

    monkeypatch.setattr(_cgroup, "find_parent", lambda: os.fspath(parent))
    monkeypatch.setattr(_cgroup.os, "mkdir", mkdir)
    monkeypatch.setattr(_cgroup.os, "rmdir", rmdir)
    yield parent


def _watch_child(parent: Path, seen: dict[str, str]) -> None:
    """Copies the child cgroup's files while the sandbox runs (it is removed afterwards)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not seen:
        for child in parent.iterdir():
            try:
                procs = (child / "cgroup.procs").read_text()
                if procs:
                    files = {p.name: p.read_text() for p in child.iterdir()}
                    seen.update(files, name=child.name)
            except FileNotFoundError:
                continue  # made or removed between two looks (a loaded machine): look again
        time.sleep(0.001)


@pytest.mark.root
@pytest.mark.debootstrap
def test_cgroup_v2_child_gets_the_limits_and_the_script(
    fake_cgroupfs: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, str] = {}
    watcher = threading.Thread(target=_watch_child, args=(fake_cgroupfs, seen))
    watcher.start()
    # The script outlives the watcher's first look: it sees cgroup.procs written.
    result = limited(b"sleep 0.3\nexit 0\n", root, memory_mib=100, processes=9)
    watcher.join()
    assert isinstance(result, Passed), result
    assert result.limits == "memory 100 MiB, 9 processes (cgroup v2)"
    assert seen["name"].startswith("scan-root-check-")
    assert (seen["memory.max"], seen["memory.swap.max"], seen["pids.max"]) == (
        str(100 << 20),
        "0",
        "9",
    )
    assert seen["cgroup.procs"] == "0"  # the script's process joined it ("0": the writer)
    assert list(fake_cgroupfs.iterdir()) == []  # removed after the run
    assert Path(fake_cgroupfs, seen["name"]).exists() is False


@pytest.mark.root
@pytest.mark.debootstrap
@pytest.mark.parametrize(
    ("events", "reason"),
    [
        (
            {"memory.events": "max 7\noom 1\noom_kill 1\n"},
            "ran out of memory: 1 process(es) killed at its limit of 256 MiB",
        ),
        ({"pids.events": "max 3\n"}, "reached its limit of 64 processes: 3 fork(s) refused"),
    ],
)
def test_a_limit_reached_in_the_cgroup_is_an_error_whatever_the_exit(
    fake_cgroupfs: Path,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    events: dict[str, str],
    reason: str,
) -> None:
    monkeypatch.setitem(KERNEL_FILES, *next(iter(events.items())))
    result = limited(b"exit 0\n", root)  # a pass, had the script not run out
    assert isinstance(result, Errored), result
    assert result.reason == reason
    assert result.limits == "memory 256 MiB, 64 processes (cgroup v2)"
    assert list(fake_cgroupfs.iterdir()) == []


def test_own_cgroup_is_found_from_proc() -> None:
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert _cgroup.own_cgroup("4:memory:/x\n0::/\n", mountinfo) == "/sys/fs/cgroup/unified"
    unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
    assert (
        _cgroup.own_cgroup("0::/system.slice/scan.service\n", unified)
        == "/sys/fs/cgroup/system.slice/scan.service"
    )
    # A container's view of a bind of its own cgroup, with a space (escaped) in the mount point.
    bound = "50 40 0:26 /kubepods/pod1 /sys/fs/my\\040cgroup ro - cgroup2 cgroup2 rw\n"
    assert _cgroup.own_cgroup("0::/kubepods/pod1/c\n", bound) == "/sys/fs/my cgroup/c"
    for proc, mounts, why in (
        ("4:memory:/x\n", mountinfo, "in no cgroup v2"),
        ("0::/\n", "35 31 0:32 / /m rw - cgroup cgroup rw,memory\n", "no cgroup2"),
    ):
        with pytest.raises(_cgroup.CgroupUnavailable, match=why):
            _cgroup.own_cgroup(proc, mounts)


@pytest.mark.root
def test_this_machines_cgroups_are_judged_without_being_changed() -> None:
    # Either a usable parent or a reason; never an exception, never a change to a cgroup here.
    with open("/proc/self/cgroup") as handle:
        before = handle.read()
    try:
        parent = _cgroup.find_parent()
    except _cgroup.CgroupUnavailable as error:
        assert str(error)
    else:
        assert os.path.isdir(parent)
    with open("/proc/self/cgroup") as handle:
        assert handle.read() == before
