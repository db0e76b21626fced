"""Severity from CVSS vectors (scored by the `cvss` library, never by hand) and from words."""

from __future__ import annotations

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from ..records import Severity

__all__ = ["from_score", "from_word", "score_vector"]

# Words the sources use, lower-cased: OSV database_specific (GitHub: MODERATE), Debian
# urgencies ("low*" marks a guess), Red Hat/Rocky/Alma errata severities.
_WORDS = {
    "critical": Severity.CRITICAL,
    "important": Severity.HIGH,
    "high": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "unimportant": Severity.NEGLIGIBLE,
    "negligible": Severity.NEGLIGIBLE,
    "none": Severity.NEGLIGIBLE,
}


def from_word(word: str) -> Severity:
    """A source's severity word; anything else ("not yet assigned", "end-of-life") is UNKNOWN."""
    return _WORDS.get(word.strip().rstrip("*").lower(), Severity.UNKNOWN)


def from_score(score: float) -> Severity:
    """The CVSS v3/v4 qualitative rating of a base score (FIRST's table)."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.NEGLIGIBLE


def score_vector(kind: str, vector: str) -> float | None:
    """The base score of an OSV `severity` entry (type CVSS_V2/V3/V4), or None when the type is
    another (Ubuntu's words) or the library refuses the vector."""
    scorer = {"CVSS_V2": CVSS2, "CVSS_V3": CVSS3, "CVSS_V4": CVSS4}.get(kind)
    if scorer is None:
        return None
    try:
        score = scorer(vector).base_score
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return float(score)
