"""The read API's queries (SQLAlchemy Core): images, one image, hosts, tasks.

What the views show is decided here once: a container is *current* when it was reported
within the deployed window (`since` = now - `--deployed-window`); an image is deployed when a
current container runs it; its hosts are the hosts of its current containers (a Fargate task
is a host of its own, so they count once each); its compliance is its latest scan's counts,
kept on `scans` at ingest. No listing reads `findings`: only one image's details do, for
its latest scan.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Table,
    case,
    distinct,
    exists,
    false,
    func,
    or_,
    select,
    union,
)

from . import vulnerability_reads
from .filters import Filter, TermKind, like_escape
from .kinds import HostKind, Severity
from .models import NAME_LENGTH, Container, Finding, Host, Image, ImageRef, Scan, Task
from .params import Page

__all__ = [
    "MAX_DETAIL_FINDINGS",
    "MAX_DETAIL_ROWS",
    "MAX_LISTED_TAGS",
    "HostQuery",
    "HostSort",
    "ImageQuery",
    "ImageSort",
    "TaskQuery",
    "TaskSort",
    "host_page",
    "image_details",
    "image_page",
    "image_statements",
    "task_page",
]

# One image's details list at most this many findings, and this many tasks and hosts (the
# most recently seen first): a response stays small whatever the store holds.
MAX_DETAIL_FINDINGS = 5000
MAX_DETAIL_ROWS = 500
MAX_LISTED_TAGS = 100  # tags of an image in a listing (its details list up to MAX_DETAIL_ROWS)
SEVERITIES = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


images, refs, hosts, tasks = _table(Image), _table(ImageRef), _table(Host), _table(Task)
containers, scans, findings = _table(Container), _table(Scan), _table(Finding)


class ImageSort(enum.StrEnum):
    NAME = "name"
    LAST_SCANNED = "last_scanned"
    HOSTS = "hosts"
    FARGATE_TASKS = "fargate_tasks"
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class HostSort(enum.StrEnum):
    NAME = "name"
    LAST_SEEN = "last_seen"
    FIRST_SEEN = "first_seen"


class TaskSort(enum.StrEnum):
    TASK_ID = "task_id"
    FAMILY = "family"
    LAST_SEEN = "last_seen"
    FIRST_SEEN = "first_seen"


@dataclass(frozen=True, slots=True)
class ImageQuery:
    deployed: bool = False
    fargate: bool = False
    hosts: Filter = field(default_factory=Filter)
    search: Filter = field(default_factory=Filter)
    sort: ImageSort = ImageSort.LAST_SCANNED
    descending: bool = True
    page: Page = field(default_factory=Page)


@dataclass(frozen=True, slots=True)
class HostQuery:
    deployed: bool = False
    fargate: bool = False
    hosts: Filter = field(default_factory=Filter)
    sort: HostSort = HostSort.LAST_SEEN
    descending: bool = True
    page: Page = field(default_factory=Page)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    deployed: bool = False
    fargate: bool = False
    hosts: Filter = field(default_factory=Filter)
    search: Filter = field(default_factory=Filter)
    sort: TaskSort = TaskSort.LAST_SEEN
    descending: bool = True
    page: Page = field(default_factory=Page)


def _matches(column: Any, wanted: Filter) -> ColumnElement[bool]:
    """`column` (a `*_folded` one) selected by any term. Stored values are cut to NAME_LENGTH
    characters (models.folded): exact for a term shorter than that (params.expression refuses
    longer ones; a shorter one never equals a cut value, and a prefix reads only its start)."""
    conditions: list[ColumnElement[bool]] = []
    for term in wanted.terms:
        assert len(term.text) < NAME_LENGTH
        if term.kind is TermKind.EXACT:
            conditions.append(column == term.text)
        else:
            conditions.append(column.like(like_escape(term.text) + "%", escape="\\"))
    return or_(false(), *conditions)


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements all see one snapshot, so that a page and its total
    agree while reports arrive: PostgreSQL's REPEATABLE READ; SQLite's transaction (WAL)."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def _when(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite gives back naive datetimes of the UTC times it was given."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _order(column: Any, descending: bool) -> list[Any]:
    ordered = column.desc() if descending else column.asc()
    return [ordered.nulls_last()]


# --- images -------------------------------------------------------------------------------


def _running(
    image_id: Any, since: datetime, *, fargate: bool = False, count: bool = False
) -> Select[Any]:
    """Current containers running the image (on a Fargate task only, when asked): their
    hosts, or the count of those hosts."""
    running = containers.alias()
    column = func.count(distinct(running.c.host_id)) if count else running.c.host_id
    statement = select(column).where(running.c.image_id == image_id, running.c.last_seen >= since)
    if fargate:
        host = hosts.alias()
        statement = statement.join(host, host.c.id == running.c.host_id).where(
            host.c.kind == HostKind.FARGATE_TASK
        )
    return statement


def _in_tasks(since: datetime, match: Any) -> Select[Any]:
    """The images current containers run in tasks `match(task)` selects."""
    running, task = containers.alias(), tasks.alias()
    return (
        select(running.c.image_id)
        .join(task, task.c.id == running.c.task_id)
        .where(running.c.last_seen >= since, match(task))
    )


def _image_conditions(query: ImageQuery, since: datetime) -> list[ColumnElement[bool]]:
    # The filters select image ids by a UNION of the matches (each on a prefix index), not an
    # OR of correlated EXISTS: PostgreSQL cannot turn an OR of subqueries into a semi-join,
    # and would run them for every image.
    conditions: list[ColumnElement[bool]] = []
    if query.deployed:
        conditions.append(exists(_running(images.c.id, since)))
    if query.fargate:
        conditions.append(exists(_running(images.c.id, since, fargate=True)))
    if not query.search.empty:
        by_ref = select(refs.c.image_id).where(_matches(refs.c.ref_folded, query.search))
        by_task = _in_tasks(
            since,
            lambda task: or_(
                _matches(task.c.family_folded, query.search),
                _matches(task.c.task_id_folded, query.search),
            ),
        )
        conditions.append(images.c.id.in_(union(by_ref, by_task)))
    if not query.hosts.empty:
        running, host = containers.alias(), hosts.alias()
        by_host = (
            select(running.c.image_id)
            .join(host, host.c.id == running.c.host_id)
            .where(running.c.last_seen >= since, _matches(host.c.name_folded, query.hosts))
        )
        by_task = _in_tasks(since, lambda task: _matches(task.c.task_id_folded, query.hosts))
        conditions.append(images.c.id.in_(union(by_host, by_task)))
    return conditions


def _image_rows(since: datetime, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    host_count = _running(images.c.id, since, count=True).scalar_subquery().label("hosts")
    fargate_count = (
        _running(images.c.id, since, fargate=True, count=True)
        .scalar_subquery()
        .label("fargate_tasks")
    )
    return (
        select(
            images.c.id,
            images.c.name,
            images.c.digest,
            images.c.config_id,
            images.c.first_seen,
            images.c.last_seen,
            images.c.last_scanned,
            images.c.latest_scan_id,
            scans.c.critical,
            scans.c.high,
            scans.c.medium,
            scans.c.low,
            scans.c.checks,
            scans.c.vulnerabilities_matched,
            *(scans.c[f"vuln_{severity.value}"] for severity in vulnerability_reads.SEVERITIES),
            host_count,
            fargate_count,
        )
        .select_from(images.outerjoin(scans, scans.c.id == images.c.latest_scan_id))
        .where(*conditions)
    )


def _image_order(query: ImageQuery, rows: Select[Any]) -> list[Any]:
    columns: dict[ImageSort, Any] = {
        ImageSort.NAME: images.c.name,
        ImageSort.LAST_SCANNED: images.c.last_scanned,
        ImageSort.HOSTS: rows.selected_columns.hosts,
        ImageSort.FARGATE_TASKS: rows.selected_columns.fargate_tasks,
        ImageSort.CRITICAL: scans.c.critical,
        ImageSort.HIGH: scans.c.high,
        ImageSort.MEDIUM: scans.c.medium,
        ImageSort.LOW: scans.c.low,
    }
    # The id breaks ties, so that pages never overlap or skip a row.
    return [*_order(columns[query.sort], query.descending), images.c.id.asc()]


def _refs(
    connection: Connection, image_ids: list[int], *, tags: bool, most: int
) -> dict[int, list[str]]:
    """Each image's tags (or names), the first `most` in order: an image seen under many tags
    over the months keeps a page small."""
    found: dict[int, list[str]] = {image_id: [] for image_id in image_ids}
    if image_ids:
        rank = func.row_number().over(partition_by=refs.c.image_id, order_by=refs.c.ref)
        ranked = (
            select(refs.c.image_id, refs.c.ref, rank.label("rank"))
            .where(refs.c.image_id.in_(image_ids), refs.c.is_tag == tags)
            .subquery()
        )
        for image_id, ref in connection.execute(
            select(ranked.c.image_id, ranked.c.ref)
            .where(ranked.c.rank <= most)
            .order_by(ranked.c.image_id, ranked.c.ref)
        ):
            found[image_id].append(ref)
    return found


def _image_json(row: Any, tags: list[str]) -> dict[str, Any]:
    scanned = row.latest_scan_id is not None and row.critical is not None
    return {
        "id": row.id,
        "name": row.name,
        "tags": tags,
        "digest": row.digest,
        "hosts": row.hosts,
        "fargate_tasks": row.fargate_tasks,
        # Never scanned (seen only as another container of a task): unknown, not clean.
        "compliance": {severity.value: getattr(row, severity.value) for severity in SEVERITIES}
        if scanned
        else None,
        "checks": list(row.checks) if scanned else None,
        "vulnerabilities": vulnerability_reads.counts(row),
        "last_scanned": _when(row.last_scanned),
    }


def image_page(engine: Engine, query: ImageQuery, since: datetime) -> dict[str, Any]:
    """`{"images": [...], "total": N}`: one page of the images the query selects."""
    page, total_query = image_statements(query, since)
    with _reading(engine) as connection:
        rows = connection.execute(page).all()
        total = connection.execute(total_query).scalar_one()
        tags = _refs(connection, [row.id for row in rows], tags=True, most=MAX_LISTED_TAGS)
    return {"images": [_image_json(row, tags[row.id]) for row in rows], "total": total}


def image_statements(query: ImageQuery, since: datetime) -> tuple[Select[Any], Select[Any]]:
    """The queries of a page of images and of their total (the tests EXPLAIN them)."""
    conditions = _image_conditions(query, since)
    rows = _image_rows(since, conditions)
    page = rows.order_by(*_image_order(query, rows)).limit(query.page.size)
    page = page.offset(query.page.offset)
    return page, select(func.count()).select_from(images).where(*conditions)


def _finding_json(row: Any) -> dict[str, Any]:
    package = (
        {"name": row.package_name, "version": row.package_version, "manager": row.package_manager}
        if row.package_name is not None
        else None
    )
    return {
        "title": row.title,
        "severity": row.severity.value,
        "kind": row.kind,
        "path": row.path,
        "path_hex": row.path_hex,
        "package": package,
        "rule": row.rule,
        "effect": row.effect.value if row.effect is not None else None,
        "baselined": row.baselined,
        "detail": row.detail,
    }


def _latest_findings(connection: Connection, scan_id: int | None) -> dict[str, Any]:
    """The findings of one scan grouped by check, at most MAX_DETAIL_FINDINGS of them."""
    if scan_id is None:
        return {"findings": {}, "findings_total": 0, "findings_truncated": False}
    severity_rank = case(
        {severity.value: rank for rank, severity in enumerate(SEVERITIES)},
        value=findings.c.severity,
    )
    rows = connection.execute(
        select(findings)
        .where(findings.c.scan_id == scan_id)
        .order_by(findings.c.check, severity_rank, findings.c.path, findings.c.id)
        .limit(MAX_DETAIL_FINDINGS)
    ).all()
    total = connection.execute(
        select(func.count()).select_from(findings).where(findings.c.scan_id == scan_id)
    ).scalar_one()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row.check, []).append(_finding_json(row))
    return {"findings": grouped, "findings_total": total, "findings_truncated": total > len(rows)}


def _latest_scan(connection: Connection, scan_id: int | None) -> dict[str, Any] | None:
    if scan_id is None:
        return None
    host, task, container = hosts.alias(), tasks.alias(), containers.alias()
    row = connection.execute(
        select(
            scans.c.scan_id,
            scans.c.received_at,
            scans.c.complete,
            scans.c.problem_count,
            scans.c.scanner_version,
            host.c.name.label("host"),
            task.c.task_id.label("task"),
            container.c.name.label("container"),
        )
        .select_from(
            scans.join(host, host.c.id == scans.c.host_id)
            .outerjoin(task, task.c.id == scans.c.task_id)
            .outerjoin(container, container.c.id == scans.c.container_id)
        )
        .where(scans.c.id == scan_id)
    ).first()
    if row is None:
        return None
    return {
        "scan_id": str(row.scan_id),
        "received_at": _when(row.received_at),
        "complete": row.complete,
        "problems": row.problem_count,
        "scanner_version": row.scanner_version,
        "host": row.host,
        "task": row.task,
        "container": row.container,
    }


def _image_tasks(connection: Connection, image_id: int, since: datetime) -> list[dict[str, Any]]:
    """The Fargate tasks that ran the image, the most recently seen first."""
    host, task = hosts.alias(), tasks.alias()
    rows = connection.execute(
        select(
            task.c.task_id,
            task.c.arn,
            task.c.family,
            task.c.revision,
            task.c.cluster,
            containers.c.name.label("container"),
            containers.c.last_seen,
        )
        .select_from(
            containers.join(task, task.c.id == containers.c.task_id).join(
                host, host.c.id == containers.c.host_id
            )
        )
        .where(containers.c.image_id == image_id, host.c.kind == HostKind.FARGATE_TASK)
        .order_by(containers.c.last_seen.desc(), task.c.task_id, containers.c.name)
        .limit(MAX_DETAIL_ROWS)
    ).all()
    return [
        {
            "task_id": row.task_id,
            "arn": row.arn,
            "family_revision": f"{row.family or ''}:{row.revision or ''}",
            "family": row.family,
            "revision": row.revision,
            "cluster": row.cluster,
            "container": row.container,
            "last_seen": _when(row.last_seen),
            "deployed": _aware(row.last_seen) >= since,
        }
        for row in rows
    ]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _image_hosts(connection: Connection, image_id: int, since: datetime) -> list[dict[str, Any]]:
    """The hosts (machines and Fargate tasks) that ran the image, the most recent first."""
    seen = func.max(containers.c.last_seen).label("last_seen")
    rows = connection.execute(
        select(hosts.c.id, hosts.c.name, hosts.c.kind, seen)
        .select_from(containers.join(hosts, hosts.c.id == containers.c.host_id))
        .where(containers.c.image_id == image_id)
        .group_by(hosts.c.id, hosts.c.name, hosts.c.kind)
        .order_by(seen.desc(), hosts.c.name)
        .limit(MAX_DETAIL_ROWS)
    ).all()
    return [
        {
            "id": row.id,
            "name": row.name,
            "kind": row.kind.value,
            "last_seen": _when(row.last_seen),
            "deployed": _aware(row.last_seen) >= since,
        }
        for row in rows
    ]


def image_details(engine: Engine, image_id: int, since: datetime) -> dict[str, Any] | None:
    """One image: its row as the listing shows it, names, latest scan and its findings grouped
    by check, Fargate tasks and hosts; None when there is no such image."""
    with _reading(engine) as connection:
        row = connection.execute(_image_rows(since, [images.c.id == image_id])).first()
        if row is None:
            return None
        tags = _refs(connection, [image_id], tags=True, most=MAX_DETAIL_ROWS)[image_id]
        image = _image_json(row, tags)
        image.update(
            names=_refs(connection, [image_id], tags=False, most=MAX_DETAIL_ROWS)[image_id],
            config_id=row.config_id,
            first_seen=_when(row.first_seen),
            last_seen=_when(row.last_seen),
            deployed=row.hosts > 0,
        )
        return {
            "image": image,
            "latest_scan": _latest_scan(connection, row.latest_scan_id),
            **_latest_findings(connection, row.latest_scan_id),
            **vulnerability_reads.latest_vulnerabilities(
                connection, row.latest_scan_id, bool(row.vulnerabilities_matched)
            ),
            "fargate_tasks": _image_tasks(connection, image_id, since),
            "hosts": _image_hosts(connection, image_id, since),
        }


# --- hosts --------------------------------------------------------------------------------


def _host_conditions(query: HostQuery, since: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.deployed:
        conditions.append(hosts.c.last_seen >= since)
    if query.fargate:
        conditions.append(hosts.c.kind == HostKind.FARGATE_TASK)
    if not query.hosts.empty:
        task = tasks.alias()
        by_task = exists(
            select(task.c.id).where(
                task.c.host_id == hosts.c.id, _matches(task.c.task_id_folded, query.hosts)
            )
        )
        conditions.append(or_(_matches(hosts.c.name_folded, query.hosts), by_task))
    return conditions


def _host_counts(
    connection: Connection, host_ids: list[int], since: datetime
) -> dict[int, dict[str, Any]]:
    """Per host: its current containers, the images they run, and the sum of their latest
    scans' counts (the latest scan per host and container is what counts)."""
    found: dict[int, dict[str, Any]] = {}
    if not host_ids:
        return found
    rows = connection.execute(
        select(
            containers.c.host_id,
            func.count().label("containers"),
            func.count(distinct(containers.c.image_id)).label("images"),
            *(func.sum(scans.c[severity.value]).label(severity.value) for severity in SEVERITIES),
            func.count(scans.c.id).label("scanned"),
        )
        .select_from(containers.outerjoin(scans, scans.c.id == containers.c.latest_scan_id))
        .where(containers.c.host_id.in_(host_ids), containers.c.last_seen >= since)
        .group_by(containers.c.host_id)
    )
    for row in rows:
        found[row.host_id] = {
            "containers": row.containers,
            "images": row.images,
            "compliance": {s.value: int(getattr(row, s.value) or 0) for s in SEVERITIES}
            if row.scanned
            else None,
        }
    return found


