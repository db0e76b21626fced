"""scanner.keys on real keys and decoys made by openssl, ssh-keygen, gpg, keytool and puttygen."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanner.keys import (
    BINARY_HEAD_SIZE,
    MARKERS,
    WINDOW_AFTER,
    WINDOW_BEFORE,
    PrivateKey,
    inspect_binary,
    inspect_text,
    is_binary_candidate,
)

PASS = "pass:correct-horse"


def run(*argv: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes:
    tool = argv[0]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (install.sh --test installs it)")
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.decode(errors='replace')}"
    return done.stdout


class Material:
    """Generates each payload once per session, in a temporary directory, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, bytes] = {}

    def __call__(self, name: str) -> bytes:
        if name not in self.cache:
            self.cache[name] = RECIPES[name](self)
        return self.cache[name]

    def path(self, name: str) -> Path:
        return self.root / name

    def file(self, name: str, produce: Callable[[Path], object]) -> bytes:
        """Run `produce(path)` once and return what it wrote to `path`."""
        path = self.path(name)
        if not path.exists():
            produce(path)
        return path.read_bytes()

    # --- openssl -------------------------------------------------------------------------
    def genpkey(self, name: str, *options: str) -> bytes:
        return self.file(name, lambda p: run("openssl", "genpkey", *options, "-out", str(p)))

    def convert(self, name: str, source: str, *command: str) -> bytes:
        self(source)
        src = str(self.path(source))
        return self.file(name, lambda p: run("openssl", *command, "-in", src, "-out", str(p)))

    def certificate(self) -> bytes:
        key = self("rsa-pkcs8")
        del key
        return self.file(
            "cert.pem",
            lambda p: run(
                "openssl",
                "req",
                "-x509",
                "-key",
                str(self.path("rsa-pkcs8")),
                "-out",
                str(p),
                "-subj",
                "/CN=scan-root test",
                "-days",
                "2",
            ),
        )

    def pkcs12(self, name: str, *options: str) -> bytes:
        self.certificate()
        return self.file(
            name,
            lambda p: run(
                "openssl",
                "pkcs12",
                "-export",
                "-in",
                str(self.path("cert.pem")),
                "-inkey",
                str(self.path("rsa-pkcs8")),
                "-out",
                str(p),
                *options,
            ),
        )

    # --- ssh-keygen / puttygen -----------------------------------------------------------
    def ssh(self, name: str, kind: str, passphrase: str) -> bytes:
        return self.file(
            name,
            lambda p: run(
                "ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "t", "-f", str(p)
            ),
        )

    def putty(self, name: str, source: str, *options: str) -> bytes:
        self(source)
        src = str(self.path(source))
        (self.root / "putty-pass").write_text("correct-horse\n")
        return self.file(name, lambda p: run("puttygen", src, "-o", str(p), *options))

    # --- gpg -----------------------------------------------------------------------------
    def gpg(
        self, name: str, algorithm: str, passphrase: str, export: str = "--export-secret-keys"
    ) -> bytes:
        """A fresh key in its own GNUPGHOME; `--export-secret-subkeys` keys get a subkey first."""
        home = self.root / f"gnupg-{name}"
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        uid = f"{name} <{name}@example.invalid>"
        secret = ["--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase]
        try:
            run("gpg", *secret, "--quick-gen-key", uid, algorithm, "default", "never", env=env)
            if name == "gpg-subkeys-only":
                listing = run("gpg", "--with-colons", "--list-keys", uid, env=env)
                fpr = re.search(rb"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)
                assert fpr is not None
                subkey = ["--quick-add-key", fpr.group(1).decode(), "cv25519", "encr", "never"]
                run("gpg", *secret, *subkey, env=env)
            return run("gpg", *secret, "--armor", export, uid, env=env)
        finally:
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)

    # --- keytool -------------------------------------------------------------------------
    def keytool(self, name: str, storetype: str, *command: str) -> bytes:
        return self.file(
            name,
            lambda p: run(
                "keytool",
                *command,
                "-keystore",
                str(p),
                "-storetype",
                storetype,
                "-storepass",
                "changeit",
                "-noprompt",
            ),
        )

    def keypair(self, name: str, storetype: str, algorithm: str) -> bytes:
        return self.keytool(
            name,
            storetype,
            "-genkeypair",
            "-alias",
            "k",
            "-keyalg",
            algorithm,
            "-keypass",
            "changeit",
            "-dname",
            "CN=scan-root test",
        )


def _half_body(pem: bytes) -> bytes:
    """The key with its body cut in half and the END line kept."""
    lines = pem.splitlines(keepends=True)
    body = lines[1:-1]
    return b"".join([lines[0], *body[: len(body) // 2], lines[-1]])


def _garbage(label: bytes, size: int) -> bytes:
    data = base64.encodebytes(random.Random(size).randbytes(size))
    return b"-----BEGIN %s-----\n%s-----END %s-----\n" % (label, data, label)


def _json_escaped(pem: bytes) -> bytes:
    """A service-account-style JSON file: the key on one line with \\n escapes."""
    return b'{"type": "service_account", "private_key": "%s", "client_email": "x@y"}\n' % (
        pem.replace(b"\n", b"\\n")
    )


def _c_literal(pem: bytes) -> bytes:
    lines = b"".join(b'    "%s\\n"\n' % line for line in pem.splitlines())
    return b"static const char key[] =\n%s    ;\n" % lines


RECIPES: dict[str, Callable[[Material], bytes]] = {
    # openssl: PKCS#8, traditional, encrypted PKCS#8, legacy Proc-Type encryption
    "rsa-pkcs8": lambda m: m.genpkey(
        "rsa-pkcs8", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"
    ),
    "rsa-traditional": lambda m: m.convert("rsa-traditional", "rsa-pkcs8", "rsa", "-traditional"),
    "rsa-pkcs8-aes256": lambda m: m.genpkey(
        "rsa-pkcs8-aes256", "-algorithm", "RSA", "-aes256", "-pass", PASS
    ),
    "rsa-legacy-aes128": lambda m: m.convert(
        "rsa-legacy-aes128", "rsa-pkcs8", "rsa", "-traditional", "-aes128", "-passout", PASS
    ),
    "ec-pkcs8": lambda m: m.genpkey(
        "ec-pkcs8", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"
    ),
    "ec-traditional": lambda m: m.convert("ec-traditional", "ec-pkcs8", "ec"),
    "ec-legacy-aes128": lambda m: m.convert(
        "ec-legacy-aes128", "ec-pkcs8", "ec", "-aes128", "-passout", PASS
    ),
    "ed25519-pkcs8": lambda m: m.genpkey("ed25519-pkcs8", "-algorithm", "ED25519"),
    "ed25519-pkcs8-aes256": lambda m: m.genpkey(
        "ed25519-pkcs8-aes256", "-algorithm", "ED25519", "-aes256", "-pass", PASS
    ),
    "dsa-params": lambda m: m.file(
        "dsa-params", lambda p: run("openssl", "dsaparam", "-out", str(p), "2048")
    ),
    "dsa-pkcs8": lambda m: (
        m("dsa-params"),
        m.file(
            "dsa-pkcs8",
            lambda p: run("openssl", "gendsa", "-out", str(p), str(m.path("dsa-params"))),
        ),
    )[1],
    # openssl 3 `dsa` has no -traditional; `pkey -traditional` writes "DSA PRIVATE KEY".
    "dsa-traditional": lambda m: m.convert("dsa-traditional", "dsa-pkcs8", "pkey", "-traditional"),
    # ssh-keygen, with and without a passphrase
    "openssh-rsa": lambda m: m.ssh("openssh-rsa", "rsa", ""),
    "openssh-rsa-enc": lambda m: m.ssh("openssh-rsa-enc", "rsa", "correct-horse"),
    "openssh-ecdsa": lambda m: m.ssh("openssh-ecdsa", "ecdsa", ""),
    "openssh-ecdsa-enc": lambda m: m.ssh("openssh-ecdsa-enc", "ecdsa", "correct-horse"),
    "openssh-ed25519": lambda m: m.ssh("openssh-ed25519", "ed25519", ""),
    "openssh-ed25519-enc": lambda m: m.ssh("openssh-ed25519-enc", "ed25519", "correct-horse"),
    # gpg, unprotected and with a passphrase
    "gpg-rsa": lambda m: m.gpg("gpg-rsa", "rsa2048", ""),
    "gpg-ed25519": lambda m: m.gpg("gpg-ed25519", "ed25519", ""),
    "gpg-ed25519-enc": lambda m: m.gpg("gpg-ed25519-enc", "ed25519", "correct-horse"),
    # A laptop-style export: primary key stubbed, the secret subkey present.
    "gpg-subkeys-only": lambda m: m.gpg(
        "gpg-subkeys-only", "ed25519", "", "--export-secret-subkeys"
    ),
    # puttygen (Debian: putty-tools)
    "putty-v3": lambda m: m.putty("putty-v3", "openssh-ed25519", "-O", "private"),
    "putty-v2": lambda m: m.putty(
        "putty-v2", "openssh-rsa", "-O", "private", "--ppk-param", "version=2"
    ),
    "putty-v3-enc": lambda m: m.putty(
        "putty-v3-enc",
        "openssh-rsa",
        "-O",
        "private",
        "--new-passphrase",
        str(m.root / "putty-pass"),
    ),
    "ssh2-enc": lambda m: m.putty(
        "ssh2-enc",
        "openssh-rsa",
        "-O",
        "private-sshcom",
        "--new-passphrase",
        str(m.root / "putty-pass"),
    ),
    "ssh2-plain": lambda m: m.putty("ssh2-plain", "openssh-rsa", "-O", "private-sshcom"),
    # binary stores
    "pkcs12": lambda m: m.pkcs12("pkcs12", "-passout", PASS),
    "pkcs12-nopbe": lambda m: m.pkcs12(
        "pkcs12-nopbe", "-passout", "pass:", "-keypbe", "NONE", "-certpbe", "NONE"
    ),
    "jks": lambda m: m.keypair("jks", "JKS", "RSA"),
    "jceks": lambda m: m.keypair("jceks", "JCEKS", "EC"),
    "keytool-pkcs12": lambda m: m.keypair("keytool-pkcs12", "PKCS12", "RSA"),
    "der-pkcs8": lambda m: m.convert("der-pkcs8", "rsa-pkcs8", "pkey", "-outform", "DER"),
    # keys pasted into other files
    "json-escaped": lambda m: _json_escaped(m("rsa-pkcs8")),
    "c-literal": lambda m: _c_literal(m("ec-traditional")),
    "indented-yaml": lambda m: b"tls:\n  key: |\n" + re.sub(rb"(?m)^", b"    ", m("ed25519-pkcs8")),
    # ---- decoys ----
    "cert": lambda m: m.certificate(),
    "csr": lambda m: (
        m("rsa-pkcs8"),
        m.file(
            "csr.pem",
            lambda p: run(
                "openssl",
                "req",
                "-new",
                "-key",
                str(m.path("rsa-pkcs8")),
                "-out",
                str(p),
                "-subj",
                "/CN=scan-root test",
            ),
        ),
    )[1],
    "public-pem": lambda m: m.convert("public-pem", "rsa-pkcs8", "pkey", "-pubout"),
    "rsa-public-pem": lambda m: m.convert(
        "rsa-public-pem", "rsa-pkcs8", "rsa", "-RSAPublicKey_out"
    ),
    "ssh-pub": lambda m: (m("openssh-ed25519"), m.path("openssh-ed25519.pub").read_bytes())[1],
    "ssh-rsa-pub": lambda m: (m("openssh-rsa"), m.path("openssh-rsa.pub").read_bytes())[1],
    "gpg-public": lambda m: m.gpg("gpg-public", "ed25519", "", "--export"),
    # Only stubs ("gnu-dummy") for the primary: the secret lives elsewhere, e.g. on a card.
    "gpg-stub-only": lambda m: m.gpg("gpg-stub-only", "ed25519", "", "--export-secret-subkeys"),
    "doc-header": lambda m: (
        b".SH DESCRIPTION\nA key file starts with the line\n-----BEGIN RSA PRIVATE KEY-----\n"
        b"followed by the base64 encoded key and ends with\n-----END RSA PRIVATE KEY-----\n"
        b"The same holds for -----BEGIN OPENSSH PRIVATE KEY----- files.\n"
    ),
    "doc-prose-pgp": lambda m: (
        b"Export it; the file starts with -----BEGIN PGP PRIVATE KEY BLOCK----- and then\n"
        b"some lines of data. See gpg(1).\n-----END PGP PRIVATE KEY BLOCK-----\n"
    ),
    "doc-putty": lambda m: b"A .ppk file begins with PuTTY-User-Key-File-3: ssh-rsa\nand more.\n",
    "doc-ssh2": lambda m: (
        b'---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: "example"\nAAAA...\n'
        b"---- END SSH2 ENCRYPTED PRIVATE KEY ----\n"
    ),
    "empty-template": lambda m: b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    "dots-template": lambda m: (
        b"-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"
    ),
    "placeholder-template": lambda m: (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n<your key here>\n-----END OPENSSH PRIVATE KEY-----\n"
    ),
    "truncated-rsa": lambda m: m("rsa-traditional")[: len(m("rsa-traditional")) // 2],
    "half-body-rsa": lambda m: _half_body(m("rsa-traditional")),
    "half-body-pkcs8": lambda m: _half_body(m("ec-pkcs8")),
    "half-body-openssh": lambda m: _half_body(m("openssh-ed25519")),
    "half-body-gpg": lambda m: _half_body(m("gpg-ed25519")),
    "garbage-rsa": lambda m: _garbage(b"RSA PRIVATE KEY", 1190),
    "garbage-pkcs8": lambda m: _garbage(b"PRIVATE KEY", 1216),
    "garbage-openssh": lambda m: _garbage(b"OPENSSH PRIVATE KEY", 400),
    "garbage-pgp": lambda m: _garbage(b"PGP PRIVATE KEY BLOCK", 600),
    "jks-truststore": lambda m: (
        m.certificate(),
        m.keytool(
            "jks-truststore", "JKS", "-importcert", "-alias", "ca", "-file", str(m.path("cert.pem"))
        ),
    )[1],
    "pkcs12-truststore": lambda m: (
        m.certificate(),
        m.keytool(
            "pkcs12-truststore",
            "PKCS12",
            "-importcert",
            "-alias",
            "ca",
            "-file",
            str(m.path("cert.pem")),
        ),
    )[1],
    "openssl-pkcs12-certs-only": lambda m: m.pkcs12(
        "openssl-pkcs12-certs-only", "-nokeys", "-passout", PASS
    ),
    "der-cert": lambda m: (
        m.certificate(),
        m.file(
            "der-cert",
            lambda p: run(
                "openssl", "x509", "-in", str(m.path("cert.pem")), "-outform", "DER", "-out", str(p)
            ),
        ),
    )[1],
}

BINARY = {
    "pkcs12",
    "pkcs12-nopbe",
    "jks",
    "jceks",
    "keytool-pkcs12",
    "der-pkcs8",
    "jks-truststore",
    "pkcs12-truststore",
    "openssl-pkcs12-certs-only",
    "der-cert",
}

# (payload, should_flag, expected_type, encrypted)
CASES: list[tuple[str, bool, str | None, bool | None]] = [
    ("rsa-pkcs8", True, "rsa", False),
    ("rsa-traditional", True, "rsa", False),
    ("rsa-pkcs8-aes256", True, "pkcs8", True),
    ("rsa-legacy-aes128", True, "rsa", True),
    ("ec-pkcs8", True, "ec", False),
    ("ec-traditional", True, "ec", False),
    ("ec-legacy-aes128", True, "ec", True),
    ("ed25519-pkcs8", True, "ed25519", False),
    ("ed25519-pkcs8-aes256", True, "pkcs8", True),
    ("dsa-pkcs8", True, "dsa", False),
    ("dsa-traditional", True, "dsa", False),
    ("openssh-rsa", True, "openssh-rsa", False),
    ("openssh-rsa-enc", True, "openssh-rsa", True),
    ("openssh-ecdsa", True, "openssh-ecdsa", False),
    ("openssh-ecdsa-enc", True, "openssh-ecdsa", True),
    ("openssh-ed25519", True, "openssh-ed25519", False),
    ("openssh-ed25519-enc", True, "openssh-ed25519", True),
    ("gpg-rsa", True, "pgp", False),
    ("gpg-ed25519", True, "pgp", False),
    ("gpg-ed25519-enc", True, "pgp", True),
    ("gpg-subkeys-only", True, "pgp", False),
    ("putty-v3", True, "putty", False),
    ("putty-v2", True, "putty", False),
    ("putty-v3-enc", True, "putty", True),
    ("ssh2-enc", True, "ssh2", True),
    ("ssh2-plain", True, "ssh2", False),
    ("pkcs12", True, "pkcs12", True),
    ("pkcs12-nopbe", True, "pkcs12", False),
    ("jks", True, "jks", True),
    ("jceks", True, "jceks", True),
    ("keytool-pkcs12", True, "pkcs12", True),
    ("der-pkcs8", True, "rsa", False),
    ("json-escaped", True, "rsa", False),
    ("c-literal", True, "ec", False),
    ("indented-yaml", True, "ed25519", False),
    ("cert", False, None, None),
    ("csr", False, None, None),
    ("public-pem", False, None, None),
    ("rsa-public-pem", False, None, None),
    ("ssh-pub", False, None, None),
    ("ssh-rsa-pub", False, None, None),
    ("gpg-public", False, None, None),
    ("gpg-stub-only", False, None, None),
    ("doc-header", False, None, None),
    ("doc-prose-pgp", False, None, None),
    ("doc-putty", False, None, None),
    ("doc-ssh2", False, None, None),
    ("empty-template", False, None, None),
    ("dots-template", False, None, None),
    ("placeholder-template", False, None, None),
    ("truncated-rsa", False, None, None),
    ("half-body-rsa", False, None, None),
    ("half-body-pkcs8", False, None, None),
    ("half-body-openssh", False, None, None),
    ("half-body-gpg", False, None, None),
    ("garbage-rsa", False, None, None),
    ("garbage-pkcs8", False, None, None),
    ("garbage-openssh", False, None, None),
    ("garbage-pgp", False, None, None),
    ("jks-truststore", False, None, None),
    ("pkcs12-truststore", False, None, None),
    ("openssl-pkcs12-certs-only", False, None, None),
    ("der-cert", False, None, None),
]
KEYS = [case[0] for case in CASES if case[1]]
EXPECTED_BITS = {
    "rsa-pkcs8": 2048,
    "ec-pkcs8": 384,
    "ed25519-pkcs8": 256,
    "dsa-pkcs8": 2048,
    "openssh-rsa": 3072,
    "openssh-ecdsa": 256,
    "openssh-ed25519": 256,
    "gpg-rsa": 2048,
    "jks": 2048,
    "jceks": 256,
    "pkcs12-nopbe": 2048,
    "ssh2-plain": 3072,
}


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("keys"))


def scan_text(data: bytes) -> Iterator[PrivateKey]:
    """What check 425 does with the engine's hits: one window per marker occurrence."""
    for marker in MARKERS:
        at = data.find(marker)
        while at >= 0:
            lo = max(0, at - WINDOW_BEFORE)
            window = data[lo : at + WINDOW_AFTER]
            found = inspect_text(window, at - lo)
            if found is not None:
                yield found
            at = data.find(marker, at + 1)


def scan(name: str, data: bytes) -> list[PrivateKey]:
    if name in BINARY:
        head = data[:BINARY_HEAD_SIZE]
        found = inspect_binary(data) if is_binary_candidate(head) else None
        return [found] if found is not None else []
    return list(scan_text(data))


@pytest.mark.parametrize(("payload", "should_flag", "expected_type", "encrypted"), CASES)
def test_keys_table(
    material: Material,
    payload: str,
    should_flag: bool,
    expected_type: str | None,
    encrypted: bool | None,
) -> None:
    data = material(payload)
    found = scan(payload, data)
    if not should_flag:
        assert found == []
        return
    assert len(found) == 1, "each key is reported once, from its BEGIN line"
    key = found[0]
    assert (key.key_type, key.encrypted) == (expected_type, encrypted)
    assert key.fingerprint.startswith("sha256:") and len(key.fingerprint) == 71
    if payload in EXPECTED_BITS:
        assert key.bits == EXPECTED_BITS[payload]
    if payload not in BINARY:
        block = data[key.start : key.end]
        assert block.startswith((b"-----BEGIN ", b"---- BEGIN ", b"PuTTY-User-Key-File-"))
        assert block.count(b"BEGIN") <= 1
        assert key.line == data.count(b"\n", 0, key.start) + 1


@pytest.mark.parametrize("payload", KEYS)
def test_no_key_material_in_record(material: Material, payload: str) -> None:
    data = material(payload)
    (key,) = scan(payload, data)
    shown = repr(key)
    if payload in BINARY:
        encoded = data.hex()
    else:
        encoded = b"".join(re.findall(rb"[A-Za-z0-9+/=]{16,}", data)).decode()
    # No 16-character run of the encoded key (base64, or hex for binary files) shows anywhere.
    assert not any(encoded[i : i + 16] in shown for i in range(max(0, len(encoded) - 15)))


def spki_sha256(material: Material, pem_name: str) -> str:
    material(pem_name)
    der = run("openssl", "pkey", "-in", str(material.path(pem_name)), "-pubout", "-outform", "DER")
    return "sha256:" + hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize(
    "forms",
    [
        ("rsa-pkcs8", "rsa-traditional", "json-escaped", "der-pkcs8", "pkcs12-nopbe"),
        ("ec-pkcs8", "ec-traditional"),
        ("dsa-pkcs8", "dsa-traditional"),
    ],
)
def test_fingerprint_is_spki_and_stable_across_forms(
    material: Material, forms: tuple[str, ...]
) -> None:
    expected = spki_sha256(material, forms[0])
    for form in forms:
        (key,) = scan(form, material(form))
        assert key.fingerprint == expected, form


@pytest.mark.parametrize("payload", ["jks", "keytool-pkcs12"])
def test_keystore_fingerprint_is_the_certificates_key(material: Material, payload: str) -> None:
    data = material(payload)
    (key,) = scan(payload, data)
    if payload == "keytool-pkcs12":
        assert key.bits is None  # shrouded bag: only its presence is visible
        return
    cert = run(
        "keytool",
        "-exportcert",
        "-rfc",
        "-alias",
        "k",
        "-keystore",
        str(material.path(payload)),
        "-storepass",
        "changeit",
    )
    spki = run("openssl", "x509", "-pubkey", "-noout", stdin=cert)
    der = run("openssl", "pkey", "-pubin", "-outform", "DER", stdin=spki)
    assert key.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize(
    ("payload", "same_as"),
    [
        ("openssh-ed25519", None),
        ("openssh-rsa", None),
        ("putty-v3", "openssh-ed25519"),
        ("putty-v2", "openssh-rsa"),
    ],
)
def test_ssh_fingerprint_matches_ssh_keygen(
    material: Material, payload: str, same_as: str | None
) -> None:
    source = same_as or payload
    material(source)
    shown = run("ssh-keygen", "-l", "-E", "sha256", "-f", str(material.path(source)) + ".pub")
    b64 = shown.split()[1].removeprefix(b"SHA256:")
    expected = "sha256:" + base64.b64decode(b64 + b"=" * (-len(b64) % 4)).hex()
    (key,) = scan(payload, material(payload))
    assert key.fingerprint == expected


@pytest.mark.parametrize("payload", KEYS)
def test_truncations_never_raise_and_lose_the_key(material: Material, payload: str) -> None:
    data = material(payload)
    (whole,) = scan(payload, data)
    for point in range(1, 21):
        cut = data[: len(data) * point // 21]
        found = scan(payload, cut)
        if payload not in BINARY and len(cut) < whole.end:
            assert found == [], f"cut at {len(cut)} of {len(data)} still flagged"
        if payload in BINARY:
            assert found == []


@pytest.mark.parametrize("payload", KEYS)
def test_random_byte_flips_never_raise(material: Material, payload: str) -> None:
    data = material(payload)
    rng = random.Random(payload)
    for _ in range(200):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        scan(payload, bytes(mutated))
        if payload not in BINARY:
            # Also hand the engine's exact windows to inspect_binary and vice versa.
            inspect_binary(bytes(mutated))


def test_hits_outside_the_window_and_end_lines_are_refused(material: Material) -> None:
    data = material("rsa-traditional")
    assert inspect_text(data, -1) is None
    assert inspect_text(data, len(data)) is None
    end_hit = data.rfind(b"PRIVATE KEY-----")
    assert data[:end_hit].endswith(b"-----END RSA ")
    assert inspect_text(data, end_hit) is None
    assert inspect_text(b"", 0) is None


def test_binary_candidates() -> None:
    assert is_binary_candidate(b"\xfe\xed\xfe\xed\x00\x00\x00\x02")
    assert is_binary_candidate(b"\x30\x82\x09\xc6\x02\x01\x03\x30")
    assert not is_binary_candidate(b"\x30\x82\x03\x00\x30\x82\x02\x00")  # a certificate
    assert not is_binary_candidate(b"0\x82")
    assert not is_binary_candidate(b"")


def test_gpg_stub_export_is_an_armored_secret_block(material: Material) -> None:
    # Guards the decoy above: it must be a real secret-key block, not an empty export.
    assert material("gpg-stub-only").startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")


def test_pgp_block_longer_than_the_window(material: Material) -> None:
    """A keyring export past WINDOW_AFTER is judged on the packets the window holds."""
    armored = material("gpg-rsa")
    lines = armored.splitlines()
    body = b"".join(line for line in lines[1:-2] if line)
    packets = base64.b64decode(body)
    big = packets * (WINDOW_AFTER // len(packets) + 2)
    block = (
        b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
        + base64.encodebytes(big)
        + b"=AAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"
    )
    (key,) = scan_text(block)
    (small,) = scan_text(armored)
    assert (key.key_type, key.encrypted, key.fingerprint) == ("pgp", False, small.fingerprint)
    # The same block cut short of the window (a truncated file) is not a finding.
    assert list(scan_text(block[: WINDOW_AFTER // 2])) == []
