"""Resource limits: --max-cpu (CPU budget), --nice (priorities), and memory bounded by batches."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest
from child import child_env, run_python
from debroot import debootstrap_root

import _native
import scanner
from _native.throttle import CpuBudget
from pkgdb import RootFS
from scanner import cli, content
from scanner.checks.base import ScanContext, ScanOptions
from scanner.checks.private_keys import PrivateKeysCheck
from scanner.manifests import read_manifests
from scanner.priority import IOPRIO_CLASS_IDLE
from scanner.report import Problem, Stats

REPO = Path(__file__).resolve().parent.parent
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


def _spent(fraction: float, seconds: float) -> CpuBudget:
    """A budget started now, as if `seconds` of CPU had already been used since its start (on a
    loaded machine, burning them for real could take longer than the budget allows)."""
    cpu = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)
    return CpuBudget(fraction, time.monotonic_ns(), cpu - int(seconds * 1e9))


# ---- the CPU budget ----


@pytest.mark.parametrize("fraction", [0, -0.25, float("nan"), float("inf"), "0.25", True, None])
def test_budget_rejects_bad_fractions(fraction: object) -> None:
    with pytest.raises(ValueError, match="max_cpu must be a number > 0"):
        CpuBudget.start(fraction)  # type: ignore[arg-type]


def test_budget_says_how_long_to_sleep() -> None:
    assert CpuBudget.start(0.5).ahead_ns() < 50_000_000  # just started: next to nothing used
    budget = _spent(0.5, 0.2)
    # 0.2 s of CPU at half a core needs 0.4 s of wall time: about that much to sleep.
    assert 300_000_000 < budget.ahead_ns() <= 410_000_000
    started = time.monotonic()
    slept = budget.pace()
    assert 0.3 < slept <= 0.41
    assert time.monotonic() - started >= slept
    assert budget.ahead_ns() < 20_000_000


def test_budget_since_process_start_counts_start_up() -> None:
    budget = CpuBudget.since_process_start(1.0)
    assert budget.cpu_start_ns == 0  # all of this process's CPU time
    age = time.monotonic_ns() - budget.wall_start_ns
    # pytest has been running for a while: the start is before now, not in the future.
    assert 0 < age < 86400 * 10**9


@pytest.mark.parametrize("budget", ["0.25", 0.25])
def test_hash_files_rejects_a_budget_of_the_wrong_type(
    impl: tuple[ModuleType, ModuleType], tmp_path: Path, budget: object
) -> None:
    _walker, hasher = impl
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(TypeError, match="cpu_budget must be a CpuBudget"):
            hasher.hash_files(fd, [(b"a", 1)], cpu_budget=budget)
    finally:
        os.close(fd)


def test_hash_files_paces_its_workers(impl: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    """A hash_files call that starts over budget sleeps until back within it, and hashes right.

    The hashers check the clocks after each MiB of work per worker: 4 files of 2 MiB make every
    worker check at least once.
    """
    _walker, hasher = impl
    data = os.urandom(2 << 20)
    for index in range(4):
        (tmp_path / f"f{index}").write_bytes(data)
    budget = _spent(0.5, 0.3)  # 0.3 s of CPU at half a core: wall time must reach 0.6 s
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    started = time.monotonic()
    try:
        results = hasher.hash_files(
            fd, [(b"f%d" % i, 1) for i in range(4)], jobs=2, cpu_budget=budget
        )
    finally:
        os.close(fd)
    import hashlib

    assert {result.md5 for result in results} == {hashlib.md5(data).digest()}
    assert time.monotonic() - started > 0.4  # it slept (a lower bound: load only adds to it)
    # Back within budget, give or take the work after the last check (a few ms).
    assert budget.ahead_ns() < 100_000_000


def _scan_cpu_ratio(root: Path, implementation: str, *argv: str) -> tuple[float, float, dict]:
    """(CPU s, wall s, JSON report) of `scan-root ROOT argv` as a child process."""
    env = child_env(base={k: v for k, v in os.environ.items() if not k.startswith("SCANNER_")})
    env["SCANNER_NO_EXTENSIONS" if implementation == "python" else "SCANNER_REQUIRE_EXTENSIONS"] = (
        "1"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "scanner.cli", str(root), "--format", "json", "--quiet", *argv],
        capture_output=True,
        env=env,
        check=False,
        timeout=600,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode in (0, 1, 3), result.stderr.decode()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, json.loads(result.stdout)


@pytest.mark.debootstrap
def test_max_cpu_holds_the_whole_process_to_a_quarter_core(
    impl: tuple[ModuleType, ModuleType],
) -> None:
    """--max-cpu 0.25 on bookworm-minbase, every default check: CPU / wall <= 0.3.

    The whole child process is measured (interpreter start-up, imports, manifests, walk,
    hashing, report), with getrusage(RUSAGE_CHILDREN): ~3 s native, ~15 s for the twin.
    """
    root = debootstrap_root()
    implementation = next(name for name, pair in _native.implementations().items() if pair == impl)
    cpu, wall, report = _scan_cpu_ratio(root, implementation, "--max-cpu", "0.25")
    assert report["scanner"]["implementation"] == implementation
    assert report["stats"]["files_hashed"] > 1000  # it did the work, not just slept
    assert cpu / wall <= 0.3, f"CPU {cpu:.2f} s in {wall:.2f} s"


def test_max_cpu_bad_values_are_usage_errors() -> None:
    for value in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(SystemExit) as info:
            cli.main(["--max-cpu", value, "/"])
        assert info.value.code == cli.EXIT_USAGE
    with pytest.raises(scanner.UsageError):
        scanner.scan_root("/nonexistent", max_cpu=0)


# ---- --nice ----


@pytest.mark.skipif(platform.machine() not in _IOPRIO_GET, reason="ioprio syscall number unknown")
def test_nice_lowers_cpu_and_io_priority_of_the_scan(tmp_path: Path) -> None:
    """In a child (it cannot be undone): nice 19 and the idle I/O class, in worker threads too."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("x\n")
    probe = f"""
import ctypes, json, os, threading
import scanner
from scanner.priority import lower_priority
report = scanner.scan_root({str(tmp_path)!r}, checks=["448"], nice=True)
seen = {{}}
def look():
    libc = ctypes.CDLL(None, use_errno=True)
    seen["thread_io"] = libc.syscall({_IOPRIO_GET[platform.machine()]}, 1, 0)
    seen["thread_nice"] = os.nice(0)
worker = threading.Thread(target=look)
worker.start(); worker.join()
seen["nice"] = os.nice(0)
seen["problems"] = [p.message for p in report.problems if p.kind == "priority"]
print(json.dumps(seen))
"""
    stdout = run_python(probe)
    seen = json.loads(stdout)
    assert seen["problems"] == []
    assert seen["nice"] == 19 and seen["thread_nice"] == 19
    assert seen["thread_io"] >> 13 == IOPRIO_CLASS_IDLE  # a thread started afterwards inherits


