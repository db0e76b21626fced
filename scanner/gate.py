"""The exit code a report earns under the gate options (`--fail-on`, `--exit-zero`)."""

from __future__ import annotations

from .report import Effect, Report, Severity

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_INCOMPLETE",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "exit_code",
]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2  # decided by the command line, never by a report
EXIT_INCOMPLETE = 3
EXIT_BLOCKED = 4
# The scanner itself failed (a bug, never a verdict): Python's own 1 for an uncaught exception
# would read as "findings". Also with --exit-zero.
EXIT_INTERNAL = 5


def exit_code(report: Report, *, fail_on: Severity | None = None, exit_zero: bool = False) -> int:
    """0 clean, 4 blocked, 1 a gating finding, 3 nothing gates but something was not verified.

    A finding gates when it is not baselined and its severity is at least `fail_on` (any severity
    without it). A `block` effect is the policy's verdict, stronger than a severity threshold or a
    baseline (a baseline accepts alerts, not what the policy forbids). `exit_zero` is the caller's
    explicit "report, never fail": it wins over everything a report can say.
    """
    if exit_zero:
        return EXIT_CLEAN
    if any(finding.effect == Effect.BLOCK for finding in report.findings):
        return EXIT_BLOCKED
    threshold = Severity.LOW if fail_on is None else fail_on
    if any(not f.baselined and f.severity >= threshold for f in report.findings):
        return EXIT_FINDINGS
    # Vulnerabilities gate only under an explicit --fail-on (nearly every root has some
    # unfixed advisory); one of unknown severity never does, as no threshold is ever met by it.
    if fail_on is not None and any(
        v.severity is not None and v.severity >= fail_on for v in report.vulnerabilities or ()
    ):
        return EXIT_FINDINGS
    return EXIT_CLEAN if report.complete else EXIT_INCOMPLETE
