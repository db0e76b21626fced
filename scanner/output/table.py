"""A readable plain-text report, grouped by check; coloured only on a terminal."""

from __future__ import annotations

from itertools import groupby

from ..report import Finding, Report, Severity, display_path

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
        parts.append(f"rule: {finding.rule}")
    if finding.effect == "block":
        parts.append(f"{_BLOCK}BLOCK{_RESET}" if color else "BLOCK")
    if finding.baselined:
        parts.append("baselined")
    return f"  [{'; '.join(parts)}]" if parts else ""


def render(report: Report, color: bool = False) -> str:
    lines = [f"scan-root {report.scanner_version} ({report.implementation}) — {report.root}"]
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
        lines.append(f"[{check}] {findings[0].title}: {len(findings)} finding(s)")
        for finding in findings:
            package = (
                f"  ({finding.package.manager} {finding.package.name} {finding.package.version})"
                if finding.package
                else ""
            )
            detail = f"  {finding.detail}" if finding.detail else ""
            lines.append(
                f"  {_severity(finding, color)} {finding.kind:<20} "
                f"{display_path(finding.path) if finding.path else ''}{package}{detail}"
                f"{_decision(finding, color)}"
            )
    if report.problems:
        lines.append("")
        lines.append(f"Problems: {len(report.problems)}")
        for problem in report.problems:
            where = f" {display_path(problem.path)}" if problem.path is not None else ""
            lines.append(f"  {problem.kind}{where}: {problem.message}")
    if report.notices:
        lines.append("")
        lines.append(f"Notices: {len(report.notices)}")
        lines.extend(f"  {notice}" for notice in report.notices)
    stats = report.stats
    lines.append("")
    verdict = "no findings" if not report.findings else f"{len(report.findings)} finding(s)"
    baselined = sum(1 for finding in report.findings if finding.baselined)
    aside = [f"{baselined} baselined"] if baselined else []
    if report.suppressed:
        aside.append(f"{report.suppressed} ignored by the policy")
    if aside:
        verdict += f" ({'; '.join(aside)})"
    blocked = sum(1 for finding in report.findings if finding.effect == "block")
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
