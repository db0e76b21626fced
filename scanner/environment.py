"""Environment-variable sources for check 424: ECS task definitions, env files, PID 1's environ."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .jsonload import InputFileError, load_json, read_bounded

# ECS refuses task definitions over 64 KiB; describe-task-definition's output adds little.
MAX_TASK_DEFINITION_BYTES = 1024 * 1024
MAX_ENV_FILE_BYTES = 4 * 1024 * 1024

__all__ = [
    "PROC_ENVIRON",
    "EnvVar",
    "SecretReference",
    "TaskDefinition",
    "check_sources",
    "from_env_file",
    "from_process",
    "from_task_definition",
    "read_task_definition",
]

PROC_ENVIRON = "/proc/1/environ"
MAX_ENVIRON = 8 << 20


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One variable and where it was set. The value never appears in repr, logs or reports."""

    name: str
    value: str = field(repr=False)
    source: str  # "task-definition:FAMILY[:REV]/container:NAME", "env-file:PATH", "process:pid1"


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A `secrets[].valueFrom` entry: ECS fetches the value at start-up, the right practice."""

    name: str
    value_from: str  # an ARN or a parameter name: a pointer, not secret material
    source: str


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """What 424 reads from an ECS task definition (register form or describe output)."""

    path: str
    family: str
    containers: tuple[str, ...]
    variables: tuple[EnvVar, ...]
    references: tuple[SecretReference, ...]
    problems: tuple[str, ...]  # what could not be checked (S3 environmentFiles)
    images: tuple[str | None, ...] = ()  # each container's image, parallel to `containers`
    revision: int | None = None
    compatibilities: tuple[str, ...] = ()  # requiresCompatibilities: ("FARGATE",), ("EC2",)...


def _bad(path: str, what: str) -> UsageError:
    return UsageError(f"{path}: not a valid ECS task definition: {what}")


def _entries(path: str, where: str, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise _bad(path, f"{where} must be a list of objects")
    return raw


def _string(path: str, where: str, entry: dict[str, Any], key: str, default: str | None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        # Say which field, never echo it: a malformed value may still be a secret.
        raise _bad(path, f"{where}.{key} is {'missing' if value is None else 'not a string'}")
    return value


def read_task_definition(path: str) -> TaskDefinition:
    """Parse `path`; raises UsageError (with the file name) when it is not a task definition.

    Accepts the `aws ecs register-task-definition --cli-input-json` form and the
    `aws ecs describe-task-definition` output, which wraps it in `{"taskDefinition": {...}}`.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html
    """
    try:
        data = read_bounded(path, what="task definition", max_bytes=MAX_TASK_DEFINITION_BYTES)
        document = load_json(data, what=path, max_bytes=MAX_TASK_DEFINITION_BYTES)
    except OSError as error:
        raise UsageError(f"{path}: cannot read task definition: {error.strerror}") from error
    except InputFileError as error:  # its message quotes no content: it could be a secret
        raise UsageError(str(error)) from error
    if not isinstance(document, dict):
        raise _bad(path, "the top level must be a JSON object")
    if isinstance(document.get("taskDefinition"), dict):
        document = document["taskDefinition"]
    if "containerDefinitions" not in document:
        raise _bad(path, "no containerDefinitions")
    containers = _entries(path, "containerDefinitions", document["containerDefinitions"])
    if not containers:
        raise _bad(path, "containerDefinitions is empty")
    family = document.get("family")
    if not isinstance(family, str) or not family:
        family = os.path.basename(path)
    revision = document.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool):  # JSON true is no revision
        revision = None
    task = f"{family}:{revision}" if revision is not None else family
    names: list[str] = []
    images: list[str | None] = []
    variables: list[EnvVar] = []
    references: list[SecretReference] = []
    problems: list[str] = []
    for index, container in enumerate(containers):
        where = f"containerDefinitions[{index}]"
        name = _string(path, where, container, "name", f"#{index}")
        names.append(name)
        image = container.get("image")
        if image is not None and not isinstance(image, str):
            raise _bad(path, f"{where}.image is not a string")
        images.append(image)
        source = f"task-definition:{task}/container:{name}"
        for number, entry in enumerate(
            _entries(path, f"{where}.environment", container.get("environment"))
        ):
            at = f"{where}.environment[{number}]"
            # ECS treats a missing value as empty.
            variables.append(
                EnvVar(
                    _string(path, at, entry, "name", None),
                    _string(path, at, entry, "value", ""),
                    source,
                )
            )
        for number, entry in enumerate(
            _entries(path, f"{where}.secrets", container.get("secrets"))
        ):
            at = f"{where}.secrets[{number}]"
            references.append(
                SecretReference(
                    _string(path, at, entry, "name", None),
                    _string(path, at, entry, "valueFrom", None),
                    source,
                )
            )
        for number, entry in enumerate(
            _entries(path, f"{where}.environmentFiles", container.get("environmentFiles"))
        ):
            # Named in a problem: a string (an S3 ARN), never another value echoed whole.
            location = _string(path, f"{where}.environmentFiles[{number}]", entry, "value", "?")
            problems.append(
                f"{source}: could not verify environment file {location} (stored in S3); "
                "download it and pass --env-file"
            )
    return TaskDefinition(
        path,
        family,
        tuple(names),
        tuple(variables),
        tuple(references),
        tuple(problems),
        tuple(images),
        revision,
        _compatibilities(path, document.get("requiresCompatibilities")),
    )


def _compatibilities(path: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise _bad(path, "requiresCompatibilities must be a list of strings")
    return tuple(raw)


def from_task_definition(path: str) -> tuple[list[EnvVar], list[str]]:
    """The literal `environment` variables of every container, and what could not be checked.

    `secrets` (`valueFrom`) entries are references resolved by ECS at start-up: not returned.
    """
    task = read_task_definition(path)
    return list(task.variables), list(task.problems)


def _strip_export(line: str) -> str:
    # Not docker's rule (docker rejects "export X=1": its key holds a space); tolerated because
    # such files are shared with `source` and the variable is still set, under the name X.
    head, _, rest = line.partition(" ")
    if head == "export" and rest.lstrip() and "=" in rest:
        return rest.lstrip(" \t")
    return line


def from_env_file(path: str) -> tuple[list[EnvVar], list[str]]:
    """Parse a `docker run --env-file` file as docker's cli/pkg/kvfile does.

    Leading whitespace is dropped; `#` lines and blank lines are ignored; `NAME=value` keeps the
    value as-is — docker does NOT strip quotes (`A="x"` sets `"x"`, quotes included; moby#46773,
    docker/cli#3630; docker/cli#6805 proposes stripping and is not merged), nor trailing
    whitespace. A bare `NAME` takes the docker client's own value, unknown here: a problem that
    gives the line's number, not its text.
    Invalid UTF-8, an empty name or a name with whitespace make docker refuse the file; so do we
    (UsageError), naming the line but never echoing it, as it may hold a secret.
    """
    try:
        data = read_bounded(path, what="env file", max_bytes=MAX_ENV_FILE_BYTES)
    except OSError as error:
        raise UsageError(f"{path}: cannot read env file: {error.strerror}") from error
    except InputFileError as error:
        raise UsageError(str(error)) from error
    source = f"env-file:{path}"
    variables: list[EnvVar] = []
    problems: list[str] = []
    # splitlines(keepends) is avoided on purpose: docker splits on \n only (bufio.ScanLines,
    # which also drops one trailing \r); \v, \f, \x1c… inside a value are part of it.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UsageError(f"{path}: line {number}: invalid UTF-8") from error
        line = _strip_export(text.lstrip())
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not name:
            raise UsageError(f"{path}: line {number}: no variable name")
        if " " in name or "\t" in name:
            raise UsageError(f"{path}: line {number}: variable name contains whitespace")
        if not equals:
            # Docker takes the line as a name whose value is the client's own, but a line
            # without `=` is as often a pasted token, a URL with a password or a key's body
            # line: it is named by its number only, never echoed.
            problems.append(
                f"{source}: could not verify line {number}: it has no `=`, so its value would "
                "come from the environment of the docker client"
            )
            continue
        variables.append(EnvVar(name, value, source))
    return variables, problems


def from_process(
    environ: str = PROC_ENVIRON, source: str = "process:pid1"
) -> tuple[list[EnvVar], list[str]]:
    """The environment PID 1 started with (`/proc/1/environ`: NUL-separated `NAME=value`).

    Only meaningful when the scanned root is the live `/` inside the container; the caller
    decides. Unreadable (EACCES without CAP_SYS_PTRACE, no /proc) is a problem, never a pass.
    """
    try:
        with open(environ, "rb") as handle:
            # The kernel bounds an environment by the argument limits (a quarter of the
            # stack limit); a read past this is no environment a container was started with.
            data = handle.read(MAX_ENVIRON)
    except OSError as error:
        return [], [f"{source}: could not read {environ}: {error.strerror}"]
    variables: list[EnvVar] = []
    for entry in data.split(b"\0"):
        if not entry:
            continue
        name, equals, value = entry.partition(b"=")
        if not equals:
            continue  # not NAME=value (a process may rewrite its own environ area)
        # The name is displayed, so backslashreplace; the value is only matched, never shown,
        # so surrogateescape keeps every byte.
        variables.append(
            EnvVar(
                name.decode("utf-8", "backslashreplace"),
                value.decode("utf-8", "surrogateescape"),
                source,
            )
        )
    return variables, []


def check_sources(task_definitions: Sequence[str], env_files: Sequence[str]) -> None:
    """Raise UsageError now for a source that cannot be read, rather than after a long walk."""
    for path in task_definitions:
        read_task_definition(path)
    for path in env_files:
        from_env_file(path)
