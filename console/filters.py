"""The console's filter syntax (`fargate-task OR fargate-task*`): parse, match, describe for SQL.

The product's `search` and `hosts` filters are terms joined by ` OR `, each exact or with a
postfix `*` (a prefix), matched case-insensitively. Pure: no scanner, no SQLAlchemy; the store
turns `Filter.conditions()` into SQL and the Python matcher says what that SQL must select.

Decisions (docs/console-filters.md says the same for users):
* Empty or blank: no filter; `Filter.empty` is true and the store adds no condition.
* `OR` (capitals, a word of its own) separates; `or` is a term. Two terms side by side without
  `OR`, an `OR` at either end or `OR OR` are refused: the user meant something, say what.
* `*` alone is a prefix term with an empty prefix: it matches every value (never a missing one).
* `*` anywhere but at the very end of a term (`*task`, `a*b`, `a**`) is refused: no image name,
  tag, task family, task id or host name holds a `*`, so a literal one could never match.
* Bounded: at most MAX_EXPRESSION characters in all, MAX_TERMS terms (counted before duplicates
  are dropped) and MAX_TERM characters a term; past them the expression is refused, unread.
* Control characters and lone surrogates are refused: PostgreSQL text cannot hold NUL, and a
  surrogate cannot be encoded for the database at all.
* Case-insensitive means `fold()`: Unicode NFKC case folding (`Straße` = `STRASSE`, full-width
  U+FF21 = `a`). The store compares terms with values folded by the same `fold()` — best in a
  column written at ingest, since SQLite's `lower()` folds ASCII only.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "LIKE_ESCAPE",
    "MAX_EXPRESSION",
    "MAX_TERM",
    "MAX_TERMS",
    "Filter",
    "FilterError",
    "Term",
    "TermKind",
    "fold",
    "like_escape",
    "parse",
]

MAX_EXPRESSION = 8192  # characters of the whole expression: a query string, not a document
MAX_TERMS = 64  # terms joined by OR; a person types a handful
# Characters of one term: an image reference (registry, 255-character repository, 128-character
# tag) fits; a task ARN is about 100.
MAX_TERM = 512
SEPARATOR = "OR"
WILDCARD = "*"
LIKE_ESCAPE = "\\"  # the ESCAPE character of every LIKE pattern this module makes


class FilterError(ValueError):
    """The expression is not in the filter syntax; the message says where and why."""


class TermKind(enum.StrEnum):
    """How a term matches a (folded) value."""

    EXACT = "exact"  # the whole value: SQL `col = :v`
    PREFIX = "prefix"  # the value's start: SQL `col LIKE :v ESCAPE '\'`, `:v` escaped and `%`


def fold(text: str) -> str:
    """The caseless form both sides are compared in: NFKC, case-folded, NFKC again (Unicode's
    NFKC_Casefold, near enough), so that what a user types matches however the value is cased."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def like_escape(text: str) -> str:
    """`text` as a literal inside a LIKE pattern with ESCAPE '\\': `\\`, `%` and `_` escaped."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


@dataclass(frozen=True, slots=True)
class Term:
    """One term: `text` is already folded and has no `*`."""

    kind: TermKind
    text: str

    def matches(self, folded: str) -> bool:
        """Whether a value, folded with `fold()`, is selected by this term."""
        if self.kind is TermKind.EXACT:
            return folded == self.text
        return folded.startswith(self.text)

    def sql_value(self) -> str:
        """The bound value: the text for `=`, an escaped LIKE pattern ending in `%` for a prefix."""
        if self.kind is TermKind.EXACT:
            return self.text
        return like_escape(self.text) + "%"


@dataclass(frozen=True, slots=True)
class Filter:
    """Terms joined by OR; no terms is no filter (everything passes)."""

    terms: tuple[Term, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, values: Iterable[str | None]) -> bool:
        """Whether any term selects any of `values` (raw, not yet folded; None is no value).
        An empty filter passes everything, even nothing."""
        if self.empty:
            return True
        folded = [fold(value) for value in values if value is not None]
        return any(term.matches(value) for value in folded for term in self.terms)

    def conditions(self) -> list[tuple[TermKind, str]]:
        """What the store ORs together, per column it searches: (kind, bound value).

        EXACT: `folded_col = :v`; PREFIX: `folded_col LIKE :v ESCAPE '\\'` (SQLAlchemy:
        `col.like(v, escape="\\\\")`). Values are always bound, never spliced into SQL.
        """
        return [(term.kind, term.sql_value()) for term in self.terms]


def _shown(token: str) -> str:
    """A term as an error message quotes it: escaped, and short however long the input."""
    return repr(token if len(token) <= 40 else token[:40] + "…")


def _term(token: str) -> Term:
    if len(token) > MAX_TERM:
        raise FilterError(f"term {_shown(token)} is longer than {MAX_TERM} characters")
    for char in token:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs"):
            raise FilterError(
                f"term {_shown(token)} holds a control character or a lone surrogate "
                f"(U+{ord(char):04X})"
            )
    stem, star, rest = token.partition(WILDCARD)
    if star and rest:
        raise FilterError(
            f"term {_shown(token)}: `*` is allowed only once, at the end of a term (a prefix)"
        )
    folded = fold(stem)
    if WILDCARD in folded:  # U+FF0A (full-width asterisk) and the like read as `*` once folded
        raise FilterError(f"term {_shown(token)} holds a character that reads as `*`")
    return Term(TermKind.PREFIX if star else TermKind.EXACT, folded)


def parse(expression: str) -> Filter:
    """The filter an expression says; raises FilterError for one outside the syntax.

    `parse("fargate-task OR fargate-task*")` -> an exact and a prefix term; `parse("")` -> no
    filter. Duplicate terms are kept once, in their first place.
    """
    if len(expression) > MAX_EXPRESSION:
        raise FilterError(f"the filter is longer than {MAX_EXPRESSION} characters")
    tokens = expression.split()
    if not tokens:
        return Filter()
    terms: list[Term] = []
    expect_term = True  # alternates: term, OR, term, ...
    for position, token in enumerate(tokens, 1):
        if token == SEPARATOR:
            if expect_term:
                problem = "starts with `OR`" if position == 1 else "has `OR OR`"
                raise FilterError(f"the filter {problem}: a term must come before each `OR`")
            expect_term = True
            continue
        if not expect_term:
            raise FilterError(
                f"terms {_shown(tokens[position - 2])} and {_shown(token)} must be joined by `OR`"
            )
        if len(terms) == MAX_TERMS:
            raise FilterError(f"the filter has more than {MAX_TERMS} terms")
        terms.append(_term(token))
        expect_term = False
    if expect_term:
        raise FilterError("the filter ends with `OR`: a term must follow each `OR`")
    return Filter(tuple(dict.fromkeys(terms)))
