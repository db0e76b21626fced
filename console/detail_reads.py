"""Reads the web views need beyond the read API's: one host, one task, a scan's problems.

Same rules as console/reads.py: a container is current when reported since `since`; what a
container shows is its latest scan (kept on `containers.latest_scan_id` at ingest); every list
is bounded (reads.MAX_DETAIL_ROWS, reads.MAX_DETAIL_FINDINGS).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, exists, select

from .kinds import Severity
from .models import Container, Finding, Host, Image, Problem, Scan, Task
from .reads import MAX_DETAIL_FINDINGS, MAX_DETAIL_ROWS

__all__ = ["failed_checks", "host_details", "image_problems", "store_is_empty", "task_details"]

SEVERITIES = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


images, hosts, tasks = _table(Image), _table(Host), _table(Task)
containers, scans, findings, problems = (
    _table(Container),
    _table(Scan),
    _table(Finding),
    _table(Problem),
)


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes of the UTC times it was given."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def store_is_empty(engine: Engine) -> bool:
    """Whether no report was ever stored (the Deployed page then says so, not "no match")."""
    with engine.connect() as connection:
        return not connection.execute(select(exists(select(scans.c.id)))).scalar_one()


def failed_checks(engine: Engine, image_ids: list[int]) -> dict[int, list[str]]:
    """Per image, the checks with a finding in its latest scan (`scans.checks` holds the checks
    that ran, failed or not). Reads `findings` by `ix_findings_scan_id`, for these images only."""
    found: dict[int, list[str]] = {image_id: [] for image_id in image_ids}
    if not image_ids:
        return found
    with engine.connect() as connection:
        rows = connection.execute(
            select(images.c.id, findings.c.check)
            .join(findings, findings.c.scan_id == images.c.latest_scan_id)
            .where(images.c.id.in_(image_ids))
            .group_by(images.c.id, findings.c.check)
            .order_by(images.c.id, findings.c.check)
        )
        for image_id, check in rows:
            found[image_id].append(check)
    return found


def image_problems(engine: Engine, image_id: int) -> list[dict[str, Any]]:
    """The problems ("could not verify") of the image's latest scan, at most MAX_DETAIL_ROWS."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(problems)
            .join(images, images.c.latest_scan_id == problems.c.scan_id)
            .where(images.c.id == image_id)
            .order_by(problems.c.id)
            .limit(MAX_DETAIL_ROWS)
        ).all()
    return [_problem(row) for row in rows]


def _problem(row: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "message": row.message,
        "path": row.path,
        "check": row.check,
        "package": row.package_name,
        "version": row.package_version,
    }


def _members(
    connection: Connection, where: ColumnElement[bool], since: datetime
) -> list[dict[str, Any]]:
    """Containers (the most recently seen first) with their image, task and latest counts."""
    task = tasks.alias()
    rows = connection.execute(
        select(
            containers.c.id,
            containers.c.name,
            containers.c.image_id,
            containers.c.last_seen,
            containers.c.latest_scan_id,
            images.c.name.label("image"),
            task.c.id.label("task_row"),
            task.c.task_id,
            *(scans.c[severity.value] for severity in SEVERITIES),
        )
        .select_from(
            containers.outerjoin(images, images.c.id == containers.c.image_id)
            .outerjoin(task, task.c.id == containers.c.task_id)
            .outerjoin(scans, scans.c.id == containers.c.latest_scan_id)
        )
        .where(where)
        .order_by(containers.c.last_seen.desc(), containers.c.name, containers.c.id)
        .limit(MAX_DETAIL_ROWS)
    ).all()
    failed = _failed_by_scan(connection, [row.latest_scan_id for row in rows])
    return [
        {
            "name": row.name,
            "image_id": row.image_id,
            "image": row.image,
            "task_row": row.task_row,
            "task_id": row.task_id,
            "last_seen": _aware(row.last_seen),
            "deployed": _aware(row.last_seen) >= since,
            "scan_id": row.latest_scan_id,
            "compliance": {s.value: getattr(row, s.value) for s in SEVERITIES}
            if row.critical is not None
            else None,
            "checks": failed.get(row.latest_scan_id, []),
        }
        for row in rows
    ]


