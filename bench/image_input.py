"""Image input overhead: `scan-root image TARBALL` against `scan-root ROOT` on the same files.

    python3 bench/image_input.py [--root DIR] [--rounds N] [--compression none|gzip]

Builds (once, cached beside the root) a `docker save` tarball of the root with the tests' image
builder, then times both scans alternately, warm, as child processes; prints medians and the
ratio. The issue's target is at most 1.3x. Timing never fails anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the image builder the tests use
sys.path.insert(0, str(HERE))

import roots
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


def _time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compression", choices=("none", "gzip"), default="none")
    parser.add_argument("--json", type=Path, default=HERE / "results/image_input.json")
    args = parser.parse_args()
    root = args.root or roots.bench_root()
    if root is None:
        print("no bench root: run `python3 bench/roots.py` first", file=sys.stderr)
        return 1
    tarball = _tarball(root, args.compression)
    venv = HERE.parent / ".venv/bin/scan-root"
    scan = [str(venv)] if venv.exists() else [sys.executable, "-m", "scanner.cli"]
    common = ["--format", "json", "--quiet", "--no-process-env", "--all-files"]
    rows: dict[str, list[float]] = {"root": [], "image": []}
    _time([*scan, str(root), *common])  # warm-up
    _time([*scan, "image", str(tarball), *common])
    for _ in range(args.rounds):
        rows["root"].append(_time([*scan, str(root), *common]))
        rows["image"].append(_time([*scan, "image", str(tarball), *common]))
    medians = {name: statistics.median(values) for name, values in rows.items()}
    ratio = medians["image"] / medians["root"]
    print(f"root {root}: {medians['root']:.2f} s; {tarball.name}: {medians['image']:.2f} s")
    print(f"image / root: {ratio:.2f}x (target <= 1.3x)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"root": str(root), "tarball": str(tarball), "runs": rows}
    result |= {"medians": medians, "ratio": ratio}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
