"""Nothing from the target reaches a terminal as a control sequence: names, versions, messages
and custom-check output are shown with visible escapes, and no line can be forged."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from imagebuilder import Put, build_layers, image_config, write_docker_save

from scanner.cli import main
from scanner.output.escape import json_safe, terminal_safe

# What a hostile name tries: clear the screen, set the title, a fake hyperlink (OSC 8), CR back
# over the line, a new line forging the verdict, a one-byte CSI, a bidi override.
HOSTILE = (
    "x\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://127.0.0.1/\x07link\x1b]8;;\x07"
    "\rno findings; 0 files walked\n\x9b31m\u202egnp.exe\u2028z"
)
# Our own table may use ESC only for its colours, and only with a terminal: none here.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_terminal_safe_escapes_every_control() -> None:
    safe = terminal_safe(HOSTILE)
    assert not CONTROL.search(safe) and "\n" not in safe
    assert "\\x1b[2J" in safe and "\\u202e" in safe and "\\x9b" in safe
    assert terminal_safe("plain /usr/bin/ls café") == "plain /usr/bin/ls café"


@pytest.fixture
def hostile_root(tmp_path: Path) -> Path:
    """A dpkg root whose package name, version and file name carry escapes; the file is
    tampered (a finding) and a second one is missing (another finding)."""
    root = tmp_path / "root"
    name = HOSTILE.replace("/", "_").replace("\n", "N").encode("utf-8")
    (root / "usr/bin").mkdir(parents=True)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    binary = b"usr/bin/" + name
    with open(bytes(root) + b"/" + binary, "wb") as handle:
        handle.write(b"\x7fELF tampered")
    md5 = hashlib.md5(b"\x7fELF").hexdigest().encode()
    (root / "var/lib/dpkg/info/tool.md5sums").write_bytes(md5 + b"  " + binary + b"\n")
    version = HOSTILE.replace("\n", " ").replace("\r", " ")
    (root / "var/lib/dpkg/status").write_text(
        f"Package: tool\nStatus: install ok installed\nVersion: 1.0{version}\n"
        "Architecture: amd64\nDescription: t\n\n"
    )
    os.symlink("x" * 10, root / ("link" + HOSTILE.replace("/", "_")))
    return root


def test_the_table_shows_hostile_names_escaped(
    hostile_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(hostile_root), "--no-process-env", "--all-files", "--format", "table"])
    out = capsys.readouterr().out
    assert code == 1
    assert not CONTROL.search(out), [m.group() for m in CONTROL.finditer(out)][:5]
    verdicts = [line for line in out.splitlines() if line.startswith(("no findings", "1 finding"))]
    assert len(verdicts) == 1 and verdicts[0] == out.splitlines()[-1]
    assert "\\x1b[2J" in out  # shown, not obeyed


def test_packages_table_shows_hostile_names_escaped(
    hostile_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["packages", str(hostile_root)]) == 0
    out = capsys.readouterr().out
    assert not CONTROL.search(out) and "\\x1b" in out


def test_errors_on_stderr_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / ("nope" + HOSTILE.replace("/", "_"))
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert not CONTROL.search(err.replace("\n", ""))


@pytest.mark.parametrize("checks", [" ", ",", " , ,"])
def test_checks_naming_nothing_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checks: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(tmp_path), "--checks", checks])
    assert caught.value.code == 2
    assert "names no check" in capsys.readouterr().err


# A lone surrogate ("\ud800" in a JSON input) cannot be encoded: printing one was an exit 5.
SURROGATE_NAME = "GITHUB\ud800TOKEN\x1b]0;t\x07\u202e"
TOKEN = "ghp_" + "Zq9xW2" * 6  # a well-formed, fake GitHub token


def test_terminal_safe_shows_surrogates_and_astral_format_characters() -> None:
    assert terminal_safe("a\ud800\udcff") == "a\\ud800\\udcff"
    assert terminal_safe("tag\U000e0001") == "tag\\U000e0001"  # a format character past U+FFFF
    assert terminal_safe("\u200b\ufeff\u2066") == "\\u200b\\ufeff\\u2066"


def test_json_safe_keeps_the_value_and_hides_what_a_terminal_obeys() -> None:
    value = {"a\ud800": ["x\x9b\u202e\x7f\u2028café\ufeff\U0001f600\U000e0001\n\x1b"]}
    text = json_safe(json.dumps(value, ensure_ascii=False, indent=2))
    assert json.loads(text) == value
    assert not CONTROL.search(text.replace("\n", ""))
    assert "café" in text and "\U0001f600" in text  # other non-ASCII stays readable
    text.encode("utf-8")  # no lone surrogate left


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(*(_strings(item) for item in items))


@pytest.fixture
def hostile_image(tmp_path: Path) -> Path:
    """An image whose config names a variable with a lone surrogate and escapes, whose tag and
    file names carry escapes."""
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    layers = build_layers(
        root, [Put("srv/" + HOSTILE.replace("/", "_"), b"data", 0o644)], tmp_path / "layers"
    )
    config = image_config(env=[f"{SURROGATE_NAME}={TOKEN}", "PATH=/usr/bin"])
    tarball = tmp_path / "image.tar"
    write_docker_save(tarball, layers, config, ["app:1" + HOSTILE.replace("\n", "")])
    return tarball


@pytest.mark.parametrize("form", ["table", "json", "sarif"])
def test_an_images_hostile_names_are_escaped_in_every_format(
    hostile_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    baseline = tmp_path / "baseline.json"
    argv = ["image", str(hostile_image), "--quiet", "--no-process-env", "--format", form]
    assert main([*argv, "--checks", "424"]) == 1
    out = capsys.readouterr().out
    assert not CONTROL.search(out.replace("\n", "")), [m.group() for m in CONTROL.finditer(out)]
    assert TOKEN not in out and TOKEN[4:12] not in out
    # A name that has no name's shape may be pasted text: only its length is shown.
    hidden = f"(a name not shown: {len(SURROGATE_NAME)} chars)"
    if form == "table":
        assert hidden in out and "GITHUB" not in out
        assert sum(line.startswith("1 finding") for line in out.splitlines()) == 1
    else:
        assert hidden in _strings(json.loads(out)) and "GITHUB" not in out
    # The baseline names the variable too: written, then read back as the same name.
    assert main([*argv, "--baseline", str(baseline)]) == 0
    assert main([*argv, "--baseline", str(baseline)]) == 0
    assert not CONTROL.search(baseline.read_text().replace("\n", ""))


@pytest.mark.skipif(os.geteuid() != 0, reason="custom checks need root for their sandbox")
def test_custom_check_output_and_rule_names_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target's own /bin/sh prints the escapes; a policy rule's name carries them too."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(os.path.realpath("/bin/sh"), root / "bin/sh")
    ldd = subprocess.run(["ldd", str(root / "bin/sh")], capture_output=True, text=True)
    for library in re.findall(r"(/\S+)", ldd.stdout):
        (root / library.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, root / library.lstrip("/"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        'version: 1\nrules:\n  - name: "r\\e[2J\\a\\u202e"\n    effects: {"*": alert}\n'
        "custom_checks:\n  - id: 9001\n    name: hostile output\n    severity: high\n"
        "    description: prints escapes\n    script: |\n      #!/bin/sh\n"
        "      printf 'x\\033[2J\\033]8;;http://e/\\007link\\033]8;;\\007\\r"
        "no findings; 0 files walked\\n\\302\\233\\342\\200\\256z\\377\\n'\n      exit 1\n"
    )
    argv = [str(root), "--checks", "9001", "--policy", str(policy), "--no-process-env"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert not CONTROL.search(out.replace("\n", ""))
    assert "x\\x1b[2J\\x1b]8;;http://e/\\x07link" in out and "\\x9b\\u202ez\\xff" in out
    assert "[rule: r\\x1b[2J\\x07\\u202e]" in out
    assert next(line for line in out.splitlines() if "no findings" in line).startswith("  high")