def _failed_by_scan(connection: Connection, scan_ids: list[int | None]) -> dict[int, list[str]]:
    """Per scan, the checks with a finding (`scans.checks` holds those that ran)."""
    wanted = sorted({scan_id for scan_id in scan_ids if scan_id is not None})
    found: dict[int, list[str]] = {}
    if wanted:
        for scan_id, check in connection.execute(
            select(findings.c.scan_id, findings.c.check)
            .where(findings.c.scan_id.in_(wanted))
            .group_by(findings.c.scan_id, findings.c.check)
            .order_by(findings.c.scan_id, findings.c.check)
        ):
            found.setdefault(scan_id, []).append(check)
    return found


def _findings(connection: Connection, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The findings of the members' latest scans grouped by check, each with its container."""
    by_scan = {m["scan_id"]: m["name"] for m in members if m["scan_id"] is not None}
    if not by_scan:
        return {"findings": {}, "findings_truncated": False}
    rows = connection.execute(
        select(findings)
        .where(findings.c.scan_id.in_(list(by_scan)))
        .order_by(findings.c.check, findings.c.path, findings.c.id)
        .limit(MAX_DETAIL_FINDINGS + 1)
    ).all()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows[:MAX_DETAIL_FINDINGS]:
        grouped.setdefault(row.check, []).append(
            {
                "container": by_scan[row.scan_id],
                "title": row.title,
                "severity": row.severity.value,
                "kind": row.kind,
                "path": row.path,
                "package": {"name": row.package_name, "version": row.package_version}
                if row.package_name is not None
                else None,
                "rule": row.rule,
                "effect": row.effect.value if row.effect is not None else None,
                "baselined": row.baselined,
            }
        )
    return {"findings": grouped, "findings_truncated": len(rows) > MAX_DETAIL_FINDINGS}


def host_details(engine: Engine, host_id: int, since: datetime) -> dict[str, Any] | None:
    """One host (a machine or a Fargate task): its containers, their images and the findings
    of their latest scans; None when there is no such host."""
    with engine.connect() as connection, connection.begin():
        row = connection.execute(select(hosts).where(hosts.c.id == host_id)).first()
        if row is None:
            return None
        members = _members(connection, containers.c.host_id == host_id, since)
        task_rows = connection.execute(
            select(tasks.c.id, tasks.c.task_id, tasks.c.family, tasks.c.revision)
            .where(tasks.c.host_id == host_id)
            .order_by(tasks.c.last_seen.desc(), tasks.c.id)
            .limit(MAX_DETAIL_ROWS)
        ).all()
        return {
            "host": {
                "id": row.id,
                "name": row.name,
                "kind": row.kind.value,
                "first_seen": _aware(row.first_seen),
                "last_seen": _aware(row.last_seen),
                "deployed": _aware(row.last_seen) >= since,
            },
            "tasks": [
                {
                    "id": t.id,
                    "task_id": t.task_id,
                    "family_revision": f"{t.family or ''}:{t.revision or ''}",
                }
                for t in task_rows
            ],
            "containers": members,
            **_findings(connection, members),
        }


def task_details(engine: Engine, task_row: int, since: datetime) -> dict[str, Any] | None:
    """One ECS task: its metadata, host, containers and their findings; None when unknown."""
    with engine.connect() as connection, connection.begin():
        row = connection.execute(
            select(tasks, hosts.c.name.label("host_name"), hosts.c.kind.label("host_kind"))
            .join(hosts, hosts.c.id == tasks.c.host_id)
            .where(tasks.c.id == task_row)
        ).first()
        if row is None:
            return None
        members = _members(connection, containers.c.task_id == task_row, since)
        return {
            "task": {
                "id": row.id,
                "task_id": row.task_id,
                "arn": row.arn,
                "family_revision": f"{row.family or ''}:{row.revision or ''}",
                "cluster": row.cluster,
                "launch_type": row.launch_type,
                "availability_zone": row.availability_zone,
                "host": {"id": row.host_id, "name": row.host_name, "kind": row.host_kind.value},
                "first_seen": _aware(row.first_seen),
                "last_seen": _aware(row.last_seen),
                "deployed": _aware(row.last_seen) >= since,
            },
            "containers": members,
            **_findings(connection, members),
        }