def test_a_refused_priority_is_a_problem_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What could not be lowered is said (kind "priority"); it leaves no verdict open."""
    from scanner import scan

    refused = "ioprio_set (idle I/O class) refused: Operation not permitted"
    monkeypatch.setattr(scan, "lower_priority", lambda: [refused])
    (tmp_path / "etc").mkdir()
    report = scanner.scan_root(tmp_path, checks=["448"], nice=True)
    assert [p.message for p in report.problems if p.kind == "priority"] == [f"--nice: {refused}"]
    assert report.complete
    quiet = scanner.scan_root(tmp_path, checks=["448"])  # nice is off by default
    assert not [p for p in quiet.problems if p.kind == "priority"]


def test_lowering_priority_is_refused_cleanly_by_seccomp_like_errors() -> None:
    """set_idle_io turns a failing syscall into a message (run in a child: no real change)."""
    probe = """
import ctypes, errno
from scanner import priority
class Refusing:
    def syscall(self, *args):
        ctypes.set_errno(errno.EPERM)
        return -1
priority.ctypes.CDLL = lambda *a, **k: Refusing()
print(priority.set_idle_io())
"""
    stdout = run_python(probe)
    assert stdout.strip() == "ioprio_set (idle I/O class) refused: Operation not permitted"


# ---- bounded memory ----


def _tree(root: Path, depth: int, fanout: int = 8, files: int = 20) -> Path:
    """`fanout` directories per level, `depth` levels, `files` files in each leaf directory:
    fanout**depth leaves, while the listings along any one path stay fanout * depth + files."""
    if depth == 0:
        root.mkdir(parents=True)
        for f in range(files):
            (root / f"f{f:02d}").write_bytes(b"%s %d " % (os.fsencode(root.name), f) * 20)
        return root
    for d in range(fanout):
        _tree(root / f"d{d}", depth - 1, fanout, files)
    return root


def _count(depth: int, fanout: int = 8, files: int = 20) -> tuple[int, int]:
    """(entries, regular files) of _tree(depth)."""
    directories = sum(fanout**level for level in range(1, depth + 1))
    return directories + fanout**depth * files, fanout**depth * files


def _peak(work: object) -> int:
    tracemalloc.start()
    try:
        work()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_walk_memory_does_not_grow_with_the_tree(
    impl: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    """Walking 8x more directories (of the same size) needs no more memory: only the listings
    along the current path are held, never the tree."""
    walker, _hasher = impl
    small = _tree(tmp_path / "small", 2)
    large = _tree(tmp_path / "large", 3)

    def walk(root: Path) -> None:
        count = 0
        for _item in walker.walk(bytes(root)):
            count += 1
        assert count == _count(2 if root == small else 3)[0]

    walk(small)  # warm-up: first-call allocations (caches, interned names) are not the walk's
    small_peak = _peak(lambda: walk(small))
    large_peak = _peak(lambda: walk(large))
    # Held all at once, the 10,824 entries of the large tree would take > 1 MiB.
    assert large_peak < 2 * small_peak + 64 * 1024, (small_peak, large_peak)


def _context(rootfs: RootFS, options: ScanOptions) -> ScanContext:
    """A content pass's context on `rootfs`, its manifests read, fresh stats."""
    return ScanContext(
        root=rootfs, options=options, manifests=read_manifests(rootfs), stats=Stats()
    )


