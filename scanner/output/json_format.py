"""The versioned JSON report (schema documented in README.md)."""

from __future__ import annotations

from ..report import Report


def render(report: Report, color: bool = False) -> str:
    return report.to_json(indent=2) + "\n"
