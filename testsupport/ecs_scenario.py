"""The console's acceptance scenario: real `scan-root --format json` reports from simulated ECS tasks.

Image P (the reference task definition's, `../shared/examples/fargate-task-definition.json`, with
the `/tmp/xmrig` its command makes, so check 426 fires) runs in Fargate tasks T1 (family
`fargate-task`) and T2 (`fargate-task-web`) and in an EC2-launch task T3, whose host is the
instance; image Q (clean) runs only in an EC2-launch task T4. Each task is a task-metadata v4
document served by a local agent (testsupport/ecs_agent.py); `scan-root` runs in a child process
per task, as a defender in that task would, and its stdout is the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecs_agent import METADATA_ENV, Agent, running_agent

import scanner

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SCANNER_SHARED", REPO.parent / "shared"))
DEFINITION = SHARED / "examples" / "fargate-task-definition.json"
# Where the child imports scan-root from: the very package this process imports (the checkout
# with its in-place build in development, site-packages in CI).
IMPORT_ROOT = Path(scanner.__file__).resolve().parent.parent
# The platform's variable in every ECS container (scanner/targets/ecs.py EXECUTION_ENV).
EXECUTION_ENV = "AWS_EXECUTION_ENV"
PLATFORMS = {"FARGATE": "AWS_ECS_FARGATE", "EC2": "AWS_ECS_EC2"}
# Variables of this process a child keeps: which core it loads, where ../shared is. Nothing
# else: the scanner's own environment is a 424 source, and must hold nothing of the test run's.
PASSED_ON = ("SCANNER_NO_EXTENSIONS", "SCANNER_REQUIRE_EXTENSIONS", "SCANNER_SHARED")
MINER = "/tmp/xmrig"
Q_IMAGE = "012345678910.dkr.ecr.us-east-1.amazonaws.com/billing-api:2.4"
TIMEOUT = 120.0  # seconds for all four scans; each takes well under one


@dataclass(frozen=True, slots=True)
class Task:
    """One simulated ECS task: what its metadata says, and the host its report must name."""

    label: str  # "T1".."T4", as the issue names them
    task_id: str  # 32 hex digits, the last segment of the ARN
    arn: str
    cluster: str
    family: str
    revision: str
    launch_type: str  # "FARGATE" or "EC2"
    image_label: str  # "P" or "Q"
    image: str
    image_id: str  # "sha256:..." as the agent gives ImageID
    container: str  # the container's name (the one scan-root runs in)
    docker_id: str
    host: str  # target.host: the task id on Fargate, the instance on EC2

    def document(self, cpu: float, memory: int) -> dict[str, Any]:
        """The `${ECS_CONTAINER_METADATA_URI_V4}/task` response (AWS's documented shape)."""
        return {
            "Cluster": self.cluster,
            "TaskARN": self.arn,
            "Family": self.family,
            "Revision": self.revision,
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Limits": {"CPU": cpu, "Memory": memory},
            "AvailabilityZone": "us-east-1a",
            "LaunchType": self.launch_type,
            "Containers": [self.container_document()],
        }

    def container_document(self) -> dict[str, Any]:
        """The `${ECS_CONTAINER_METADATA_URI_V4}` response: the container itself."""
        return {
            "DockerId": self.docker_id,
            "Name": self.container,
            "DockerName": f"ecs-{self.family}-{self.revision}-{self.container}",
            "Image": self.image,
            "ImageID": self.image_id,
            "Labels": {
                "com.amazonaws.ecs.task-arn": self.arn,
                "com.amazonaws.ecs.task-definition-family": self.family,
                "com.amazonaws.ecs.task-definition-version": self.revision,
            },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Type": "NORMAL",
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    """The reports, in task order T1..T4, and what a test needs to look them up."""

    reports: list[dict[str, Any]]
    codes: list[int]  # scan-root's exit codes, T1..T4 (1: P's 426 finding; 0: Q is clean)
    tasks: dict[str, Task]  # by label
    instance: str  # the EC2 instance T3 and T4 run on: this machine's host name
    images: dict[str, tuple[str, str]]  # "P"/"Q": (image, image id)
    miner: str  # where 426 fires in P's root

    def report(self, label: str) -> dict[str, Any]:
        """The report the scanner in task `label` wrote."""
        return self.reports[list(self.tasks).index(label)]


class ScenarioError(RuntimeError):
    """The scenario could not be set up or a scan did not give a report."""


def _definition() -> dict[str, Any]:
    try:
        definition = json.loads(DEFINITION.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"{DEFINITION}: the reference task definition is unreadable") from error
    if not isinstance(definition, dict):
        raise ScenarioError(f"{DEFINITION}: not a task definition")
    return definition


def _copy_in_command(container: Mapping[str, Any]) -> tuple[str, str]:
    """(source, destination) of the `cp SRC DST` the container's command runs at start."""
    for part in container.get("command") or ():
        match = re.search(r"\bcp\s+(/[^\s'\"]+)\s+(/[^\s'\"]+)", str(part))
        if match:
            return match[1], match[2]
    raise ScenarioError(f"{DEFINITION}: no `cp SRC DST` in the container's command")


def _root(directory: Path, copy: tuple[str, str] | None) -> Path:
    """A small container root: `/bin/sleep` (this machine's), plus, when `copy` is given, what
    the task's command copies (`cp /bin/sleep /tmp/xmrig`), as it is once the task started."""
    directory.mkdir(parents=True)
    (directory / "bin").mkdir()
    (directory / "tmp").mkdir(mode=0o1777)
    (directory / "etc").mkdir()
    (directory / "etc/os-release").write_text('ID=ubuntu\nVERSION_ID="18.04"\n')
    sleep = shutil.which("sleep") or "/bin/sleep"
    shutil.copy2(sleep, directory / "bin/sleep")
    if copy is not None:
        source, destination = copy
        try:
            shutil.copy2(directory / source.lstrip("/"), directory / destination.lstrip("/"))
        except OSError as error:
            raise ScenarioError(f"the task's `cp {source} {destination}`: {error}") from error
    return directory


def _image_id(image: str) -> str:
    """A made-up, stable manifest digest per image name (the agent's ImageID shape)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def _tasks(definition: Mapping[str, Any], instance: str) -> dict[str, Task]:
    container = definition["containerDefinitions"][0]
    account = str(definition.get("executionRoleArn", "")).split(":")[4] or "012345678910"
    region = container.get("logConfiguration", {}).get("options", {}).get("awslogs-region")
    region = region or "us-east-1"
    cluster = f"arn:aws:ecs:{region}:{account}:cluster/default"
    p_image = str(container["image"])
    plan = [
        ("T1", "fargate-task", "3", "FARGATE", "P"),
        ("T2", "fargate-task-web", "7", "FARGATE", "P"),
        ("T3", "ec2-task", "2", "EC2", "P"),
        ("T4", "billing-api", "11", "EC2", "Q"),
    ]
    tasks = {}
    for label, family, revision, launch_type, image_label in plan:
        task = uuid.uuid4().hex  # a fresh world per call: two scenarios never share a task
        image = p_image if image_label == "P" else Q_IMAGE
        name = str(container["name"]) if image_label == "P" else "billing-api"
        tasks[label] = Task(
            label=label,
            task_id=task,
            arn=f"arn:aws:ecs:{region}:{account}:task/default/{task}",
            cluster=cluster,
            family=family,
            revision=revision,
            launch_type=launch_type,
            image_label=image_label,
            image=image,
            image_id=_image_id(image),
            container=name,
            docker_id=f"{task}-{uuid.uuid4().int % 10**10:010d}",
            host=task if launch_type == "FARGATE" else instance,
        )
    return tasks


def _child_env(agent: Agent, task: Task) -> dict[str, str]:
    env = {key: os.environ[key] for key in PASSED_ON if key in os.environ}
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        PYTHONPATH=str(IMPORT_ROOT),
        PYTHONSAFEPATH="1",  # the working directory must not shadow IMPORT_ROOT's package
        LANG="C.UTF-8",
    )
    env[METADATA_ENV] = f"{agent.uri}/v4/{task.docker_id}"
    env[EXECUTION_ENV] = PLATFORMS[task.launch_type]
    return env


def run_scenario(
    workdir: Path, *, command: Sequence[str] = (sys.executable, "-m", "scanner.cli")
) -> Scenario:
    """Run scan-root in each of the four simulated tasks; their JSON reports, T1..T4.

    `workdir` (an empty or absent directory) receives the two image roots. `command` is how
    scan-root is started (an installed `scan-root` works too). Raises ScenarioError when the
    reference definition is missing or a scan does not exit 0 or 1 with a report.
    """
    definition = _definition()
    container = definition["containerDefinitions"][0]
    copy = _copy_in_command(container)
    if copy[1] != MINER:
        raise ScenarioError(f"{DEFINITION}: the command copies to {copy[1]}, not {MINER}")
    roots = {
        "P": _root(workdir / "image-p", copy),
        "Q": _root(workdir / "image-q", None),
    }
    instance = socket.gethostname()
    tasks = _tasks(definition, instance)
    cpu = int(definition.get("cpu", "256")) / 1024  # the task document gives vCPUs
    memory = int(definition.get("memory", "512"))
    with running_agent() as agent:
        for task in tasks.values():
            agent.serve(f"/v4/{task.docker_id}/task", task.document(cpu, memory))
            agent.serve(f"/v4/{task.docker_id}", task.container_document())
        # All four at once: each is a process of its own, as in four tasks.
        children = [
            subprocess.Popen(
                [*command, str(roots[task.image_label]), "--format", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=_child_env(agent, task),
            )
            for task in tasks.values()
        ]
        reports, codes = [], []
        deadline = time.monotonic() + TIMEOUT
        try:
            for task, child in zip(tasks.values(), children):
                try:
                    out, err = child.communicate(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise ScenarioError(f"{task.label}: no report within {TIMEOUT} s") from None
                if child.returncode not in (0, 1):
                    raise ScenarioError(
                        f"{task.label}: scan-root exited {child.returncode}: "
                        f"{err.decode(errors='replace')[-2000:]}"
                    )
                reports.append(json.loads(out))
                codes.append(child.returncode)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    return Scenario(
        reports=reports,
        codes=codes,
        tasks=tasks,
        instance=instance,
        images={label: (t.image, t.image_id) for label, t in _by_image(tasks).items()},
        miner=MINER,
    )


def _by_image(tasks: Mapping[str, Task]) -> dict[str, Task]:
    """One task per image label (the first): the image and id every task of it shares."""
    out: dict[str, Task] = {}
    for task in tasks.values():
        out.setdefault(task.image_label, task)
    return out
