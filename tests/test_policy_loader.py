"""Policy files: a valid one read in full, and every kind of mistake named by line and field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scanner.errors import UsageError
from scanner.policy import Effect, PolicyError, load_policy
from scanner.report import Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "shared/examples/fargate-task-definition.json"

GOOD = """\
version: 1
collections:
  - name: prod
    hosts: ["prod-*", "-prod-canary*"]
    images: ["*nginx*"]
    containers: ["web"]
    labels: ["team=payments"]
  - name: dev
    hosts: [dev-*]
rules:
  - name: dev-ignore-keys
    collections: [dev]
    enabled: true
    effects: {"425": ignore, "*": alert}
    severity: {"448": critical}
  - name: prod-block
    collections: [prod]
    enabled: false
    effects: {425: block, 9001: block, 9002: alert}
custom_checks:
  - id: 9001
    name: no telnet
    severity: high
    description: telnet must not be installed
    script: |
      #!/bin/sh
      ! command -v telnet
  - id: "9002"
    name: from a file
    severity: low
    description: read as bytes, relative to the policy
    script_file: checks/latin1.sh
    timeout: 2.5
    memory_mib: 1024
    processes: 8
"""


def write(tmp_path: Path, text: str | bytes, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_good_policy_is_read_in_full(tmp_path: Path) -> None:
    (tmp_path / "checks").mkdir()
    script = b"#!/bin/sh\necho caf\xe9\nexit 1\n"  # not UTF-8: kept as bytes
    (tmp_path / "checks/latin1.sh").write_bytes(script)
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.version == 1 and policy.source == str(tmp_path / "policy.yaml")
    prod = policy.collections["prod"]
    assert prod.hosts == ("prod-*", "-prod-canary*") and prod.labels == ("team=payments",)
    assert prod.line == 3 and policy.collections["dev"].hosts == ("dev-*",)
    first, second = policy.rules
    assert first.effects == {"425": Effect.IGNORE, "*": Effect.ALERT}
    assert first.severities == {"448": Severity.CRITICAL} and first.line == 11
    assert second.enabled is False and second.effects["9001"] is Effect.BLOCK
    telnet, from_file = policy.custom_checks
    assert telnet.id == "9001" and telnet.script == b"#!/bin/sh\n! command -v telnet\n"
    assert telnet.severity is Severity.HIGH and telnet.timeout == 60.0
    assert from_file.id == "9002" and from_file.script == script and from_file.timeout == 2.5
    assert (telnet.memory_mib, telnet.processes) == (256, 64)  # the defaults
    assert (from_file.memory_mib, from_file.processes) == (1024, 8)


def test_example_fargate_task_family_can_be_scoped(tmp_path: Path) -> None:
    if not EXAMPLE.exists():
        pytest.skip("../shared/examples is not available")
    family = json.loads(EXAMPLE.read_text())["family"]
    assert family == "fargate-vulnerability-compliance-task"
    text = (
        f'version: 1\ncollections:\n  - name: compliance-task\n    hosts: ["{family}", '
        f'"{family[:12]}*"]\n    containers: ["Fargate-vul-comp-test"]\n'
        "rules:\n  - name: gate\n    collections: [compliance-task]\n"
        '    effects: {"426": block, "*": alert}\n'
    )
    policy = load_policy(write(tmp_path, text))
    assert policy.collections["compliance-task"].hosts == (family, "fargate-vuln*")


# (policy text, line, field, message fragment): one mistake each.
MISTAKES = [
    ("version: 1\nrules:\n  - name: r\n    effects: {\"425\": blok}\n",
     4, "rules[0].effects.425", "unknown effect 'blok' (ignore, alert, block)"),
    ("version: 2\n", 1, "version", "unsupported version 2"),
    ("version: '1'\n", 1, "version", "must be the integer 1"),
    ("collections: []\n", 1, "(top level)", "missing required key 'version'"),
    ("version: 1\npolicy: x\n", 2, "policy", "unknown key"),
    ("version: 1\ncollections:\n  - name: a\n    host: [x]\n",
     4, "collections[0].host", "unknown key (known: name, hosts"),
    ("version: 1\ncollections:\n  - name: a\n  - name: a\n",
     4, "collections[1].name", "duplicate collection name 'a' (first at line 3)"),
    ("version: 1\ncollections:\n  - hosts: [x]\n",
     3, "collections[0]", "missing required key 'name'"),
    ("version: 1\ncollections:\n  - name: a\n    hosts: [\"fargate-task*\", \"-fargate*\"]\n",
     4, "collections[0].hosts", "exclusion '-fargate*' is broader than inclusion 'fargate-task*'"),
    ("version: 1\ncollections:\n  - name: a\n    images:\n      - ok\n      - 'a*b'\n",
     6, "collections[0].images[1]", "'*' may only start or end"),
    ("version: 1\ncollections:\n  - name: a\n    containers: web\n",
     4, "collections[0].containers", "must be a list"),
    ("version: 1\ncollections:\n  - name: a\n    labels: [team]\n",
     4, "collections[0].labels[0]", "a label pattern is key=value"),
    ("version: 1\ncollections:\n  - name: a\n    hosts: [12]\n",
     4, "collections[0].hosts[0]", "'12' reads as int: quote it"),
    ("version: 1\nrules:\n  - name: r\n    collections: [nope]\n    effects: {'*': alert}\n",
     4, "rules[0].collections[0]", "unknown collection 'nope'"),
    ("version: 1\nrules:\n  - name: r\n    effects: {'*': alert}\n  - name: r\n    effects: {'*': alert}\n",
     5, "rules[1].name", "duplicate rule name 'r' (first at line 3)"),
    ("version: 1\nrules:\n  - name: default\n    effects: {'*': alert}\n",
     3, "rules[0].name", "'default' is the built-in last rule"),
    ("version: 1\nrules:\n  - name: r\n",
     3, "rules[0]", "missing required key 'effects'"),
    ("version: 1\nrules:\n  - name: r\n    effects: {}\n", 4, "rules[0].effects", "names no check"),
    ("version: 1\nrules:\n  - name: r\n    effects: {'999': alert}\n",
     4, "rules[0].effects.999", "unknown check id '999' (built-in: 424, 425, 426, 448"),
    ("version: 1\nrules:\n  - name: r\n    effects: {9001: alert}\n",
     4, "rules[0].effects.9001", "custom: none declared"),
    ("version: 1\nrules:\n  - name: r\n    effects:\n      '425': alert\n      '425': block\n",
     6, "rules[0].effects.425", "duplicate key (first at line 5)"),
    ("version: 1\nrules:\n  - name: r\n    effects: {'425': alert}\n    severity: {'448': high}\n",
     5, "rules[0].severity.448", "this rule does not decide check 448"),
    ("version: 1\nrules:\n  - name: r\n    effects: {'*': alert}\n    severity: {'448': urgent}\n",
     5, "rules[0].severity.448", "unknown severity 'urgent' (low, medium, high, critical)"),
    ("version: 1\nrules:\n  - name: r\n    enabled: maybe\n    effects: {'*': alert}\n",
     4, "rules[0].enabled", "must be true or false"),
    ("version: 1\nrules:\n  - name: r\n    effects: {'*': BLOCK}\n",
     4, "rules[0].effects.*", "unknown effect 'BLOCK'"),
    (("version: 1\ncustom_checks:\n  - id: 8999\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n"),
     3, "custom_checks[0].id", "9000 and up"),
    (("version: 1\ncustom_checks:\n  - id: 9abc\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n"),
     3, "custom_checks[0].id", "must be a decimal number >= 9000"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n  - id: '9001'\n    name: m\n    severity: low\n"
     "    description: d\n    script: y\n"),
     8, "custom_checks[1].id", "duplicate id 9001 (first at line 3)"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n"),
     3, "custom_checks[0]", "exactly one of 'script' or 'script_file' (neither given)"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    script_file: y.sh\n"),
     3, "custom_checks[0]", "(both given)"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script_file: missing.sh\n"),
     7, "custom_checks[0].script_file", "cannot read"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    timeout: 0\n"),
     8, "custom_checks[0].timeout", "must be a number of seconds > 0"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    memory_mib: 8\n"),
     8, "custom_checks[0].memory_mib", "must be a whole number from 16 to 65536"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    processes: " + "9" * 5000 + "\n"),
     8, "custom_checks[0].processes", "must be a whole number from 1 to 4096"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    processes: 0\n"),
     8, "custom_checks[0].processes", "must be a whole number from 1 to 4096"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: x\n    processes: 2.5\n"),
     8, "custom_checks[0].processes", "must be a whole number from 1 to 4096"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n    severity: low\n"
     "    description: d\n    script: '   '\n"),
     7, "custom_checks[0].script", "empty script"),
    (("version: 1\ncustom_checks:\n  - id: 9001\n    name: n\n"
     "    description: d\n    script: x\n"),
     3, "custom_checks[0]", "missing required key 'severity'"),
    ("version: 1\nrules: {}\n", 2, "rules", "must be a list"),
    ("- version: 1\n", 1, "", "must be a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "field", "message"), MISTAKES)
def test_each_mistake_names_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.field) == (line, field)
    assert message in issue.message
    prefix = f"{path}:{line}: {field}: " if field else f"{path}:{line}: "
    assert str(caught.value) == prefix + issue.message
    assert isinstance(caught.value, UsageError)  # the CLI's exit 2


def test_all_mistakes_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "collections:\n  - name: a\n    hosts: ['x*y']\n"
        "rules:\n  - name: r\n    collections: [b]\n    effects: {'425': blok}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    assert [(i.line, i.field) for i in caught.value.issues] == [
        (4, "collections[0].hosts[0]"),
        (7, "rules[0].collections[0]"),
        (8, "rules[0].effects.425"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (b"version: 1\nrules: [\n", 3, "invalid YAML"),  # unclosed flow sequence
        (b"version: 1\n  bad: indent\n", 2, "invalid YAML"),
        (b"version: 1\n---\nversion: 1\n", 2, "invalid YAML"),  # two documents
        (b"", 1, "empty policy"),
        (b"# only a comment\n", 1, "empty policy"),
        (b"version: 1\nrules: \xff\n", 1, "invalid YAML"),  # not UTF-8
    ],
)
def test_unreadable_yaml(tmp_path: Path, text: bytes, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read: No such file"):
        load_policy(tmp_path / "nope.yaml")


def test_script_file_relative_to_the_policy_not_the_cwd(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/check.sh").write_bytes(b"exit 0\n")
    text = (
        "version: 1\ncustom_checks:\n  - id: 9000\n    name: n\n    severity: critical\n"
        "    description: d\n    script_file: check.sh\n"
    )
    policy_path = write(tmp_path / "conf", text)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        (spec,) = load_policy(policy_path).custom_checks
    finally:
        os.chdir(cwd)
    assert spec.script == b"exit 0\n" and spec.id == "9000"


def test_aliases_are_followed(tmp_path: Path) -> None:
    text = (
        "version: 1\ncollections:\n  - name: a\n    hosts: &web [web-*]\n"
        "  - name: b\n    hosts: *web\n    images: ['*nginx*']\n"
    )
    policy = load_policy(write(tmp_path, text))
    assert policy.collections["b"].hosts == ("web-*",)


def test_documented_example_is_a_valid_policy(tmp_path: Path) -> None:
    reference = (Path(__file__).resolve().parents[1] / "docs/policy.md").read_text()
    example = reference.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks/no-telnet.sh").write_bytes(b"#!/bin/sh\n! command -v telnet\n")
    policy = load_policy(write(tmp_path, example))
    assert [rule.name for rule in policy.rules] == ["web-gate"]
    assert policy.custom_checks[0].timeout == 30.0


# --- hostile policies: each a clear PolicyError, fast and small --------------------------------


def _refused(tmp_path: Path, text: str, seconds: float = 5.0) -> PolicyError:
    import time

    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert time.monotonic() - started < seconds
    return caught.value


@pytest.mark.parametrize("depth", [100, 50_000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    for text in (
        "a: " + "[" * depth + "]" * depth + "\n",
        "a:\n" + "".join(" " * level + "- \n" for level in range(min(depth, 2000))),
    ):
        error = _refused(tmp_path, "version: 1\n" + text)
        assert "nested deeper than" in str(error) or "invalid YAML" in str(error)


def test_alias_amplification_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for level in range(1, 12):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    lines.append("rules: *a11")
    error = _refused(tmp_path, "version: 1\n" + "\n".join(lines) + "\n")
    assert "aliases expand to more than" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "rules: &a [*a]\n",
        "rules: &a [{name: r, effects: {'448': alert}, collections: *a}]\n",
        "collections: &c\n  - name: c\n    hosts: *c\n",
        "x: &m {a: *m}\n",
    ],
)
def test_an_alias_inside_its_own_node_is_refused(tmp_path: Path, text: str) -> None:
    """YAML lets an anchored node hold an alias to itself: an infinite tree whose every walk
    recursed without bound (RecursionError, exit 5)."""
    error = _refused(tmp_path, "version: 1\n" + text)
    assert "an alias refers to a node that contains it" in str(error)


def test_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "version: 1\nrules:\n"
        '  - name: a\n    effects: &strict {"448": block}\n'
        "  - name: b\n    effects: *strict\n"
    )
    assert [rule.name for rule in load_policy(path).rules] == ["a", "b"]


def test_an_alias_walked_many_times_caps_the_errors(tmp_path: Path) -> None:
    """Each alias of a bad rule list is validated again: the issues stop at MAX_ISSUES."""
    bad = '[{"name": "r", "effects": {"448": nope}}]'
    text = f"version: 1\nrules: [&bad {bad[1:-1]}, " + ", ".join(["*bad"] * 250) + "]\n"
    error = _refused(tmp_path, text)
    assert len(error.issues) <= 201


@pytest.mark.parametrize(
    ("fragment", "field"),
    [
        ("version: " + "9" * 5000, "version"),
        ("version: 1\ncustom_checks:\n  - id: " + "9" * 5000, "custom_checks[0].id"),
        ("version: 1\ncustom_checks:\n  - {id: 9001, timeout: 1.0e+300}", "timeout"),
        ("version: 1\ncustom_checks:\n  - {id: 9001, timeout: .inf}", "timeout"),
        ("version: 1\ncustom_checks:\n  - {id: 9001, timeout: .nan}", "timeout"),
        ("version: 1\ncustom_checks:\n  - {id: 9001, timeout: -1}", "timeout"),
    ],
)
def test_numbers_out_of_range_name_their_field(tmp_path: Path, fragment: str, field: str) -> None:
    error = _refused(tmp_path, fragment + "\n")
    assert any(field in issue.field for issue in error.issues), str(error)


def test_a_duplicate_rule_name_is_reported_beside_other_errors(tmp_path: Path) -> None:
    error = _refused(
        tmp_path,
        "version: 1\nrules:\n"
        '  - name: same\n    effects: {"448": blok}\n'
        '  - name: same\n    effects: {"448": alert}\n',
    )
    messages = str(error)
    assert "blok" in messages and "same" in messages and "duplicate" in messages.lower()


@pytest.mark.parametrize("text", ['!!int ""', '!!int "-"', '!!int "+"', '!!float ""'])
@pytest.mark.parametrize(
    ("template", "field"),
    [
        ("version: {}", "version"),
        ("version: 1\ncustom_checks:\n  - {{id: 9001, timeout: {}}}", "custom_checks[0].timeout"),
    ],
)
def test_an_explicit_tag_over_text_that_is_no_number(
    tmp_path: Path, text: str, template: str, field: str
) -> None:
    """`!!int ""` made PyYAML's constructor raise IndexError (exit 5): it is no number."""
    error = _refused(tmp_path, template.format(text) + "\n")
    assert any(issue.field == field for issue in error.issues), str(error)


