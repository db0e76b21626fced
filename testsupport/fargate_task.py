"""A Fargate task as real as one machine allows: one pid namespace, a container per mount
namespace on an overlay of a debootstrap root, a real cgroup per container named after its
DockerId (`/ecs/<task id>/<DockerId>`, Fargate's layout), and the local metadata endpoint."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecs_agent import METADATA_ENV, Agent

REGION = "us-east-1"
ACCOUNT = "012345678910"
CLUSTER = "fargate-cluster"
FAMILY = "fargate-vulnerability-compliance-task"
# The reference task's command, started later (`run`) so that a cycle sees the copy appear.
XMRIG = "cp /bin/sleep /tmp/xmrig"
START_TIMEOUT = 20.0
# What a Fargate container may hold: Docker's default set (Fargate's own) plus SYS_PTRACE, the
# one capability a task definition may add. No SYS_ADMIN: no mounts, no namespaces.
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_KernelCapabilities.html
FARGATE_CAPABILITIES = (
    "audit_write,chown,dac_override,fowner,fsetid,kill,mknod,net_bind_service,net_raw,"
    "setfcap,setgid,setpcap,setuid,sys_chroot,sys_ptrace"
)


def docker_id() -> str:
    """A Fargate DockerId: 32 hex digits, "-", 10 digits."""
    return f"{secrets.token_hex(16)}-{secrets.randbelow(10**10):010d}"


@dataclass(frozen=True, slots=True)
class App:
    name: str
    docker_id: str
    image: str
    image_id: str
    upper: Path  # the overlay's writable layer: what the container changed
    cgroup: Path  # its cgroup: named after the DockerId, unless a test hides it


@dataclass(slots=True)
class Task:
    task_id: str
    arn: str
    apps: list[App]
    defender_id: str
    cgroup: Path  # /sys/fs/cgroup/<hierarchy>/ecs/<task id>
    supervisor: subprocess.Popen[bytes]
    agent: Agent
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def defender_environ(self) -> dict[str, str]:
        return self.agent.environ(f"/v4/{self.defender_id}")

    @property
    def init_pid(self) -> int:
        """PID 1 of the task's pid namespace, as the host numbers it: `unshare --fork`'s child
        (unshare itself stays in the host's pid namespace, so nsenter must target this one)."""
        path = f"/proc/{self.supervisor.pid}/task/{self.supervisor.pid}/children"
        with open(path) as handle:
            return int(handle.read().split()[0])

    def app_pid(self, app: App) -> int:
        """The host pid of the app's first process (as its cgroup lists it)."""
        text = (app.cgroup / "cgroup.procs").read_text()
        return min(int(pid) for pid in text.split())

    def run(self, app: App, command: str) -> subprocess.CompletedProcess[str]:
        """`command` inside the app container: its pid and mount namespaces, its root."""
        return subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.app_pid(app)),
                "-p",
                "-m",
                "-r",
                "-w",
                "/bin/sh",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def in_task(
        self, argv: list[str], env: Mapping[str, str], timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """`argv` as the defender container's process: the task's pid namespace (and the
        /proc mounted for it), in the defender's cgroup, with a Fargate container's
        capabilities only."""
        procs = self.cgroup / self.defender_id / "cgroup.procs"
        script = f'echo $$ > "{procs}" && exec "$@"'
        limited = [
            "setpriv",
            f"--bounding-set=-all,+{FARGATE_CAPABILITIES.replace(',', ',+')}",
            "--",
        ]
        return subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.init_pid),
                "-p",
                "-m",
                "--",
                "/bin/sh",
                "-c",
                script,
                "defender",
                *limited,
                *argv,
            ],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=timeout,
        )


def cgroup_hierarchy() -> Path:
    """A cgroup hierarchy we may make groups in: v1's pids, else the v2 unified one."""
    for candidate in (
        Path("/sys/fs/cgroup/pids"),
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup"),
    ):
        if (candidate / "cgroup.procs").exists() and os.access(candidate, os.W_OK):
            return candidate
    raise RuntimeError("no writable cgroup hierarchy under /sys/fs/cgroup")


