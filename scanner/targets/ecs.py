"""Fargate identity: the ECS task metadata endpoint v4, read with a hard deadline.

Inside an ECS task the agent injects `ECS_CONTAINER_METADATA_URI_V4`; `${URI}/task` describes
the task and `${URI}` the container that asks. AWS documents the task response field by field:
"`TaskARN`: The Amazon Resource Name (ARN) of the task to which the container belongs."
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4-response.html

Every container of one task reports the same host: the task id, the last segment of the ARN.
A missing, slow or malformed endpoint is a problem (a string, as `scanner.environment` returns),
never an exception and never a hang.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..jsonload import JSONInputError, load_json

__all__ = [
    "EXECUTION_ENV",
    "FARGATE_EXECUTION_ENV",
    "METADATA_ENV",
    "PLATFORM_LAUNCH_TYPES",
    "ContainerInfo",
    "TaskIdentity",
    "container_at",
    "host_identity",
    "read_task_metadata",
    "task_id",
]

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
# Set by the platform in every Fargate container, metadata endpoint or not.
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
EXECUTION_ENV = "AWS_EXECUTION_ENV"
FARGATE_EXECUTION_ENV = "AWS_ECS_FARGATE"
# AWS_EXECUTION_ENV's values and the launch type each means (ECS Anywhere: EXTERNAL).
PLATFORM_LAUNCH_TYPES = {
    FARGATE_EXECUTION_ENV: "FARGATE",
    "AWS_ECS_EC2": "EC2",
    "AWS_ECS_EXTERNAL": "EXTERNAL",
}
# A task document lists every container of the task; a few KiB each. Anything this large is not
# the agent speaking.
MAX_RESPONSE = 4 * 1024 * 1024
# ECS allows 10 containers a task definition: past this many, each would be a problem of its own
# (900,000 malformed entries were as many problems).
MAX_CONTAINERS = 100
_SOURCE = "ecs-metadata"


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container as the agent describes it. `image_id` is absent before the image is pulled."""

    name: str
    image: str | None
    image_id: str | None  # "sha256:..." digest of the image manifest
    docker_id: str  # on Fargate: 32 hex digits, "-", 10 digits
    # The agent's `Type`: "NORMAL" for the task definition's containers; the pause container
    # of an awsvpc task on EC2 is "CNI_PAUSE". None when the agent leaves it out.
    container_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "docker_id": self.docker_id}
        if self.image is not None:
            out["image"] = self.image
        if self.image_id is not None:
            out["image_id"] = self.image_id
        return out


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """The task the scanner runs in; `host` is the task id, shared by all its containers."""

    host: str
    cluster: str | None  # as the agent gives it (a short name or an ARN), else from the ARN
    task_arn: str
    family: str | None
    revision: str | None
    launch_type: str | None  # "FARGATE", "EC2", ...
    availability_zone: str | None
    containers: tuple[ContainerInfo, ...]
    container: ContainerInfo | None  # the container being scanned (`${URI}` itself)

    def task_dict(self) -> dict[str, Any]:
        """The report's `target.task`: family, revision, cluster, ARN (absent fields left out)."""
        out: dict[str, Any] = {"arn": self.task_arn, "id": self.host}
        for key in ("family", "revision", "cluster", "launch_type", "availability_zone"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["containers"] = [container.to_dict() for container in self.containers]
        return out


class _MetadataError(Exception):
    """Internal: why one request gave nothing usable; becomes a problem string."""


def task_id(arn: str) -> tuple[str, str | None]:
    """(task id, cluster name or None) of a task ARN, in either format.

    Old: `arn:aws:ecs:REGION:ACCOUNT:task/TASK_ID`; new: `...:task/CLUSTER_NAME/TASK_ID`.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html#ecs-resource-ids
    Raises ValueError when `arn` is neither.
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "ecs":
        raise ValueError("not an ECS ARN")
    segments = parts[5].split("/")
    if segments[0] != "task" or len(segments) not in (2, 3) or not all(segments[1:]):
        raise ValueError("not a task ARN (task/ID or task/CLUSTER/ID)")
    return segments[-1], segments[1] if len(segments) == 3 else None


class _Canned:
    """Lets http.client parse a response already read in full (status, headers, chunked body)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


MAX_URI = 2048  # the agent's URI is ~50 characters


def _unusable(uri: str) -> str | None:
    """Why the endpoint URI cannot be requested as it is, or None. Checked before it is split
    (`http://[::1` is a ValueError to urlsplit) or put on a request line (a CR LF in it would
    add headers; non-ASCII cannot be sent), and before any message quotes it."""
    if len(uri) > MAX_URI:
        return f"is longer than {MAX_URI} characters"
    if not uri.isascii() or not uri.isprintable() or " " in uri:
        return "holds a space, a control or a non-ASCII character"
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:
        return "is not a URI"
    if "@" in netloc:
        return "carries credentials (user@): not used"
    return None


def _get(url: str, deadline: float) -> Any:
    """GET `url` and decode its JSON body, all before `deadline` (time.monotonic()).

    Raw socket on purpose: urllib honours http_proxy/no_proxy and follows redirects, so it could
    talk to another address; and its timeout is per socket operation, not overall. The host must
    be an IP literal: a DNS lookup cannot be bounded by a socket timeout.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise _MetadataError(f"{url}: not an http:// URI")
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _MetadataError(f"{url}: host is not an IP address (no DNS lookup is made)") from None
    try:
        port = parts.port or 80
    except ValueError:
        raise _MetadataError(f"{url}: invalid port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii", "strict")
    chunks: list[bytes] = []
    size = 0
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        with socket.create_connection((str(address), port), timeout=remaining) as sock:
            sock.sendall(request)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_RESPONSE:
                    raise _MetadataError(f"{url}: response larger than {MAX_RESPONSE} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _MetadataError(f"{url}: no complete response within the timeout") from None
    except OSError as error:
        raise _MetadataError(f"{url}: {error.strerror or error}") from error
    # Imported here: http.client (with ssl and email) costs every scan ~25 ms of start-up, and
    # only a scan inside ECS gets this far.
    from http.client import HTTPException, HTTPResponse

    response = HTTPResponse(_Canned(b"".join(chunks)))  # type: ignore[arg-type]
    try:
        response.begin()
        body = response.read()
    except (HTTPException, ValueError) as error:
        raise _MetadataError(f"{url}: malformed HTTP response ({type(error).__name__})") from error
    if response.status != 200:
        raise _MetadataError(f"{url}: HTTP {response.status} {response.reason}".rstrip())
    try:
        # Bounded like every JSON input: 4 MiB of `[` is a RecursionError, and a number of 5,000
        # digits a ValueError, to json.loads alone.
        return load_json(body, what=url, max_bytes=MAX_RESPONSE)
    except JSONInputError as error:
        raise _MetadataError(str(error)) from None


def _optional(
    document: Mapping[str, Any],
    key: str,
    where: str,
    problems: list[str],
    *,
    number: bool = False,
) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if number and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # Revision is a string in the documented examples; accept a number
    if not isinstance(value, str):
        problems.append(f"{_SOURCE}: {where}.{key} is not a string; ignored")
        return None
    return value


def _container(document: Any, where: str, problems: list[str]) -> ContainerInfo | None:
    if not isinstance(document, dict):
        problems.append(f"{_SOURCE}: {where} is not a JSON object")
        return None
    name, docker_id = document.get("Name"), document.get("DockerId")
    if not isinstance(name, str) or not isinstance(docker_id, str) or not name or not docker_id:
        missing = "Name" if not isinstance(name, str) or not name else "DockerId"
        problems.append(f"{_SOURCE}: {where}.{missing} is missing or not a string")
        return None
    return ContainerInfo(
        name,
        _optional(document, "Image", where, problems),
        _optional(document, "ImageID", where, problems),
        docker_id,
        _optional(document, "Type", where, problems),
    )


def read_task_metadata(
    environ: Mapping[str, str] = os.environ, *, timeout: float = 2.0
) -> tuple[TaskIdentity | None, list[str]]:
    """The task this process runs in, and what could not be read; `(None, [])` outside ECS.

    Both requests (`${URI}/task`, then `${URI}`) share one deadline of `timeout` seconds.
    The identity is None when the task document is unusable (no response, not JSON, no valid
    TaskARN); a missing container document only leaves `container` None, with a problem.
    """
    uri = environ.get(METADATA_ENV)
    if not uri:
        return None, []
    unusable = _unusable(uri)
    if unusable is not None:  # said without the URI: it may carry anything, credentials too
        return None, [f"{_SOURCE}: {METADATA_ENV} {unusable}; host falls back to the hostname"]
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    base = uri.rstrip("/")
    try:
        task = _get(f"{base}/task", deadline)
    except _MetadataError as error:
        return None, [f"{_SOURCE}: {error}; host falls back to the hostname"]
    if not isinstance(task, dict):
        return None, [f"{_SOURCE}: {base}/task: not a JSON object; host falls back to the hostname"]
    arn = task.get("TaskARN")
    if not isinstance(arn, str) or not arn:
        reason = "TaskARN is missing or not a string"
        return None, [f"{_SOURCE}: {base}/task: {reason}; host falls back to the hostname"]
    try:
        host, arn_cluster = task_id(arn)
    except ValueError as error:
        return None, [
            f"{_SOURCE}: {base}/task: TaskARN {arn!r} is {error}; host falls back to the hostname"
        ]
    where = "task"
    containers: list[ContainerInfo] = []
    raw_containers = task.get("Containers")
    if not isinstance(raw_containers, list):
        problems.append(f"{_SOURCE}: task.Containers is missing or not a list")
    else:
        if len(raw_containers) > MAX_CONTAINERS:
            problems.append(
                f"{_SOURCE}: task.Containers lists {len(raw_containers)} containers; only the "
                f"first {MAX_CONTAINERS} are read"
            )
        for index, entry in enumerate(raw_containers[:MAX_CONTAINERS]):
            info = _container(entry, f"task.Containers[{index}]", problems)
            if info is not None:
                containers.append(info)
    current: ContainerInfo | None = None
    try:
        document = _get(base, deadline)
    except _MetadataError as error:
        problems.append(f"{_SOURCE}: {error}; the scanned container is unknown")
    else:
        current = _container(document, "container", problems)
        if current is not None and not any(c.docker_id == current.docker_id for c in containers):
            problems.append(
                f"{_SOURCE}: container {current.name} ({current.docker_id}) is not listed in "
                f"the task document of {arn}"
            )
    return (
        TaskIdentity(
            host=host,
            cluster=_optional(task, "Cluster", where, problems) or arn_cluster,
            task_arn=arn,
            family=_optional(task, "Family", where, problems),
            revision=_optional(task, "Revision", where, problems, number=True),
            launch_type=_optional(task, "LaunchType", where, problems),
            availability_zone=_optional(task, "AvailabilityZone", where, problems),
            containers=tuple(containers),
            container=current,
        ),
        problems,
    )


def container_at(uri: str, *, timeout: float = 2.0) -> ContainerInfo | None:
    """The container a metadata URI (`${ECS_CONTAINER_METADATA_URI_V4}` of some process)
    describes, or None when it is unusable or does not answer with one."""
    if _unusable(uri) is not None:
        return None
    try:
        document = _get(uri.rstrip("/"), time.monotonic() + timeout)
    except _MetadataError:
        return None
    return _container(document, "container", [])


def host_identity(environ: Mapping[str, str] = os.environ, *, timeout: float = 2.0) -> str:
    """The task id when the task metadata is usable, else this machine's hostname."""
    identity, _ = read_task_metadata(environ, timeout=timeout)
    return identity.host if identity is not None else socket.gethostname()
