"""A report kept within what a console takes: at most so many findings and problems, the rest
counted, worst first kept."""

from __future__ import annotations

import json
from collections import Counter

from scanner import Finding, Problem, ProblemKind, Report

__all__ = ["MAX_FINDINGS", "MAX_PROBLEMS", "MAX_REPORT_BYTES", "cap_report", "report_bytes"]

# A hostile container can make a million findings (a file per key); the console refuses a
# report past 64 MiB or 2,000,000 JSON values (console/app.py) and the spool holds 64 MiB.
MAX_FINDINGS = 20_000
MAX_PROBLEMS = 5_000
MAX_REPORT_BYTES = 32 << 20


def report_bytes(report: Report) -> bytes:
    return json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")


def cap_report(
    report: Report,
    max_findings: int = MAX_FINDINGS,
    max_problems: int = MAX_PROBLEMS,
    max_bytes: int = MAX_REPORT_BYTES,
) -> bytes:
    """The report's JSON, its lists cut (halved until it fits `max_bytes`) when too long.

    What is cut is said: the findings left out, per check, as a `truncated` notice problem (the
    findings that remain show the container is not compliant; no item is left unjudged), the
    problems left out as one `could-not-verify` problem (those were items left unjudged)."""
    findings, problems = list(report.findings), list(report.problems)
    while True:
        _cut(report, findings, problems, max_findings, max_problems)
        body = report_bytes(report)
        if len(body) <= max_bytes or (max_findings <= 1 and max_problems <= 1):
            return body
        max_findings, max_problems = max(1, max_findings // 2), max(1, max_problems // 2)


def _cut(
    report: Report,
    findings: list[Finding],
    problems: list[Problem],
    max_findings: int,
    max_problems: int,
) -> None:
    # Worst first, so that what a console shows of a cut report is what matters most.
    kept = sorted(findings, key=lambda finding: -finding.severity)[:max_findings]
    report.findings = kept
    report.problems = problems[:max_problems]
    dropped = Counter(finding.check for finding in findings) - Counter(f.check for f in kept)
    if dropped:
        counts = ", ".join(f"{check}: {count}" for check, count in sorted(dropped.items()))
        report.problems.append(
            Problem(
                ProblemKind.TRUNCATED,
                f"report cut to {len(kept)} findings for the console; left out per check: {counts}",
            )
        )
    if len(problems) > max_problems:
        report.problems.append(
            Problem(
                ProblemKind.COULD_NOT_VERIFY,
                f"report cut to {max_problems} problems for the console; "
                f"{len(problems) - max_problems} more items could not be verified",
            )
        )
