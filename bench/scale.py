"""Scale benchmark: the walker vs `find`, and whole scans of 1,000,000 small files and of 4 GiB files.

How to run it and what each row measures: bench/README.md, "Scale".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import scale_roots
import whole_process as wp

DEFAULT_JSON = BENCH / "results" / "scale.json"
RSS_LIMIT_MIB = 150  # issue 7's acceptance: peak RSS of the 1M-file scan
WALK_RATIO = 0.5  # ... and a walk rate of at least half of find's
_WALK = "import sys, _native\nprint(sum(1 for _ in _native.walk(sys.argv[1])))"


def _env(implementation: str) -> dict[str, str]:
    flag = "SCANNER_NO_EXTENSIONS" if implementation == "python" else "SCANNER_REQUIRE_EXTENSIONS"
    return wp.environment({"PYTHONPATH": str(REPO), flag: "1"})


def _row(runs: list[wp.Run], items: int | None = None, files: int | None = None) -> dict[str, Any]:
    row = wp.summary(runs)
    row["rss_mib"] = row["rss_median_kib"] / 1024
    row["rss_max_mib"] = max(run.rss_kib for run in runs) / 1024
    if items:
        row["entries"] = items
        row["entries_per_s"] = items / row["wall_median"]
        row["entries_per_cpu_s"] = items / row["cpu_median"]
    if files:
        row["files"] = files
        row["cpu_us_per_file"] = row["cpu_median"] / files * 1e6
        row["wall_us_per_file"] = row["wall_median"] / files * 1e6
    return row


def walk_rows(root: Path, rounds: int, implementations: list[str]) -> dict[str, dict[str, Any]]:
    """find vs our walker, alternating; entries counted once, untimed, as a check."""
    tools = {
        "find -xdev | wc -l": (
            ["sh", "-c", 'find "$1" -xdev | wc -l', "sh", str(root)],
            wp.environment({}),
        )
    }
    for implementation in implementations:
        tools[f"walker ({implementation})"] = (
            [sys.executable, "-c", _WALK, str(root)],
            _env(implementation),
        )
    counts = {}
    for name, (argv, env) in tools.items():
        result = wp.subprocess.run(argv, env=env, capture_output=True, check=True)
        counts[name] = int(result.stdout)
    runs: dict[str, list[wp.Run]] = {name: [] for name in tools}
    for number in range(rounds):
        names = list(tools)[number % len(tools) :] + list(tools)[: number % len(tools)]
        for name in names:
            argv, env = tools[name]
            runs[name].append(wp.timed(argv, env))
        print(
            f"  walk round {number + 1}/{rounds}: "
            + ", ".join(f"{name} {runs[name][-1].wall:.2f}s" for name in runs),
            flush=True,
        )
    rows = {name: _row(runs[name], counts[name]) for name in tools}
    find = rows["find -xdev | wc -l"]
    for name, row in rows.items():
        row["rate_vs_find"] = row["entries_per_s"] / find["entries_per_s"]
        row["cpu_rate_vs_find"] = row["entries_per_cpu_s"] / find["entries_per_cpu_s"]
    return rows


def scan_row(
    root: Path, implementation: str, rounds: int, files: int, *options: str
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "scanner.cli", str(root), "--format", "json", "--quiet", *options]
    env = _env(implementation)
    result = wp.subprocess.run(argv, env=env, capture_output=True, check=False)
    report = json.loads(result.stdout)
    runs = []
    for number in range(rounds):
        runs.append(wp.timed(argv, env))
        print(
            f"  {root.name} ({implementation}) round {number + 1}/{rounds}: "
            f"{runs[-1].wall:.2f}s, {runs[-1].cpu:.2f} CPU s, {runs[-1].rss_kib / 1024:.0f} MiB",
            flush=True,
        )
    row = _row(runs, files=files)
    row["stats"] = report["stats"]
    row["findings"] = len(report["findings"])
    row["problems"] = sorted({problem["kind"] for problem in report["problems"]})
    row["bytes_per_s"] = report["stats"]["bytes_hashed"] / row["wall_median"]
    row["cpu_s_per_gib"] = row["cpu_median"] / max(1, report["stats"]["bytes_hashed"]) * (1 << 30)
    return row


def table(results: dict[str, Any]) -> str:
    lines = [
        "| row | wall s | CPU s | peak RSS MiB | rate | CPU cost |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["walk"].items():
        lines.append(
            f"| walk: {name.replace('|', chr(92) + '|')} | {row['wall_median']:.2f} | {row['cpu_median']:.2f} | "
            f"{row['rss_mib']:.0f} | {row['entries_per_s']:,.0f} entries/s "
            f"({row['rate_vs_find']:.0%} of find; CPU {row['cpu_rate_vs_find']:.0%}) | |"
        )
    for name, row in results["scans"].items():
        many = row["files"] > 100
        rate = (
            f"{row['files'] / row['wall_median']:,.0f} files/s"
            if many
            else f"{row['bytes_per_s'] / 1e6:,.0f} MB/s"
        )
        cost = (
            f"{row['cpu_us_per_file']:,.1f} CPU us/file"
            if many
            else f"{row['cpu_s_per_gib']:.2f} CPU s/GiB"
        )
        lines.append(
            f"| {name} | {row['wall_median']:.2f} | {row['cpu_median']:.2f} | "
            f"{row['rss_max_mib']:.0f} | {rate} | {cost} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scan-rounds", type=int, default=1, help="rounds of each 1M/4G scan")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--no-python", action="store_true", help="skip the pure-Python twin rows")
    parser.add_argument("--no-big", action="store_true", help="skip the 4 GiB files")
    parser.add_argument("--keep-big", action="store_true", help="keep scale-4g for the next run")
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for quiet")
    args = parser.parse_args(argv)
    if shutil.which("find") is None or shutil.which("wc") is None:
        print("find and wc are needed", file=sys.stderr)
        return 2
    implementations = ["cython"] + ([] if args.no_python else ["python"])
    print("generating (or reusing) scale-1m ...", flush=True)
    small = scale_roots.small_root()
    files = scale_roots.DIRECTORIES * scale_roots.FILES_PER_DIRECTORY
    results: dict[str, Any] = {
        "machine": wp.machine(),
        "quiet": wp.wait_quiet(args.max_load, args.wait),
    }
    results["walk"] = walk_rows(small, args.rounds, implementations)
    results["scans"] = {}
    for implementation in implementations:
        results["scans"][f"scan-1m ({implementation})"] = scan_row(
            small, implementation, args.scan_rounds, files
        )
    if not args.no_big:
        print("generating scale-4g ...", flush=True)
        big = scale_roots.big_root()
        try:
            results["scans"]["scan-4g (cython)"] = scan_row(
                big,
                "cython",
                args.scan_rounds,
                scale_roots.BIG_FILES,
                "--max-content-size",
                "5000000000",
            )
        finally:
            if not args.keep_big:
                scale_roots.remove_big()
    native = results["walk"]["walker (cython)"]
    scan = results["scans"]["scan-1m (cython)"]
    results["acceptance"] = {
        "rss_1m_mib": scan["rss_max_mib"],
        "rss_under_150_mib": scan["rss_max_mib"] < RSS_LIMIT_MIB,
        "walk_rate_vs_find": native["rate_vs_find"],
        "walk_cpu_rate_vs_find": native["cpu_rate_vs_find"],
        "walk_rate_at_least_half": native["rate_vs_find"] >= WALK_RATIO,
    }
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(json.dumps(results["acceptance"], indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
