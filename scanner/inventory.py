"""The package inventory: what every detected package manager says is installed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pkgdb import Package

from .manifests import read_manifests
from .report import SCHEMA_VERSION, Problem
from .scan import open_root

__all__ = ["Inventory", "list_packages"]


@dataclass(frozen=True, slots=True)
class Inventory:
    """Every installed package of every manager found, and what could not be read."""

    root: str
    packages: tuple[Package, ...]
    problems: tuple[Problem, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": SCHEMA_VERSION,
            "root": self.root,
            "packages": [
                {
                    "manager": package.manager,
                    "name": package.name,
                    "epoch": package.epoch,
                    "version": package.version,
                    "release": package.release,
                    "arch": package.arch,
                    "files": package.file_count,
                }
                for package in self.packages
            ],
            "problems": [problem.to_dict() for problem in self.problems],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_table(self) -> str:
        rows = [("MANAGER", "NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "FILES")]
        for p in self.packages:
            rows.append(
                (
                    p.manager,
                    p.name,
                    "" if p.epoch is None else str(p.epoch),
                    p.version,
                    p.release or "",
                    p.arch or "",
                    str(p.file_count),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines += [f"problem: {problem.message}" for problem in self.problems]
        return "\n".join(lines) + "\n"


def list_packages(root: str | os.PathLike[str] = "/") -> Inventory:
    """Read every package database in `root` and list its packages, sorted by manager and name."""
    with open_root(root) as rootfs:
        manifests = read_manifests(rootfs)
    packages = sorted(
        manifests.packages, key=lambda p: (p.manager, p.name, p.version, p.arch or "")
    )
    return Inventory(os.fspath(root), tuple(packages), tuple(manifests.problems))
