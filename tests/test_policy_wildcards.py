"""Collection patterns: one table of (field values, target values, admitted?), and the rejects."""

from __future__ import annotations

import pytest

from scanner.policy.wildcards import PatternError, Shape, compile_field, parse_pattern

# (field values, the target's values for that field, admitted?)
CASES: list[tuple[list[str], list[str], bool]] = [
    # exact vs starts-with: the `fargate-task` / `fargate-task*` pair
    (["fargate-task"], ["fargate-task"], True),
    (["fargate-task"], ["fargate-task-2"], False),
    (["fargate-task*"], ["fargate-task"], True),
    (["fargate-task*"], ["fargate-task-2"], True),
    (["fargate-task*"], ["my-fargate-task"], False),
    (["fargate-task", "fargate-task*"], ["fargate-task-prod"], True),
    (["fargate-task", "fargate-task*"], ["fargate"], False),
    # ends-with and contains
    (["*-task"], ["fargate-task"], True),
    (["*-task"], ["fargate-task-2"], False),
    (["*task*"], ["my-fargate-task-2"], True),
    (["*task*"], ["task"], True),
    (["*task*"], ["tas-k"], False),
    (["*nginx*"], ["docker.io/library/nginx:1.25"], True),
    (["*:latest"], ["app:1.0"], False),
    # case-insensitive, both sides
    (["Fargate-Task*"], ["FARGATE-TASK-1"], True),
    (["*NGINX*"], ["library/nginx"], True),
    (["web"], ["WEB"], True),
    # values ORed
    (["api", "web"], ["web"], True),
    (["api", "web"], ["db"], False),
    # exclusions
    (["prod-*", "-prod-canary*"], ["prod-web"], True),
    (["prod-*", "-prod-canary*"], ["prod-canary-1"], False),
    (["prod-*", "-*-canary"], ["prod-web-canary"], False),
    (["-dev*"], ["prod-web"], True),  # only exclusions: everything not excluded
    (["-dev*"], ["dev-web"], False),
    (["-dev*", "-*test*"], ["prod-test-1"], False),
    (["-dev*"], [], True),  # nothing to exclude
    # an empty field admits everything, even a target without that field
    ([], ["anything"], True),
    ([], [], True),
    (["web"], [], False),  # an inclusion needs a value
    (["*"], ["anything"], True),
    (["*", "-dev*"], ["dev-1"], False),
    # several values of one target are aliases (a Fargate task: family and task id)
    (["fargate-task*"], ["8f03e41243824aea923aca126495f665", "fargate-task-web"], True),
    (["8f03e412*"], ["8f03e41243824aea923aca126495f665", "fargate-task-web"], True),
    (["*", "-fargate-task-web"], ["8f03e41243824aea923aca126495f665", "fargate-task-web"], False),
    (["-*canary*"], ["8f03e41243824aea923aca126495f665", "web-canary"], False),
    # labels are matched as key=value
    (["team=payments"], ["team=payments", "tier=web"], True),
    (["team=*"], ["tier=web"], False),
    (["*=web"], ["tier=web"], True),
]


@pytest.mark.parametrize(("patterns", "values", "admitted"), CASES)
def test_field_admits(patterns: list[str], values: list[str], admitted: bool) -> None:
    assert compile_field(patterns).admits(values) is admitted


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("raw", "shape", "text", "exclude"),
    [
        ("abc", Shape.EXACT, "abc", False),
        ("abc*", Shape.PREFIX, "abc", False),
        ("*abc", Shape.SUFFIX, "abc", False),
        ("*ABC*", Shape.CONTAINS, "abc", False),
        ("-abc*", Shape.PREFIX, "abc", True),
        ("*", Shape.ANY, "", False),
        ("--x", Shape.EXACT, "-x", True),  # only the first `-` excludes
    ],
)
def test_shapes(raw: str, shape: Shape, text: str, exclude: bool) -> None:
    pattern = parse_pattern(raw)
    assert (pattern.shape, pattern.text, pattern.exclude) == (shape, text, exclude)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a*b", "may only start or end"),
        ("*a*b*", "may only start or end"),
        ("**", "may only start or end"),
        ("***", "may only start or end"),
        ("-**a", "may only start or end"),
        ("", "empty pattern"),
        ("-", "empty pattern"),
        (" web", "whitespace"),
        ("web ", "whitespace"),
    ],
)
def test_unsupported_shapes_are_rejected(raw: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        parse_pattern(raw)


@pytest.mark.parametrize(
    "patterns",
    [
        ["fargate-task*", "-fargate*"],  # the exclusion removes everything the inclusion admits
        ["fargate-task", "-fargate*"],
        ["fargate-task*", "-*task*"],
        ["*-task", "-*task"],
        ["*-task", "-*-t*"],
        ["*prod-web*", "-*prod*"],
        ["Prod-Web", "-prod-web"],  # case-insensitive here too
        ["web", "api", "-web"],  # one dead inclusion is already a mistake
        ["*", "-*"],
        ["-*"],  # excludes every value
        ["fargate-task*", "-*"],
    ],
)
def test_exclusion_broader_than_inclusion_is_rejected(patterns: list[str]) -> None:
    with pytest.raises(PatternError, match="removes every value"):
        compile_field(patterns)


@pytest.mark.parametrize(
    "patterns",
    [
        ["fargate*", "-fargate-task*"],  # narrower exclusion: fine
        ["*-task", "-fargate*"],  # overlapping, neither contains the other
        ["*task*", "-*-task"],
        ["fargate-task*", "-*task"],  # a suffix never contains a prefix
        ["fargate-task*", "-fargate-task"],  # an exact value never contains a prefix
        ["*", "-dev*"],
    ],
)
def test_narrower_or_overlapping_exclusions_are_accepted(patterns: list[str]) -> None:
    compile_field(patterns)
