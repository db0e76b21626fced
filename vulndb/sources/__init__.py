"""Parsers of advisory sources (OSV, Alpine secdb, Debian tracker, rpm errata) into records."""

from __future__ import annotations

from ._common import Limits, SourceError
from .detect import Format, detect, read

__all__ = ["Format", "Limits", "SourceError", "detect", "read"]
