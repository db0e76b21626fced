"""The advisory database: import time and size for an export-sized OSV input (Debian + Alpine),
and the time to match a 700-package root once the database is open, against reading that
root's package database (the reference, measured in the same run).

How to run it and what each row measures: bench/README.md, "Vulnerabilities".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # last: an installed scan-root (the venv's, in CI) comes first

from pkgdb.rootfs import RootFS
from scanner.inventory import list_packages
from vulndb.match import match_packages
from vulndb.release import detect_release
from vulndb.store import VulnDB

ADVISORIES = REPO / "tests" / "fixtures" / "advisories"
# The real records whose shapes the generated ones copy (only for this timing: no test reads
# generated advisories).
DEBIAN_SHAPE = ADVISORIES / "osv-derived" / "DSA-5514-1.json"
ALPINE_SHAPE = ADVISORIES / "osv-derived" / "ALPINE-CVE-2024-5535.json"
RESULTS = HERE / "results" / "vulnerabilities.json"
# osv.dev's Debian export held ~45,000 records (DSA, DLA, DTSA, DEBIAN-CVE) and its Alpine one
# ~15,000 at the end of 2024; the defaults are of that order.
DEBIAN_RECORDS = 45_000
ALPINE_RECORDS = 15_000
TARGET_MATCH_MS = 50.0


def source_versions(status: Path) -> dict[str, str]:
    """Source name -> source version of a real dpkg status file (so generated advisories hit)."""
    found: dict[str, str] = {}
    for stanza in status.read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        if "Package" in fields:
            name, _, version = fields.get("Source", fields["Package"]).partition(" ")
            found[name] = version.strip("()") or fields.get("Version", "0")
    return found


def fixed_version(installed: str | None, rng: random.Random) -> str | None:
    """A maintained image's mix: of a root's own source packages, 90% of advisories are fixed
    in the version it runs, 7% by a later update, 3% not fixed at all; other packages' fixes
    are random versions."""
    if installed is None:
        return f"{rng.randint(0, 12)}.{rng.randint(0, 40)}-{rng.randint(1, 9)}+deb12u1"
    draw = rng.random()
    if draw < 0.90:
        return installed
    if draw < 0.97:
        return f"{installed}+deb12u99"
    return None


def export(
    path: Path, debian: int, alpine: int, installed: dict[str, str], rng: random.Random
) -> int:
    """An OSV all.zip of `debian` Debian:12 and `alpine` Alpine:v3.20 records."""
    debian_shape = json.loads(DEBIAN_SHAPE.read_text())
    alpine_shape = json.loads(ALPINE_SHAPE.read_text())
    # ~3,000 source packages like Debian's security-relevant set: the root's own and others
    packages = sorted(installed) + [f"libgen{index}" for index in range(3000 - len(installed))]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(debian + alpine):
            is_debian = index < debian
            record = copy.deepcopy(debian_shape if is_debian else alpine_shape)
            cve = f"CVE-{2000 + index % 25}-{100000 + index}"
            record["id"] = f"DEBIAN-{cve}" if is_debian else f"ALPINE-{cve}"
            record["aliases"] = [cve]
            affected = record["affected"][0]
            name = rng.choice(packages)
            affected["package"]["name"] = name
            events: list[dict[str, str]] = [{"introduced": "0"}]
            if is_debian:
                fixed = fixed_version(installed.get(name), rng)
            else:
                fixed = f"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}-r1"
            if fixed is not None:
                events.append({"fixed": fixed})
            affected["ranges"][0]["events"] = events
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return debian + alpine


def match_root(work: Path) -> Path:
    """A root with this machine's real dpkg status (hundreds of packages) as Debian 12."""
    root = work / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    shutil.copyfile("/var/lib/dpkg/status", root / "var/lib/dpkg/status")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    return root


def timed(function: Any, rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--debian", type=int, default=DEBIAN_RECORDS)
    parser.add_argument("--alpine", type=int, default=ALPINE_RECORDS)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    if not Path("/var/lib/dpkg/status").is_file():
        print("vulnerabilities bench: needs a dpkg status (a Debian machine)", file=sys.stderr)
        return 2
    rng = random.Random(17)
    with tempfile.TemporaryDirectory(prefix="scan-root-vulndb-bench.") as scratch:
        work = Path(scratch)
        zipped = work / "all.zip"
        installed = source_versions(Path("/var/lib/dpkg/status"))
        records = export(zipped, options.debian, options.alpine, installed, rng)
        db_path = work / "vulndb.sqlite"
        command = [sys.executable, "-m", "console.entry", "vulndb", "import", "--db", str(db_path)]
        started = time.perf_counter()
        subprocess.run([*command, str(zipped)], check=True, capture_output=True, cwd=REPO)
        first_import = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([*command, str(zipped)], check=True, capture_output=True, cwd=REPO)
        reimport = time.perf_counter() - started
        root = match_root(work)
        packages = list_packages(root).packages
        read_packages, _ = timed(lambda: list_packages(root), options.rounds)
        with VulnDB.open_read(db_path) as db:
            release = detect_release(RootFS(str(root)))
            match_seconds, result = timed(
                lambda: match_packages(db, release, packages), options.rounds
            )
        summary: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "records": records,
            "export_bytes": zipped.stat().st_size,
            "import_seconds": round(first_import, 3),
            "reimport_unchanged_seconds": round(reimport, 3),
            "database_bytes": db_path.stat().st_size,
            "root_packages": len(packages),
            "matches": len(result.matches),
            "match_ms": round(match_seconds * 1000, 2),
            "read_packages_ms": round(read_packages * 1000, 2),
            "ratio_match_to_package_read": round(match_seconds / read_packages, 3),
            "target_match_ms": TARGET_MATCH_MS,
        }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(summary, indent=2) + "\n")
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
