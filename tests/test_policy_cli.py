"""`scan-root policy check` and `--policy` on a directory, an image and inside a Fargate task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagebuilder import build_layers, image_config, write_docker_save
from test_cli import _dpkg_root
from test_ecs_metadata import TASK_ID, Agent, agent, serve_task  # noqa: F401 - `agent` fixture

from scanner import cli
from scanner.targets.ecs import METADATA_ENV

SECRET = "ghp_" + "Zq9xW2" * 6  # a well-formed, fake GitHub token

POLICY = """\
version: 1
collections:
  - name: web-tasks
    hosts: ["curltest*", "-curltest-canary*"]
  - name: payments-images
    images: ["example/nginx*"]
    labels: ["team=payments"]
rules:
  - name: paused
    enabled: false
    effects: {"*": ignore}
  - name: tasks-block-tampering
    collections: [web-tasks]
    effects: {"448": block}
  - name: payments-gate
    collections: [payments-images]
    effects: {"424": block, "*": alert}
    severity: {"424": critical}
custom_checks:
  - id: 9001
    name: no telnet
    severity: high
    description: telnet must not be installed
    script: |
      #!/bin/sh
      ! command -v telnet
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_policy_check_explains_collections_rules_and_custom_checks(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["policy", "check", str(policy_file)]) == cli.EXIT_CLEAN
    out = capsys.readouterr().out
    assert f"{policy_file}: valid policy (version 1)" in out
    assert "web-tasks (line 3): hosts: curltest*, -curltest-canary*" in out
    assert "payments-images (line 5): images: example/nginx*; labels: team=payments" in out
    order = [out.index(name) for name in
             ("1. paused", "2. tasks-block-tampering", "3. payments-gate", "4. default (built-in)")]  # fmt: skip
    assert order == sorted(order)
    assert "1. paused (line 9)  [disabled: skipped]" in out
    assert "9001 no telnet (high, timeout 60 s, line 20): telnet must not be installed" in out
    assert "target:" not in out  # no target fields given


def test_policy_check_for_a_target(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "check", str(policy_file), "--host", "curltest", "--host", TASK_ID,
            "--container", "app", "--fargate"]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_CLEAN
    out = capsys.readouterr().out
    assert f"target: hosts=curltest,{TASK_ID} containers=app (Fargate task)" in out
    assert "in collections: web-tasks\n" in out
    assert (
        "448: alert by rule 'tasks-block-tampering' (line 12); the rule says block, "
        "not applied to a Fargate task"
    ) in out
    assert "425: alert by rule 'default' (built-in)" in out
    assert "9001: alert by rule 'default' (built-in)" in out


def test_policy_check_for_an_image(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "check", str(policy_file), "--image", "Example/NGINX:1.25",
            "--label", "team=payments"]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_CLEAN
    out = capsys.readouterr().out
    assert "in collections: payments-images" in out
    assert "424: block by rule 'payments-gate' (line 15), severity critical" in out
    assert "448: alert by rule 'payments-gate' (line 15)" in out


def test_policy_check_invalid_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace('{"448": block}', '{"448": blok}'))
    assert cli.main(["policy", "check", str(bad)]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{bad}:14: rules[1].effects.448: unknown effect 'blok' (ignore, alert, block)\n"
    )


def test_policy_without_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy"]) == cli.EXIT_USAGE
    assert "scan-root policy check FILE" in capsys.readouterr().err


