"""ECS task metadata v4: a local HTTP server (testsupport/ecs_agent.py) plays the agent, well-formed
and broken."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ecs_agent import Agent, running_agent

from scanner.targets.ecs import (
    METADATA_ENV,
    ContainerInfo,
    host_identity,
    read_task_metadata,
    task_id,
)

TASK_ID = "8f03e41243824aea923aca126495f665"
NEW_ARN = f"arn:aws:ecs:us-west-2:111122223333:task/default/{TASK_ID}"
OLD_ARN = f"arn:aws:ecs:us-west-2:111122223333:task/{TASK_ID}"
APP_IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/app:1.2"
APP_IMAGE_ID = "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553"
APP: dict[str, Any] = {
    "DockerId": f"{TASK_ID}-1234567890",
    "Name": "app",
    "DockerName": "app",
    "Image": APP_IMAGE,
    "ImageID": APP_IMAGE_ID,
    "Labels": {"com.amazonaws.ecs.task-arn": NEW_ARN},
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "Type": "NORMAL",
    "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.106"]}],
}
SIDECAR: dict[str, Any] = {
    **APP,
    "DockerId": f"{TASK_ID}-0987654321",
    "Name": "scanner",
    "Image": "scan-root:latest",
    "ImageID": "sha256:" + "ab" * 32,
}


def task_document(arn: str = NEW_ARN, **changes: Any) -> dict[str, Any]:
    """The documented `${ECS_CONTAINER_METADATA_URI_V4}/task` shape, on Fargate."""
    document: dict[str, Any] = {
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": arn,
        "Family": "curltest",
        "Revision": "26",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
        "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
        "AvailabilityZone": "us-west-2d",
        "LaunchType": "FARGATE",
        "Containers": [APP, SIDECAR],
        "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTimestamp": "2021-09-07T16:57:44Z"},
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not None}


@pytest.fixture
def agent() -> Iterator[Agent]:
    with running_agent() as state:
        yield state


def serve_task(agent: Agent, arn: str = NEW_ARN, **changes: Any) -> None:
    agent.serve("/v4/app/task", task_document(arn, **changes))
    agent.serve("/v4/app", APP)
    agent.serve("/v4/scanner/task", task_document(arn, **changes))
    agent.serve("/v4/scanner", SIDECAR)


@pytest.mark.parametrize(
    ("arn", "cluster"),
    [(NEW_ARN, "default"), (OLD_ARN, None)],
    ids=["new-arn", "old-arn"],
)
def test_task_id_both_arn_formats(arn: str, cluster: str | None) -> None:
    assert task_id(arn) == (TASK_ID, cluster)


@pytest.mark.parametrize(
    "arn",
    [
        "",
        TASK_ID,
        "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "arn:aws:s3:::bucket/task/x",
        "arn:aws:ecs:us-west-2:111122223333:task/",
        "arn:aws:ecs:us-west-2:111122223333:task/a/b/c",
    ],
)
def test_task_id_rejects_other_arns(arn: str) -> None:
    with pytest.raises(ValueError):
        task_id(arn)


@pytest.mark.parametrize("arn", [NEW_ARN, OLD_ARN], ids=["new-arn", "old-arn"])
def test_task_and_container_fields(agent: Agent, arn: str) -> None:
    serve_task(agent, arn)
    identity, problems = read_task_metadata(agent.environ())
    assert problems == []
    assert identity is not None
    assert identity.host == TASK_ID
    assert identity.task_arn == arn
    assert identity.cluster == "arn:aws:ecs:us-west-2:111122223333:cluster/default"
    assert (identity.family, identity.revision) == ("curltest", "26")
    assert (identity.launch_type, identity.availability_zone) == ("FARGATE", "us-west-2d")
    assert [c.name for c in identity.containers] == ["app", "scanner"]
    assert identity.container == ContainerInfo(
        "app", APP_IMAGE, APP_IMAGE_ID, f"{TASK_ID}-1234567890", "NORMAL"
    )
    assert identity.task_dict()["family"] == "curltest"
    assert agent.requests == ["/v4/app/task", "/v4/app"]


def test_cluster_from_new_arn_when_field_absent(agent: Agent) -> None:
    serve_task(agent, NEW_ARN, Cluster=None)
    identity, problems = read_task_metadata(agent.environ())
    assert problems == []
    assert identity is not None and identity.cluster == "default"


def test_two_containers_of_one_task_share_the_host(agent: Agent) -> None:
    serve_task(agent)
    first, _ = read_task_metadata(agent.environ("/v4/app"))
    second, _ = read_task_metadata(agent.environ("/v4/scanner"))
    assert first is not None and second is not None
    assert first.host == second.host == TASK_ID
    assert first.container is not None and second.container is not None
    assert (first.container.name, second.container.name) == ("app", "scanner")
    assert host_identity(agent.environ("/v4/app")) == host_identity(agent.environ("/v4/scanner"))


def test_outside_ecs_nothing_is_requested() -> None:
    assert read_task_metadata({}) == (None, [])
    assert host_identity({}) == socket.gethostname()


def test_slow_endpoint_is_a_problem_not_a_hang(agent: Agent) -> None:
    agent.routes["/v4/app/task"] = "slow"
    started = time.monotonic()
    identity, problems = read_task_metadata(agent.environ(), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 1
    assert identity is None
    assert len(problems) == 1 and "within the timeout" in problems[0]


def test_trickling_endpoint_hits_the_overall_deadline(agent: Agent) -> None:
    agent.routes["/v4/app/task"] = "trickle"
    started = time.monotonic()
    identity, problems = read_task_metadata(agent.environ(), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 1
    assert identity is None and "within the timeout" in problems[0]


def test_slow_container_endpoint_shares_the_deadline(agent: Agent) -> None:
    serve_task(agent)
    agent.routes["/v4/app"] = "slow"
    started = time.monotonic()
    identity, problems = read_task_metadata(agent.environ(), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 1
    assert identity is not None and identity.host == TASK_ID and identity.container is None
    assert len(problems) == 1 and "scanned container is unknown" in problems[0]


def test_http_500(agent: Agent) -> None:
    agent.serve("/v4/app/task", {"error": "internal"}, status=500)
    identity, problems = read_task_metadata(agent.environ())
    assert identity is None
    assert len(problems) == 1 and "HTTP 500" in problems[0] and "/v4/app/task" in problems[0]
    assert host_identity(agent.environ()) == socket.gethostname()


def test_invalid_json(agent: Agent) -> None:
    agent.serve("/v4/app/task", b'{"TaskARN": "arn:aws:ecs:')
    identity, problems = read_task_metadata(agent.environ())
    assert identity is None
    assert len(problems) == 1 and "not valid JSON" in problems[0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),  # was RecursionError
        (b'{"TaskARN": ' + b"1" * 5000 + b"}", "number too long"),  # was ValueError
        (b"[" + b"[]," * 500_000 + b"[]]", "JSON values"),  # 1.5 MB: ~40 MB of lists
    ],
    ids=["deep", "long-number", "many-values"],
)
def test_hostile_json_from_the_endpoint_is_a_problem(agent: Agent, body: bytes, says: str) -> None:
    agent.serve("/v4/app/task", body)
    identity, problems = read_task_metadata(agent.environ())
    assert identity is None
    assert len(problems) == 1 and says in problems[0] and "falls back" in problems[0]


@pytest.mark.parametrize("arn", [None, 42, "", "not-an-arn"], ids=["absent", "int", "empty", "bad"])
def test_missing_or_bad_task_arn(agent: Agent, arn: Any) -> None:
    serve_task(agent)
    document = task_document()
    if arn is None:
        del document["TaskARN"]
    else:
        document["TaskARN"] = arn
    agent.serve("/v4/app/task", document)
    identity, problems = read_task_metadata(agent.environ())
    assert identity is None
    assert len(problems) == 1 and "TaskARN" in problems[0]


def test_malformed_containers_are_problems_not_errors(agent: Agent) -> None:
    serve_task(agent, Containers=[{"Name": "no-id"}, "junk", SIDECAR], Family=7.5)
    identity, problems = read_task_metadata(agent.environ())
    assert identity is not None and identity.host == TASK_ID
    assert [c.name for c in identity.containers] == ["scanner"]
    assert identity.family is None
    assert any("Containers[0].DockerId" in p for p in problems)
    assert any("Containers[1] is not a JSON object" in p for p in problems)
    assert any("task.Family is not a string" in p for p in problems)
    # The container asking (app) is not among the listed ones: said, not hidden.
    assert any("not listed in the task document" in p for p in problems)


def test_a_task_of_countless_containers_is_one_problem(agent: Agent) -> None:
    serve_task(agent, Containers=[APP, SIDECAR, *([0] * 500_000)])
    identity, problems = read_task_metadata(agent.environ(), timeout=10)
    assert identity is not None and [c.name for c in identity.containers] == ["app", "scanner"]
    assert len(problems) <= 101 and "lists 500002 containers" in problems[0]


def test_non_object_task_document(agent: Agent) -> None:
    agent.serve("/v4/app/task", [1, 2])
    identity, problems = read_task_metadata(agent.environ())
    assert identity is None and "not a JSON object" in problems[0]


@pytest.mark.parametrize(
    "uri",
    ["https://127.0.0.1/v4/x", "http://metadata.invalid/v4/x", "file:///etc/passwd"],
)
def test_only_http_to_an_ip_literal(uri: str) -> None:
    identity, problems = read_task_metadata({METADATA_ENV: uri}, timeout=0.5)
    assert identity is None and len(problems) == 1


@pytest.mark.parametrize(
    ("suffix", "says"),
    [
        ("[::1", "is not a URI"),  # urlsplit: ValueError, exit 5
        ("/v4/é", "non-ASCII"),  # the request line: UnicodeEncodeError, exit 5
        ("/v4/app\r\nX-Injected: 1", "a control"),  # a header of our own making
        ("/v4/app " + "a" * 3000, "longer than"),
        ("@", "carries credentials"),
    ],
    ids=["bracket", "non-ascii", "crlf", "long", "credentials"],
)
def test_an_unusable_endpoint_uri_is_a_problem_and_never_requested(
    agent: Agent, suffix: str, says: str
) -> None:
    uri = (
        agent.uri.replace("http://", "http://user:s3cret@") + "/v4/app"
        if suffix == "@"
        else ("http://" + suffix if suffix.startswith("[") else agent.uri + suffix)
    )
    serve_task(agent)
    identity, problems = read_task_metadata({METADATA_ENV: uri}, timeout=0.5)
    assert identity is None and len(problems) == 1 and says in problems[0], problems
    assert "s3cret" not in problems[0] and "Injected" not in problems[0]
    assert agent.requests == []


def test_connection_refused_is_a_problem() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    identity, problems = read_task_metadata({METADATA_ENV: f"http://127.0.0.1:{port}/v4/x"})
    assert identity is None and len(problems) == 1


def test_proxy_settings_are_not_used(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    # The endpoint is link-local: a proxy would be another address.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    serve_task(agent)
    identity, problems = read_task_metadata(agent.environ())
    assert problems == [] and identity is not None


def test_report_names_the_task_as_host(
    agent: Agent, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two containers of one task scanning report the same host: the task id."""
    import scanner

    serve_task(agent)
    hosts = []
    for container in ("/v4/app", "/v4/scanner"):
        monkeypatch.setenv(METADATA_ENV, agent.uri + container)
        report = scanner.scan_root(tmp_path, checks=["448"]).to_dict()
        assert report["target"]["task"]["id"] == TASK_ID
        assert report["target"]["container"]["name"] == container.rsplit("/", 1)[1]
        hosts.append(report["target"]["host"])
        assert report["target"]["kind"] == "rootfs"  # a directory, not the task's own root
    assert hosts == [TASK_ID, TASK_ID]


