"""Image input overhead: `scan-root image TARBALL` against `scan-root ROOT` on the same files.

How to run it and what each row measures: bench/README.md, "Image input".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testsupport"))  # the image builder the tests use
sys.path.insert(0, str(HERE))

import roots
import whole_process as wp
from imagebuilder import image_config, tar_tree, write_docker_save


def _tarball(root: Path, compression: str) -> Path:
    target = root.parent / f"{root.name}.docker-save.{compression}.tar"
    if not target.exists():
        layer = root.parent / f".{root.name}.layer.tar"
        tar_tree(root, layer)
        partial = target.with_suffix(".partial")
        write_docker_save(partial, [layer], image_config(), [f"bench/{root.name}:1"], compression)
        partial.rename(target)
        layer.unlink()
    return target


def _rows(root: Path, tarball: Path, disk: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Commands by row. The image rows leave the scratch dir to scan-root (a memory filesystem
    when it has room) or, for `image on disk`, force it onto the disk with $TMPDIR."""
    scan = [sys.executable, "-m", "scanner.cli"]
    common = ["--format", "json", "--quiet", "--no-process-env", "--all-files"]
    env = wp.environment({"PYTHONPATH": str(HERE.parent), "SCANNER_REQUIRE_EXTENSIONS": "1"})
    env.pop("TMPDIR", None)
    rows = {
        "root": ([*scan, str(root), *common], env),
        "image": ([*scan, "image", str(tarball), *common], env),
    }
    if disk:
        rows["image on disk"] = (rows["image"][0], env | {"TMPDIR": "/var/tmp"})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compression", choices=("none", "gzip"), default="none")
    parser.add_argument("--json", type=Path, default=HERE / "results/image_input.json")
    parser.add_argument("--disk", action="store_true", help="also time extraction to /var/tmp")
    parser.add_argument("--max-load", type=float, default=1.5, help="quiet gate (1-min load)")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for quiet")
    args = parser.parse_args()
    root = args.root or roots.bench_root()
    if root is None:
        print("no bench root: run `python3 bench/roots.py` first", file=sys.stderr)
        return 1
    tarball = _tarball(root, args.compression)
    rows = _rows(root, tarball, args.disk)
    quiet = wp.wait_quiet(args.max_load, args.wait)
    for argv, env in rows.values():  # warm-up: the root and the tarball in the page cache
        wp.timed(argv, env)
    runs: dict[str, list[wp.Run]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (argv, env) in rows.items():
            run = wp.timed(argv, env)
            if run.exit_code not in (0, 1):
                print(f"{name}: exit code {run.exit_code}", file=sys.stderr)
                return 1
            runs[name].append(run)
    medians = {
        name: {
            "wall": statistics.median(run.wall for run in values),
            "cpu": statistics.median(run.cpu for run in values),
        }
        for name, values in runs.items()
    }
    ratios = {
        f"{name} / root {what}": medians[name][what] / medians["root"][what]
        for name in medians
        if name != "root"
        for what in ("wall", "cpu")
    }
    for name, median in medians.items():
        print(f"{name:14} wall {median['wall']:.2f} s  cpu {median['cpu']:.2f} s")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")
    print("target: image / root wall <= 1.3x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "root": str(root),
        "tarball": str(tarball),
        "machine": wp.machine(),
        "quiet_at_start": quiet,
        "runs": {
            name: [dataclasses.asdict(run) for run in values] for name, values in runs.items()
        },
        "medians": medians,
        "ratios": ratios,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
