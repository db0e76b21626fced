"""The console's filter syntax (console/filters.py): parsing, matching, and the SQL it describes."""

from __future__ import annotations

import ast
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from console.filters import (
    MAX_EXPRESSION,
    MAX_TERM,
    MAX_TERMS,
    Filter,
    FilterError,
    Term,
    TermKind,
    fold,
    like_escape,
    parse,
)

EXACT, PREFIX = TermKind.EXACT, TermKind.PREFIX


def _select(filter_: Filter, values: list[str]) -> list[str]:
    """What a store selects with `filter_.conditions()`: a folded column, values always bound.
    SQLite's LIKE ignores ASCII case unless told; the folded column makes that moot."""
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (value TEXT, folded TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(v, fold(v)) for v in values])
        clauses, bound = [], []
        for kind, value in filter_.conditions():
            clauses.append("folded = ?" if kind is EXACT else "folded LIKE ? ESCAPE '\\'")
            bound.append(value)
        where = " OR ".join(clauses) or "1"
        rows = db.execute(f"SELECT value FROM t WHERE {where} ORDER BY rowid", bound).fetchall()
    return [row[0] for row in rows]


def _python(filter_: Filter, values: list[str]) -> list[str]:
    return [value for value in values if filter_.matches([value])]


FAMILIES = ["fargate-task", "fargate-task-web", "Fargate-Task-Batch", "fargate", "web-fargate-task"]


def test_the_issues_example() -> None:
    parsed = parse("fargate-task OR fargate-task*")
    assert parsed.terms == (Term(EXACT, "fargate-task"), Term(PREFIX, "fargate-task"))
    assert parsed.conditions() == [(EXACT, "fargate-task"), (PREFIX, "fargate-task%")]
    expected = ["fargate-task", "fargate-task-web", "Fargate-Task-Batch"]
    assert _python(parsed, FAMILIES) == _select(parsed, FAMILIES) == expected


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("fargate-task", ["fargate-task"]),
        ("FARGATE-TASK", ["fargate-task"]),  # case-insensitive both ways
        ("fargate-task-batch", ["Fargate-Task-Batch"]),
        ("fargate*", FAMILIES[:4]),
        ("web* OR fargate", ["fargate", "web-fargate-task"]),
        ("fargate-task-web   OR\tfargate", ["fargate-task-web", "fargate"]),  # any whitespace
        ("nothing", []),
        ("or", []),  # lower-case `or` is a term, not the keyword
    ],
)
def test_terms_select_like_sql(expression: str, selected: list[str]) -> None:
    parsed = parse(expression)
    assert _python(parsed, FAMILIES) == _select(parsed, FAMILIES) == selected


@pytest.mark.parametrize("expression", ["", " ", "\t\n  ", "\u3000\u00a0"])
def test_empty_or_blank_is_no_filter(expression: str) -> None:
    parsed = parse(expression)
    assert parsed == Filter() and parsed.empty and parsed.conditions() == []
    assert parsed.matches([]) and parsed.matches([None]) and parsed.matches(["x"])


def test_star_alone_matches_every_value_but_not_none() -> None:
    parsed = parse("*")
    assert parsed.terms == (Term(PREFIX, ""),) and parsed.conditions() == [(PREFIX, "%")]
    assert not parsed.empty
    values = ["", "a", "%", "_", "\\", "Straße"]
    assert _python(parsed, values) == _select(parsed, values) == values
    assert not parsed.matches([]) and not parsed.matches([None])
    assert parse("nothing OR *").matches(["anything"])


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("OR", "starts with `OR`"),
        ("OR OR", "starts with `OR`"),
        ("OR fargate", "starts with `OR`"),
        ("a OR OR b", "has `OR OR`"),
        ("a OR", "ends with `OR`"),
        ("a OR b OR", "ends with `OR`"),
        ("a b", "'a' and 'b' must be joined by `OR`"),
        ("a or b", "'a' and 'or' must be joined by `OR`"),
        ("a OR b c", "'b' and 'c' must be joined"),
    ],
)
def test_misplaced_or_is_refused(expression: str, says: str) -> None:
    with pytest.raises(FilterError, match=f"^.*{says.replace('`', '.')}"):
        parse(expression)


@pytest.mark.parametrize(
    "expression",
    ["*task", "fa*ke", "a**", "**", "*a*", "a OR *b", "fargate\uff0a", "fargate-\ufe61"],
)
def test_a_star_not_at_the_end_is_refused(expression: str) -> None:
    with pytest.raises(FilterError, match=r"`\*`"):
        parse(expression)


def test_term_count_is_capped() -> None:
    at_cap = " OR ".join(f"t{i}" for i in range(MAX_TERMS))
    assert len(parse(at_cap).terms) == MAX_TERMS
    with pytest.raises(FilterError, match=f"more than {MAX_TERMS} terms"):
        parse(at_cap + " OR over")
    # Duplicates count too: the work is bounded by what was sent, not what it reduces to.
    with pytest.raises(FilterError, match="terms"):
        parse(" OR ".join(["same"] * (MAX_TERMS + 1)))
    assert parse("a OR A OR a").terms == (Term(EXACT, "a"),)


def test_ten_thousand_terms_are_refused_unread() -> None:
    many = " OR ".join(f"term{i}" for i in range(10_000))
    huge = "a" * 100_000_000
    started = time.monotonic()
    for expression in (many, huge):
        with pytest.raises(FilterError, match=f"longer than {MAX_EXPRESSION} characters") as info:
            parse(expression)
        assert len(str(info.value)) < 200
    assert time.monotonic() - started < 1.0  # a length check, not a split of 100 MB