def test_an_explicit_bool_over_text_that_is_no_bool(tmp_path: Path) -> None:
    """`!!bool "x"` raised KeyError (exit 5); read as no value, it must not be false either."""
    error = _refused(
        tmp_path,
        'version: 1\nrules:\n  - {name: a, enabled: !!bool "x", effects: {"448": alert}}\n',
    )
    assert [issue.field for issue in error.issues] == ["rules[0].enabled"]


@pytest.mark.parametrize(
    "text",
    ["rules: &r [*r]", "rules: &r [{name: a, effects: {'448': alert}, x: *r}]", "x: &m {a: *m}"],
)
def test_an_alias_inside_the_node_it_names_is_refused(tmp_path: Path, text: str) -> None:
    """PyYAML composes `&a [*a]` into a node that contains itself: counting its expansion
    recursed without end (RecursionError, exit 5)."""
    error = _refused(tmp_path, f"version: 1\n{text}\n")
    assert "an alias refers to a node that contains it" in str(error)


BIG = "k" * 1_000_000


@pytest.mark.parametrize(
    "rules",
    [
        "".join(  # the same bad effect in every rule
            f"  - name: r{index}\n    effects: {{'448': {'&k ' + BIG if not index else '*k'}}}\n"
            for index in range(200)
        ),
        "".join(  # the same unknown check id as the key of every rule's effects
            f"  - name: r{index}\n    effects:\n      ? {'&k ' + BIG if not index else '*k'}\n"
            "      : alert\n"
            for index in range(200)
        ),
        "".join(  # the same rule name, 200 times
            f"  - name: {'&k ' + BIG if not index else '*k'}\n    effects: {{'448': alert}}\n"
            for index in range(200)
        ),
    ],
    ids=["effect", "check-id", "duplicate-name"],
)
def test_a_long_value_named_by_every_error_is_quoted_short(tmp_path: Path, rules: str) -> None:
    """An alias makes one large scalar the subject of hundreds of errors: each quoted whole,
    a 4 MB policy gave a 1.5 GB message (4.5 GB of memory). Each is now cut short."""
    error = _refused(tmp_path, "version: 1\nrules:\n" + rules)
    assert len(error.issues) >= 199
    assert len(str(error)) < 1000 * len(error.issues)
    assert all(len(issue.field) < 200 for issue in error.issues)
    assert "(1000000 characters)" in str(error)


