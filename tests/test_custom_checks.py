"""Custom checks run in their sandbox against a real debootstrap root: verdicts, isolation, wiring."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
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
from scanner.output.sarif import to_sarif
from scanner.policy.model import CustomCheckSpec, Policy
from scanner.policy.runner import (
    OUTPUT_LIMIT,
    CheckResult,
    Errored,
    Failed,
    Passed,
    Skipped,
    run_custom_check,
)
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
        assert "no /tmp" in readonly.reason  # read-only: refuses rather than follow the link

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
        script = b"echo x >> /etc/passwd && exit 1\necho ok > /tmp/scratch && cat /tmp/scratch\n"
        with unchanged_root(scratch_root):
            result = run_custom_check(spec(script), os.fspath(scratch_root), overlay=False)
        assert isinstance(result, Passed), result
        assert "Read-only file system" in result.output and result.output.endswith("ok")
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
def test_without_cap_sys_admin_it_is_an_error_never_unisolated(root: Path) -> None:
    # Root without CAP_SYS_ADMIN, as in an ECS/Fargate task: no sandbox, so the script never runs.
    code = (
        "import sys; from test_custom_checks import run; "
        f"print(repr(run(b'echo ran; exit 0', {os.fspath(root)!r})))"
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
        "Errored(reason='the sandbox could not be built, the script did not run: "
        "unshare: unshare failed: Operation not permitted'"
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
            "exited with status 7",
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