def test_report_host_falls_back_to_hostname_on_a_broken_endpoint(
    agent: Agent, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import scanner

    agent.serve("/v4/app/task", b"not json")
    monkeypatch.setenv(METADATA_ENV, agent.uri + "/v4/app")
    report = scanner.scan_root(tmp_path, checks=["448"])
    assert report.to_dict()["target"]["host"] == socket.gethostname()
    assert any(p.kind == "task-metadata" for p in report.problems)


BLOCK_448 = 'version: 1\nrules:\n  - name: no-tampering\n    effects: {"448": block}\n'


@pytest.fixture
def tampered(tmp_path: Any) -> Any:
    import findings_tree

    return findings_tree.build(tmp_path / "tree", tamper=(findings_tree.BINARY,))


def _gate(tampered: Any, tmp_path: Any, policy: str, *extra: str) -> int:
    from scanner.cli import main

    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return main(
        [str(tampered.root), *tampered.options, "--checks", "448", "--policy", str(path), *extra]
    )


def test_fargate_by_its_execution_env_when_the_endpoint_is_down(
    tampered: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata unreachable, but the platform says Fargate: a block is never applied (exit 1,
    the finding as an alert), where before it blocked (exit 4)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(METADATA_ENV, f"http://127.0.0.1:{port}/v4/app")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
    assert _gate(tampered, tmp_path, BLOCK_448) == 1
    monkeypatch.delenv("AWS_EXECUTION_ENV")
    assert _gate(tampered, tmp_path, BLOCK_448) == 4  # no sign of Fargate: the block holds


@pytest.mark.parametrize(
    ("launch_type", "execution_env", "code"),
    [
        ("FARGATE", None, 1),
        ("EC2", None, 4),
        (None, None, 1),
        ("EC2", "AWS_ECS_FARGATE", 1),  # the platform's word wins: never block Fargate
        (None, "AWS_ECS_EC2", 4),  # no LaunchType: the platform's variable says EC2
        (None, "AWS_ECS_FARGATE", 1),
        (5, None, 1),  # not a launch type: ignored (a problem), as if absent
        (5, "AWS_ECS_EC2", 4),
    ],
)
def test_a_task_is_fargate_by_its_launch_type(
    agent: Agent,
    tampered: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    launch_type: str | int | None,
    execution_env: str | None,
    code: int,
) -> None:
    """An EC2-launch task runs on a host that can be blocked on: it is no Fargate task."""
    serve_task(agent, LaunchType=launch_type)
    monkeypatch.setenv(METADATA_ENV, agent.uri + "/v4/app")
    if execution_env is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    assert _gate(tampered, tmp_path, BLOCK_448) == code


def test_an_offline_task_definitions_family_scopes_rules(tampered: Any, tmp_path: Any) -> None:
    """Collections match the task's name: given offline, the definition's family is it."""
    policy = (
        'version: 1\ncollections:\n  - name: web\n    hosts: ["web-*"]\n'
        'rules:\n  - name: web-quiet\n    collections: [web]\n    effects: {"448": ignore}\n'
    )
    definition = tmp_path / "task.json"
    for family, code in (("web-frontend", 0), ("batch", 1)):
        definition.write_text(
            json.dumps({"family": family, "containerDefinitions": [{"name": "app", "image": "x"}]})
        )
        assert _gate(tampered, tmp_path, policy, "--task-definition", str(definition)) == code


def test_an_offline_fargate_only_task_definition_is_never_blocked(
    tampered: Any, tmp_path: Any
) -> None:
    definition = tmp_path / "task.json"
    for compatibilities, code in ((["FARGATE"], 1), (["EC2"], 4), (["EC2", "FARGATE"], 4)):
        definition.write_text(
            json.dumps(
                {
                    "family": "web",
                    "requiresCompatibilities": compatibilities,
                    "containerDefinitions": [{"name": "app", "image": "x"}],
                }
            )
        )
        assert _gate(tampered, tmp_path, BLOCK_448, "--task-definition", str(definition)) == code


@pytest.mark.parametrize(
    ("platform", "launch_type", "code"),
    [
        ("AWS_ECS_EC2", "FARGATE", 4),  # the endpoint claims Fargate on a host: blocked
        ("AWS_ECS_EC2", None, 4),  # no LaunchType is no licence to lift a block on a host
        ("AWS_ECS_EXTERNAL", "FARGATE", 4),
        ("AWS_ECS_FARGATE", "EC2", 1),  # the endpoint claims a host on Fargate: never blocked
    ],
)
def test_the_platform_is_trusted_over_the_endpoint_launch_type(
    agent: Agent,
    tampered: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    launch_type: str | None,
    code: int,
) -> None:
    serve_task(agent, LaunchType=launch_type)
    monkeypatch.setenv(METADATA_ENV, agent.uri + "/v4/app")
    monkeypatch.setenv("AWS_EXECUTION_ENV", platform)
    assert _gate(tampered, tmp_path, BLOCK_448) == code


def test_offline_definitions_are_fargate_only_when_every_one_is(
    tampered: Any, tmp_path: Any
) -> None:
    """A hostile extra definition that claims Fargate must not lift a block from the others."""
    paths = []
    for family, compatibilities in (("web", ["EC2"]), ("decoy", ["FARGATE"])):
        path = tmp_path / f"{family}.json"
        path.write_text(
            json.dumps(
                {
                    "family": family,
                    "requiresCompatibilities": compatibilities,
                    "containerDefinitions": [{"name": "app", "image": "x"}],
                }
            )
        )
        paths += ["--task-definition", str(path)]
    assert _gate(tampered, tmp_path, BLOCK_448, *paths) == 4


@pytest.mark.parametrize(
    ("launch_type", "platform", "instance"),
    [
        ("FARGATE", None, False),
        (None, None, False),  # says neither: a Fargate task, as the policy decides it
        ("EC2", None, True),
        (None, "AWS_ECS_EC2", True),
        ("FARGATE", "AWS_ECS_EXTERNAL", True),  # the platform's word wins, as for a block
        ("EC2", "AWS_ECS_FARGATE", False),
        ("MANAGED_INSTANCES", None, True),
    ],
)
def test_an_ec2_task_reports_its_instance_as_host(
    agent: Agent,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    launch_type: str | None,
    platform: str | None,
    instance: bool,
) -> None:
    """A Fargate task is its own host (the task id); an EC2 task runs on an instance, which is
    its host (this machine's name), while `target.task` still names the task."""
    import scanner

    serve_task(agent, LaunchType=launch_type)
    monkeypatch.setenv(METADATA_ENV, agent.uri + "/v4/app")
    if platform is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", platform)
    target = scanner.scan_root(tmp_path, checks=["426"]).to_dict()["target"]
    assert target["host"] == (socket.gethostname() if instance else TASK_ID)
    assert target["task"]["id"] == TASK_ID and target["container"]["name"] == "app"
