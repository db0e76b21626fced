"""A tiny root that earns findings of every built-in check, cheaply, with the knobs tests turn.

One dpkg package owns a binary, a document and two oddly named binaries (a space, a non-UTF-8
byte); `tamper` changes any of them. `extras` adds a planted SSH key (425, preceded by comment
lines so the finding has a line), a `/tmp/xmrig` copy of sleep (426, critical with its digest in a
`--miner-digests` file) and a task definition with a literal token in its environment (424).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scanner

BINARY = b"usr/bin/tool"
DOCUMENT = b"usr/share/doc/tool/copyright"  # not a binary: a change is medium, not high
SPACED = b"usr/bin/my tool"
LATIN1 = b"usr/bin/caf\xe9"
OWNED = (BINARY, DOCUMENT, SPACED, LATIN1)
# A literal value in a variable named like a token: 424 flags it (medium: by its name).
TOKEN = "ghp_" + "Zq7Rk2Lm9Xw4Tb8Nc3Vd6Hj1Py5Gs0Fe2Aa"


@dataclass(frozen=True)
class Tree:
    """Where the root is and the scan-root options that bring in its outside inputs."""

    root: Path
    options: tuple[str, ...]
    task: Path | None = None
    digests: Path | None = None

    def scan(self, **arguments: Any) -> scanner.Report:
        """The library's report for the same inputs as `options` give the command line."""
        return scanner.scan_root(
            self.root,
            all_files=True,
            process_env=False,
            task_definitions=[str(self.task)] if self.task else [],
            miner_digests=[str(self.digests)] if self.digests else [],
            **arguments,
        )


def _content(name: bytes) -> bytes:
    if name == DOCUMENT:
        return b"GPL\n"
    return b"\x7fELF\x02\x01\x01\0" + name + b"\0" * 64


def build(
    base: Path,
    *,
    tamper: tuple[bytes, ...] = (),
    extras: bool = False,
    unverifiable: bool = False,
) -> Tree:
    """A root under `base`; `unverifiable` adds a listed file behind a symlink loop (exit 3)."""
    root = base / "root"
    raw = bytes(root)
    for directory in (b"usr/bin", b"usr/share/doc/tool", b"var/lib/dpkg/info", b"tmp", b"srv"):
        os.makedirs(raw + b"/" + directory, exist_ok=True)
    md5sums = b""
    for name in OWNED:
        data = _content(name)
        with open(raw + b"/" + name, "wb") as handle:
            handle.write(data + (b"tampered" if name in tamper else b""))
        os.chmod(raw + b"/" + name, 0o644 if name == DOCUMENT else 0o755)
        md5sums += hashlib.md5(data).hexdigest().encode() + b"  " + name + b"\n"
    if unverifiable:
        md5sums += b"0123456789abcdef0123456789abcdef  loop/tool\n"
        os.symlink("loop", root / "loop")
    (root / "var/lib/dpkg/status").write_text(
        "Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Description: a tool\n\n"
    )
    with open(raw + b"/var/lib/dpkg/info/tool.md5sums", "wb") as handle:
        handle.write(md5sums)
    with open(raw + b"/var/lib/dpkg/info/tool.list", "wb") as handle:
        handle.write(b"/usr\n/usr/bin\n" + b"".join(b"/" + name + b"\n" for name in OWNED))
    # --all-files: 448 verifies the document too (a changed document is medium, a binary high).
    options: list[str] = ["--no-process-env", "--all-files"]
    if not extras:
        return Tree(root, tuple(options))
    task, digests = _extras(base, root)
    options += ["--task-definition", str(task), "--miner-digests", str(digests)]
    return Tree(root, tuple(options), task, digests)


def _extras(base: Path, root: Path) -> tuple[Path, Path]:
    key = base / "deploy_key"
    # A real key by a real tool; a missing ssh-keygen fails here (install.sh --test brings it).
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    (root / "srv/app").mkdir(parents=True)
    (root / "srv/app/deploy.key").write_bytes(b"# deploy key\n# rotate yearly\n" + key.read_bytes())
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", root / "tmp/xmrig")
    digests = base / "miners.txt"
    sha256 = hashlib.sha256((root / "tmp/xmrig").read_bytes()).hexdigest()
    digests.write_text(f"{sha256}  planted-xmrig\n")
    task = base / "task.json"
    task.write_text(
        json.dumps(
            {
                "family": "web",
                "containerDefinitions": [
                    {
                        "name": "app",
                        "environment": [
                            {"name": "GITHUB_TOKEN", "value": TOKEN},
                            {"name": "LOG_LEVEL", "value": "info"},
                        ],
                    }
                ],
            }
        )
    )
    return task, digests
