"""Incremental rescans: the first scan (writing --state) vs `--rescan stat` and `--rescan content`.

How to run it and what each row measures: bench/README.md, "Incremental rescans".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import roots
import whole_process
from whole_process import Run, environment, summary, timed

DEFAULT_JSON = BENCH / "results" / "rescan.json"
FIRST, STAT, CONTENT, FLOOR = "first scan", "rescan stat", "rescan content", "floor (--version)"
INTERPRETER = "interpreter (-c pass)"


def commands(
    root: Path, state_dir: Path, checks: str | None, all_files: bool
) -> dict[str, list[str]]:
    """{row: argv}. The first scan writes a fresh state each time (its file is removed before);
    the rescans read (and rewrite) a state made once before the timed rounds."""
    base = [sys.executable, "-m", "scanner.cli", str(root), "--quiet", "--format", "json"]
    if checks:
        base += ["--checks", checks]
    if all_files:
        base.append("--all-files")
    kept = str(state_dir / "kept.state")
    return {
        FIRST: [*base, "--state", str(state_dir / "fresh.state")],
        STAT: [*base, "--state", kept, "--rescan", "stat"],
        CONTENT: [*base, "--state", kept, "--rescan", "content"],
        FLOOR: [sys.executable, "-m", "scanner.cli", "--version"],
        INTERPRETER: [sys.executable, "-c", "pass"],
    }


def _env() -> dict[str, str]:
    return environment({"PYTHONPATH": str(REPO), "SCANNER_REQUIRE_EXTENSIONS": "1"})


def _view(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "findings": sorted(json.dumps(f, sort_keys=True) for f in report["findings"]),
        "problems": sorted(json.dumps(p, sort_keys=True) for p in report["problems"]),
    }


def sanity(tools: dict[str, list[str]], state_dir: Path) -> dict[str, Any]:
    """One untimed run of each scan row (first makes the kept state): same findings?"""
    import subprocess

    seen: dict[str, Any] = {}
    views = {}
    for name in (FIRST, STAT, CONTENT):
        argv = tools[name]
        if name == FIRST:
            argv = [*argv[:-1], str(state_dir / "kept.state")]  # the state the rescans use
        result = subprocess.run(argv, check=False, env=_env(), capture_output=True)
        report = json.loads(result.stdout)
        views[name] = _view(report)
        seen[name] = {
            "exit_code": result.returncode,
            "findings": len(report["findings"]),
            "problems": len(report["problems"]),
            **{
                k: report["stats"][k]
                for k in ("files_walked", "files_hashed", "bytes_hashed", "files_reused")
            },
        }
    seen["same_findings_stat"] = views[STAT] == views[FIRST]
    seen["same_findings_content"] = views[CONTENT] == views[FIRST]
    return seen


IN_PROCESS = r"""
import json, os, resource, statistics, sys, time
import scanner
session = scanner.Scanner()
root, state_dir, rounds, checks, all_files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
options = {"all_files": all_files, **({"checks": checks.split(",")} if checks else {})}
kept, fresh = os.path.join(state_dir, "kept.state"), os.path.join(state_dir, "fresh.state")
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
rows = {"first scan": (fresh, None), "rescan stat": (kept, "stat"), "rescan content": (kept, "content")}
times = {name: [] for name in rows}
for round_number in range(rounds):
    names = list(rows)
    names = names[round_number % 3:] + names[:round_number % 3]
    for name in names:
        path, level = rows[name]
        if level is None:  # a defender's first scan: no state yet, nothing kept of the root
            if os.path.exists(fresh):
                os.unlink(fresh)
            # (the decoded kept.state stays: a defender has one state file, this bench two)
            session.forget(states=False)
        started, used = time.perf_counter(), cpu()
        report = session.scan_root(root, state=path, rescan=level, **options)
        times[name].append((time.perf_counter() - started, cpu() - used, report.stats.files_reused))
print(json.dumps({name: {"wall_median": statistics.median(t[0] for t in runs),
                         "cpu_median": statistics.median(t[1] for t in runs),
                         "files_reused": runs[-1][2], "runs": runs} for name, runs in times.items()}))
