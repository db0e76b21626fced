"""A task definition with the defender sidecar added (docs/embed.md): pure, no I/O."""

from __future__ import annotations

import copy
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from scanner.version import __version__

__all__ = [
    "DEFENDER_NAME",
    "EmbedError",
    "EmbedOptions",
    "EmbedResult",
    "embed",
    "register_form",
]

DEFENDER_NAME = "scan-root-defender"
DEFAULT_IMAGE = f"scan-root-defender:{__version__}"
DEFAULT_CPU = 64  # CPU units (1024 = one vCPU): a quarter of the reference task's 256
DEFAULT_MEMORY = 128  # MiB
MAX_CONTAINERS = 10  # ECS: container definitions per task definition
# What describe-task-definition adds that register-task-definition does not take.
READ_ONLY = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
)
# The token comes from Secrets Manager or SSM Parameter Store, never as text in the definition
# (whoever can describe the task would read it).
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+"
    r"|ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+)"
)
TOKEN_VARIABLE = "SCAN_ROOT_TOKEN"
CONSOLE_VARIABLE = "SCAN_ROOT_CONSOLE"
# ASCII digits only: float() would also read "٢٥٦" (Arabic-Indic), which ECS does not.
_MEMORY_UNITS = re.compile(r" *([0-9]{1,6}(?:\.[0-9]{1,3})?) *(GB|MB|MiB|GiB)? *", re.IGNORECASE)
_CPU_UNITS = re.compile(r" *([0-9]{1,6}(?:\.[0-9]{1,3})?) *(vCPU)? *", re.IGNORECASE)


class EmbedError(ValueError):
    """The task definition cannot carry the defender as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class EmbedOptions:
    console: str
    token_secret: str  # an ARN of a Secrets Manager secret or an SSM parameter
    image: str = DEFAULT_IMAGE
    cpu: int = DEFAULT_CPU
    memory: int = DEFAULT_MEMORY


@dataclass(slots=True)
class EmbedResult:
    document: dict[str, Any]  # register form
    notices: list[str] = field(default_factory=list)


def register_form(document: object) -> tuple[dict[str, Any], list[str]]:
    """`document` as RegisterTaskDefinition takes it: a register-form definition as it is, or
    describe-task-definition's output without its read-only fields (its tags kept)."""
    if not isinstance(document, dict):
        raise EmbedError("the task definition must be a JSON object")
    notices: list[str] = []
    if "taskDefinition" in document:
        described = document["taskDefinition"]
        if not isinstance(described, dict):
            raise EmbedError("taskDefinition must be an object")
        form = {key: value for key, value in described.items() if key not in READ_ONLY}
        dropped = sorted(key for key in described if key in READ_ONLY)
        if dropped:
            notices.append(f"describe-task-definition output: dropped {', '.join(dropped)}")
        tags = document.get("tags")
        if tags:
            form["tags"] = tags
        return form, notices
    return dict(document), notices


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    containers = document.get("containerDefinitions")
    if not isinstance(containers, list) or not containers:
        raise EmbedError("containerDefinitions must be a non-empty list")
    if not all(isinstance(container, dict) for container in containers):
        raise EmbedError("every entry of containerDefinitions must be an object")
    # botocore's model leaves both optional; ECS refuses a container without them, and two of
    # one name.
    names = [container.get("name") for container in containers]
    if not all(isinstance(name, str) and name for name in names):
        raise EmbedError("every container needs a name")
    if len(set(names)) != len(names):
        raise EmbedError("two containers share a name")
    if not all(isinstance(container.get("image"), str) for container in containers):
        raise EmbedError("every container needs an image")
    return containers


def _cpu_units(value: object, where: str) -> int:
    """Task-level cpu: "256", "1024", or "1 vCPU" (ECS takes both)."""
    match = _CPU_UNITS.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise EmbedError(f'{where}: {value!r} is not a CPU size (e.g. "256" or "1 vCPU")')
    number = float(match.group(1))
    return int(number * 1024) if match.group(2) else int(number)


def _mebibytes(value: object, where: str) -> int:
    """Task-level memory: "512", "1024", or "1 GB" (ECS takes both)."""
    match = _MEMORY_UNITS.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise EmbedError(f'{where}: {value!r} is not a memory size (e.g. "512" or "1 GB")')
    number = float(match.group(1))
    unit = (match.group(2) or "").upper()
    return int(number * 1024) if unit in ("GB", "GIB") else int(number)


def _is_fargate(document: dict[str, Any]) -> bool:
    compatibilities = document.get("requiresCompatibilities") or []
    return isinstance(compatibilities, list) and "FARGATE" in compatibilities


def _check_token(options: EmbedOptions, containers: list[dict[str, Any]]) -> None:
    if _SECRET_ARN.fullmatch(options.token_secret) is None:
        raise EmbedError(
            "--token-secret must be the ARN of a Secrets Manager secret or an SSM parameter "
            "holding the token (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME or "
            "arn:aws:ssm:REGION:ACCOUNT:parameter/NAME): a token written into the task "
            "definition is readable by anyone who can describe it"
        )
    for container in containers:
        for variable in container.get("environment") or []:
            if isinstance(variable, dict) and variable.get("name") == TOKEN_VARIABLE:
                raise EmbedError(
                    f"container {container.get('name')!r} sets {TOKEN_VARIABLE} as plain text "
                    "in its environment: remove it (the token belongs in secrets[].valueFrom)"
                )


