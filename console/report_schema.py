"""A posted body checked against the schema-1 report, field by field, into typed records.

Every refusal names the field (`findings[3].severity`); the value is never quoted, since a
report is untrusted and what it carries is not ours to echo.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from scanner.report import display_path

from .kinds import Effect, Severity, VulnerabilitySeverity
from .models import NAME_LENGTH

__all__ = [
    "ContainerRecord",
    "FindingRecord",
    "ImageRecord",
    "PackageRecord",
    "ProblemRecord",
    "ReportError",
    "ReportRecord",
    "TaskRecord",
    "VulnerabilityRecord",
    "parse_report",
]

SCHEMA = 1
TARGET_KINDS = frozenset({"rootfs", "image", "task"})
# The widest integer any column or JSON value holds in both engines.
MAX_INT = 2**63 - 1
MAX_SMALL_INT = 2**31 - 1
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
# Each is a row written in the report's transaction, one statement apiece for containers: a
# task has at most 10 containers (ECS), an image a few tags; far more is no report of ours.
MAX_CONTAINERS = 100
MAX_TAGS = 1000
# A root's packages times the advisories of each: a few thousand on a large image; past this
# is no report of ours, and each is a row written in the report's transaction.
MAX_VULNERABILITIES = 50_000
MAX_ALIASES = 32


class ReportError(ValueError):
    """The body is not a schema-1 report: `field` says where (`body` for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class PackageRecord:
    name: str
    version: str
    manager: str


@dataclass(frozen=True, slots=True)
class FindingRecord:
    check: str
    title: str
    severity: Severity
    kind: str
    path: str | None
    path_hex: str | None
    package: PackageRecord | None
    rule: str | None
    effect: Effect | None
    baselined: bool
    detail: str | None


@dataclass(frozen=True, slots=True)
class ProblemRecord:
    kind: str
    message: str
    path: str | None
    path_hex: str | None
    check: str | None
    package: PackageRecord | None
    errno: int | None


@dataclass(frozen=True, slots=True)
class VulnerabilityRecord:
    """One advisory that applies to one installed package (the report's `vulnerabilities`)."""

    advisory: str  # its id: CVE-..., ALSA-..., RLSA-..., DSA-...
    aliases: tuple[str, ...]
    package: str
    version: str
    manager: str
    source_package: str | None  # the name advisories use (dpkg Source:, apk origin, SRPM)
    fixed_version: str | None  # None: no fix released
    severity: VulnerabilitySeverity
    cvss: float | None
    summary: str | None
    source: str  # which database
    source_date: str | None


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    name: str
    docker_id: str | None
    image: str | None
    image_id: str | None

    @property
    def key(self) -> str:
        """Unique on its host: the runtime's id when known (a restart is a new container)."""
        return self.docker_id or self.name


@dataclass(frozen=True, slots=True)
class TaskRecord:
    arn: str
    task_id: str
    family: str | None
    revision: str | None
    cluster: str | None
    launch_type: str | None
    availability_zone: str | None
    containers: tuple[ContainerRecord, ...]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    name: str | None
    tags: tuple[str, ...]
    config_id: str | None
    digest: str | None

    @property
    def key(self) -> str | None:
        """Digest when known, else image id, else name; None when the image is unnamed."""
        if self.digest:
            return f"digest:{self.digest}"
        if self.config_id:
            return f"id:{self.config_id}"
        if self.name:
            return f"name:{self.name}"
        return None


@dataclass(frozen=True, slots=True)
class ReportRecord:
    scan_id: uuid.UUID
    scanner_version: str
    implementation: str | None
    target_kind: str
    root: str
    host: str
    launch_type: str | None
    task: TaskRecord | None
    container: ContainerRecord | None
    image: ImageRecord | None
    checks: list[str]
    managers: list[Any]
    findings: list[FindingRecord]
    suppressed: int
    problems: list[ProblemRecord]
    notices: list[str]
    complete: bool
    stats: dict[str, Any] = field(default_factory=dict)
    # SHA-256 of the document's canonical JSON (keys sorted, no spaces): what tells a replay
    # of this scan_id (the same report, however spaced or compressed) from another report.
    digest: str = ""
    # None: the scan matched no advisories (no database given): unknown, not "none found".
    vulnerabilities: tuple[VulnerabilityRecord, ...] | None = None

    @property
    def fargate(self) -> bool:
        """Whether the scanned host is a Fargate task (it is then named by its task id)."""
        launch = self.task.launch_type if self.task is not None else None
        return (launch or self.launch_type) == "FARGATE" and self.task is not None


class _Object:
    """One JSON object of the report and where it is, for messages."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise ReportError(where or "body", "must be an object")
        self.value: dict[str, Any] = value
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.value or self.value[key] is None:
            if required:
                raise ReportError(self.at(key), "required")
            return None
        return self.value[key]

    @overload
    def string(
        self, key: str, *, required: Literal[True] = ..., limit: int | None = ...
    ) -> str: ...

    @overload
    def string(self, key: str, *, required: bool, limit: int | None = ...) -> str | None: ...

    def string(self, key: str, *, required: bool = True, limit: int | None = None) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ReportError(self.at(key), "must be a string")
        if limit is not None and len(value) > limit:
            raise ReportError(self.at(key), f"longer than {limit} characters")
        return value

    @overload
    def name(self, key: str, *, required: Literal[True] = ...) -> str: ...

    @overload
    def name(self, key: str, *, required: bool) -> str | None: ...

    def name(self, key: str, *, required: bool = True) -> str | None:
        """A string that is indexed: bounded, and not empty."""
        value = self.string(key, required=required, limit=NAME_LENGTH)
        if value == "":
            if required:
                raise ReportError(self.at(key), "must not be empty")
            return None
        return value

    @overload
    def integer(self, key: str, *, required: Literal[True] = ..., limit: int = ...) -> int: ...

    @overload
    def integer(self, key: str, *, required: bool, limit: int = ...) -> int | None: ...

    def integer(self, key: str, *, required: bool = True, limit: int = MAX_SMALL_INT) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportError(self.at(key), "must be an integer")
        if not 0 <= value <= limit:
            raise ReportError(self.at(key), f"must be between 0 and {limit}")
        return value

    def boolean(self, key: str, *, required: bool = True) -> bool:
        value = self._get(key, required)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ReportError(self.at(key), "must be true or false")
        return value

    def object(self, key: str, *, required: bool = True) -> _Object | None:
        value = self._get(key, required)
        return None if value is None else _Object(value, self.at(key))

    def array(self, key: str) -> list[Any]:
        value = self._get(key, True)
        if not isinstance(value, list):
            raise ReportError(self.at(key), "must be an array")
        return value

    def strings(self, key: str, *, limit: int | None = None) -> list[str]:
        values = self.array(key)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise ReportError(f"{self.at(key)}[{index}]", "must be a string")
            if limit is not None and len(value) > limit:
                raise ReportError(f"{self.at(key)}[{index}]", f"longer than {limit} characters")
        return values


def check_values(document: object) -> None:
    """Refuses what no column can hold, wherever it is: a NaN or infinite number, an integer
    wider than 64 bits, a key with a NUL or a lone surrogate. A string *value* with either is
    written out in place (`\\x00`, `\\udcff`), not refused: the scanner writes them itself
    when a scanned root puts them in a package database, and refusing the report would keep a
    hostile root's findings out of the console. The document's nesting is already bounded
    (jsonload)."""
    for place, value in _walk(document):
        if isinstance(value, str):  # a key: a value string is cleaned by _walk
            if not _storable(value):
                raise ReportError(_render(place), "a key holds a NUL or is not valid Unicode")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ReportError(_render(place), "a number is not finite")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ReportError(_render(place), "an integer wider than 64 bits")


def _storable(text: str) -> bool:
    """Whether both engines store `text` as it is: no NUL (PostgreSQL text), and UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def written_out(text: str) -> str:
    """`text` with each NUL and lone surrogate spelled as its escape (`\\x00`, `\\udcff`)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


# Where a value is: (parent place, key or index), None at the top. Built as a chain of pairs
# and spelled out only for a refusal: a million values cost no million strings.
_Place = tuple[Any, str | int] | None


def _walk(document: object) -> Iterator[tuple[_Place, object]]:
    """Every key and every value but strings of `document`, with its place; iterative. A string
    value that no column can hold is replaced, in place, by `written_out`."""
    stack: list[tuple[_Place, object]] = [(None, document)]
    while stack:
        place, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                inner = (place, key)
                yield inner, key
                if isinstance(child, str):
                    if not _storable(child):
                        item[key] = written_out(child)  # same keys: iteration goes on
                else:
                    stack.append((inner, child))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                if isinstance(child, str):
                    if not _storable(child):
                        item[index] = written_out(child)
                else:
                    stack.append(((place, index), child))
        elif not isinstance(item, str):
            yield place, item


def _render(place: _Place) -> str:
    parts: list[str] = []
    while place is not None:
        place, step = place
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:  # a key is the sender's text too: named only when it is a plain identifier
            parts.append(f".{step}" if _KEY.fullmatch(step) else ".<key>")
    return "".join(reversed(parts)).lstrip(".") or "body"


def _scan_id(top: _Object) -> uuid.UUID:
    text = top.string("scan_id", limit=36)
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise ReportError("scan_id", "not a UUID") from None
    if parsed.version != 4 or str(parsed) != text.lower():
        raise ReportError("scan_id", "not a UUID4 in its canonical form")
    return parsed


def _package(owner: _Object) -> PackageRecord | None:
    package = owner.object("package", required=False)
    if package is None:
        return None
    return PackageRecord(
        name=package.string("name"),
        version=package.string("version"),
        manager=package.string("manager", limit=16),
    )


def _located(owner: _Object) -> tuple[str | None, str | None]:
    """`path` and `path_hex`, which must agree: the scanner writes `path_hex` only for a path
    that is not UTF-8, and `path` from the same bytes (display_path). A `path_hex` naming other
    bytes would have the views show one file while the finding is about another."""
    path = owner.string("path", required=False)
    value = owner.string("path_hex", required=False)
    if value is None:
        return path, None
    if not _HEX.fullmatch(value):
        raise ReportError(owner.at("path_hex"), "must be lower-case hex digits in pairs")
    raw = bytes.fromhex(value)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        if path == display_path(raw):
            return path, value
    raise ReportError(owner.at("path_hex"), "does not name the path's bytes (or they are UTF-8)")


def _choice(owner: _Object, key: str, kind: type[Any], *, required: bool) -> Any:
    value = owner.string(key, required=required)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ReportError(owner.at(key), f"must be one of {allowed}") from None


def _finding(value: object, where: str) -> FindingRecord:
    item = _Object(value, where)
    path, path_hex = _located(item)
    return FindingRecord(
        check=item.string("check", limit=16),
        title=item.string("title"),
        severity=_choice(item, "severity", Severity, required=True),
        kind=item.string("kind", limit=64),
        path=path,
        path_hex=path_hex,
        package=_package(item),
        rule=item.string("rule", required=False),
        effect=_choice(item, "effect", Effect, required=False),
        baselined=item.boolean("baselined", required=False),
        detail=item.string("detail", required=False),
    )


def _problem(value: object, where: str) -> ProblemRecord:
    item = _Object(value, where)
    path, path_hex = _located(item)
    return ProblemRecord(
        kind=item.string("kind", limit=64),
        message=item.string("message"),
        path=path,
        path_hex=path_hex,
        check=item.string("check", required=False, limit=16),
        package=_package(item),
        errno=item.integer("errno", required=False),
    )


def _cvss(item: _Object) -> float | None:
    value = item.value.get("cvss")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise ReportError(item.at("cvss"), "must be a CVSS base score from 0 to 10")
    return float(value)


def _vulnerability(value: object, where: str) -> VulnerabilityRecord:
    item = _Object(value, where)
    aliases = item.strings("aliases", limit=128) if "aliases" in item.value else []
    if len(aliases) > MAX_ALIASES:
        raise ReportError(item.at("aliases"), f"more than {MAX_ALIASES} aliases")
    package = item.object("package")
    assert package is not None
    source = item.object("source")
    assert source is not None
    return VulnerabilityRecord(
        advisory=item.string("id", limit=128),
        aliases=tuple(aliases),
        package=package.string("name", limit=NAME_LENGTH),
        version=package.string("version", limit=256),
        manager=package.string("manager", limit=16),
        source_package=package.string("source_name", required=False, limit=NAME_LENGTH),
        fixed_version=item.string("fixed_version", required=False, limit=256),
        severity=_choice(item, "severity", VulnerabilitySeverity, required=True),
        cvss=_cvss(item),
        summary=item.string("summary", required=False, limit=4096),
        source=source.string("name", limit=64),
        source_date=source.string("date", required=False, limit=64),
    )


def _vulnerabilities(top: _Object) -> tuple[VulnerabilityRecord, ...] | None:
    if top.value.get("vulnerabilities") is None:
        return None
    values = top.array("vulnerabilities")
    if len(values) > MAX_VULNERABILITIES:
        raise ReportError("vulnerabilities", f"more than {MAX_VULNERABILITIES} entries")
    return tuple(
        _vulnerability(value, f"vulnerabilities[{index}]") for index, value in enumerate(values)
    )


def _container(item: _Object) -> ContainerRecord:
    return ContainerRecord(
        name=item.name("name"),
        docker_id=item.name("docker_id", required=False),
        image=item.name("image", required=False),
        image_id=item.name("image_id", required=False),
    )


def _task(target: _Object) -> TaskRecord | None:
    task = target.object("task", required=False)
    if task is None:
        return None
    containers = task.array("containers") if "containers" in task.value else []
    if len(containers) > MAX_CONTAINERS:
        raise ReportError(task.at("containers"), f"more than {MAX_CONTAINERS} containers")
    return TaskRecord(
        arn=task.name("arn"),
        task_id=task.name("id"),
        family=task.name("family", required=False),
        revision=task.string("revision", required=False, limit=64),
        cluster=task.name("cluster", required=False),
        launch_type=task.string("launch_type", required=False, limit=64),
        availability_zone=task.string("availability_zone", required=False, limit=64),
        containers=tuple(
            _container(_Object(value, f"{task.at('containers')}[{index}]"))
            for index, value in enumerate(containers)
        ),
    )


def _image(target: _Object) -> ImageRecord | None:
    image = target.object("image", required=False)
    if image is None:
        return None
    tags = image.strings("tags", limit=NAME_LENGTH) if "tags" in image.value else []
    if len(tags) > MAX_TAGS:
        raise ReportError(image.at("tags"), f"more than {MAX_TAGS} tags")
    return ImageRecord(
        name=image.name("name", required=False),
        tags=tuple(tag for tag in tags if tag),
        config_id=image.name("id", required=False),
        digest=image.name("digest", required=False),
    )


def parse_report(document: object) -> ReportRecord:
    """The report in `document` (parsed JSON), or ReportError naming the first bad field."""
    top = _Object(document, "")
    check_values(document)
    schema = top.value.get("schema")
    if "schema" not in top.value:
        raise ReportError("schema", "required")
    if isinstance(schema, bool) or schema != SCHEMA:
        raise ReportError("schema", f"unsupported schema version (this console reads {SCHEMA})")
    scan_id = _scan_id(top)
    scanner = top.object("scanner")
    assert scanner is not None
    if scanner.string("name") != "scan-root":
        raise ReportError("scanner.name", "must be scan-root")
    target = top.object("target")
    assert target is not None
    kind = target.string("kind", limit=16)
    if kind not in TARGET_KINDS:
        raise ReportError("target.kind", f"must be one of {', '.join(sorted(TARGET_KINDS))}")
    container = target.object("container", required=False)
    managers = top.array("managers")
    for index, manager in enumerate(managers):
        _Object(manager, f"managers[{index}]")
    stats = top.object("stats")
    assert stats is not None
    return ReportRecord(
        scan_id=scan_id,
        scanner_version=scanner.string("version", limit=64),
        implementation=scanner.string("implementation", required=False, limit=64),
        target_kind=kind,
        root=target.string("root"),
        host=target.name("host"),
        launch_type=target.string("launch_type", required=False, limit=64),
        task=_task(target),
        container=None if container is None else _container(container),
        image=_image(target),
        checks=top.strings("checks", limit=16),
        managers=managers,
        findings=[
            _finding(value, f"findings[{index}]")
            for index, value in enumerate(top.array("findings"))
        ],
        suppressed=top.integer("suppressed"),
        problems=[
            _problem(value, f"problems[{index}]")
            for index, value in enumerate(top.array("problems"))
        ],
        notices=top.strings("notices"),
        complete=top.boolean("complete"),
        stats=stats.value,
        digest=_digest(document),
        vulnerabilities=_vulnerabilities(top),
    )


def _digest(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
