"""The selector: which core is loaded, and CI's guard against a silent fallback to Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import _native

REPO = Path(__file__).resolve().parent.parent


def test_loaded_implementation_matches_the_environment() -> None:
    if os.environ.get("SCANNER_NO_EXTENSIONS") == "1":
        assert _native.IMPLEMENTATION == "python"
    elif os.environ.get("SCANNER_REQUIRE_EXTENSIONS") == "1":
        # This is how CI fails when the extension silently did not build or load.
        assert _native.IMPLEMENTATION == "cython"
    else:
        assert _native.IMPLEMENTATION in ("cython", "python")
    assert _native.IMPLEMENTATION in _native.implementations()
    walker, hasher = _native.implementations()[_native.IMPLEMENTATION]
    assert (_native.walk, _native.hash_files) == (walker.walk, hasher.hash_files)


def test_no_extensions_forces_python() -> None:
    env = dict(os.environ, SCANNER_NO_EXTENSIONS="1", SCANNER_REQUIRE_EXTENSIONS="0")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import _native; print(_native.IMPLEMENTATION, sorted(_native.implementations()))",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["python", "['python']"]


def test_python_twins_are_always_available() -> None:
    walker, hasher = _native.implementations()["python"]
    assert walker.__name__ == "_native.walker_py" and hasher.__name__ == "_native.hasher_py"
