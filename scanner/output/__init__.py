"""One writer per report format; each takes a Report and returns text."""

from __future__ import annotations

from collections.abc import Callable

from ..report import Report
from . import json_format, sarif, table

__all__ = ["FORMATS"]

FORMATS: dict[str, Callable[[Report, bool], str]] = {
    "json": json_format.render,
    "sarif": sarif.render,
    "table": table.render,
}