def test_scan_with_invalid_policy_exits_2_before_scanning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncollections:\n  - name: a\n    hosts: [fargate-task*, -fargate*]\n")
    assert cli.main([str(tmp_path / "no-such-root"), "--policy", str(bad)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{bad}:4: collections[0].hosts: exclusion '-fargate*' is broader" in err
    assert "no such directory" not in err  # the policy is read first


@pytest.mark.parametrize(
    ("rules", "status", "effect"),
    [
        ('  - name: quiet\n    effects: {"448": ignore}\n', cli.EXIT_CLEAN, None),
        ('  - name: gate\n    effects: {"*": block}\n', cli.EXIT_BLOCKED, "block"),
        ("", cli.EXIT_FINDINGS, "alert"),
    ],
    ids=["ignored", "blocked", "default"],
)
def test_policy_on_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: str, status: int, effect: str | None
) -> None:
    root = _dpkg_root(tmp_path, tamper=True)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules:\n" + rules if rules else "version: 1\n")
    argv = [str(root), "--policy", str(policy), "--checks", "448", "--format", "json", "--quiet"]
    assert cli.main(argv) == status
    report = json.loads(capsys.readouterr().out)
    if effect is None:
        assert report["findings"] == [] and report["suppressed"] == 1
        assert report["notices"] == [f"rule 'quiet' ({policy}:3) ignored 1 finding(s) of check 448"]
    else:
        (finding,) = report["findings"]
        assert finding["path"] == "/usr/bin/tool" and finding["effect"] == effect
        assert finding["rule"] == ("gate" if effect == "block" else "default")
        assert report["suppressed"] == 0 and report["notices"] == []


def test_without_policy_findings_have_no_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dpkg_root(tmp_path, tamper=True)
    assert cli.main([str(root), "--checks", "448", "--format", "json"]) == cli.EXIT_FINDINGS
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert "rule" not in finding and "effect" not in finding


@pytest.mark.parametrize("labels", [{"team": "payments"}, {"team": "search"}])
def test_policy_on_an_image(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy_file: Path,
    labels: dict[str, str],
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("app\n")
    layers = build_layers(root, [], tmp_path / "layers")
    tarball = tmp_path / "image.tar"
    config = image_config(env=[f"GITHUB_TOKEN={SECRET}"], labels=labels)
    write_docker_save(tarball, layers, config, ["example/nginx:1.25"])
    argv = ["image", str(tarball), "--policy", str(policy_file), "--checks", "424",
            "--format", "json", "--quiet"]  # fmt: skip
    blocked = labels["team"] == "payments"
    assert cli.main(argv) == (cli.EXIT_BLOCKED if blocked else cli.EXIT_FINDINGS)
    out = capsys.readouterr().out
    assert SECRET not in out
    (finding,) = json.loads(out)["findings"]
    if blocked:
        assert (finding["rule"], finding["effect"], finding["severity"]) == (
            "payments-gate",
            "block",
            "critical",
        )
    else:  # the label does not match: the default rule
        assert (finding["rule"], finding["effect"]) == ("default", "alert")
        assert finding["severity"] != "critical"


@pytest.mark.parametrize(
    ("family", "blocked_rule"),
    [("curltest", "tasks-block-tampering"), ("curltest-canary", None)],
)
def test_policy_inside_a_fargate_task(
    agent: Agent,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    policy_file: Path,
    family: str,
    blocked_rule: str | None,
) -> None:
    """The task family from the metadata endpoint scopes the rule; block is reported as alert."""
    serve_task(agent, Family=family)
    monkeypatch.setenv(METADATA_ENV, agent.uri + "/v4/app")
    root = _dpkg_root(tmp_path, tamper=True)
    argv = [str(root), "--policy", str(policy_file), "--checks", "448", "--format", "json",
            "--quiet"]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_FINDINGS
    report = json.loads(capsys.readouterr().out)
    assert report["target"]["task"]["family"] == family
    (finding,) = report["findings"]
    assert finding["effect"] == "alert"
    if blocked_rule is None:  # the canary is excluded from web-tasks
        assert finding["rule"] == "default" and report["notices"] == []
    else:
        assert finding["rule"] == blocked_rule
        (notice,) = report["notices"]
        assert notice == (
            f"rule '{blocked_rule}' ({policy_file}:12): block on check 448 not applied to "
            f"Fargate task {family} ({TASK_ID}) (a Fargate task cannot be blocked); "
            "1 finding(s) reported as alert"
        )
