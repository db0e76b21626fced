"""The defender in a simulated Fargate task (testsupport/fargate_task.py) with a real
`scan-root console serve` on SQLite: two containers, one host, a miner appearing later."""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import ConsoleProcess, console_process
from child import child_env
from debroot import debootstrap_root
from ecs_agent import running_agent
from fargate_task import XMRIG, Task, docker_id, fargate_task, task_document

from console.database import engine_for
from console.policy_store import save_policy

pytestmark = [pytest.mark.debootstrap, pytest.mark.root]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    work = tmp_path_factory.mktemp("console")
    with console_process(f"sqlite:///{work / 'console.db'}", work) as served:
        yield served


@pytest.fixture
def task(tmp_path: Path) -> Iterator[Task]:
    base = debootstrap_root()
    with running_agent() as agent, fargate_task(base, tmp_path / "task", agent) as running:
        yield running


def defend(task: Task, console: ConsoleProcess, work: Path, *extra: str) -> Any:
    env = child_env()
    env.update(task.defender_environ)
    env["SCAN_ROOT_TOKEN"] = console.shared_token("ingest")
    env["AWS_EXECUTION_ENV"] = "AWS_ECS_FARGATE"
    argv = [
        sys.executable,
        "-m",
        "console.entry",
        "defend",
        "--once",
        "--console",
        console.base_url,
        "--spool",
        str(work / "spool"),
        "--state-dir",
        str(work / "state"),
        "--policy-cache",
        str(work / "policy"),
        *extra,
    ]
    return task.in_task(argv, env)


def scans(console: ConsoleProcess) -> list[sqlite3.Row]:
    path = console.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(
            "SELECT scans.scan_id, hosts.name AS host FROM scans JOIN hosts ON hosts.id = scans.host_id"
        ).fetchall()


def read(console: ConsoleProcess, path: str) -> Any:
    bearer = {"Authorization": f"Bearer {console.shared_token('read')}"}
    answer = httpx.get(console.base_url + path, headers=bearer)
    assert answer.status_code == 200, answer.text
    return answer.json()


def latest_image(console: ConsoleProcess, name: str) -> Any:
    """The details of the image named `name` scanned last (each test's task has its own image
    ids under the same names)."""
    images = read(console, "/api/v1/images?fargate=true&per_page=100")["images"]
    named = [image for image in images if image["name"] == name]
    newest = max(named, key=lambda image: image["last_scanned"] or "")
    return read(console, f"/api/v1/images/{newest['id']}")


def test_one_cycle_reports_every_container_as_the_task_and_a_later_miner(
    task: Task, console: ConsoleProcess, tmp_path: Path
) -> None:
    before = {row["scan_id"] for row in scans(console)}
    done = defend(task, console, tmp_path)
    assert done.returncode == 0, done.stderr
    new = [row for row in scans(console) if row["scan_id"] not in before]
    assert len(new) == 2, done.stderr
    assert {row["host"] for row in new} == {task.task_id}
    assert not list((tmp_path / "spool").glob("*-*.json")), "delivered reports leave the spool"

    # The reference task's command, in the first container only.
    assert task.run(task.apps[0], XMRIG).returncode == 0
    done = defend(task, console, tmp_path)
    assert done.returncode == 0, done.stderr
    details = latest_image(console, task.apps[0].image)
    miners = [finding["path"] for finding in details["findings"].get("426", [])]
    assert miners == ["/tmp/xmrig"], json.dumps(details["findings"])[:2000]
    # Environment > Fargate Tasks: the task, through the container that runs the image.
    tasks = {(t["task_id"], t["container"]) for t in details["fargate_tasks"]}
    assert (task.task_id, task.apps[0].name) in tasks
    other = latest_image(console, task.apps[1].image)
    assert "426" not in other["findings"]
    assert other["latest_scan"]["host"] == task.task_id


def scan_rows(console: ConsoleProcess) -> list[sqlite3.Row]:
    """Each scan with its container's name and whether it was complete."""
    path = console.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(
            "SELECT scans.scan_id, scans.complete, containers.name AS container, hosts.name AS host"
            " FROM scans JOIN hosts ON hosts.id = scans.host_id"
            " LEFT JOIN containers ON containers.id = scans.container_id"
        ).fetchall()


