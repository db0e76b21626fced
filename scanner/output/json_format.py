"""The versioned JSON report (schema documented in docs/report.md)."""

from __future__ import annotations

from ..report import Report
from .escape import json_safe


def render(report: Report, color: bool = False) -> str:
    # Names from the target stay readable, but nothing in them a terminal would obey.
    return json_safe(report.to_json(indent=2)) + "\n"