"""


def in_process(
    root: Path, state_dir: Path, rounds: int, checks: str | None, all_files: bool
) -> dict[str, Any]:
    """The three scans in one process (the kept state exists already: sanity() made it)."""
    import subprocess

    argv = [
        sys.executable,
        "-c",
        IN_PROCESS,
        str(root),
        str(state_dir),
        str(rounds),
        checks or "",
        "1" if all_files else "0",
    ]
    result = subprocess.run(argv, check=True, env=_env(), capture_output=True)
    rows: dict[str, Any] = json.loads(result.stdout)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="root to scan (default: bookworm-apps)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--checks", help="--checks for scan-root (default: every check)")
    parser.add_argument("--all-files", action="store_true", help="pass --all-files")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results ({DEFAULT_JSON})")
    options = parser.parse_args(argv)
    root = roots.chosen_root(options.root)
    if root is None:
        return 2
    info = whole_process.machine()
    state_dir = Path(tempfile.mkdtemp(prefix="scan-root-rescan-"))
    try:
        tools = commands(root, state_dir, options.checks, options.all_files)
        checked = sanity(tools, state_dir)
        print(
            f"root {root}; {info['cpu_model']}, {info['nproc']} cores; load {info['loadavg_at_start']}"
        )
        for name, seen in checked.items():
            print(f"  {name}: {seen}")
        runs: dict[str, list[Run]] = {name: [] for name in tools}
        for round_number in range(options.rounds):
            names = list(tools)
            names = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in names:
                if name == FIRST:
                    (state_dir / "fresh.state").unlink(missing_ok=True)
                runs[name].append(timed(tools[name], _env()))
            print(
                f"  round {round_number + 1}/{options.rounds}: "
                + ", ".join(
                    f"{name} {runs[name][-1].wall:.3f}s/{runs[name][-1].cpu:.3f}cpu"
                    for name in tools
                ),
                flush=True,
            )
        inside = in_process(root, state_dir, options.rounds, options.checks, options.all_files)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    rows = {name: summary(found) for name, found in runs.items()}
    first = rows[FIRST]
    ratios = {
        f"{FIRST} / {name} {measure}": first[f"{measure}_median"] / rows[name][f"{measure}_median"]
        for name in (STAT, CONTENT)
        for measure in ("wall", "cpu")
    }
    inside_ratios = {
        f"{FIRST} / {name} {measure}": inside[FIRST][f"{measure}_median"]
        / inside[name][f"{measure}_median"]
        for name in (STAT, CONTENT)
        for measure in ("wall", "cpu")
    }
    # Start-up alone over 1/20 of the first scan: no child process can be 20x faster.
    floor_too_high = rows[FLOOR]["wall_median"] * 20 > first["wall_median"]
    info["loadavg_at_end"] = os.getloadavg()
    result = {
        "machine": info,
        "root": str(root),
        "checks": options.checks or "all",
        "all_files": options.all_files,
        "rounds": options.rounds,
        "sanity": checked,
        "rows": rows,
        "ratios": ratios,
        "in_process": {"rows": inside, "ratios": inside_ratios},
        "acceptance": {
            "judged_on": "in_process" if floor_too_high else "child_process",
            "floor_over_first_wall": rows[FLOOR]["wall_median"] / first["wall_median"],
            "in_process_stat_wall_20x": inside_ratios[f"{FIRST} / {STAT} wall"] >= 20,
            "in_process_stat_cpu_20x": inside_ratios[f"{FIRST} / {STAT} cpu"] >= 20,
            "stat_wall_20x": ratios[f"{FIRST} / {STAT} wall"] >= 20,
            "stat_cpu_20x": ratios[f"{FIRST} / {STAT} cpu"] >= 20,
            "content_cpu_3x": ratios[f"{FIRST} / {CONTENT} cpu"] >= 3,
            "same_findings": checked["same_findings_stat"] and checked["same_findings_content"],
        },
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmedian of {options.rounds}:      {'wall s':>8} {'cpu s':>8} {'rss MiB':>8}")
    for name, row in rows.items():
        print(
            f"  {name:<18} {row['wall_median']:8.3f} {row['cpu_median']:8.3f} "
            f"{row['rss_median_kib'] / 1024:8.1f}"
        )
    for name, value in ratios.items():
        print(f"  {name}: {value:.1f}x")
    print(f"  acceptance: {result['acceptance']}")
    print(f"\nin one process, median of {options.rounds}:  {'wall s':>8} {'cpu s':>8}")
    for name, row in inside.items():
        print(f"  {name:<18} {row['wall_median']:8.3f} {row['cpu_median']:8.3f}")
    for name, value in inside_ratios.items():
        print(f"  {name}: {value:.1f}x")
    print(f"\nwrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
