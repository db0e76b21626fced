"""A custom check as a check: its script's verdict turned into findings and problems."""

from __future__ import annotations

from collections.abc import Iterator

from ...progress import Phase
from ...report import Finding, FindingKind, Problem, ProblemKind, Severity
from ..base import ScanContext
from .runner import Errored, Failed, Passed, Skipped, run_custom_check
from .spec import CustomCheckSpec

__all__ = ["CustomCheck"]

KIND = FindingKind.CUSTOM_CHECK_FAILED


class CustomCheck:
    """One policy-declared script as a check: exit 1 is a finding, an error or a skip a Problem
    that leaves the verdict open (never a pass)."""

    def __init__(self, spec: CustomCheckSpec, position: tuple[int, int] = (1, 1)) -> None:
        self.spec = spec
        self.id = spec.id
        self.title = spec.name
        self.position = position  # (number, of how many) among the scan's custom checks
        # A policy rule may raise its findings' severity: what it found says, not the spec.
        self.worst: Severity | None = None

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        number, total = self.position
        detail = f"{self.id}: {self.title}"
        context.progress.update(Phase.CUSTOM, number - 1, total, detail)
        result = run_custom_check(self.spec, context.root.path)
        context.progress.update(Phase.CUSTOM, number, total, detail)
        if isinstance(result, Passed | Failed):
            # Which isolation ran: a pass in a chroot is not a pass in namespaces.
            context.notices.append(f"custom check {detail} ran isolated by {result.isolation}")
        if isinstance(result, Failed):
            yield Finding(
                check=self.id,
                title=self.title,
                severity=self.spec.severity,
                kind=KIND,
                path=b"",  # about the whole root, not one file
                detail=result.output or "(the script failed without output)",
                extra={"isolation": result.isolation, "limits": result.limits},
            )
        elif isinstance(result, Errored):
            message = f"custom check {self.id} ({self.title}) could not decide: {result.reason}"
            if result.limits:
                message += f" (limits: {result.limits})"
            if result.output:
                message += f"; its output: {result.output}"
            yield Problem(kind=ProblemKind.CUSTOM_CHECK_ERROR, message=message, check=self.id)
        elif isinstance(result, Skipped):
            yield Problem(
                kind=ProblemKind.CUSTOM_CHECK_SKIPPED,
                message=f"custom check {self.id} ({self.title}) skipped: {result.reason}",
                check=self.id,
            )