def test_a_long_term_is_refused_and_not_echoed() -> None:
    assert parse("x" * MAX_TERM).terms == (Term(EXACT, "x" * MAX_TERM),)
    with pytest.raises(FilterError, match=f"longer than {MAX_TERM} characters") as info:
        parse("y" * (MAX_TERM + 1))
    assert len(str(info.value)) < 200
    # The whole expression may be long: many terms, each within its cap.
    assert len(parse(" OR ".join(["z" * 100] * 60)).terms) == 1


@pytest.mark.parametrize(
    "term",
    ["a\x00b", "\x00", "a\x1bb", "\x7f", "a\x9bb", "\ud800", "a\udcffb"],
    ids=["nul", "nul-alone", "escape", "del", "c1-csi", "surrogate", "surrogateescape"],
)
def test_control_characters_and_surrogates_are_refused(term: str) -> None:
    with pytest.raises(FilterError, match="control character or a lone surrogate") as info:
        parse(term)
    message = str(info.value)
    assert message.isprintable()  # the message escapes it
    with pytest.raises(FilterError, match="must be joined"):  # NEL is whitespace: it splits
        parse("a\x85b")


@pytest.mark.parametrize(
    ("expression", "kind", "bound"),
    [
        ("100%", EXACT, "100%"),  # `=`: nothing to escape
        ("100%*", PREFIX, "100\\%%"),
        ("a_b*", PREFIX, "a\\_b%"),
        ("back\\slash*", PREFIX, "back\\\\slash%"),
        ("%_\\*", PREFIX, "\\%\\_\\\\%"),
        ("';DROP(TABLE);--*", PREFIX, "';drop(table);--%"),
        ('"quoted"', EXACT, '"quoted"'),
    ],
)
def test_sql_and_like_metacharacters_are_bound_literally(
    expression: str, kind: TermKind, bound: str
) -> None:
    parsed = parse(expression)
    assert parsed.conditions() == [(kind, bound)]
    values = [
        "100%",
        "100%-off",
        "1000",
        "100x",
        "a_b",
        "a_bc",
        "axb",
        "axbc",
        "back\\slash",
        "back\\slashes",
        "backslash",
        "%_\\",
        "%_\\x",
        "abc",
        "';DROP(TABLE);--x",
        '"Quoted"',
    ]
    selected = _select(parsed, values)
    assert selected == _python(parsed, values)
    assert selected  # each expression selects its own literal, and no wildcard reading of it


def test_sql_injection_leaves_the_table_alone() -> None:
    """Terms have no spaces (a space separates), but quotes and parentheses are literal."""
    parsed = parse("x'OR'1'='1 OR ');DROP(TABLE(t));--*")
    assert _select(parsed, ["a", "b"]) == []


@pytest.mark.parametrize(
    ("term", "value"),
    [
        ("STRASSE", "Straße"),  # full case folding, not lower()
        ("straße*", "STRASSE-web"),
        ("ÉCOLE*", "école-web"),
        ("e\u0301cole", "École"),  # decomposed and composed é are one letter
        ("\uff26\uff21\uff32\uff27\uff21\uff34\uff25-task", "fargate-task"),  # full width
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),  # final sigma
        ("İSTANBUL*", "i̇stanbul-prod"),
        ("ǅ", "ǆ"),  # title case
    ],
)
def test_non_ascii_case_folding(term: str, value: str) -> None:
    parsed = parse(term)
    assert parsed.matches([value])
    assert _select(parsed, [value]) == [value]


def test_matching_against_several_values_and_none() -> None:
    """An image matches when any of its values does (name, tags, families, task ids)."""
    parsed = parse("8f03e412* OR nginx")
    assert parsed.matches([None, "ubuntu:18.04", "8F03E41243824AEA"])
    assert parsed.matches(["NGINX"])
    assert not parsed.matches([None, "ubuntu", "nginx:1.25"])
    assert not parsed.matches([])


def test_like_escape_round_trips_in_sqlite() -> None:
    nasty = "\\%_\\\\%%__x"
    with sqlite3.connect(":memory:") as db:
        assert db.execute("SELECT ? LIKE ? ESCAPE '\\'", (nasty, like_escape(nasty))).fetchone()[0]
        assert not db.execute(
            "SELECT ? LIKE ? ESCAPE '\\'", ("x" * len(nasty), like_escape(nasty))
        ).fetchone()[0]


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")).filter(lambda c: not c.isspace()),
    max_size=12,
)


@seed(20261204)
@settings(max_examples=300, deadline=None, database=None)
@given(
    terms=st.lists(st.tuples(_TEXT, st.booleans()), min_size=1, max_size=4),
    values=st.lists(st.text(max_size=16), max_size=8),
)
def test_python_matcher_and_sql_agree(terms: list[tuple[str, bool]], values: list[str]) -> None:
    """Whatever the terms (`%`, `_`, `\\`, quotes, any script), SQL selects what Python does."""
    words = [text.replace("*", "") + ("*" if prefix else "") for text, prefix in terms]
    words = [word for word in words if word and word != "OR"]
    try:
        parsed = parse(" OR ".join(words))
    except FilterError:  # a term that folds to `*`, or empty: refused, nothing to compare
        return
    values = [value for value in values if "\x00" not in value]  # not storable anyway
    assert _select(parsed, values) == _python(parsed, values)


def test_fold_is_idempotent_on_every_character() -> None:
    """The store folds at ingest, the parser at query time: folding twice must change nothing,
    and nothing folds to upper-case ASCII (SQLite's LIKE would ignore its case)."""
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue
        folded = fold(chr(code))
        assert fold(folded) == folded, hex(code)
        assert not any("A" <= char <= "Z" for char in folded), hex(code)


def test_the_module_is_pure() -> None:
    """Standard library only: no scanner, no SQLAlchemy, no web framework."""
    source = Path(__file__).resolve().parent.parent / "console" / "filters.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
