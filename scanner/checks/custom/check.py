"""A custom check as a check: its script's verdict turned into findings and problems."""

from __future__ import annotations

from collections.abc import Iterator

from ...report import Finding, Problem, Severity
from ..base import ScanContext
from .runner import Errored, Failed, Skipped, run_custom_check
from .spec import CustomCheckSpec

__all__ = ["CustomCheck"]

KIND = "custom-check-failed"


class CustomCheck:
    """One policy-declared script as a check: exit 1 is a finding, an error or a skip a Problem
    that leaves the verdict open (never a pass)."""

    def __init__(self, spec: CustomCheckSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.title = spec.name
        # A policy rule may raise its findings' severity: what it found says, not the spec.
        self.worst: Severity | None = None

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        context.progress(f"custom check {self.id}: {self.title}")
        result = run_custom_check(self.spec, context.root.path)
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
            yield Problem(kind="custom-check-error", message=message, check=self.id)
        elif isinstance(result, Skipped):
            yield Problem(
                kind="custom-check-skipped",
                message=f"custom check {self.id} ({self.title}) skipped: {result.reason}",
                check=self.id,
            )
