"""Both implementations of each native module against its Protocol in _native/interface.py."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import _native
from _native import interface
from _native.types import Prefetching

# mypy checks the twins against these Protocols statically; it cannot read the compiled modules,
# so here every implementation is held to the Protocol's parameter names, kinds and defaults
# (the compiled functions carry no annotations: the types are the twins', checked by mypy).


def _modules() -> list[tuple[str, type, str, ModuleType]]:
    """(test id, Protocol, implementation name, module) for every loaded implementation."""
    found: list[tuple[str, type, str, ModuleType]] = []
    for name, (walker, hasher) in _native.implementations().items():
        found.append(("walker", interface.WalkerModule, name, typing.cast(ModuleType, walker)))
        found.append(("hasher", interface.HasherModule, name, typing.cast(ModuleType, hasher)))
    for name, matcher in _native.matchers().items():
        found.append(("matcher", interface.MatcherModule, name, sys.modules[matcher.__module__]))
    for kind, protocol, loaded in (
        ("prefetch", interface.PrefetchModule, _native.prefetchers()),
        ("untar", interface.UntarModule, _native.untars()),
        ("remove", interface.RemoverModule, _native.removers()),
    ):
        for name, module in loaded.items():
            found.append((kind, protocol, name, typing.cast(ModuleType, module)))
    return found


MODULES = _modules()
IDS = [f"{kind}-{ {'cython': 'c', 'python': 'py'}[name] }" for kind, _p, name, _m in MODULES]


def _members(protocol: type) -> dict[str, object]:
    """The Protocol's own members (what `class X(Protocol)` declares), by name."""
    return {
        name: value
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }


def _shape(function: Callable[..., object], drop_self: bool) -> list[tuple[str, str, object]]:
    """(name, kind, default) of each parameter: what a caller relies on, annotations aside."""
    parameters = list(inspect.signature(function).parameters.values())
    if drop_self:
        parameters = parameters[1:]
    return [(p.name, p.kind.name, p.default) for p in parameters]


def _check_methods(protocol: type, implementation: object, drop_self: bool) -> list[str]:
    """Every way `implementation` differs from `protocol`'s methods and properties."""
    wrong: list[str] = []
    for name, declared in _members(protocol).items():
        if not hasattr(implementation, name):
            wrong.append(f"{name}: missing")
        elif isinstance(declared, property):
            assert declared.fget is not None
            expected = typing.get_type_hints(declared.fget)["return"]
            value = getattr(implementation, name)
            if typing.get_origin(expected) is None and not isinstance(value, expected):
                wrong.append(f"{name}: {value!r} is not a {expected.__name__}")
        elif isinstance(getattr(implementation, name), type):
            continue  # a class (Matcher): held to its instance Protocol by its own test
        else:
            want = _shape(typing.cast(Callable[..., object], declared), True)
            got = _shape(getattr(implementation, name), drop_self)
            if want != got:
                wrong.append(f"{name}: {got} != the interface's {want}")
    return wrong


@pytest.mark.parametrize(("kind", "protocol", "name", "module"), MODULES, ids=IDS)
def test_module_matches_its_interface(
    kind: str, protocol: type, name: str, module: ModuleType
) -> None:
    assert _check_methods(protocol, module, drop_self=False) == []


# Classes a compiled module exports that are no member of its Protocol: the handle start()
# returns, held to types.Prefetching by test_prefetch_handle_matches_prefetching.
_HANDLES = {"_native._prefetch": {"Prefetch"}}
COMPILED = [entry for entry in MODULES if entry[2] == "cython"]


@pytest.mark.native_only
@pytest.mark.parametrize(
    ("kind", "protocol", "name", "module"),
    COMPILED,
    ids=[f"{kind}-c" for kind, _p, _n, _m in COMPILED],
)
def test_every_public_callable_of_a_compiled_module_is_in_its_interface(
    kind: str, protocol: type, name: str, module: ModuleType
) -> None:
    """What a compiled module exports is what its twin must have and mypy must see (the twins
    may export helpers of their own: validate_request, kind_of, ...)."""
    exported = {symbol for symbol in module.__all__ if callable(getattr(module, symbol))}
    assert exported, f"{module.__name__} exports nothing callable"
    unknown = exported - set(_members(protocol)) - _HANDLES.get(module.__name__, set())
    assert sorted(unknown) == []


@pytest.mark.parametrize("name", sorted(_native.matchers()))
def test_matcher_class_matches_content_matcher(name: str) -> None:
    matcher_class = _native.matchers()[name]
    matcher = matcher_class(patterns=[b"ab", b"abc"])  # the constructor's parameter name
    assert _check_methods(interface.ContentMatcher, matcher, drop_self=False) == []
    assert matcher.patterns == (b"ab", b"abc") and matcher.max_length == 3
    assert matcher.find_all(b"xabcab") == ([(0, 1), (1, 1), (0, 4)], 3)


@pytest.mark.parametrize("name", sorted(_native.prefetchers()))
def test_prefetch_handle_matches_prefetching(name: str, tmp_path: Path) -> None:
    handle = _native.prefetchers()[name].start(bytes(tmp_path), b"var/lib/dpkg/info", b".md5sums")
    try:
        assert _check_methods(Prefetching, handle, drop_self=False) == []
    finally:
        assert handle.stop() == (0, 0)


def test_the_check_sees_a_drifted_signature() -> None:
    """The comparison has teeth: a keyword renamed, made positional or given another default."""

    class Drifted:
        @staticmethod
        def walk(
            root: str | bytes,
            *,
            skip: object = (),
            one_file_system: bool = False,
            unchanged: object = None,
            matched: object = None,
        ) -> None: ...

        @staticmethod
        def remove_tree(path: str | bytes, threads: int = 0) -> None: ...

    (walk,) = _check_methods(interface.WalkerModule, Drifted, drop_self=False)
    assert walk.startswith("walk: ") and "('one_file_system', 'KEYWORD_ONLY', False)" in walk
    assert _check_methods(interface.RemoverModule, Drifted, drop_self=False)[0].startswith(
        "remove_tree: "
    )
    assert _check_methods(interface.HasherModule, Drifted, drop_self=False) == [
        "default_jobs: missing",
        "hash_files: missing",
    ]
