"""Seeded fuzzing of what scan-root reads from people it does not trust, bounded in time.

Each target starts from a valid input whose honest scan has a gating finding (a planted private
key, a tampered package binary), so that "clean" (exit 0) is never a right answer for a mutant:
a mutation either leaves the finding to be found (1), makes scan-root refuse the input (2), or
leaves something unverified (3). Every case must also end within its time, never be an internal
error (5), and the batch's peak RSS stay under 150 MB. Mutants are made from
`random.Random(f"{SEED}:{case}")`: `SCANNER_FUZZ_SEED` and `SCANNER_FUZZ_CASES` (per target) change
the run; the defaults are what CI runs. Package databases are fuzzed by the readers' own tests
(test_pkgdb_*_fuzz.py).
"""

from __future__ import annotations

import collections
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import findings_tree
import pytest
from fuzzing import Batch, mutate_bytes, mutate_json, mutate_tar_header, mutate_yaml, run_batch
from imagebuilder import image_config, tar_tree, write_docker_save
from test_policy_cli import POLICY as CLI_POLICY

from scanner.cli import main

SEED = int(os.environ.get("SCANNER_FUZZ_SEED", "20261204"))
CASES = int(os.environ.get("SCANNER_FUZZ_CASES", "150"))
CASE_SECONDS = 15.0  # any one case; inputs here are a few hundred KB at most
PEAK_RSS_KB = 150 * 1024
NEVER_CLEAN = {1, 2, 3}
ANY_VERDICT = {0, 1, 2, 3, 4}


@dataclass(frozen=True)
class Case:
    """One mutant's command line, and the exit codes that are right for it."""

    argv: list[str]
    allowed: frozenset[int] = frozenset(NEVER_CLEAN)


Make = Callable[[random.Random, Path], Case]


def check(batch: Batch, cases: list[Case], label: str) -> None:
    """The fuzz suite's verdict on one target, and its figures on stdout (`pytest -s`)."""
    codes = collections.Counter(outcome.code for outcome in batch.outcomes)
    slowest = max((outcome.seconds for outcome in batch.outcomes), default=0.0)
    peak = max((outcome.peak_rss_kb for outcome in batch.outcomes), default=0)
    print(
        f"fuzz {label}: {len(batch.outcomes)} cases, exit codes {dict(sorted(codes.items()))}, "
        f"slowest {slowest:.2f} s, peak RSS {peak // 1024} MB (seed {SEED})"
    )
    assert batch.stopped is None, f"{label}: the batch stopped {batch.stopped}\n{batch.stderr}"
    assert len(batch.outcomes) == CASES
    wrong = [o for o in batch.outcomes if o.code not in cases[o.case].allowed]
    shown = "\n".join(f"  case {o.case}: exit {o.code}: {cases[o.case].argv}" for o in wrong[:10])
    assert not wrong, f"{label}: {len(wrong)} wrong exit codes:\n{shown}\n{batch.stderr[-6000:]}"
    slow = [o for o in batch.outcomes if o.seconds > CASE_SECONDS]
    assert not slow, f"{label}: over {CASE_SECONDS} s: {slow}"
    assert peak < PEAK_RSS_KB, f"{label}: peak RSS {peak} KB"


def fuzz(tmp_path: Path, make: Make, label: str) -> None:
    cases = []
    for case in range(CASES):
        where = tmp_path / f"case{case}"
        where.mkdir(parents=True)
        # A string seed is hashed whole: seeds N and N+1 share no case.
        cases.append(make(random.Random(f"{SEED}:{case}"), where))
    batch = run_batch([case.argv for case in cases], budget=CASES * CASE_SECONDS)
    check(batch, cases, label)


# --- images: a docker save whose layer holds a real private key ---


@pytest.fixture(scope="module")
def keyed_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, dict]:
    """(docker save, its layer tar, its config) of a small root with an SSH key in /srv."""
    base = tmp_path_factory.mktemp("keyed")
    root = base / "root"
    for directory in ("etc", "srv/app", "usr/bin"):
        (root / directory).mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "usr/bin/tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    os.symlink("tool", root / "usr/bin/alias")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")],
        check=True,
        capture_output=True,
    )
    shutil.copy(base / "key", root / "srv/app/deploy.key")
    layer = tar_tree(root, base / "layer.tar")
    config = image_config(env=["PATH=/usr/bin", "LOG_LEVEL=info"])
    archive = base / "image.tar"
    write_docker_save(archive, [layer], config, ["example/keyed:1"])
    return archive, layer.read_bytes(), config


def _resave(where: Path, layer: bytes, config: dict) -> Path:
    (where / "layer.tar").write_bytes(layer)
    archive = where / "image.tar"
    write_docker_save(archive, [where / "layer.tar"], config, ["example/keyed:1"])
    return archive


def _outer_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as outer:
        return {
            member.name: outer.extractfile(member).read()  # type: ignore[union-attr]
            for member in outer.getmembers()
            if member.isfile()
        }


def _retar(members: dict[str, bytes], out: Path) -> Path:
    with tarfile.open(out, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out


def _key_may_remain(archive: Path, key: bytes) -> bool:
    """False only when the key is gone for sure: its bytes nowhere in the mutant, or Python's
    tarfile (the referee) reads the whole image and no file of its layer holds the key (a
    header mutation can shrink the key's member, its bytes left as padding)."""
    if key not in archive.read_bytes():
        return False
    try:
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if not member.name.endswith("layer.tar"):
                    continue
                blob = outer.extractfile(member)
                assert blob is not None
                with tarfile.open(fileobj=io.BytesIO(blob.read())) as layer:
                    for item in layer.getmembers():
                        data = layer.extractfile(item) if item.isfile() else None
                        if data is not None and key in data.read():
                            return True
    except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError, AssertionError):
        return True  # the referee cannot tell: the strict rule holds
    return False


