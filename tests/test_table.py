"""The table: grouped by check, the rule that decided each finding, blocks, baseline marks, notices."""

from __future__ import annotations

from scanner.output import FORMATS
from scanner.report import Finding, PackageRef, Problem, Report, Severity

_PACKAGE = PackageRef("tool", "1.0-1", "dpkg")


def _report() -> Report:
    return Report(
        root="/srv/root",
        scanner_version="0.1.0",
        implementation="python",
        checks=("448", "426"),
        findings=[
            Finding(
                "448",
                "Package binaries should not be altered",
                Severity.HIGH,
                "modified",
                b"usr/bin/tool",
                _PACKAGE,
                rule="prod",
                effect="block",
            ),
            Finding(
                "448",
                "Package binaries should not be altered",
                Severity.MEDIUM,
                "modified",
                b"usr/share/doc/x",
                _PACKAGE,
                baselined=True,
            ),
            Finding(
                "426",
                "Image contains binaries used for crypto mining",
                Severity.CRITICAL,
                "crypto-miner",
                b"tmp/xmrig",
                rule="default",
                effect="alert",
            ),
        ],
        problems=[Problem("could-not-verify", "could not verify: loop", b"loop/x", "448")],
        notices=["block effect of rule prod not applied: the target is a Fargate task"],
        suppressed=2,
    )


def test_rule_block_baseline_and_notices_shown() -> None:
    text = FORMATS["table"](_report(), False)
    lines = text.splitlines()
    assert "[448] Package binaries should not be altered: 2 finding(s)" in lines
    assert "[426] Image contains binaries used for crypto mining: 1 finding(s)" in lines
    tool = next(line for line in lines if "/usr/bin/tool" in line)
    assert tool.endswith("[rule: prod; BLOCK]")
    doc = next(line for line in lines if "/usr/share/doc/x" in line)
    assert doc.endswith("[baselined]") and "rule:" not in doc
    miner = next(line for line in lines if "/tmp/xmrig" in line)
    assert miner.endswith("[rule: default]")  # alert is the ordinary effect: not repeated
    notices = lines.index("Notices: 1")
    assert (
        lines[notices + 1]
        == "  block effect of rule prod not applied: the target is a Fargate task"
    )
    assert lines[-1].startswith(
        "3 finding(s) (1 baselined; 2 ignored by the policy) — BLOCKED by 1 — INCOMPLETE: some items could not be verified"
    )
    assert "\033[" not in text


def test_colour_only_when_asked() -> None:
    text = FORMATS["table"](_report(), True)
    assert "\033[1;31mcritical" in text  # severity colours
    assert "\033[1;7;31mBLOCK\033[0m" in text


def test_plain_finding_has_no_decision_suffix() -> None:
    report = Report(root="/", scanner_version="0", implementation="python", checks=("448",))
    report.findings.append(Finding("448", "t", Severity.LOW, "modified", b"etc/x", _PACKAGE))
    line = next(line for line in FORMATS["table"](report, False).splitlines() if "/etc/x" in line)
    assert line.endswith("(dpkg tool 1.0-1)")
    assert "Notices" not in FORMATS["table"](report, False)


def test_the_host_and_task_are_shown() -> None:
    """In a task every container reports the task id as its host: the table says which."""
    report = _report()
    report.target_details["host"] = "a1b2c3d4e5f6"
    report.target_details["task"] = {
        "id": "a1b2c3d4e5f6",
        "family": "web",
        "revision": "7",
        "launch_type": "FARGATE",
    }
    report.target_details["container"] = {"name": "app"}
    second = FORMATS["table"](report, False).splitlines()[1]
    assert second == "  host a1b2c3d4e5f6, task web:7 (FARGATE), container app"
    assert "host" not in FORMATS["table"](_report(), False).splitlines()[1]


def test_list_packages_is_public(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import scanner

    assert "list_packages" in scanner.__all__
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: tool\nStatus: install ok installed\nVersion: 1:1.0-1\nArchitecture: amd64\n\n"
    )
    inventory = scanner.list_packages(tmp_path)
    assert isinstance(inventory, scanner.Inventory)
    assert [(p.name, p.epoch) for p in inventory.packages] == [("tool", 1)]