def test_containers_are_found_by_their_metadata_uri_when_no_cgroup_names_them(
    console: ConsoleProcess, tmp_path: Path
) -> None:
    base = debootstrap_root()
    with (
        running_agent() as agent,
        fargate_task(base, tmp_path / "task", agent, opaque_cgroups=True) as task,
    ):
        before = {row["scan_id"] for row in scan_rows(console)}
        done = defend(task, console, tmp_path)
        assert done.returncode == 0, done.stderr
        new = [row for row in scan_rows(console) if row["scan_id"] not in before]
        assert sorted(row["container"] for row in new) == ["app-1", "app-2"]
        assert all(row["complete"] for row in new), done.stderr
        # Each app's own URI asked once, to learn its DockerId.
        uris = sorted(f"/v4/{app.docker_id}" for app in task.apps)
        assert sorted(path for path in agent.requests if path in uris) == uris


def test_a_container_with_no_process_is_reported_unverified(
    task: Task, console: ConsoleProcess, tmp_path: Path
) -> None:
    document = task_document(task)
    document["Containers"].append(
        {
            "DockerId": docker_id(),
            "Name": "exited",
            "Image": "registry.example/gone:1",
            "Type": "NORMAL",
        }
    )
    # Not the application's: the pause container of an awsvpc task on EC2.
    document["Containers"].append(
        {"DockerId": docker_id(), "Name": "~internal~ecs~pause", "Type": "CNI_PAUSE"}
    )
    task.agent.serve(f"/v4/{task.defender_id}/task", document)
    before = {row["scan_id"] for row in scan_rows(console)}
    done = defend(task, console, tmp_path)
    assert done.returncode == 0, done.stderr
    new = {row["container"]: row for row in scan_rows(console) if row["scan_id"] not in before}
    assert sorted(new) == ["app-1", "app-2", "exited"]
    assert not new["exited"]["complete"] and new["app-1"]["complete"]
    assert {row["host"] for row in new.values()} == {task.task_id}


def test_a_cycle_under_max_cpu_keeps_to_it(
    task: Task, console: ConsoleProcess, tmp_path: Path
) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = defend(task, console, tmp_path, "--max-cpu", "0.25")
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"--max-cpu 0.25, two debootstrap roots: {cpu:.2f} CPU-s in {wall:.2f} s = {cpu / wall:.3f}"
    )
    assert cpu / wall <= 0.3, (cpu, wall)


CUSTOM_POLICY = """\
version: 1
custom_checks:
  - id: 9001
    name: no miner in /tmp
    severity: high
    description: the reference task's miner
    script: "test ! -e /tmp/xmrig || { echo /tmp/xmrig is there; exit 1; }"
"""


def test_the_consoles_custom_check_runs_chrooted_in_each_container(
    task: Task, console: ConsoleProcess, tmp_path: Path
) -> None:
    # The defender holds a Fargate container's capabilities only: no CAP_SYS_ADMIN, so the
    # check runs in the chroot, into each container's /proc/<pid>/root.
    save_policy(engine_for(console.db_url), CUSTOM_POLICY, "admin", base=None)
    try:
        assert task.run(task.apps[1], XMRIG).returncode == 0
        done = defend(task, console, tmp_path)
        assert done.returncode == 0, done.stderr
        assert not list((tmp_path / "spool").glob("*-*.json")), done.stderr
        first = latest_image(console, task.apps[0].image)
        second = latest_image(console, task.apps[1].image)
        assert "9001" not in first["findings"]
        [failed] = second["findings"]["9001"]
        assert failed["detail"] == "/tmp/xmrig is there"
        # Fargate's capabilities have no CAP_DAC_READ_SEARCH: the script reads as any user,
        # and each report says so.
        path = console.db_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            notices = connection.execute(
                "SELECT notices FROM scans ORDER BY id DESC LIMIT 2"
            ).fetchall()
        for (text,) in notices:
            said = [n for n in json.loads(text) if n.startswith("custom check 9001")]
            assert len(said) == 1 and "chroot" in said[0] and "no capabilities" in said[0]
        assert first["latest_scan"]["complete"], first["latest_scan"]
    finally:
        save_policy(engine_for(console.db_url), "version: 1\n", "admin", base=None)