def _fit(
    document: dict[str, Any], containers: list[dict[str, Any]], options: EmbedOptions
) -> list[str]:
    """Whether the task size still holds every container with the defender; what it says."""
    cpu, memory = document.get("cpu"), document.get("memory")
    if cpu is None or memory is None:
        if _is_fargate(document):
            raise EmbedError(
                "a Fargate task definition needs task-level cpu and memory (Fargate bills and "
                "places by them); the defender takes "
                f"{options.cpu} CPU units and {options.memory} MiB of them"
            )
        return [
            (
                f"no task-level size: the defender asks {options.cpu} CPU units and "
                f"{options.memory} MiB of the instance, like any container"
            )
        ]
    task_cpu, task_memory = _cpu_units(cpu, "cpu"), _mebibytes(memory, "memory")
    used_cpu = sum(_number(c.get("cpu"), "cpu", c) for c in containers)
    used_memory = sum(
        _number(c.get("memory") or c.get("memoryReservation"), "memory", c) for c in containers
    )
    open_ended = [c.get("name") for c in containers if not c.get("memory")]
    cpu_left = task_cpu - used_cpu - options.cpu
    memory_left = task_memory - used_memory - options.memory
    if cpu_left < 0 or memory_left < 0 or (open_ended and memory_left <= 0):
        raise EmbedError(
            f"the defender ({options.cpu} CPU units, {options.memory} MiB) does not fit: the "
            f"task has {task_cpu} CPU units and {task_memory} MiB, its containers declare "
            f"{used_cpu} and {used_memory}; raise the task's cpu/memory or give the defender "
            "less with --cpu/--memory"
        )
    return [
        (
            f"the defender takes {options.cpu} of the task's {task_cpu} CPU units and "
            f"{options.memory} of its {task_memory} MiB; the other containers keep {cpu_left} "
            f"CPU units and {memory_left} MiB beyond what they declare"
        )
    ]


def _number(value: object, what: str, container: dict[str, Any]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EmbedError(f"container {container.get('name')!r}: {what} must be a whole number")
    return value


def _log_configuration(containers: list[dict[str, Any]]) -> dict[str, Any] | None:
    for container in containers:
        configuration = container.get("logConfiguration")
        if isinstance(configuration, dict) and configuration.get("logDriver") == "awslogs":
            options = configuration.get("options")
            copied = dict(options) if isinstance(options, dict) else {}
            copied["awslogs-stream-prefix"] = "scan-root"
            return {"logDriver": "awslogs", "options": copied}
    return None


def defender_container(options: EmbedOptions, logs: dict[str, Any] | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": DEFENDER_NAME,
        "image": options.image,
        "essential": False,
        "command": ["defend"],
        "user": "0",
        "cpu": options.cpu,
        "memory": options.memory,
        "environment": [{"name": CONSOLE_VARIABLE, "value": options.console}],
        "secrets": [{"name": TOKEN_VARIABLE, "valueFrom": options.token_secret}],
        "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"]}},
        "healthCheck": {
            "command": ["CMD", "scan-root", "defend", "--healthcheck"],
            "interval": 60,
            "timeout": 10,
            "retries": 3,
            "startPeriod": 120,
        },
    }
    if logs is not None:
        container["logConfiguration"] = logs
    return container


def embed(document: object, options: EmbedOptions) -> EmbedResult:
    """The task definition (register or describe form) with the defender added."""
    form, notices = register_form(document)
    form = copy.deepcopy(form)
    containers = _containers(form)
    if any(container.get("name") == DEFENDER_NAME for container in containers):
        notices.append(f"already embedded: {DEFENDER_NAME} is in the task definition; unchanged")
        return EmbedResult(form, notices)
    console = urllib.parse.urlsplit(options.console)
    if console.scheme not in ("https", "http") or not console.hostname:
        raise EmbedError("--console must be an http:// or https:// URL")
    if console.username or console.password or console.query or console.fragment:
        # It is written into the definition as plain text: no credentials belong there.
        raise EmbedError("--console takes no credentials, query or fragment")
    if not 1 <= options.cpu <= 16384 or not 6 <= options.memory <= 122880:
        raise EmbedError("--cpu must be 1 to 16384 units and --memory 6 to 122880 MiB")
    if len(containers) >= MAX_CONTAINERS:
        raise EmbedError(f"ECS allows {MAX_CONTAINERS} containers a task: no room for the defender")
    pid_mode = form.get("pidMode")
    if pid_mode not in (None, "task"):
        raise EmbedError(
            f'pidMode is {pid_mode!r}: the defender needs pidMode "task" to see the other '
            "containers' processes (\"host\" shares the instance's, and Fargate refuses it)"
        )
    _check_token(options, containers)
    if not form.get("executionRoleArn"):
        raise EmbedError(
            "executionRoleArn is missing: ECS fetches the token secret with the task's execution "
            "role (it needs secretsmanager:GetSecretValue or ssm:GetParameters on it)"
        )
    notices += _fit(form, containers, options)
    logs = _log_configuration(containers)
    if logs is None:
        notices.append(
            "no container logs with awslogs: the defender gets no logConfiguration (its log "
            "then goes nowhere you can read; add one to the task definition)"
        )
    if not _is_fargate(form):
        notices.append(
            'not a Fargate task definition: pidMode "task" and SYS_PTRACE work on EC2 too; '
            "the defender reports the instance as its host"
        )
    form["pidMode"] = "task"
    form["containerDefinitions"] = [*containers, defender_container(options, logs)]
    return EmbedResult(form, notices)
