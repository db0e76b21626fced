"""Each command's --help: exits 0 and lists that command's own options, not another's."""

from __future__ import annotations

import re

import pytest

from scanner import cli


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What `scan-root ARGV --help` prints, after checking that it exits 0 with nothing on stderr."""
    try:
        status = cli.main([*argv, "--help"])
    except SystemExit as stop:  # argparse's own --help
        status = stop.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    return captured.out


def _options(text: str) -> set[str]:
    """The long options the help text names, e.g. {"--checks", "--tag"}."""
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


# What only a root scan has, what only an image scan has, what only the other commands have.
ROOT_ONLY = {"--no-process-env", "--state-in-root"}
SCAN_BOTH = {
    "--checks",
    "--all-files",
    "--exclude",
    "--task-definition",
    "--env-file",
    "--miner-digests",
    "--max-content-size",
    "--policy",
    "--format",
    "--output",
    "--fail-on",
    "--exit-zero",
    "--baseline",
    "--update-baseline",
    "--state",
    "--rescan",
    "--jobs",
    "--max-cpu",
    "--nice",
    "--quiet",
}
POLICY_CHECK = {"--host", "--image", "--container", "--label", "--fargate"}


def test_root_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    commands = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    for usage in (
        "scan-root [ROOT] [options]",
        "scan-root image IMAGE [options]",
        "scan-root packages [ROOT] [options]",
        "scan-root policy check FILE [options]",
    ):
        assert usage in commands
    assert "--help lists its own options" in text


def test_root_help_lists_the_root_scan_options_only(capsys: pytest.CaptureFixture[str]) -> None:
    options = _options(_help(capsys))
    assert options >= SCAN_BOTH | ROOT_ONLY
    assert "--tag" not in options  # an image's
    assert not POLICY_CHECK & options


def test_image_help_lists_only_what_applies_to_images(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "image")
    options = _options(text)
    assert SCAN_BOTH | {"--tag"} <= options
    # PID 1's environment is the live /'s; an image's root is a private temporary directory.
    assert not ROOT_ONLY & options
    assert text.startswith("usage: scan-root image IMAGE")
    assert "root directory to scan" not in text
    assert "OCI image layout" in text


def test_image_still_accepts_the_options_it_does_not_list() -> None:
    """Hidden from its help, not refused: scripts pass --no-process-env to both scans."""
    parser = cli._parser(image=True)
    args = parser.parse_args(["img.tar", "--no-process-env", "--state", "s", "--state-in-root"])
    assert args.no_process_env and args.state_in_root


def test_packages_help_lists_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "packages")
    assert _options(text) == {"--help", "--tag", "--format", "--output"}
    assert "{table,json}" in text  # no sarif for a package list
    assert text.startswith("usage: scan-root packages")


def test_policy_help_is_help_not_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-h"):
        try:
            status = cli.main(["policy", flag])
        except SystemExit as stop:
            status = stop.code  # type: ignore[assignment]
        captured = capsys.readouterr()
        assert status == cli.EXIT_CLEAN, captured.err
        assert "check FILE" in captured.out
        assert "scan-root policy check --help" in captured.out


def test_policy_check_help_lists_its_target_fields(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "policy", "check")
    assert _options(text) == {"--help"} | POLICY_CHECK
    assert "0  the policy is valid" in text


def test_unknown_policy_command_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy", "chekc", "x.yaml"]) == cli.EXIT_USAGE
    assert "scan-root policy --help" in capsys.readouterr().err
