"""A readable plain-text report, grouped by check; coloured only on a terminal."""

from __future__ import annotations

from itertools import groupby

from ..report import Effect, Finding, Report, Severity, display_path
from .escape import terminal_safe as _t

_COLORS = {
    Severity.CRITICAL: "\033[1;31m",
    Severity.HIGH: "\033[31m",
    Severity.MEDIUM: "\033[33m",
    Severity.LOW: "\033[36m",
}
_RESET = "\033[0m"
_BLOCK = "\033[1;7;31m"  # reverse video: a block stands out from the severity colours


def _severity(finding: Finding, color: bool) -> str:
    text = f"{finding.severity!s:<8}"
    return f"{_COLORS[finding.severity]}{text}{_RESET}" if color else text


def _decision(finding: Finding, color: bool) -> str:
    """What decided the finding: the policy rule, a block effect, a baseline entry."""
    parts = []
    if finding.rule is not None:
        parts.append(f"rule: {_t(finding.rule)}")
    if finding.effect == Effect.BLOCK:
        parts.append(f"{_BLOCK}BLOCK{_RESET}" if color else "BLOCK")
    if finding.baselined:
        parts.append("baselined")
    return f"  [{'; '.join(parts)}]" if parts else ""


def render(report: Report, color: bool = False) -> str:
    # Every string that came from the target (paths, names, versions, messages) goes through
    # _t: none may reach the terminal as a control sequence or forge a line.
    lines = [f"scan-root {report.scanner_version} ({report.implementation}) — {_t(report.root)}"]
    lines.extend(_identity(report))
    for summary in report.managers:
        extra = f", {summary.filtered} excluded by path filters" if summary.filtered else ""
        lines.append(
            f"  {summary.manager}: {summary.packages} packages, {summary.files} files{extra}"
        )
    if not report.managers:
        lines.append("  no package manager database found")
    ordered = sorted(report.findings, key=lambda f: (f.check, -f.severity, f.path))
    for check, group in groupby(ordered, key=lambda f: f.check):
        findings = list(group)
        lines.append("")
        lines.append(f"[{_t(check)}] {_t(findings[0].title)}: {len(findings)} finding(s)")
        for finding in findings:
            package = (
                _t(
                    f"  ({finding.package.manager} {finding.package.name} "
                    f"{finding.package.version})"
                )
                if finding.package
                else ""
            )
            detail = f"  {_t(finding.detail)}" if finding.detail else ""
            lines.append(
                f"  {_severity(finding, color)} {_t(finding.kind):<20} "
                f"{_t(display_path(finding.path)) if finding.path else ''}{package}{detail}"
                f"{_decision(finding, color)}"
            )
    lines.extend(_vulnerabilities(report, color))
    if report.problems:
        lines.append("")
        lines.append(f"Problems: {len(report.problems)}")
        for problem in report.problems:
            where = f" {_t(display_path(problem.path))}" if problem.path is not None else ""
            lines.append(f"  {_t(str(problem.kind))}{where}: {_t(problem.message)}")
    if report.notices:
        lines.append("")
        lines.append(f"Notices: {len(report.notices)}")
        lines.extend(f"  {_t(notice)}" for notice in report.notices)
    stats = report.stats
    lines.append("")
    verdict = "no findings" if not report.findings else f"{len(report.findings)} finding(s)"
    baselined = sum(1 for finding in report.findings if finding.baselined)
    aside = [f"{baselined} baselined"] if baselined else []
    if report.suppressed:
        aside.append(f"{report.suppressed} ignored by the policy")
    if aside:
        verdict += f" ({'; '.join(aside)})"
    blocked = sum(1 for finding in report.findings if finding.effect == Effect.BLOCK)
    if blocked:
        verdict += f" — BLOCKED by {blocked}"
    if not report.complete:
        verdict += " — INCOMPLETE: some items could not be verified"
    lines.append(
        f"{verdict}; {stats.files_walked} files walked, {stats.files_checked} package files "
        f"checked, {stats.files_hashed} read"
        f" ({stats.bytes_hashed / 1e6:.1f} MB) in {stats.seconds:.2f} s"
    )
    return "\n".join(lines) + "\n"


def _vulnerabilities(report: Report, color: bool) -> list[str]:
    """One line per advisory and package, worst first; nothing when no database was asked."""
    if report.vulnerabilities is None:
        return []
    lines = ["", f"Vulnerabilities: {len(report.vulnerabilities)}"]
    for entry in report.vulnerabilities:
        text = "unknown" if entry.severity is None else str(entry.severity)
        shown = f"{text:<8}"
        if color and entry.severity is not None:
            shown = f"{_COLORS[entry.severity]}{shown}{_RESET}"
        fix = f"fixed in {entry.fixed_version}" if entry.fixed_version else "no fix released"
        cvss = f" cvss {entry.cvss:.1f}" if entry.cvss is not None else ""
        lines.append(
            f"  {shown} {_t(entry.id):<20} {_t(entry.source_name)} "
            f"({_t(entry.package.manager)} {_t(entry.package.name)} "
            f"{_t(entry.package.version)}): {_t(fix)}{cvss}"
        )
    return lines


def _identity(report: Report) -> list[str]:
    """Who was scanned, where the report knows: the host (in a task, the task id), the task's
    family and revision, the container, the image."""
    details = report.target_details
    parts = []
    if isinstance(details.get("host"), str):
        parts.append(f"host {details['host']}")
    task = details.get("task")
    if isinstance(task, dict) and task.get("family"):
        revision = f":{task['revision']}" if task.get("revision") else ""
        launch = f" ({task['launch_type']})" if task.get("launch_type") else ""
        parts.append(f"task {task['family']}{revision}{launch}")
    container = details.get("container")
    if isinstance(container, dict) and container.get("name"):
        parts.append(f"container {container['name']}")
    image = details.get("image")
    if isinstance(image, dict) and (image.get("name") or image.get("id")):
        parts.append(f"image {image.get('name') or image.get('id')}")
    return [f"  {_t(', '.join(parts))}"] if parts else []
