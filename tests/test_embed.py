"""`scan-root embed` on the reference task definition and its variants: every output valid per
botocore's own RegisterTaskDefinition model, or a clear error (exit 2, no traceback)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from child import child_env

from taskdef import cli
from taskdef.embed import DEFENDER_NAME, EmbedError, EmbedOptions, embed
from taskdef.validate import register_errors

SHARED = Path(
    os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)
REFERENCE = SHARED / "examples" / "fargate-task-definition.json"
SECRET = "arn:aws:secretsmanager:us-east-1:012345678910:secret:scan-root-token-AbCdEf"
CONSOLE = "https://console.example.com"
needs_shared = pytest.mark.skipif(
    not REFERENCE.exists(), reason="../shared is not beside the checkout"
)


def reference() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(REFERENCE.read_text())
    return document


def run(
    document: object, *extra: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[int, Any, str]:
    source = tmp_path / "taskdef.json"
    source.write_text(json.dumps(document))
    code = cli.main([str(source), "--console", CONSOLE, "--token-secret", SECRET, *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def defender_of(document: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in document["containerDefinitions"] if c["name"] == DEFENDER_NAME]
    assert len(found) == 1
    return found[0]


@needs_shared
def test_the_reference_task_gets_the_defender(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(reference(), capsys=capsys, tmp_path=tmp_path)
    assert code == 0, err
    assert register_errors(out) == []
    assert out["pidMode"] == "task"
    defender = defender_of(out)
    assert defender["essential"] is False and defender["command"] == ["defend"]
    assert defender["linuxParameters"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
    assert defender["secrets"] == [{"name": "SCAN_ROOT_TOKEN", "valueFrom": SECRET}]
    assert {"name": "SCAN_ROOT_CONSOLE", "value": CONSOLE} in defender["environment"]
    assert defender["healthCheck"]["command"][-2:] == ["defend", "--healthcheck"]
    # The app's logs' group and region, under the defender's own prefix.
    app_logs = reference()["containerDefinitions"][0]["logConfiguration"]["options"]
    logs = defender["logConfiguration"]["options"]
    assert logs["awslogs-group"] == app_logs["awslogs-group"]
    assert logs["awslogs-stream-prefix"] == "scan-root"
    # The application's own definition is untouched.
    assert out["containerDefinitions"][0] == reference()["containerDefinitions"][0]
    assert "64 of the task's 256 CPU units" in err and "128 of its 512 MiB" in err


def describe_output(document: dict[str, Any]) -> dict[str, Any]:
    described = {
        **document,
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:012345678910:task-definition/x:3",
        "revision": 3,
        "status": "ACTIVE",
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
        "compatibilities": ["EC2", "FARGATE"],
        "registeredAt": "2026-12-01T10:00:00.000Z",
        "registeredBy": "arn:aws:iam::012345678910:user/ops",
    }
    return {"taskDefinition": described, "tags": [{"key": "team", "value": "payments"}]}


def without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(document: dict[str, Any]) -> dict[str, Any]:
        document.pop(key)
        return document

    return change


def with_values(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(document: dict[str, Any]) -> dict[str, Any]:
        document.update(values)
        return document

    return change


def app(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(document: dict[str, Any]) -> dict[str, Any]:
        document["containerDefinitions"][0].update(values)
        return document

    return change


def no_logs(document: dict[str, Any]) -> dict[str, Any]:
    document["containerDefinitions"][0].pop("logConfiguration")
    return document


def plaintext_in_environment(document: dict[str, Any]) -> dict[str, Any]:
    document["containerDefinitions"][0]["environment"] = [
        {"name": "SCAN_ROOT_TOKEN", "value": "srt_live_secret"}
    ]
    return document


def ec2_only(document: dict[str, Any]) -> dict[str, Any]:
    document["requiresCompatibilities"] = ["EC2"]
    document.pop("cpu")
    document.pop("memory")
    document["containerDefinitions"][0]["memory"] = 256
    return document


VALID: dict[str, Callable[[dict[str, Any]], Any]] = {
    "describe output": describe_output,
    "vCPU and GB sizes": with_values(cpu="0.5 vCPU", memory="1 GB"),
    "pidMode task already": with_values(pidMode="task"),
    "missing logConfiguration": no_logs,
    "EC2 compatibility, no task size": ec2_only,
    "app declares its share": app(cpu=128, memory=256),
}
INVALID: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no task size on Fargate": (without("cpu"), "needs task-level cpu and memory"),
    "too small a task": (app(cpu=256), "does not fit"),
    "memory taken by the app": (app(memory=512), "does not fit"),
    "pidMode host": (with_values(pidMode="host"), "pidMode is 'host'"),
    "plaintext token in an environment": (plaintext_in_environment, "as plain text"),
    "no execution role": (without("executionRoleArn"), "executionRoleArn is missing"),
    "ten containers": (
        lambda d: {
            **d,
            "containerDefinitions": [
                {**d["containerDefinitions"][0], "name": f"c{n}"} for n in range(10)
            ],
        },
        "ECS allows 10 containers",
    ),
    "not valid for ECS": (app(cpu="128"), "not valid for RegisterTaskDefinition"),
    "non-ASCII digits in the size": (with_values(cpu="\u0662\u0665\u0666"), "is not a CPU size"),
    "a boolean memory": (app(memory=True), "memory must be a whole number"),
    "a container without an image": (
        lambda d: {**d, "containerDefinitions": [{"name": "app", "essential": True}]},
        "needs an image",
    ),
}


@needs_shared
@pytest.mark.parametrize("variant", sorted(VALID))
def test_variants_that_take_the_defender(
    variant: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = VALID[variant](copy.deepcopy(reference()))
    code, out, err = run(document, capsys=capsys, tmp_path=tmp_path)
    assert code == 0, err
    assert register_errors(out) == []
    assert out["pidMode"] == "task" and defender_of(out)["essential"] is False
    assert not set(out) & {"taskDefinitionArn", "revision", "status", "compatibilities"}
    if variant == "describe output":
        assert out["tags"] == [{"key": "team", "value": "payments"}] and "dropped" in err
    if variant == "missing logConfiguration":
        assert "logConfiguration" not in defender_of(out) and "no container logs" in err
    if variant == "EC2 compatibility, no task size":
        assert "not a Fargate task definition" in err and "no task-level size" in err
    if variant == "vCPU and GB sizes":
        assert "of the task's 512 CPU units" in err and "of its 1024 MiB" in err


@needs_shared
@pytest.mark.parametrize("variant", sorted(INVALID))
def test_variants_refused_with_a_clear_error(
    variant: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    change, message = INVALID[variant]
    code, out, err = run(change(copy.deepcopy(reference())), capsys=capsys, tmp_path=tmp_path)
    assert code == 2 and out is None
    assert message in err and "Traceback" not in err


@needs_shared
def test_embedding_twice_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, once, _ = run(reference(), capsys=capsys, tmp_path=tmp_path)
    code, twice, err = run(once, capsys=capsys, tmp_path=tmp_path)
    assert code == 0 and twice == once and "already embedded" in err


@pytest.mark.parametrize(
    "secret",
    [
        "srt_0123456789abcdef",  # the token itself
        "arn:aws:secretsmanager:us-east-1:012345678910:secret:x\nX-Injected: 1",
        "arn:aws:s3:::bucket/token",
        "",
    ],
)
def test_anything_but_a_secret_reference_is_refused(secret: str) -> None:
    document = {
        "family": "f",
        "executionRoleArn": "arn:aws:iam::012345678910:role/r",
        "containerDefinitions": [{"name": "app", "image": "busybox"}],
    }
    with pytest.raises(EmbedError, match="must be the ARN"):
        embed(document, EmbedOptions(console=CONSOLE, token_secret=secret))


def test_the_validator_can_refuse_what_embed_makes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A defender definition that ECS would refuse (cpu as text) must not be printed.
    from taskdef import embed as embedding

    real = embedding.defender_container

    def broken(options: EmbedOptions, logs: Any) -> dict[str, Any]:
        return {**real(options, logs), "cpu": "64"}

    monkeypatch.setattr(embedding, "defender_container", broken)
    document = {
        "family": "f",
        "executionRoleArn": "arn:aws:iam::012345678910:role/r",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}],
    }
    code, out, err = run(document, capsys=capsys, tmp_path=tmp_path)
    assert code == 2 and out is None and "a bug in scan-root embed" in err


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"task"',
        "{",
        '{"family": "f", "family": "g", "containerDefinitions": []}',
        '{"containerDefinitions": {"name": "x"}}',
        '{"containerDefinitions": [1, 2]}',
        '{"containerDefinitions": [{"name": "a", "cpu": NaN}]}',
        "[" * 10_000 + "]" * 10_000,
        '{"family": "' + "f" * 5_000_000 + '"}',
        '{"taskDefinition": "x"}',
        "\ufeff{}",
        (
            '{"cpu": "lots", "memory": "512", "requiresCompatibilities": ["FARGATE"], '
            '"executionRoleArn": "r", "family": "f", "containerDefinitions": '
            '[{"name": "a", "image": "i"}]}'
        ),
    ],
)
def test_hostile_input_is_a_clear_error(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "taskdef.json"
    source.write_text(text)
    code = cli.main([str(source), "--console", CONSOLE, "--token-secret", SECRET])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.startswith("scan-root embed: ") and "Traceback" not in err and len(err) < 4000


@needs_shared
def test_the_command_reads_stdin_and_writes_a_file(tmp_path: Path) -> None:
    output = tmp_path / "embedded.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "console.entry",
            "embed",
            "-",
            "--console",
            CONSOLE,
            "--token-secret",
            SECRET,
            "--output",
            str(output),
        ],
        input=REFERENCE.read_text(),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert register_errors(json.loads(output.read_text())) == []


def test_without_botocore_nothing_is_printed_unjudged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    document = {
        "family": "f",
        "executionRoleArn": "arn:aws:iam::012345678910:role/r",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}],
    }
    code, out, err = run(document, capsys=capsys, tmp_path=tmp_path)
    assert code == 2 and out is None and "scan-root[embed]" in err


@pytest.mark.parametrize(
    "console", ["https://user:pass@console.example", "https://c.example/?token=x", "ftp://c", "c"]
)
def test_a_console_url_with_credentials_or_no_scheme_is_refused(console: str) -> None:
    document = {
        "family": "f",
        "executionRoleArn": "arn:aws:iam::012345678910:role/r",
        "containerDefinitions": [{"name": "app", "image": "busybox"}],
    }
    with pytest.raises(EmbedError, match="--console"):
        embed(document, EmbedOptions(console=console, token_secret=SECRET))


def test_the_judge_is_botocores_own_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A model planted where a botocore session would look first must not change the verdict.
    planted = tmp_path / "ecs" / "2014-11-13"
    planted.mkdir(parents=True)
    (planted / "service-2.json").write_text('{"version": "2.0", "metadata": {}, "operations": {}}')
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    assert register_errors({"family": "f", "containerDefinitions": [{"name": "a", "cpu": "1"}]})
