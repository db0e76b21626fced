"""The package inventory: what every detected package manager says is installed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from pkgdb import Package

from .manifests import read_manifests
from .output.escape import json_safe, terminal_safe
from .report import SCHEMA_VERSION, Problem, ProblemKind
from .scan import open_root
from .targets.layout import image_format

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
                    # the name (and, for a binNMU, version) advisories use: vulnerabilities.md
                    "source": package.source,
                    "source_version": package.source_version,
                }
                for package in self.packages
            ],
            "problems": [problem.to_dict() for problem in self.problems],
        }

    def to_json(self) -> str:
        return json_safe(json.dumps(self.to_dict(), indent=2, ensure_ascii=False)) + "\n"

    def to_table(self) -> str:
        rows = [("MANAGER", "NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "FILES")]
        for p in self.packages:  # names and versions come from the target: shown, never obeyed
            rows.append(
                (
                    p.manager,
                    terminal_safe(p.name),
                    "" if p.epoch is None else str(p.epoch),
                    terminal_safe(p.version),
                    terminal_safe(p.release or ""),
                    terminal_safe(p.arch or ""),
                    str(p.file_count),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines += [f"problem: {terminal_safe(problem.message)}" for problem in self.problems]
        return "\n".join(lines) + "\n"


def list_packages(root: str | os.PathLike[str] = "/", *, tag: str | None = None) -> Inventory:
    """Read every package database in `root` and list its packages, sorted by manager and name.

    `root` may be an image (an OCI layout or archive, a `docker save`; `tag` or `PATH:TAG`
    picks one of several): its layers are applied to a temporary directory, as scan_image does,
    and the image's own problems are listed too. Raises ImageError for an unusable image."""
    if tag is not None or _is_image(root):
        return _image_packages(root, tag)
    with open_root(root) as rootfs:
        manifests = read_manifests(rootfs)
    return _inventory(root, manifests.packages, manifests.problems)


def _is_image(root: str | os.PathLike[str]) -> bool:
    """Whether `root` is an image, or `PATH:TAG` of one."""
    if image_format(root) is not None:
        return True
    if os.path.lexists(root):
        return False
    from .targets.image import split_reference  # the layer code: only for images

    path, tag = split_reference(os.fspath(root))
    return tag is not None and image_format(path) is not None


def _image_packages(path: str | os.PathLike[str], tag: str | None) -> Inventory:
    from .targets.image import open_image

    with open_image(path, tag=tag) as image, open_root(image.root) as rootfs:
        manifests = read_manifests(rootfs)
        problems = [*manifests.problems]
        problems += [Problem(kind=ProblemKind.IMAGE, message=message) for message in image.problems]
    return _inventory(path, manifests.packages, problems)


def _inventory(
    root: str | os.PathLike[str], packages: Iterable[Package], problems: Iterable[Problem]
) -> Inventory:
    ordered = sorted(packages, key=lambda p: (p.manager, p.name, p.version, p.arch or ""))
    return Inventory(os.fspath(root), tuple(ordered), tuple(problems))