def host_page(engine: Engine, query: HostQuery, since: datetime) -> dict[str, Any]:
    """`{"hosts": [...], "total": N}`: machines and Fargate tasks (named by their task id)."""
    conditions = _host_conditions(query, since)
    column = {
        HostSort.NAME: hosts.c.name,
        HostSort.LAST_SEEN: hosts.c.last_seen,
        HostSort.FIRST_SEEN: hosts.c.first_seen,
    }[query.sort]
    with _reading(engine) as connection:
        rows = connection.execute(
            select(hosts)
            .where(*conditions)
            .order_by(*_order(column, query.descending), hosts.c.id)
            .limit(query.page.size)
            .offset(query.page.offset)
        ).all()
        total = connection.execute(
            select(func.count()).select_from(hosts).where(*conditions)
        ).scalar_one()
        counts = _host_counts(connection, [row.id for row in rows], since)
    empty = {"containers": 0, "images": 0, "compliance": None}
    return {
        "hosts": [
            {
                "id": row.id,
                "name": row.name,
                "kind": row.kind.value,
                "first_seen": _when(row.first_seen),
                "last_seen": _when(row.last_seen),
                "deployed": _aware(row.last_seen) >= since,
                **counts.get(row.id, empty),
            }
            for row in rows
        ],
        "total": total,
    }