@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_script_file_that_is_no_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO would block the read for ever, /dev/zero or a sparse giant fill memory: each is
    refused by its fstat before a byte is read, as the field's error."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "check.sh")
        name = "check.sh"
    elif kind == "zero":
        name = "/dev/zero"
    else:
        with open(tmp_path / "check.sh", "wb") as handle:
            handle.truncate(2 << 30)
        name = "check.sh"
    error = _refused(
        tmp_path,
        "version: 1\ncustom_checks:\n  - {id: 9001, name: n, severity: high, description: d, "
        f"script_file: {name}}}\n",
    )
    [issue] = error.issues
    assert issue.field == "custom_checks[0].script_file"
    assert any(
        words in issue.message
        for words in ("not a regular file", "over the limit", "beneath the policy file")
    ), issue.message


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_script_file_outside_the_policy_directory_is_refused(tmp_path: Path, how: str) -> None:
    """The script's output reaches the report and `sh` echoes each line it cannot run: a script
    file naming a secret outside the policy's directory would print it."""
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    name = {"absolute": str(secret), "dotdot": "../id_rsa", "symlink": "check.sh"}[how]
    if how == "symlink":
        (policy_dir / "check.sh").symlink_to(secret)
    path = policy_dir / "p.yaml"
    path.write_text(
        "version: 1\ncustom_checks:\n  - id: 9000\n    name: c\n    severity: high\n"
        f"    description: d\n    script_file: {json.dumps(name)}\n"
    )
    with pytest.raises(PolicyError, match="beneath the policy file's directory") as caught:
        load_policy(path)
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in str(caught.value)
