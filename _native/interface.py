"""The typed interface both implementations of each native module satisfy: one Protocol per module."""

# Why Protocols and not .pyi stubs: a stub per Cython module would be a second copy of every
# signature, free to drift from its twin. Here each signature is written once. mypy checks the
# pure-Python twins against these Protocols where `_native/__init__.py` selects them (a module
# satisfies a Protocol structurally); the compiled modules, which mypy cannot read, are checked
# against the same Protocols at run time (tests/test_native_interface.py: parameter names, kinds
# and defaults). The defaults below are the real ones for that reason, not `...`.

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from .throttle import CpuBudget
from .types import Extents, HashResult, Prefetching, WalkEntry, WalkError
from .untar_py import Header, SparseBlock

__all__ = [
    "ContentMatcher",
    "HasherModule",
    "MatcherModule",
    "PrefetchModule",
    "RemoverModule",
    "UntarModule",
    "WalkerModule",
]


class WalkerModule(Protocol):
    """`_native._walker` and `walker_py`."""

    def walk(
        self,
        root: str | bytes,
        *,
        skip: Collection[bytes] = (),
        one_file_system: bool = True,
        unchanged: Mapping[bytes, tuple[object, ...]] | None = None,
        matched: list[bytes] | None = None,
    ) -> Iterator[WalkEntry | WalkError]: ...


class ContentMatcher(Protocol):
    """A multi-pattern matcher (`_native.Matcher`): what hash_files(matcher=...) is given.

    hash_files accepts only a matcher of its own implementation (TypeError otherwise, at run
    time: the native hasher walks the compiled DFA); `_native.Matcher` and `_native.hash_files`
    are always of the same one."""

    @property
    def patterns(self) -> tuple[bytes, ...]: ...

    @property
    def max_length(self) -> int: ...

    def find_all(
        self, data: bytes, max_hits: int = 1 << 20
    ) -> tuple[list[tuple[int, int]], int]: ...


class MatcherModule(Protocol):
    """`_native._matcher` and `matcher_py`."""

    # A class in both modules: its constructor is what callers use.
    def Matcher(self, patterns: Iterable[bytes]) -> ContentMatcher: ...


class HasherModule(Protocol):
    """`_native._hasher` and `hasher_py`."""

    def default_jobs(self) -> int: ...

    def hash_files(
        self,
        root_fd: int,
        requests: Sequence[tuple[bytes, int]],
        *,
        jobs: int = 0,
        matcher: ContentMatcher | None = None,
        capture: Iterable[int] = frozenset(),
        max_hits: int = 64,
        window_before: int = 256,
        window_after: int = 65536,
        window_file_limit: int = 8 << 20,
        content_limit: int = 256 << 20,
        cpu_budget: CpuBudget | None = None,
        extents: Extents | None = None,
    ) -> list[HashResult]: ...


class PrefetchModule(Protocol):
    """`_native._prefetch` and `prefetch_py`."""

    def start(
        self,
        root: bytes,
        directory: bytes,
        suffix: bytes,
        *,
        budget: int = 128 << 20,
        probe: bool = True,
    ) -> Prefetching: ...


class UntarModule(Protocol):
    """`_native._untar` and `untar_py`."""

    @property
    def BLOCK(self) -> int: ...

    def parse_header(self, block: bytes, offset: int) -> Header: ...

    def parse_pax(self, data: bytes, offset: int) -> dict[str, str]: ...

    def parse_sparse(self, block: bytes, offset: int, extension: bool) -> SparseBlock: ...


class RemoverModule(Protocol):
    """`_native._remove` and `remove_py`."""

    def remove_tree(self, path: str | bytes, *, threads: int = 0) -> None: ...