# --- tasks --------------------------------------------------------------------------------


def _task_conditions(query: TaskQuery, since: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.deployed:
        conditions.append(tasks.c.last_seen >= since)
    if query.fargate:
        conditions.append(hosts.c.kind == HostKind.FARGATE_TASK)
    if not query.search.empty:
        conditions.append(
            or_(
                _matches(tasks.c.family_folded, query.search),
                _matches(tasks.c.task_id_folded, query.search),
            )
        )
    if not query.hosts.empty:
        conditions.append(
            or_(
                _matches(hosts.c.name_folded, query.hosts),
                _matches(tasks.c.task_id_folded, query.hosts),
            )
        )
    return conditions


def _task_containers(connection: Connection, task_ids: list[int]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        for row in connection.execute(
            select(
                containers.c.task_id,
                containers.c.name,
                containers.c.image_id,
                images.c.name.label("image"),
                containers.c.last_seen,
            )
            .select_from(containers.outerjoin(images, images.c.id == containers.c.image_id))
            .where(containers.c.task_id.in_(task_ids))
            .order_by(containers.c.task_id, containers.c.name, containers.c.id)
        ):
            found[row.task_id].append(
                {
                    "name": row.name,
                    "image_id": row.image_id,
                    "image": row.image,
                    "last_seen": _when(row.last_seen),
                }
            )
    return found


def task_page(engine: Engine, query: TaskQuery, since: datetime) -> dict[str, Any]:
    """`{"tasks": [...], "total": N}`: ECS tasks, Fargate and EC2 launch type."""
    conditions = _task_conditions(query, since)
    column = {
        TaskSort.TASK_ID: tasks.c.task_id,
        TaskSort.FAMILY: tasks.c.family,
        TaskSort.LAST_SEEN: tasks.c.last_seen,
        TaskSort.FIRST_SEEN: tasks.c.first_seen,
    }[query.sort]
    joined = tasks.join(hosts, hosts.c.id == tasks.c.host_id)
    with _reading(engine) as connection:
        rows = connection.execute(
            select(
                tasks,
                hosts.c.name.label("host_name"),
                hosts.c.kind.label("host_kind"),
            )
            .select_from(joined)
            .where(*conditions)
            .order_by(*_order(column, query.descending), tasks.c.id)
            .limit(query.page.size)
            .offset(query.page.offset)
        ).all()
        total = connection.execute(
            select(func.count()).select_from(joined).where(*conditions)
        ).scalar_one()
        members = _task_containers(connection, [row.id for row in rows])
    return {
        "tasks": [
            {
                "id": row.id,
                "task_id": row.task_id,
                "arn": row.arn,
                "family_revision": f"{row.family or ''}:{row.revision or ''}",
                "family": row.family,
                "revision": row.revision,
                "cluster": row.cluster,
                "launch_type": row.launch_type,
                "availability_zone": row.availability_zone,
                "host": {"id": row.host_id, "name": row.host_name, "kind": row.host_kind.value},
                "first_seen": _when(row.first_seen),
                "last_seen": _when(row.last_seen),
                "deployed": _aware(row.last_seen) >= since,
                "containers": members[row.id],
            }
            for row in rows
        ],
        "total": total,
    }
