"""Selects the Cython core or its pure-Python twin; `IMPLEMENTATION` says which one is loaded."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

from . import hasher_py, matcher_py, prefetch_py, remove_py, untar_py, walker_py
from .types import (
    Digest,
    Extents,
    FileKind,
    HashResult,
    HashStatus,
    Prefetching,
    TarFormatError,
    WalkEntry,
    WalkError,
)

__all__ = [
    "IMPLEMENTATION",
    "Digest",
    "Extents",
    "FileKind",
    "HashResult",
    "HashStatus",
    "Matcher",
    "NativeUnavailable",
    "Prefetching",
    "TarFormatError",
    "WalkEntry",
    "WalkError",
    "default_jobs",
    "hash_files",
    "implementations",
    "matchers",
    "prefetchers",
    "remove_tree",
    "removers",
    "start_prefetch",
    "untar",
    "untars",
    "walk",
]


class NativeUnavailable(ImportError):
    """The compiled core was required (SCANNER_REQUIRE_EXTENSIONS=1) but could not be loaded."""


def _load_native() -> tuple[ModuleType, ModuleType] | None:
    if os.environ.get("SCANNER_NO_EXTENSIONS") == "1":
        return None
    try:
        from . import _hasher, _walker  # type: ignore[attr-defined]
    except ImportError as error:
        if os.environ.get("SCANNER_REQUIRE_EXTENSIONS") == "1":
            raise NativeUnavailable(
                f"the Cython core is required but did not load: {error}"
            ) from error
        return None
    return _walker, _hasher


_native = _load_native()
walker: ModuleType
hasher: ModuleType
if _native is None:
    IMPLEMENTATION = "python"
    walker, hasher = walker_py, hasher_py
else:
    IMPLEMENTATION = "cython"
    walker, hasher = _native

walk = walker.walk
hash_files = hasher.hash_files
default_jobs = hasher.default_jobs  # the native hasher uses fewer threads when SIMD MD5 is active


def _load_native_matcher() -> type | None:
    if _native is None:
        return None
    from ._matcher import Matcher as NativeMatcher  # type: ignore[import-not-found]

    return NativeMatcher  # type: ignore[no-any-return]


_native_matcher = _load_native_matcher()
Matcher: type = _native_matcher or matcher_py.Matcher


def _load_native_prefetch() -> ModuleType | None:
    if _native is None:
        return None
    try:
        from . import _prefetch  # type: ignore[attr-defined]
    except ImportError as error:
        if os.environ.get("SCANNER_REQUIRE_EXTENSIONS") == "1":
            raise NativeUnavailable(f"the Cython prefetcher did not load: {error}") from error
        return None
    return _prefetch  # type: ignore[no-any-return]


_native_prefetch = _load_native_prefetch()
# Early read-ahead of the files package manifests list (a hint; see _prefetch.pyx).
start_prefetch: Callable[..., Prefetching] = (_native_prefetch or prefetch_py).start


def prefetchers() -> dict[str, ModuleType]:
    """Every loadable early read-ahead module as {name: module}, for tests and benchmarks."""
    found: dict[str, ModuleType] = {"python": prefetch_py}
    if _native_prefetch is not None:
        found["cython"] = _native_prefetch
    return found


def matchers() -> dict[str, type]:
    """Every loadable multi-pattern matcher class as {name: class}, for tests and benchmarks."""
    found: dict[str, type] = {"python": matcher_py.Matcher}
    if _native_matcher is not None:
        found["cython"] = _native_matcher
    return found


def implementations() -> dict[str, tuple[ModuleType, ModuleType]]:
    """Every loadable implementation as {name: (walker, hasher)}, for tests and benchmarks."""
    found = {"python": (walker_py, hasher_py)}
    if _native is not None:
        found["cython"] = _native
    return found


def _load_native_untar() -> ModuleType | None:
    if _native is None:
        return None
    from . import _untar  # type: ignore[attr-defined]

    return _untar  # type: ignore[no-any-return]


_native_untar = _load_native_untar()
untar: ModuleType = _native_untar or untar_py  # parse_header / parse_pax for image layers


def untars() -> dict[str, ModuleType]:
    """Every loadable tar-header parser module as {name: module}, for tests and benchmarks."""
    found: dict[str, ModuleType] = {"python": untar_py}
    if _native_untar is not None:
        found["cython"] = _native_untar
    return found


def _load_native_remove() -> ModuleType | None:
    if _native is None:
        return None
    try:
        from . import _remove  # type: ignore[attr-defined]
    except ImportError as error:
        if os.environ.get("SCANNER_REQUIRE_EXTENSIONS") == "1":
            raise NativeUnavailable(f"the Cython remover did not load: {error}") from error
        return None
    return _remove  # type: ignore[no-any-return]


_native_remove = _load_native_remove()
# Removal of a scratch tree (an unpacked image), never following a symlink.
remove_tree: Callable[..., None] = (_native_remove or remove_py).remove_tree


def removers() -> dict[str, ModuleType]:
    """Every loadable tree remover module as {name: module}, for tests and benchmarks."""
    found: dict[str, ModuleType] = {"python": remove_py}
    if _native_remove is not None:
        found["cython"] = _native_remove
    return found
