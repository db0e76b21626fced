"""The product's reference task definition parses; broken copies give errors naming the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scanner.environment import read_task_definition
from scanner.errors import UsageError


@pytest.fixture
def reference(shared_fixtures: Path) -> Path:
    path = shared_fixtures.parent.parent / "examples" / "fargate-task-definition.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture
def document(reference: Path) -> dict[str, Any]:
    loaded = json.loads(reference.read_bytes())
    assert isinstance(loaded, dict)
    return loaded


def test_reference_task_definition(reference: Path) -> None:
    task = read_task_definition(str(reference))
    assert task.family == "fargate-vulnerability-compliance-task"
    assert task.containers == ("Fargate-vul-comp-test",)
    assert task.variables == () and task.references == () and task.problems == ()


def test_reference_describe_output(document: dict[str, Any], tmp_path: Path) -> None:
    # `aws ecs describe-task-definition` wraps the register form and adds a revision.
    path = tmp_path / "described.json"
    path.write_text(json.dumps({"taskDefinition": {**document, "revision": 3}}))
    task = read_task_definition(str(path))
    assert task.family == "fargate-vulnerability-compliance-task"
    assert task.containers == ("Fargate-vul-comp-test",)


def test_reference_images(reference: Path, document: dict[str, Any], tmp_path: Path) -> None:
    assert read_task_definition(str(reference)).images == ("ubuntu:18.04",)
    document["containerDefinitions"][0]["image"] = 18.04
    broken = tmp_path / "image.json"
    broken.write_text(json.dumps(document))
    with pytest.raises(UsageError, match=r"containerDefinitions\[0\]\.image is not a string"):
        read_task_definition(str(broken))


def test_environment_of_a_reference_copy(document: dict[str, Any], tmp_path: Path) -> None:
    document["containerDefinitions"][0]["environment"] = [{"name": "MODE", "value": "x"}]
    path = tmp_path / "env.json"
    path.write_text(json.dumps(document))
    task = read_task_definition(str(path))
    assert [(v.name, v.source) for v in task.variables] == [
        (
            "MODE",
            "task-definition:fargate-vulnerability-compliance-task/container:Fargate-vul-comp-test",
        )
    ]


def _break(document: dict[str, Any], how: str) -> bytes:
    if how == "invalid-json":
        return json.dumps(document).encode()[:-7]
    if how == "no-containerDefinitions":
        del document["containerDefinitions"]
    elif how == "empty-containerDefinitions":
        document["containerDefinitions"] = []
    elif how == "containerDefinitions-not-list":
        document["containerDefinitions"] = {"name": "x"}
    elif how == "env-without-name":
        document["containerDefinitions"][0]["environment"] = [{"value": "x"}]
    elif how == "env-not-list":
        document["containerDefinitions"][0]["environment"] = "A=1"
    elif how == "environmentFiles-value-not-string":
        document["containerDefinitions"][0]["environmentFiles"] = [{"value": {"token": "x"}}]
    elif how == "top-level-list":
        return json.dumps([document]).encode()
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("invalid-json", "not valid JSON"),
        ("no-containerDefinitions", "no containerDefinitions"),
        ("empty-containerDefinitions", "containerDefinitions is empty"),
        ("containerDefinitions-not-list", "containerDefinitions must be a list of objects"),
        ("env-without-name", "containerDefinitions[0].environment[0].name is missing"),
        ("env-not-list", "containerDefinitions[0].environment must be a list of objects"),
        ("top-level-list", "the top level must be a JSON object"),
        (
            "environmentFiles-value-not-string",  # was echoed whole in a problem
            "containerDefinitions[0].environmentFiles[0].value is not a string",
        ),
    ],
)
def test_broken_copies(document: dict[str, Any], tmp_path: Path, how: str, expected: str) -> None:
    path = tmp_path / f"{how}.json"
    path.write_bytes(_break(document, how))
    with pytest.raises(UsageError) as caught:
        read_task_definition(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(UsageError, match=r"absent\.json: cannot read task definition"):
        read_task_definition(str(path))


def test_a_revision_of_true_is_no_revision(document: dict[str, Any], tmp_path: Path) -> None:
    """JSON true is an int to Python: it named the task `family:True`."""
    document["revision"] = True
    path = tmp_path / "task.json"
    path.write_text(json.dumps(document))
    task = read_task_definition(str(path))
    assert task.revision is None
    assert all(":True" not in variable.source for variable in task.variables)