def test_content_pass_streams_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk and the reads interleave, hash_files never gets more than batch_size paths, and
    memory does not grow with the file count (8x the files, same peak)."""
    calls: list[tuple[int, int]] = []
    contexts: list[ScanContext] = []
    real = _native.hash_files

    def spy(root_fd: int, requests: list[tuple[bytes, int]], **kwargs: object) -> object:
        calls.append((len(requests), contexts[-1].stats.files_walked))
        return real(root_fd, requests, **kwargs)

    monkeypatch.setattr(content._native, "hash_files", spy)

    def scan(root: Path) -> None:
        with RootFS(str(root)) as rootfs:
            context = _context(rootfs, ScanOptions(batch_size=64))
            contexts[:] = [context]
            for item in content.content_pass(context, [PrivateKeysCheck()], None):
                assert isinstance(item, Problem)  # random text: no keys, nothing kept

    small = _tree(tmp_path / "small", 2)
    large = _tree(tmp_path / "large", 3)
    scan(small)
    calls.clear()
    small_peak = _peak(lambda: scan(small))
    calls.clear()
    large_peak = _peak(lambda: scan(large))
    assert max(size for size, _walked in calls) <= 64
    entries, files = _count(3)
    assert sum(size for size, _walked in calls) == files
    assert calls[0][1] < entries // 10  # the first batch is read while most is still unwalked
    assert large_peak < 2 * small_peak + 64 * 1024, (small_peak, large_peak)


def test_captured_windows_bound_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches also end when the windows their files could return pass batch_bytes: many small
    files full of key markers cannot pile up gigabytes of windows in one batch."""
    sizes: list[int] = []
    real = _native.hash_files

    def spy(root_fd: int, requests: list[tuple[bytes, int]], **kwargs: object) -> object:
        sizes.append(len(requests))
        return real(root_fd, requests, **kwargs)

    monkeypatch.setattr(content._native, "hash_files", spy)
    root = _tree(tmp_path / "root", 1, fanout=4, files=25)  # 100 files of ~120 bytes
    lengths = [path.stat().st_size for path in root.rglob("f*")]
    with RootFS(str(root)) as rootfs:
        context = _context(rootfs, ScanOptions(batch_bytes=2000))
        for _item in content.content_pass(context, [PrivateKeysCheck()], None):
            pass
    assert sum(sizes) == 100
    # A batch ends with the file that takes it past 2,000 bytes.
    assert max(sizes) <= 2000 // min(lengths) + 1
    assert len(sizes) >= sum(lengths) // (2000 + max(lengths))
    assert len(sizes) > 1
