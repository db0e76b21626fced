"""Which process is which container's: the cgroup layouts the defender knows, on /proc trees
written in the kernel's formats (the real namespaces are in test_defender_task.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from defender.discovery import find_processes, same_process

TASK = "9f2bd6a0c1b24a2e8c1a77b0e1e5f3d2"
APP = "9f2bd6a0c1b24a2e8c1a77b0e1e5f3d2-1234567890"
SIDE = "9f2bd6a0c1b24a2e8c1a77b0e1e5f3d2-0987654321"


def process(
    proc: Path, pid: int, ppid: int, cgroup: str, comm: str = "sleep", start: int = 100
) -> None:
    directory = proc / str(pid)
    directory.mkdir(parents=True)
    # Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
    rest = f"S {ppid} 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10"
    (directory / "stat").write_text(f"{pid} ({comm}) {rest}\n")
    (directory / "cgroup").write_text(cgroup)


def v1(docker_id: str) -> str:
    """Fargate platform 1.4 (containerd, cgroup v1): every controller at /ecs/<task>/<id>."""
    return "".join(
        f"{n}:{c}:/ecs/{TASK}/{docker_id}\n"
        for n, c in enumerate(("cpu,cpuacct", "memory", "pids"), 1)
    )


def test_fargate_cgroups_name_each_containers_init(tmp_path: Path) -> None:
    process(tmp_path, 1, 0, "0::/\n", comm="pause")
    process(tmp_path, 7, 0, v1(APP), comm="sh")
    process(tmp_path, 9, 7, v1(APP), comm="sleep (x) )")  # a child: not the init
    process(tmp_path, 3, 0, v1(APP), comm="worker")  # a lower pid, but its parent is outside
    process(tmp_path, 12, 0, v1(SIDE))
    found = find_processes([APP, SIDE, "gone-1"], own_pid=12, proc=str(tmp_path))
    assert found.found[APP].pid == 3 and found.found[APP].how == "cgroup"
    assert SIDE not in found.found  # our own pid is never a candidate
    assert [p for p in found.problems if "gone-1" in p] and len(found.problems) == 2


@pytest.mark.parametrize(
    "cgroup",
    [
        f"0::/../{APP}\n",  # v2 seen from another cgroup namespace
        f"0::/system.slice/docker-{APP}.scope\n",  # Docker's systemd driver
        f"0::/kubepods/cri-containerd-{APP}.scope\n",  # containerd's
        f"12:pids:/docker/{APP}\n0::/\n",  # Docker's cgroupfs driver, hybrid
    ],
)
def test_other_layouts_that_name_the_docker_id(tmp_path: Path, cgroup: str) -> None:
    process(tmp_path, 40, 1, cgroup)
    assert find_processes([APP], own_pid=1, proc=str(tmp_path)).found[APP].pid == 40


def test_a_path_that_only_contains_the_id_is_no_match(tmp_path: Path) -> None:
    process(tmp_path, 40, 1, f"0::/ecs/{TASK}/{APP}-extra\n")
    process(tmp_path, 41, 1, f"0::/ecs/{TASK}/prefix{APP}\n")
    found = find_processes([APP], own_pid=1, proc=str(tmp_path))
    assert found.found == {} and len(found.problems) == 1


def test_a_process_claiming_two_containers_belongs_to_neither(tmp_path: Path) -> None:
    process(tmp_path, 40, 1, f"1:pids:/ecs/{TASK}/{APP}\n2:memory:/ecs/{TASK}/{SIDE}\n")
    assert find_processes([APP, SIDE], own_pid=1, proc=str(tmp_path)).found == {}


def test_unreadable_and_hostile_proc_entries_are_skipped(tmp_path: Path) -> None:
    process(tmp_path, 50, 1, v1(APP))
    (tmp_path / "51").mkdir()  # exited between the listing and the reads
    process(tmp_path, 45, 1, "0::/" + "a/" * 100_000 + APP + "\n")  # past the read bound
    (tmp_path / "53").mkdir()
    (tmp_path / "53" / "stat").write_text("53 (broken")
    (tmp_path / "53" / "cgroup").write_text(v1(APP))
    (tmp_path / "self").mkdir()
    found = find_processes([APP], own_pid=1, proc=str(tmp_path))
    assert found.found[APP].pid == 50


def test_the_metadata_uri_names_a_container_its_cgroup_does_not(tmp_path: Path) -> None:
    process(tmp_path, 60, 1, "0::/opaque\n")
    (tmp_path / "60" / "environ").write_bytes(
        b"PATH=/bin\0SECRET=hunter2\0ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x\0"
    )
    process(tmp_path, 61, 1, "0::/other\n")
    (tmp_path / "61" / "environ").write_bytes(b"ECS_CONTAINER_METADATA_URI_V4=http://evil/\0")
    asked: list[str] = []

    def resolve(uri: str) -> str | None:
        asked.append(uri)
        return APP if uri.endswith("/v4/x") else None

    found = find_processes([APP], own_pid=1, proc=str(tmp_path), resolve_uri=resolve)
    assert found.found[APP].pid == 60 and found.found[APP].how == "metadata-uri"
    assert sorted(asked) == ["http://169.254.170.2/v4/x", "http://evil/"]


def test_a_reused_pid_is_not_the_same_process(tmp_path: Path) -> None:
    process(tmp_path, 70, 1, v1(APP), start=500)
    first = find_processes([APP], own_pid=1, proc=str(tmp_path)).found[APP]
    assert same_process(first, str(tmp_path))
    (tmp_path / "70" / "stat").write_text(
        "70 (other) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 900 1000 10\n"
    )
    assert not same_process(first, str(tmp_path))
    os.remove(tmp_path / "70" / "stat")
    assert not same_process(first, str(tmp_path))
