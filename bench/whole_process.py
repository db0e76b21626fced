"""Whole-process benchmark: scan-root vs the package manager's own verifier on one root, warm and guest-cold.

How to run it and what each row measures: bench/README.md, "Whole process".
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import roots

DEFAULT_JSON = BENCH / "results" / "whole_process.json"
SKIP_TOP = (b"proc", b"sys", b"dev")  # never evict or read pseudo-filesystems
READ_BUFFER = 128 * 1024
# Tool rows in the order each round runs them; the ratios are against the first.
SCAN = "scan-root"
SCAN_CHECKOUT = (
    "scan-root-checkout"  # python -m scanner.cli from the checkout, when SCAN is the venv's
)
SCAN_PY = "scan-root-py"
SCANS = (SCAN, SCAN_CHECKOUT, SCAN_PY)
DPKG = "dpkg --verify"
DEBSUMS = "debsums -s"
RPM_VA = "rpm -Va"
CAT = "xargs cat"
VENV_SCAN = REPO / ".venv" / "bin" / "scan-root"  # made by ./install.sh
MANAGER_TOOLS = {"dpkg": ("dpkg", "debsums"), "rpm": ("rpm",)}
DEFAULT_JSONS = {"dpkg": DEFAULT_JSON, "rpm": BENCH / "results" / "whole_process_rpm.json"}
QUIET_SHARE = 0.1  # other processes' share of the CPU above which a mode's figures are skewed
TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time, for an honest peak RSS (see timed)


@dataclass(frozen=True, slots=True)
class Run:
    """One timed child process."""

    wall: float  # seconds
    cpu: float  # user + sys seconds, the child's reaped descendants included
    rss_kib: int  # ru_maxrss: the largest of the child and its reaped descendants
    exit_code: int


Tools = dict[str, tuple[list[str], dict[str, str]]]


def commands(root: Path, manager: str, venv: bool) -> Tools:
    """{row: (argv, extra environment)} of every tool compared.

    With `venv`, SCAN is the installed entry point and SCAN_CHECKOUT the checkout's module;
    an extra environment holding PYTHONPATH marks a row that runs from the checkout.
    """
    options = [str(root), "--all-files", "--checks", "448", "--quiet", "--format", "json"]
    checkout = ([sys.executable, "-m", "scanner.cli", *options], {"PYTHONPATH": str(REPO)})
    main = ([str(VENV_SCAN), *options], {}) if venv else checkout
    tools: Tools = {SCAN: (main[0], main[1] | {"SCANNER_REQUIRE_EXTENSIONS": "1"})}
    if venv:
        tools[SCAN_CHECKOUT] = (checkout[0], checkout[1] | {"SCANNER_REQUIRE_EXTENSIONS": "1"})
    tools[SCAN_PY] = (main[0], main[1] | {"SCANNER_NO_EXTENSIONS": "1"})
    if manager == "rpm":
        # --nodeps: scan-root checks files, not dependencies (and the root has none to satisfy).
        tools[RPM_VA] = (
            ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-Va", "--nodeps"],
            {},
        )
    else:
        tools[DPKG] = (["dpkg", f"--root={root}", "--verify"], {})
        # debsums skips conffiles without -a; dpkg --verify and scan-root check them (a few dozen).
        tools[DEBSUMS] = (["debsums", "-s", f"--root={root}"], {})
    return tools


def environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without SCANNER_*, PYTHONPATH and PYTHONDONTWRITEBYTECODE, plus
    `extra`.

    PYTHONPATH is dropped so that the installed entry point imports its own package, never the
    checkout's; the checkout rows set it in `extra`. PYTHONDONTWRITEBYTECODE (set on some CI and
    sandbox machines) is dropped so that a checkout run caches its bytecode as an installed
    package has it: with it, every run compiled the scanner's ~76 modules again (~55 ms).
    """
    dropped = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANNER_") and k not in dropped}
    env.update(extra)
    return env