def task_document(task: Task) -> dict[str, Any]:
    """What the agent answers at the defender's `${URI}/task`."""
    containers = [
        {
            "DockerId": app.docker_id,
            "Name": app.name,
            "Image": app.image,
            "ImageID": app.image_id,
            "Type": "NORMAL",
            "KnownStatus": "RUNNING",
        }
        for app in task.apps
    ]
    containers.append(_defender_document(task))
    return {
        "Cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
        "TaskARN": task.arn,
        "Family": FAMILY,
        "Revision": "3",
        "LaunchType": "FARGATE",
        "AvailabilityZone": f"{REGION}a",
        "KnownStatus": "RUNNING",
        "Containers": containers,
    }


def _defender_document(task: Task) -> dict[str, Any]:
    return {
        "DockerId": task.defender_id,
        "Name": "scan-root-defender",
        "Image": "scan-root-defender:latest",
        "ImageID": "sha256:" + "d" * 64,
        "Type": "NORMAL",
    }


@contextlib.contextmanager
def fargate_task(
    base_root: Path, work: Path, agent: Agent, apps: int = 2, *, opaque_cgroups: bool = False
) -> Iterator[Task]:
    """`apps` containers on overlays of `base_root`, sleeping, in one new pid namespace.

    `opaque_cgroups`: the apps' cgroups are not named after their DockerIds (a layout the
    defender does not know), so only their metadata URI says which container they are."""
    task_id = secrets.token_hex(16)
    hierarchy = cgroup_hierarchy()
    cgroup = hierarchy / "ecs" / task_id
    containers = []
    for number in range(1, apps + 1):
        identifier = docker_id()
        upper = work / f"app{number}" / "upper"
        (work / f"app{number}" / "work").mkdir(parents=True)
        (work / f"app{number}" / "merged").mkdir()
        upper.mkdir()
        containers.append(
            App(
                name=f"app-{number}",
                docker_id=identifier,
                image=f"registry.example/app-{number}:1.0",
                image_id="sha256:" + secrets.token_hex(32),
                upper=upper,
                cgroup=cgroup / (f"opaque-{number}" if opaque_cgroups else identifier),
            )
        )
    defender = docker_id()
    for member in [*(app.cgroup for app in containers), cgroup / defender]:
        member.mkdir(parents=True)
    lines = ["set -e"]
    for number, app in enumerate(containers, 1):
        directory = work / f"app{number}"
        mount = (
            f"mount -t overlay overlay -o lowerdir={base_root},upperdir={directory}/upper,"
            f"workdir={directory}/work {directory}/merged"
        )
        inner = (
            f'echo $$ > "{app.cgroup}/cgroup.procs" && {mount} && '
            f"exec chroot {directory}/merged /usr/bin/env {METADATA_ENV}={agent.uri}/v4/{app.docker_id} "
            '/bin/sh -c "while true; do sleep 1000; done"'
        )
        lines.append(f"unshare --mount --propagation private /bin/sh -c '{inner}' &")
    lines += [f"touch {work}/ready", "wait"]
    supervisor = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            "\n".join(lines),
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    task = Task(
        task_id=task_id,
        arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id}",
        apps=containers,
        defender_id=defender,
        cgroup=cgroup,
        supervisor=supervisor,
        agent=agent,
    )
    agent.serve(f"/v4/{defender}/task", task_document(task))
    agent.serve(f"/v4/{defender}", _defender_document(task))
    for app in containers:
        document = next(
            c for c in task_document(task)["Containers"] if c["DockerId"] == app.docker_id
        )
        agent.serve(f"/v4/{app.docker_id}", document)
    try:
        _wait_running(task)
        yield task
    finally:
        _stop(task, work)


def _wait_running(task: Task) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if task.supervisor.poll() is not None:
            raise RuntimeError(f"the task's supervisor exited with {task.supervisor.returncode}")
        try:
            ready = all(
                task.run(app, "test -x /bin/sh && test -d /tmp").returncode == 0
                for app in task.apps
            )
        except (ValueError, FileNotFoundError):
            ready = False
        if ready:
            return
        time.sleep(0.1)
    raise RuntimeError("the task's containers did not start")


def _stop(task: Task, work: Path) -> None:
    # SIGKILL to the namespace's init kills every process of the namespace with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(task.supervisor.pid, signal.SIGKILL)
    task.supervisor.wait(timeout=30)
    deadline = time.monotonic() + 10
    members = [path for path in task.cgroup.iterdir() if path.is_dir()]
    for directory in [*members, task.cgroup]:
        while directory.exists():
            try:
                directory.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    print(f"fargate_task: cannot remove {directory}", file=sys.stderr)
                    break
                time.sleep(0.05)
    # The shared /ecs group stays: another task may be using it; `work` is the test's own.
