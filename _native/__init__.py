"""Selects the Cython core or its pure-Python twin; `IMPLEMENTATION` says which one is loaded."""

from __future__ import annotations

import os
from importlib import import_module
from types import ModuleType
from typing import TypeVar

from . import hasher_py, matcher_py, prefetch_py, remove_py, untar_py, walker_py
from .interface import (
    ContentMatcher,
    HasherModule,
    MatcherModule,
    PrefetchModule,
    RemoverModule,
    UntarModule,
    WalkerModule,
)
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
    "ContentMatcher",
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


def _load_native() -> tuple[WalkerModule, HasherModule] | None:
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


T = TypeVar("T")

# Typed by the interface (_native/interface.py): mypy checks the twins against it here, and every
# caller against it through the names below; tests/test_native_interface.py checks the compiled
# modules, which mypy cannot read, against the same Protocols.
_native = _load_native()
walker: WalkerModule
hasher: HasherModule
if _native is None:
    IMPLEMENTATION = "python"
    walker, hasher = walker_py, hasher_py
else:
    IMPLEMENTATION = "cython"
    walker, hasher = _native

walk = walker.walk
hash_files = hasher.hash_files
default_jobs = hasher.default_jobs  # the native hasher uses fewer threads when SIMD MD5 is active


def _optional(name: str) -> ModuleType | None:
    """The compiled module `_native.<name>` when the Cython core is in use and it loads, else None
    (its pure-Python twin serves); NativeUnavailable instead when the core is required."""
    if _native is None:
        return None
    try:
        return import_module(f"{__name__}.{name}")
    except ImportError as error:
        if os.environ.get("SCANNER_REQUIRE_EXTENSIONS") == "1":
            raise NativeUnavailable(f"the Cython module {name} did not load: {error}") from error
        return None


def _loadable(python: T, native: T | None) -> dict[str, T]:
    """{"python": twin, "cython": compiled one if loaded}: what tests and benchmarks compare."""
    return {"python": python} if native is None else {"python": python, "cython": native}


_native_matcher_module = _optional("_matcher")
_native_matcher: type | None = (
    None if _native_matcher_module is None else _native_matcher_module.Matcher
)
_matcher: MatcherModule = _native_matcher_module or matcher_py
Matcher = _matcher.Matcher  # a class; typed as what calling it gives

_native_prefetch = _optional("_prefetch")
_prefetcher: PrefetchModule = _native_prefetch or prefetch_py
# Early read-ahead of the files package manifests list (a hint; see _prefetch.pyx).
start_prefetch = _prefetcher.start

_native_untar = _optional("_untar")
untar: UntarModule = _native_untar or untar_py  # parse_header / parse_pax for image layers

_native_remove = _optional("_remove")
_remover: RemoverModule = _native_remove or remove_py
# Removal of a scratch tree (an unpacked image), never following a symlink.
remove_tree = _remover.remove_tree


def implementations() -> dict[str, tuple[WalkerModule, HasherModule]]:
    """Every loadable implementation as {name: (walker, hasher)}, for tests and benchmarks."""
    return _loadable((walker_py, hasher_py), _native)


def matchers() -> dict[str, type]:
    """Every loadable multi-pattern matcher class as {name: class}, for tests and benchmarks."""
    return _loadable(matcher_py.Matcher, _native_matcher)


def prefetchers() -> dict[str, PrefetchModule]:
    """Every loadable early read-ahead module as {name: module}, for tests and benchmarks."""
    return _loadable(prefetch_py, _native_prefetch)


def untars() -> dict[str, UntarModule]:
    """Every loadable tar-header parser module as {name: module}, for tests and benchmarks."""
    return _loadable(untar_py, _native_untar)


def removers() -> dict[str, RemoverModule]:
    """Every loadable tree remover module as {name: module}, for tests and benchmarks."""
    return _loadable(remove_py, _native_remove)