def entry_point(venv: bool) -> dict[str, Any]:
    """Which scan-root the main row runs, and whether the venv's native build is older than the checkout's.

    ./install.sh builds the venv's copy once; the checkout's `_native/*.pyx` (and the in-place
    `.so` that `python -m scanner.cli` loads) may have changed since.
    """
    found: dict[str, Any] = {
        "main_row": "venv" if venv else "checkout",
        "argv0": str(VENV_SCAN) if venv else f"{sys.executable} -m scanner.cli",
        "stale": False,
        "warnings": [],
    }
    if not venv:
        return found
    site = sorted((REPO / ".venv" / "lib").glob("python3*/site-packages/_native"))
    venv_so = sorted(site[0].glob("_hasher*.so")) if site else []
    checkout_so = sorted(REPO.glob("_native/_hasher*.so"))
    # The hasher's sources are several modules (_hasher.pyx, _hash_*.pyx, _hashjob.pxd): the
    # newest of them says whether the venv's build is stale.
    pyx = max(
        REPO.glob("_native/_hash*.p[yx][xd]"),
        key=lambda path: path.stat().st_mtime,
        default=REPO / "_native" / "_hasher.pyx",
    )
    if not venv_so:
        found["warnings"].append("the venv has no _native/_hasher*.so: a pure-Python install")
        found["stale"] = True
        return found
    venv_mtime = venv_so[0].stat().st_mtime
    found["venv_hasher_so"] = {
        "path": str(venv_so[0]),
        "mtime": venv_mtime,
        "md5": hashlib.md5(venv_so[0].read_bytes()).hexdigest(),
    }
    for label, path in (
        ("checkout _hasher.pyx", pyx),
        ("checkout _hasher .so", checkout_so[0] if checkout_so else None),
    ):
        if path is None or not path.exists():
            continue
        mtime = path.stat().st_mtime
        found[label.replace(" ", "_").replace(".", "")] = {"path": str(path), "mtime": mtime}
        if mtime > venv_mtime:
            found["stale"] = True
            found["warnings"].append(
                f"{label} ({path}) is newer than the venv's build "
                f"({venv_so[0].name}): rerun ./install.sh"
            )
    return found


def timed(argv: list[str], env: dict[str, str], stdin_path: str | None = None) -> Run:
    """Run argv with output to /dev/null; wall and CPU from wait4, peak RSS from GNU time.

    A child's ru_maxrss includes the memory of the process it was forked (or vforked) from,
    as the kernel records the old mm's high-water mark at exec: a child of this Python process
    would report at least this process's RSS. GNU time (~1 MiB) forks the tool instead and
    reports the tool's own ru_maxrss; without it the RSS column is that inflated figure.
    """
    rss_file = None
    if TIME is not None:
        rss_file = f"/tmp/scan-root-bench-{os.getpid()}.rss"
        argv = [TIME, "-f", "%M", "-o", rss_file, *argv]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, stdin_path or os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    rss = usage.ru_maxrss
    if rss_file is not None:
        with open(rss_file) as report:
            rss = int(report.read().split()[-1])  # "Command exited with non-zero status N" first
        os.unlink(rss_file)
    return Run(wall, usage.ru_utime + usage.ru_stime, rss, os.waitstatus_to_exitcode(status))


def regular_files(root: Path) -> list[bytes]:
    """Every regular file under root on its filesystem, proc/sys/dev excluded (absolute, bytes)."""
    top = os.fsencode(root)
    device = os.lstat(top).st_dev
    found: list[bytes] = []
    stack = [top]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if directory == top and entry.name in SKIP_TOP:
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                    stack.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    found.append(entry.path)
    return found


