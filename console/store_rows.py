"""What one report writes to the store, worked out once for both engines' writers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .kinds import HostKind, Severity, VulnerabilitySeverity
from .models import folded
from .report_schema import (
    ContainerRecord,
    FindingRecord,
    ImageRecord,
    ProblemRecord,
    ReportRecord,
    VulnerabilityRecord,
)

__all__ = ["Rows", "rows_of"]

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of one report, as plain values. Images and containers are sorted by key: every
    writer locks rows in that order, so that concurrent ingests cannot deadlock."""

    scan_id: uuid.UUID
    images: list[Row]  # key, digest, config_id, name
    refs: list[Row]  # image_key, is_tag, ref, ref_folded
    host: Row  # name, name_folded, kind
    task: Row | None  # arn, task_id, task_id_folded, cluster, family, family_folded, ...
    containers: list[Row]  # key, name, image_key
    image_key: str | None  # the image scanned (of an image scan, or of the container scanned)
    container_key: str | None  # the container scanned
    scan: Row  # the scans row's own columns: no ids, no received_at, no token
    findings: list[Row]
    problems: list[Row]
    vulnerabilities: list[Row] | None  # None: the scan matched no advisories (unknown)


def _container_image(container: ContainerRecord) -> ImageRecord | None:
    image = ImageRecord(name=container.image, tags=(), config_id=container.image_id, digest=None)
    return image if image.key is not None else None


def _images(report: ReportRecord) -> tuple[ImageRecord | None, list[ImageRecord]]:
    """The scanned image (of an image scan, or of the container scanned) and every image the
    report names: the task's other containers run theirs."""
    containers = list(report.task.containers) if report.task is not None else []
    if report.container is not None:
        containers.append(report.container)
    found = [_container_image(container) for container in containers]
    images = [image for image in found if image is not None]
    scanned = report.image
    if scanned is None and report.container is not None:
        scanned = _container_image(report.container)
    if scanned is not None and scanned.key is not None:
        images.append(scanned)
    return (scanned if scanned is not None and scanned.key is not None else None), images


def _image_rows(images: list[ImageRecord]) -> tuple[list[Row], list[Row]]:
    rows: dict[str, Row] = {}
    for image in sorted(images, key=lambda record: record.key or ""):
        key = image.key
        assert key is not None
        # The first record of a key decides its columns (as one upsert per key did).
        rows.setdefault(
            key,
            {"key": key, "digest": image.digest, "config_id": image.config_id, "name": image.name},
        )
    refs = {
        (image.key, is_tag, ref)
        for image in images
        if image.key is not None
        for is_tag, ref in [(False, image.name), *((True, tag) for tag in image.tags)]
        if ref
    }
    return list(rows.values()), [
        {"image_key": key, "is_tag": is_tag, "ref": ref, "ref_folded": folded(ref)}
        for key, is_tag, ref in sorted(refs)
    ]


def _host(report: ReportRecord) -> Row:
    # A Fargate task is a host named by its task id; an EC2 task's host is the instance.
    fargate = report.fargate and report.task is not None
    name = report.task.task_id if fargate and report.task is not None else report.host
    kind = HostKind.FARGATE_TASK if fargate else HostKind.HOST
    return {"name": name, "name_folded": folded(name), "kind": kind.value}


def _task(report: ReportRecord) -> Row | None:
    task = report.task
    if task is None:
        return None
    return {
        "arn": task.arn,
        "task_id": task.task_id,
        "task_id_folded": folded(task.task_id),
        "cluster": task.cluster,
        "family": task.family,
        "family_folded": folded(task.family) if task.family else None,
        "revision": task.revision,
        "launch_type": task.launch_type or report.launch_type,
        "availability_zone": task.availability_zone,
    }


def _containers(report: ReportRecord) -> list[Row]:
    containers = {
        container.key: container
        for container in (report.task.containers if report.task is not None else ())
    }
    if report.container is not None:
        containers[report.container.key] = report.container
    rows = []
    for key, container in sorted(containers.items()):
        image = _container_image(container)
        rows.append({"key": key, "name": container.name, "image_key": image.key if image else None})
    return rows


def _counts(report: ReportRecord) -> dict[str, int]:
    counts = dict.fromkeys(Severity, 0)
    for finding in report.findings:
        counts[finding.severity] += 1
    return {severity.value: count for severity, count in counts.items()}


def _vulnerability_counts(report: ReportRecord) -> dict[str, Any]:
    """The scans row's vulnerability columns: matched or not, and the counts by severity."""
    counts = dict.fromkeys(VulnerabilitySeverity, 0)
    for vulnerability in report.vulnerabilities or ():
        counts[vulnerability.severity] += 1
    return {
        "vulnerabilities_matched": report.vulnerabilities is not None,
        **{f"vuln_{severity.value}": count for severity, count in counts.items()},
    }


def _vulnerability(record: VulnerabilityRecord) -> Row:
    return {
        "advisory": record.advisory,
        "aliases": list(record.aliases),
        "package_name": record.package,
        "package_version": record.version,
        "package_manager": record.manager,
        "source_package": record.source_package,
        "fixed_version": record.fixed_version,
        "severity": record.severity.value,
        "cvss": record.cvss,
        "summary": record.summary,
        "source": record.source,
        "source_date": record.source_date,
    }


def _package(record: FindingRecord | ProblemRecord) -> Row:
    package = record.package
    return {
        "package_name": package.name if package else None,
        "package_version": package.version if package else None,
        "package_manager": package.manager if package else None,
    }


def _finding(finding: FindingRecord) -> Row:
    return {
        "check": finding.check,
        "title": finding.title,
        "severity": finding.severity.value,
        "kind": finding.kind,
        "path": finding.path,
        "path_hex": finding.path_hex,
        "rule": finding.rule,
        "effect": finding.effect.value if finding.effect is not None else None,
        "baselined": finding.baselined,
        "detail": finding.detail,
        **_package(finding),
    }


def _problem(problem: ProblemRecord) -> Row:
    return {
        "kind": problem.kind,
        "message": problem.message,
        "path": problem.path,
        "path_hex": problem.path_hex,
        "check": problem.check,
        "errno": problem.errno,
        **_package(problem),
    }


def rows_of(report: ReportRecord) -> Rows:
    scanned, images = _images(report)
    image_rows, refs = _image_rows(images)
    return Rows(
        scan_id=report.scan_id,
        images=image_rows,
        refs=refs,
        host=_host(report),
        task=_task(report),
        containers=_containers(report),
        image_key=scanned.key if scanned is not None else None,
        container_key=report.container.key if report.container is not None else None,
        scan={
            "target_kind": report.target_kind,
            "root": report.root,
            "scanner_version": report.scanner_version,
            "implementation": report.implementation,
            "complete": report.complete,
            "suppressed": report.suppressed,
            "problem_count": len(report.problems),
            "checks": report.checks,
            "managers": report.managers,
            "notices": report.notices,
            "stats": report.stats,
            "report_sha256": report.digest,
            **_counts(report),
            **_vulnerability_counts(report),
        },
        findings=[_finding(finding) for finding in report.findings],
        problems=[_problem(problem) for problem in report.problems],
        vulnerabilities=(
            None
            if report.vulnerabilities is None
            else [_vulnerability(record) for record in report.vulnerabilities]
        ),
    )
