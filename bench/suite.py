"""The whole benchmark suite in one command: every bench script, then one table of its ratios.

How to run it and what each row measures: bench/README.md, "The whole suite".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

# name -> (script and its arguments, quick-mode arguments, result file)
BENCHES: dict[str, tuple[list[str], list[str], Path]] = {
    "whole-dpkg": (
        ["whole_process.py", "--manager", "dpkg"],
        ["--rounds", "3"],
        RESULTS / "whole_process.json",
    ),
    "whole-rpm": (
        ["whole_process.py", "--manager", "rpm"],
        ["--rounds", "3"],
        RESULTS / "whole_process_rpm.json",
    ),
    "rescan": (["rescan.py"], ["--rounds", "3"], RESULTS / "rescan.json"),
    "scale": (["scale.py"], ["--rounds", "1", "--no-python"], RESULTS / "scale.json"),
    "content": (["content_scan.py"], ["--rounds", "1"], RESULTS / "content_scan.json"),
    "image": (["image_input.py"], ["--rounds", "3"], RESULTS / "image_input.json"),
    "vulndb": (["vulnerabilities.py"], ["--rounds", "5"], RESULTS / "vulnerabilities.json"),
}

Row = tuple[str, str, str]  # (what, figure, reference or target)


def _fmt(value: float, unit: str = "x") -> str:
    return f"{value:.2f}{unit}" if unit == "x" else f"{value:.3f} {unit}"


def _whole(data: dict[str, Any], reference: str, targets: dict[str, str]) -> list[Row]:
    rows: list[Row] = []
    for mode, result in data.get("modes", {}).items():
        scan = result["rows"].get("scan-root", {})
        ref = result["rows"].get(reference, {})
        if not scan or not ref:
            continue
        rows.append(
            (
                f"{mode}: scan-root vs {reference}",
                (
                    f"{scan['wall_median']:.3f} s vs {ref['wall_median']:.3f} s = "
                    f"{ref['wall_median'] / scan['wall_median']:.2f}x faster"
                ),
                targets.get(mode, ""),
            )
        )
        rows.append(
            (
                f"{mode}: scan-root CPU-s, peak RSS",
                f"{scan['cpu_median']:.2f} CPU-s, {scan['rss_median_kib'] / 1024:.0f} MiB",
                "RSS < 100 MB",
            )
        )
    return rows


def _rescan(data: dict[str, Any]) -> list[Row]:
    rows = [(f"rescan (CLI): {name}", _fmt(value), "") for name, value in data["ratios"].items()]
    for name, value in data.get("in_process", {}).get("ratios", {}).items():
        rows.append((f"rescan (in process): {name}", _fmt(value), ""))
    rows.append(
        ("rescan acceptance", json.dumps(data.get("acceptance", {})), "stat 20x, content 3x CPU")
    )
    return rows


def _scale(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, row in data.get("walk", {}).items():
        if "entries_per_s" in row:
            rows.append(
                (
                    f"walk: {name}",
                    f"{row['entries_per_s']:,.0f} entries/s ({row['rate_vs_find']:.0%} of find)",
                    ">= 50% of find",
                )
            )
    for name, row in data.get("scans", {}).items():
        if isinstance(row, dict) and "wall_median" in row:
            rows.append(
                (
                    f"scale scan: {name}",
                    (
                        f"{row['wall_median']:.1f} s, {row['cpu_median']:.1f} CPU-s, "
                        f"{row['rss_median_kib'] / 1024:.0f} MiB peak RSS"
                    ),
                    "RSS < 150 MB" if "1m" in name else "bounded RSS",
                )
            )
    return rows


def _content(data: dict[str, Any]) -> list[Row]:
    warm = data.get("warm", {}).get("rows", {})
    scan = warm.get("scan-root")
    rows: list[Row] = []
    for reference in ("detect-secrets", "yara"):
        ref = warm.get(reference)
        if scan and ref:
            rows.append(
                (
                    f"content: scan-root vs {reference}",
                    (
                        f"{scan['wall_median']:.2f} s vs {ref['wall_median']:.2f} s = "
                        f"{ref['wall_median'] / scan['wall_median']:.1f}x faster"
                    ),
                    "",
                )
            )
    return rows


def _image(data: dict[str, Any]) -> list[Row]:
    return [
        (f"image: {name}", _fmt(value), "<= 1.3x wall") for name, value in data["ratios"].items()
    ]


def _vulndb(data: dict[str, Any]) -> list[Row]:
    return [
        (
            f"vulndb: import {data['records']} OSV records",
            f"{data['import_seconds']:.1f} s, {data['database_bytes'] / 1e6:.0f} MB",
            "",
        ),
        (
            f"vulndb: match {data['root_packages']} packages",
            (
                f"{data['match_ms']:.1f} ms = {data['ratio_match_to_package_read']:.2f}x "
                "reading the package DB"
            ),
            f"<= {data['target_match_ms']:.0f} ms",
        ),
    ]


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "whole-dpkg": lambda d: _whole(d, "dpkg --verify", {"warm": ">= 1.8x", "cold": ">= 3x"}),
    "whole-rpm": lambda d: _whole(d, "rpm -Va", {"warm": ">= 1.8x"}),
    "rescan": _rescan,
    "scale": _scale,
    "content": _content,
    "image": _image,
    "vulndb": _vulndb,
}


def summarize(names: list[str]) -> tuple[dict[str, Any], str]:
    """Read every named bench's result file; the suite JSON and its Markdown table."""
    suite: dict[str, Any] = {"benches": {}}
    lines = ["| bench | figure | target |", "|---|---|---|"]
    for name in names:
        path = BENCHES[name][2]
        if not path.exists():
            lines.append(f"| {name} | not run ({path.name} missing) | |")
            continue
        data = json.loads(path.read_text())
        suite.setdefault("machine", data.get("machine"))
        rows = SUMMARIES[name](data)
        measured = (data.get("machine") or {}).get("date", "?")
        suite["benches"][name] = {
            "file": str(path.relative_to(BENCH.parent)),
            "date": measured,
            "rows": [list(row) for row in rows],
        }
        for row in rows:
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    machine = suite.get("machine") or {}
    header = (
        f"Measured on {machine.get('cpu_model', '?')}, {machine.get('nproc', '?')} CPUs, "
        f"kernel {machine.get('kernel', '?')}, Python {machine.get('python', '?')}."
    )
    return suite, header + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run only these")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the table")
    args = parser.parse_args(argv)
    names = list(args.only or BENCHES)
    failed = []
    if not args.summary_only:
        for name in names:
            script, quick, _result = BENCHES[name]
            command = [sys.executable, str(BENCH / script[0]), *script[1:]]
            if args.quick:
                command += quick
            print(f"=== {name}: {' '.join(command[1:])}", flush=True)
            if subprocess.run(command, check=False).returncode != 0:
                failed.append(name)
    suite, table = summarize(names)
    suite["failed"] = failed
    (RESULTS / "suite.json").write_text(json.dumps(suite, indent=2) + "\n")
    (RESULTS / "suite.md").write_text(table)
    print(table)
    if failed:
        print(f"bench scripts that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
