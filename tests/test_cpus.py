"""Default worker count under a cgroup CPU quota: fake cgroupfs layouts, then a real cgroup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from child import child_env

import _native
from _native import cpus

REPO = Path(__file__).resolve().parent.parent


def _fake(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[str, str]:
    """A fake cgroupfs under tmp_path/fs and a fake /proc/self/cgroup; (base, proc_cgroup)."""
    base = tmp_path / "fs"
    for relative, text in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    base.mkdir(exist_ok=True)
    proc = tmp_path / "cgroup"
    proc.write_text(membership)
    return str(base), str(proc)


@pytest.mark.parametrize(
    ("membership", "files", "quota"),
    [
        # cgroup v2: the process's own cpu.max
        ("0::/task/app\n", {"task/app/cpu.max": "25000 100000\n"}, 0.25),
        ("0::/task/app\n", {"task/app/cpu.max": "max 100000\n"}, None),
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
        # v2: the tightest quota along the path wins (a parent's applies to its children)
        (
            "0::/task/app\n",
            {"task/cpu.max": "50000 100000\n", "task/app/cpu.max": "max 100000\n"},
            0.5,
        ),
        (
            "0::/task/app\n",
            {"task/cpu.max": "200000 100000\n", "task/app/cpu.max": "100000 100000\n"},
            1.0,
        ),
        # v2: malformed files are "no quota known", never a crash
        ("0::/a\n", {"a/cpu.max": "25000\n"}, None),
        ("0::/a\n", {"a/cpu.max": "lots 100000\n"}, None),
        ("0::/a\n", {"a/cpu.max": "25000 0\n"}, None),
        ("0::/a\n", {"a/cpu.max": "-5 100000\n"}, None),
        ("0::/a\n", {"a/cpu.max": ""}, None),
        ("0::/a\n", {}, None),
        # v1, co-mounted cpu,cpuacct (named as /proc/self/cgroup lists it)
        (
            "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "25000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            0.25,
        ),
        # v1, the controller mounted alone as "cpu"; quota -1 is "no limit"
        (
            "1:cpu:/g\n",
            {"cpu/g/cpu.cfs_quota_us": "-1\n", "cpu/g/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        (
            "1:cpu:/g\n",
            {"cpu/g/cpu.cfs_quota_us": "300000\n", "cpu/g/cpu.cfs_period_us": "100000\n"},
            3.0,
        ),
        # v1 inside a container without a cgroup namespace: /proc says /docker/abc, but the
        # container's own cgroup is mounted as the root: the mount's root files apply.
        (
            "2:cpuacct,cpu:/docker/abc\n",
            {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            0.5,
        ),
        # v1 malformed
        (
            "1:cpu:/g\n",
            {"cpu/g/cpu.cfs_quota_us": "x\n", "cpu/g/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        ("1:cpu:/g\n", {"cpu/g/cpu.cfs_quota_us": "25000\n"}, None),
        # hybrid: v1 cpu plus an empty unified line; the v1 quota is the one
        (
            "1:cpu:/\n0::/\n",
            {"cpu/cpu.cfs_quota_us": "25000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            0.25,
        ),
        # garbage membership lines are ignored
        ("nonsense\n::\n0::relative\n", {}, None),
    ],
)
def test_cpu_quota_from_files(
    tmp_path: Path, membership: str, files: dict[str, str], quota: float | None
) -> None:
    base, proc = _fake(tmp_path, membership, files)
    assert cpus.cpu_quota(base, proc) == quota


def test_cpu_quota_without_membership_file(tmp_path: Path) -> None:
    assert cpus.cpu_quota(str(tmp_path), str(tmp_path / "absent")) is None


@pytest.mark.parametrize(
    ("quota", "workers"), [("25000 100000", 1), ("100000 100000", 1), ("100001 100000", 2)]
)
def test_cpu_limit_rounds_up_and_caps_at_affinity(tmp_path: Path, quota: str, workers: int) -> None:
    base, proc = _fake(tmp_path, "0::/t\n", {"t/cpu.max": quota})
    assert cpus.cpu_limit(base, proc) == min(workers, cpus.usable_cpus())
    big_base, big_proc = _fake(tmp_path / "big", "0::/t\n", {"t/cpu.max": "6400000 100000"})
    assert cpus.cpu_limit(big_base, big_proc) == cpus.usable_cpus()  # 64 CPUs of quota


def test_default_jobs_follow_the_quota(
    impl: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both hashers' default_jobs() obey the quota read from cgroupfs."""
    _walker, hasher = impl
    base, proc = _fake(tmp_path, "0::/t\n", {"t/cpu.max": "25000 100000"})
    monkeypatch.setattr(cpus, "CGROUP_ROOT", base)
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    assert hasher.default_jobs() == 1
    monkeypatch.setattr(cpus, "PROC_CGROUP", str(tmp_path / "absent"))
    assert hasher.default_jobs() >= 2  # no quota: more threads than CPUs (cold-cache overlap)