def test_fuzz_image_archives(tmp_path: Path, keyed_image: tuple[Path, bytes, dict]) -> None:
    """Mutated layer headers (checksums right), layer bytes and the outer archive's bytes. A
    mutant whose key bytes were hit may be clean: a damaged key is no key (425's rule)."""
    archive, layer, config = keyed_image
    key = (archive.parent / "key").read_bytes()

    def make(rng: random.Random, where: Path) -> Case:
        kind = rng.randrange(4)
        if kind < 2:
            mutated = (mutate_tar_header if kind == 0 else mutate_bytes)(layer, rng)
            mutant = _resave(where, mutated, config)
        else:
            mutated = (mutate_tar_header if kind == 2 else mutate_bytes)(archive.read_bytes(), rng)
            mutant = where / "image.tar"
            mutant.write_bytes(mutated)
        argv = ["image", str(mutant), "--format", "json", "--no-process-env"]
        return Case(argv, frozenset(NEVER_CLEAN if _key_may_remain(mutant, key) else ANY_VERDICT))

    fuzz(tmp_path, make, "image archives")


def test_fuzz_image_json(tmp_path: Path, keyed_image: tuple[Path, bytes, dict]) -> None:
    """Mutated manifest.json and image config (structure, types, nesting, bytes)."""
    archive, _layer, _config = keyed_image
    members = _outer_members(archive)
    documents = sorted(name for name in members if name.endswith(".json"))

    def make(rng: random.Random, where: Path) -> list[str]:
        mutated = dict(members)
        name = rng.choice(documents)
        mutated[name] = mutate_json(members[name].decode(), rng).encode("utf-8", "surrogateescape")
        mutant = _retar(mutated, where / "image.tar")
        return Case(["image", str(mutant), "--format", "json", "--no-process-env"])

    fuzz(tmp_path, make, "image JSON")


# --- the scan's other inputs, over a root with a tampered package binary ---


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> findings_tree.Tree:
    base = tmp_path_factory.mktemp("tampered")
    return findings_tree.build(base, tamper=(findings_tree.BINARY,), extras=True)


def test_fuzz_task_definitions(tmp_path: Path, tampered: findings_tree.Tree) -> None:
    assert tampered.task is not None
    original = tampered.task.read_text()

    def make(rng: random.Random, where: Path) -> list[str]:
        task = where / "task.json"
        task.write_text(mutate_json(original, rng), errors="surrogateescape")
        return Case([str(tampered.root), "--no-process-env", "--task-definition", str(task)])

    fuzz(tmp_path, make, "task definitions")


def test_fuzz_baselines(tmp_path: Path, tampered: findings_tree.Tree) -> None:
    """A baseline that accepts the 424 finding but not the tampered binary (448)."""
    baseline = tmp_path / "baseline.json"
    options = [str(tampered.root), *tampered.options, "--checks", "424,448"]
    # The baseline of every finding, then the binary's entry taken out: 448 still gates.
    assert main([*options, "--baseline", str(baseline), "--update-baseline"]) in (0, 1)
    document = json.loads(baseline.read_text())
    document["entries"] = [e for e in document["entries"] if e.get("check") != "448"]
    original = json.dumps(document)

    def make(rng: random.Random, where: Path) -> list[str]:
        mutant = where / "baseline.json"
        mutant.write_text(mutate_json(original, rng), errors="surrogateescape")
        return Case([*options, "--baseline", str(mutant), "--format", "json"])

    fuzz(tmp_path / "cases", make, "baselines")


def test_fuzz_state_files(tmp_path: Path) -> None:
    """A state written by a scan of the honest root, mutated, then a stat rescan after the
    binary was tampered: the state must never excuse the change."""
    tree = findings_tree.build(tmp_path / "tree")
    state = tmp_path / "state"
    assert main([str(tree.root), *tree.options, "--state", str(state), "--quiet"]) == 0
    original = state.read_bytes()
    binary = tree.root / os.fsdecode(findings_tree.BINARY)
    binary.write_bytes(binary.read_bytes() + b"tampered")

    def make(rng: random.Random, where: Path) -> list[str]:
        mutant = where / "state"
        mutant.write_bytes(mutate_bytes(original, rng))
        return Case([str(tree.root), *tree.options, "--state", str(mutant), "--rescan", "stat"])

    fuzz(tmp_path / "cases", make, "state files")


# The CLI tests' policy, less its custom check (a sandboxed script per case would be slow).
POLICY = CLI_POLICY[: CLI_POLICY.index("custom_checks:")]


def test_fuzz_policies(tmp_path: Path, tampered: findings_tree.Tree) -> None:
    """A mutated policy may say anything, clean included; it must never crash or run away."""

    def make(rng: random.Random, where: Path) -> list[str]:
        policy = where / "policy.yaml"
        policy.write_text(mutate_yaml(POLICY, rng), errors="surrogateescape")
        return Case(
            [str(tampered.root), "--no-process-env", "--policy", str(policy)],
            frozenset(ANY_VERDICT),
        )

    fuzz(tmp_path, make, "policies")
