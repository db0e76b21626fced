"""The console's acceptance scenario (testsupport/ecs_scenario.py): real reports from four tasks."""

from __future__ import annotations

import uuid
from pathlib import Path

import ecs_scenario
import pytest
from ecs_scenario import Scenario

import _native

pytestmark = pytest.mark.skipif(
    not ecs_scenario.DEFINITION.is_file(),
    reason=f"../shared is absent ({ecs_scenario.DEFINITION} not found)",
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return ecs_scenario.run_scenario(tmp_path_factory.mktemp("ecs"))


def test_four_reports_one_per_task(scenario: Scenario) -> None:
    assert list(scenario.tasks) == ["T1", "T2", "T3", "T4"]
    assert len(scenario.reports) == 4 and scenario.codes == [1, 1, 1, 0]
    for report in scenario.reports:
        assert report["schema"] == 1 and report["scanner"]["name"] == "scan-root"
        assert report["complete"] is True
        assert report["scanner"]["implementation"] == _native.IMPLEMENTATION  # the same core
        assert [p["kind"] for p in report["problems"]] == ["no-package-db"]  # no task-metadata


def test_hosts_fargate_tasks_are_their_own_host_ec2_tasks_the_instance(
    scenario: Scenario,
) -> None:
    t1, t2, t3, t4 = (scenario.report(label)["target"] for label in ("T1", "T2", "T3", "T4"))
    assert t1["host"] == scenario.tasks["T1"].task_id
    assert t2["host"] == scenario.tasks["T2"].task_id
    assert t3["host"] == t4["host"] == scenario.instance
    assert len({t1["host"], t2["host"], t3["host"]}) == 3  # P runs on three hosts


def test_task_identity_and_launch_types(scenario: Scenario) -> None:
    expected = {
        "T1": ("fargate-task", "FARGATE", "P"),
        "T2": ("fargate-task-web", "FARGATE", "P"),
        "T3": ("ec2-task", "EC2", "P"),
        "T4": ("billing-api", "EC2", "Q"),
    }
    for label, (family, launch_type, image) in expected.items():
        task = scenario.tasks[label]
        target = scenario.report(label)["target"]
        assert target["kind"] == "rootfs"
        assert target["launch_type"] == launch_type  # the platform's word (AWS_EXECUTION_ENV)
        assert target["task"]["id"] == task.task_id and target["task"]["arn"] == task.arn
        assert target["task"]["arn"].endswith(f":task/default/{task.task_id}")
        assert (target["task"]["family"], target["task"]["launch_type"]) == (family, launch_type)
        assert target["task"]["cluster"] == task.cluster
        assert (target["container"]["image"], target["container"]["image_id"]) == (
            scenario.images[image]
        )
        assert target["container"]["name"] == task.container
    # The reference definition's image and container name are image P's.
    assert scenario.images["P"][0] == "ubuntu:18.04"
    assert scenario.tasks["T1"].container == "Fargate-vul-comp-test"
    assert scenario.images["P"] != scenario.images["Q"]
    assert len({task.task_id for task in scenario.tasks.values()}) == 4


def test_the_miner_fires_426_in_every_task_of_image_p_only(scenario: Scenario) -> None:
    for label, task in scenario.tasks.items():
        found = [(f["check"], f["path"]) for f in scenario.report(label)["findings"]]
        if task.image_label == "P":
            assert found == [("426", "/tmp/xmrig")], label
            finding = scenario.report(label)["findings"][0]
            assert finding["kind"] == "crypto-miner" and finding["miner"] == "xmrig"
        else:
            assert found == [], label


def test_scan_ids_are_distinct_uuid4s(scenario: Scenario) -> None:
    ids = [report["scan_id"] for report in scenario.reports]
    assert len(set(ids)) == 4
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_two_runs_are_two_worlds(scenario: Scenario, tmp_path: Path) -> None:
    """Fresh task ids and scan ids per run: a console can ingest both without collisions."""
    again = ecs_scenario.run_scenario(tmp_path)
    assert {t.task_id for t in again.tasks.values()}.isdisjoint(
        t.task_id for t in scenario.tasks.values()
    )
    assert {r["scan_id"] for r in again.reports}.isdisjoint(r["scan_id"] for r in scenario.reports)
    assert again.images == scenario.images  # the same two images, though