# ---- a real cgroup with cpu.max = 25000 100000 (v2) or cfs_quota_us = 25000 (v1) ----


def _cgroup_parent() -> tuple[Path, str] | str:
    """(directory to create the test cgroup in, "v2" or "v1"), or why none can be made."""
    if os.geteuid() != 0:
        return "creating a cgroup needs root"
    unified = Path(cpus.CGROUP_ROOT)
    if (unified / "cgroup.controllers").exists():
        if "cpu" not in (unified / "cgroup.controllers").read_text().split():
            return "cgroup v2 without the cpu controller"
        subtree = unified / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            try:
                subtree.write_text("+cpu")
            except OSError as error:
                return f"cannot enable the cpu controller in {subtree}: {error}"
        return unified, "v2"
    v1 = unified / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    return f"no cgroup v2 cpu controller and no v1 cpu hierarchy under {unified}"


@pytest.fixture
def quota_cgroup() -> Iterator[tuple[Path, str]]:
    """A fresh cgroup limited to a quarter of one CPU; removed whatever the test does."""
    found = _cgroup_parent()
    if isinstance(found, str):
        pytest.skip(f"{found}; test_cpu_quota_from_files covers the quota logic")
    parent, version = found
    group = parent / f"scan-root-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as error:
        pytest.skip(f"cannot create {group}: {error}; test_cpu_quota_from_files covers the logic")
    try:
        if version == "v2":
            (group / "cpu.max").write_text("25000 100000")
        else:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("25000")
        yield group, version
    finally:
        # A cgroup can be removed only once empty: the child has exited by now, but make sure.
        for pid in (group / "cgroup.procs").read_text().split() if group.exists() else ():
            (parent / "cgroup.procs").write_text(pid)
        group.rmdir()


@pytest.mark.root
def test_default_workers_in_a_quarter_cpu_cgroup(
    quota_cgroup: tuple[Path, str], tmp_path: Path
) -> None:
    """A scan started inside the cgroup reports one worker (stats.jobs) by default."""
    group, _version = quota_cgroup
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("probe\n")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Wait until the parent moved us into the cgroup, then scan.
            "import sys; sys.stdin.readline(); from scanner.cli import main; sys.exit(main())",
            str(root),
            "--format",
            "json",
            "--checks",
            "448",
            "--quiet",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        (group / "cgroup.procs").write_text(str(child.pid))
        output, errors = child.communicate(b"go\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode in (0, 3), errors.decode()
    report = json.loads(output)
    assert report["stats"]["jobs"] == 1
    assert report["scanner"]["implementation"] == _native.IMPLEMENTATION


def test_stats_jobs_outside_a_quota_is_not_forced_to_one() -> None:
    """Guards the test above: without a quota this machine's default is more than one worker."""
    if cpus.cpu_quota() is not None:
        pytest.skip("this process already runs under a CPU quota")
    assert _native.default_jobs() >= 2
