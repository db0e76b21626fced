"""The environment of a child Python that must import the very scanner this test session imports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import scanner

# site-packages of the venv in CI (where the Cython build lives), the checkout in development.
IMPORT_ROOT = Path(scanner.__file__).resolve().parent.parent


def child_env(*extra_paths: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with PYTHONPATH set to IMPORT_ROOT first.

    PYTHONSAFEPATH keeps the child's working directory off sys.path: a checkout without an
    in-place build there would otherwise shadow the installed package (and its compiled core).
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in (IMPORT_ROOT, *extra_paths))
    env["PYTHONSAFEPATH"] = "1"
    return env