def evict(files: list[bytes]) -> None:
    """Drop the page cache of each file (guest-cold): fadvise DONTNEED, never drop_caches.

    Only this root's file data leaves the cache; dentries, inodes and the tools' own binaries
    and libraries stay warm, and a hypervisor's host cache may still hold the blocks.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    for path in files:
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def digest_single_core(algorithm: str) -> float:
    """hashlib throughput of `algorithm` on one core in bytes/s (best of 3 over a 64 MiB buffer)."""
    buffer = os.urandom(64 << 20)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        hashlib.new(algorithm, buffer).digest()
        best = min(best, time.perf_counter() - started)
    return len(buffer) / best


def python_read(paths: list[bytes]) -> float:
    """Seconds to read every file with os.readv into one reused 128 KiB buffer."""
    buffer = bytearray(READ_BUFFER)
    started = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while os.readv(fd, [buffer]):
                pass
        finally:
            os.close(fd)
    return time.perf_counter() - started


def busy_seconds() -> float:
    """CPU seconds every process on the machine has spent so far (/proc/stat, all but idle)."""
    with open("/proc/stat") as proc_stat:
        fields = [int(value) for value in proc_stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds this script and its reaped children have spent so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    native = sorted(REPO.glob("_native/_hasher*.so"))
    return {
        "cpu_model": model,
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": os.getloadavg(),  # other work on the machine skews every figure
        "hasher_so_md5": hashlib.md5(native[0].read_bytes()).hexdigest() if native else None,
    }


def summary(runs: list[Run]) -> dict[str, Any]:
    return {
        "wall_median": statistics.median(run.wall for run in runs),
        "cpu_median": statistics.median(run.cpu for run in runs),
        "rss_median_kib": statistics.median(run.rss_kib for run in runs),
        "exit_codes": sorted({run.exit_code for run in runs}),
        "runs": [asdict(run) for run in runs],
    }


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """other / scan-root for wall and CPU: > 1 means scan-root is faster."""
    base = rows[SCAN]
    found = {}
    for name, row in rows.items():
        if name == SCAN:
            continue
        for measure in ("wall", "cpu"):
            key = f"{measure}_median"
            found[f"{name} / {SCAN} {measure}"] = row[key] / base[key]
    return found


def sanity(tools: Tools) -> dict[str, Any]:
    """One untimed run of each tool: exit codes and what scan-root says it hashed."""
    seen: dict[str, Any] = {}
    for name, (argv, extra) in tools.items():
        result = subprocess.run(argv, check=False, env=environment(extra), capture_output=True)
        seen[name] = {"exit_code": result.returncode, "output_lines": result.stdout.count(b"\n")}
        if name in SCANS and result.stdout:
            report = json.loads(result.stdout)
            seen[name] |= {
                "implementation": report["scanner"]["implementation"],
                "findings": len(report["findings"]),
                "problems": len(report["problems"]),
                **{
                    key: report["stats"][key]
                    for key in ("files_checked", "files_hashed", "bytes_hashed", "jobs")
                },
            }
        elif result.returncode != 0:
            seen[name]["stderr_tail"] = result.stderr[-500:].decode(errors="replace")
    return seen


def measure(
    mode: str,
    tools: Tools,
    rounds: int,
    cores: int,
    everything: list[bytes],
    absolute: list[bytes],
    cat_argv: list[str],
    list_path: Path,
) -> tuple[dict[str, list[Run]], list[float], float]:
    """One mode's timed rounds: (runs per row, in-process read times, others' CPU share)."""
    runs: dict[str, list[Run]] = {name: [] for name in (*tools, CAT)}
    busy, own, started = busy_seconds(), own_seconds(), time.perf_counter()
    python_reads = []
    if mode == "warm":
        timed(cat_argv, environment({}), str(list_path))
    for round_number in range(rounds):
        # Rotate the order each round: no tool always runs right after the eviction pass
        # or right after another tool's burst of I/O.
        names = list(runs)
        names = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in names:
            if mode == "cold":
                evict(everything)
            if name == CAT:
                runs[name].append(timed(cat_argv, environment({}), str(list_path)))
            else:
                argv, extra = tools[name]
                runs[name].append(timed(argv, environment(extra)))
        if mode == "cold":
            evict(everything)
        python_reads.append(python_read(absolute))
        print(
            f"  {mode} round {round_number + 1}/{rounds}: "
            + ", ".join(f"{name} {runs[name][-1].wall:.2f}s" for name in runs),
            flush=True,
        )
    # Share of the machine's CPU that other processes took while this mode ran: the
    # figures are only trustworthy when it is near 0 (a shared 2-core VM rarely is).
    others = (busy_seconds() - busy) - (own_seconds() - own)
    return runs, python_reads, max(0.0, others) / ((time.perf_counter() - started) * cores)


def wait_quiet(max_load: float | None, wait: float) -> dict[str, Any]:
    """Wait (at most `wait` s) until others use at most 10% of the CPU over 5 s, and the load is low.

    The load average counts this script's own children, so it is only a gate before the first
    run (`max_load`; None skips it); between modes only other processes' CPU share counts.
    """
    deadline = time.monotonic() + wait
    cores = len(os.sched_getaffinity(0))
    while True:
        busy, own, started = busy_seconds(), own_seconds(), time.perf_counter()
        time.sleep(5)
        share = max(0.0, (busy_seconds() - busy) - (own_seconds() - own)) / (
            (time.perf_counter() - started) * cores
        )
        load = os.getloadavg()[0]
        quiet = share <= QUIET_SHARE and (max_load is None or load <= max_load)
        if quiet or time.monotonic() > deadline:
            if not quiet:
                print(
                    f"WARNING: machine still busy after {wait:.0f} s (load {load:.2f}, others "
                    f"{share:.0%} of the CPU): measuring anyway",
                    file=sys.stderr,
                )
            return {"quiet": quiet, "loadavg_1m": load, "others_cpu_share_5s": share}
        print(
            f"  waiting for a quiet machine: load {load:.2f}, others {share:.0%} of the CPU",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--manager",
        choices=sorted(MANAGER_TOOLS),
        default="dpkg",
        help="whose verifier to compare with (default dpkg)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="root to scan (default: dpkg bookworm-apps, else -minbase; rpm rpm-apps)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per mode (default 5)")
    parser.add_argument(
        "--json",
        type=Path,
        help=f"results file (default {DEFAULT_JSON} for dpkg, {DEFAULT_JSONS['rpm']} for rpm)",
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.0,
        help="wait until the 1-minute load average is at most this before starting (1.0)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=900,
        help="seconds to wait for a quiet machine before measuring anyway (900)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times a mode is measured again when others took over 10%% of the CPU (2)",
    )
    options = parser.parse_args(argv)
    json_path = options.json or DEFAULT_JSONS[options.manager]

    missing = [
        tool
        for tool in (*MANAGER_TOOLS[options.manager], "xargs", "cat")
        if shutil.which(tool) is None
    ]
    if missing:
        print(
            f"missing tools: {', '.join(missing)} (./install.sh --test installs them)",
            file=sys.stderr,
        )
        return 2
    root = options.root or (
        roots.rpm_bench_root() if options.manager == "rpm" else roots.bench_root()
    )
    if root is None:
        build = "python3 bench/roots.py" + (" rpm-apps" if options.manager == "rpm" else "")
        print(f"no root given and none cached in {roots.CACHE}: run {build}", file=sys.stderr)
        return 2
    root = root.resolve()
    venv = VENV_SCAN.exists()
    entry = entry_point(venv)
    for warning in entry["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(
        f"main scan-root row: {entry['argv0']}"
        + (
            f" (secondary row {SCAN_CHECKOUT}: {sys.executable} -m scanner.cli)"
            if venv
            else " (no .venv/bin/scan-root: run ./install.sh)"
        )
    )
    quiet_at_start = wait_quiet(options.max_load, options.wait)

    info = machine()
    package = roots.package_files(root)
    package_bytes = sum(size for _path, size in package)
    absolute = [os.fsencode(root) + b"/" + path for path, _size in package]
    everything = regular_files(root)
    # The digest the manager records: dpkg md5sums; rpm's file digests (SHA-256 since rpm 4.14's
    # default, and what this rpmbuild writes).
    algorithm = "sha256" if options.manager == "rpm" else "md5"
    rate = digest_single_core(algorithm)
    cores = int(info["nproc"])
    print(
        f"root {root}: {len(package)} package files, {package_bytes / 2**20:.1f} MiB "
        f"({len(everything)} regular files in all)"
    )
    print(f"machine: {info['cpu_model']}, {cores} cores, kernel {info['kernel']}")
    print(f"peak RSS from {TIME or 'wait4 (inflated: GNU time not found)'}")

    # `cat` reads the package files through xargs (NUL-separated list on stdin); warm and cold.
    list_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"scan-root-bench-{os.getpid()}.list"
    list_path.write_bytes(b"\0".join(absolute) + b"\0")
    cat_argv = ["xargs", "-0", "cat"]

    tools = commands(root, options.manager, venv)
    checked = sanity(tools)  # also the untimed prior run of the warm mode
    for name, seen in checked.items():
        print(f"  {name}: {seen}")

    results: dict[str, dict[str, dict[str, Any]]] = {}
    floors: dict[str, dict[str, float]] = {}
    contention: dict[str, float] = {}
    attempts: dict[str, int] = {}
    try:
        for mode in ("warm", "cold"):
            for attempt in range(options.retries + 1):
                if attempt:
                    print(
                        f"  {mode}: other processes took {contention[mode]:.0%} of the CPU; waiting "
                        f"for a quiet machine, then attempt {attempt + 1}",
                        flush=True,
                    )
                    wait_quiet(None, options.wait)
                runs, python_reads, contention[mode] = measure(
                    mode, tools, options.rounds, cores, everything, absolute, cat_argv, list_path
                )
                attempts[mode] = attempt + 1
                if contention[mode] <= QUIET_SHARE:
                    break
            results[mode] = {name: summary(found) for name, found in runs.items()}
            floors[mode] = {"python_readv_median": statistics.median(python_reads)}
    finally:
        list_path.unlink(missing_ok=True)

    limit = package_bytes / (cores * rate)
    report = {
        "machine": info,
        "manager": options.manager,
        "scan_root_entry": entry,
        "quiet_at_start": quiet_at_start,
        "root": str(root),
        "package_files": len(package),
        "package_bytes": package_bytes,
        "regular_files": len(everything),
        "rounds": options.rounds,
        "sanity": checked,
        "digest": algorithm,
        f"{algorithm}_single_core_bytes_per_s": rate,
        "limit_seconds": limit,
        "limit_formula": f"package_bytes / (nproc * {algorithm} single-core rate, hashlib, 64 MiB buffer)",
        "read_floor": floors,
        "rss_source": "GNU time %M (the tool's own ru_maxrss)"
        if TIME
        else "wait4 ru_maxrss (includes this script's RSS: install GNU time for the tool's own)",
        "modes": {
            mode: {
                "rows": rows,
                "ratios": ratios(rows),
                "others_cpu_share": contention[mode],
                "attempts": attempts[mode],
            }
            for mode, rows in results.items()
        },
    }
    info["loadavg_at_end"] = os.getloadavg()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"\n{algorithm} single core {rate / 1e6:.0f} MB/s; machine limit "
        f"{package_bytes / 1e6:.0f} MB / ({cores} x {rate / 1e6:.0f} MB/s) = {limit:.3f} s"
    )
    for mode, rows in results.items():
        warning = "  WARNING: figures skewed" if contention[mode] > QUIET_SHARE else ""
        print(
            f"\n{mode}: other processes used {contention[mode]:.0%} of the CPU meanwhile{warning}"
        )
        print(
            f"{mode} (median of {options.rounds}):  {'wall s':>8} {'cpu s':>8} {'rss MiB':>8}  exit"
        )
        for name, row in rows.items():
            print(
                f"  {name:<18} {row['wall_median']:8.3f} {row['cpu_median']:8.3f} "
                f"{row['rss_median_kib'] / 1024:8.1f}  {row['exit_codes']}"
            )
        print(
            f"  {'python readv':<18} {floors[mode]['python_readv_median']:8.3f}   "
            "(in-process read of the package files, 128 KiB reused buffer)"
        )
        for name, value in ratios(rows).items():
            print(f"  {name}: {value:.2f}x")
    for warning in entry["warnings"]:
        print(f"WARNING: {warning}")
    print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
