"""The fixed small root the golden reports describe: every byte, name and mtime decided here.

One dpkg package `tool` owns a binary, a document, two oddly named binaries (a space, a
non-UTF-8 byte: escaping in every format) and an unchanged binary; all but the last are changed
(448: high, and medium for the document), a listed file sits behind a symlink loop (a problem: the report is incomplete). A made-up OpenSSH key (425:
well formed, never a real key), a file named in a miner digest list (426), and an env file with a
token-like literal (424) complete the set. Nothing here comes from the host (no ssh-keygen, no
copy of a host binary), so two builds on any machine are byte for byte the same.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path

# 2024-01-02 03:04:05 UTC: every file and directory gets it (the report must not depend on it,
# but a scan that ever did would then still be deterministic).
MTIME_NS = 1_704_164_645 * 10**9
BINARY = b"usr/bin/tool"
DOCUMENT = b"usr/share/doc/tool/copyright"
SPACED = b"usr/bin/my tool"
LATIN1 = b"usr/bin/caf\xe9"
CLEAN = b"usr/bin/ok"
OWNED = (BINARY, DOCUMENT, SPACED, LATIN1, CLEAN)
TAMPERED = (BINARY, DOCUMENT, SPACED, LATIN1)
KEY = b"srv/app/deploy.key"
MINER = b"tmp/xmrig"
# A literal value in a variable named like a token (made up: the pattern, not a credential).
TOKEN = "ghp_" + "Zq7Rk2Lm9Xw4Tb8Nc3Vd6Hj1Py5Gs0Fe2Aa"


def _content(name: bytes) -> bytes:
    if name == DOCUMENT:
        return b"GPL\n"
    return b"\x7fELF\x02\x01\x01\0" + name + b"\0" * 64


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def openssh_key(comment: bytes = b"golden") -> bytes:
    """An unencrypted OpenSSH ed25519 private key file of fixed, made-up bytes.

    Well formed as PROTOCOL.key says (magic, none/none, one public blob, a private section with
    equal check integers and padding 1, 2, 3...), so 425 flags it; its numbers are not a key
    pair anyone holds.
    """
    public = hashlib.sha256(b"golden public").digest()
    seed = hashlib.sha256(b"golden seed").digest()
    blob = _string(b"ssh-ed25519") + _string(public)
    private = struct.pack(">II", 0x60D1DE4, 0x60D1DE4) + blob + _string(seed + public)
    private += _string(comment)
    private += bytes(range(1, 1 + (-len(private) % 8)))
    body = b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"")
    body += struct.pack(">I", 1) + _string(blob) + _string(private)
    text = base64.b64encode(body)
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + b"\n".join(lines)
        + b"\n-----END OPENSSH PRIVATE KEY-----\n"
    )


def _write(raw: bytes, name: bytes, data: bytes, mode: int) -> None:
    with open(raw + b"/" + name, "wb") as handle:
        handle.write(data)
    os.chmod(raw + b"/" + name, mode)


def build(base: Path) -> tuple[Path, list[str]]:
    """The root under `base` and the scan-root options that bring in its outside inputs.

    The options make the scan deterministic: one hashing thread, no process environment, every
    package file (so the document is verified too).
    """
    root = base / "root"
    raw = bytes(root)
    directories = (b"usr/bin", b"usr/share/doc/tool", b"var/lib/dpkg/info", b"tmp", b"srv/app")
    for directory in directories:
        os.makedirs(raw + b"/" + directory)
    md5sums = b""
    for name in OWNED:
        data = _content(name)
        mode = 0o644 if name == DOCUMENT else 0o755
        _write(raw, name, data + (b"tampered" if name in TAMPERED else b""), mode)
        md5sums += hashlib.md5(data).hexdigest().encode() + b"  " + name + b"\n"
    md5sums += b"0123456789abcdef0123456789abcdef  loop/tool\n"
    os.symlink("loop", raw + b"/loop")
    _write(
        raw,
        b"var/lib/dpkg/status",
        b"Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        b"Description: a tool\n\n",
        0o644,
    )
    _write(raw, b"var/lib/dpkg/info/tool.md5sums", md5sums, 0o644)
    listed = b"/usr\n/usr/bin\n" + b"".join(b"/" + name + b"\n" for name in OWNED)
    _write(raw, b"var/lib/dpkg/info/tool.list", listed, 0o644)
    _write(raw, KEY, b"# deploy key\n# rotate yearly\n" + openssh_key(), 0o600)
    miner = b"\x7fELF\x02\x01\x01\0golden miner\0" + b"\x90" * 64
    _write(raw, MINER, miner, 0o755)
    digests = base / "miners.txt"
    digests.write_text(f"{hashlib.sha256(miner).hexdigest()}  planted-xmrig\n")
    env = base / "app.env"
    env.write_text(f"GITHUB_TOKEN={TOKEN}\nLOG_LEVEL=info\n")
    # Modes of directories too, whatever the umask; deepest first, so that a directory's time
    # is set after its entries were made.
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    for path in sorted((p for p in root.rglob("*")), key=lambda p: -len(p.parts)):
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    os.utime(root, ns=(MTIME_NS, MTIME_NS))
    options = [
        "--no-process-env",
        "--all-files",
        "--jobs",
        "1",
        "--env-file",
        str(env),
        "--miner-digests",
        str(digests),
    ]
    return root, options
