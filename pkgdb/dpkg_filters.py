"""dpkg's `--path-exclude`/`--path-include` filters, as an image configured them in etc/dpkg.

Slim images tell dpkg not to unpack documentation (`path-exclude=/usr/share/doc/*`, then
`path-include=/usr/share/doc/*/copyright`). The md5sums still list those files, so a verifier
must apply the same filters or report thousands of "missing" files.

Semantics, from dpkg itself (src/main/filters.c `filter_should_skip`, dpkg(1) --path-exclude):
  * the pattern is matched with `fnmatch(pattern, "/" + path, 0)`: flags 0, so NOT
    FNM_PATHNAME (`*` and `?` match `/` too), not FNM_PERIOD (a leading `.` is not special),
    and backslash escapes the next character; `[...]`, `[!...]` and `[^...]` are classes;
  * every filter is tried in order and the last one that matches decides (include or exclude);
    no match means included;
  * dpkg also re-includes excluded *directories and symlinks* leading to a re-included file;
    md5sums and Conffiles list only regular files, so that part never applies here.
Configuration (lib/dpkg/options.c `dpkg_options_load`): every file in `etc/dpkg/dpkg.cfg.d/`
whose name is only `[A-Za-z0-9_-]` (not starting with `.`), in byte order, then
`etc/dpkg/dpkg.cfg`. A line is `option[=]value` or `option value`; `#` starts a comment line;
the value may be in matching quotes. `~/.dpkg.cfg` of whoever ran dpkg is not read: we cannot
know who that was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .records import PkgDBProblem
from .rootfs import RootFS

__all__ = [
    "CONFIG_DIR",
    "CONFIG_FILE",
    "PathFilter",
    "PathFilters",
    "glob_to_regex",
    "read_filters",
]

CONFIG_DIR = b"etc/dpkg/dpkg.cfg.d"
CONFIG_FILE = b"etc/dpkg/dpkg.cfg"
_VALID_CONFIG_NAME = re.compile(rb"[A-Za-z0-9_-]+")
_OPTION = re.compile(rb"[A-Za-z0-9-]*")
MAX_CONFIG_BYTES = 1 << 20  # a real dpkg.cfg is a few hundred bytes


@dataclass(frozen=True, slots=True)
class PathFilter:
    """One `path-exclude`/`path-include` line, where it came from."""

    include: bool
    pattern: bytes  # the glob as written, absolute (`/usr/share/doc/*`)
    source: bytes  # the config file, relative to the root
    line: int


class PathFilters:
    """An ordered filter list; `excluded(path)` answers as dpkg did when it unpacked `path`."""

    __slots__ = ("_any", "_compiled", "filters")

    def __init__(self, filters: tuple[PathFilter, ...]) -> None:
        self.filters = filters
        self._compiled = tuple((f.include, glob_to_regex(f.pattern)) for f in filters)
        # One alternation first: most paths match no filter, and one regex is much cheaper
        # than trying each filter in turn.
        self._any = re.compile(
            b"|".join(b"(?:" + r.pattern + b")" for _, r in self._compiled), re.DOTALL
        )

    def __bool__(self) -> bool:
        return bool(self.filters)

    def excluded(self, path: bytes) -> bool:
        """`path` is relative with no leading slash, as md5sums spell it."""
        absolute = b"/" + path
        if self._any.fullmatch(absolute) is None:
            return False
        excluded = False
        for include, regex in self._compiled:
            if regex.fullmatch(absolute) is not None:
                excluded = not include
        return excluded


def glob_to_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Translate a glob to a regex with glibc `fnmatch(pattern, name, 0)` semantics."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\":
            if i < n:
                out.append(re.escape(pattern[i : i + 1]))
                i += 1
            else:
                out.append(re.escape(b"\\"))  # a trailing backslash matches itself
        elif c == b"[":
            end, cls = _bracket(pattern, i)
            if end < 0:
                out.append(re.escape(b"["))  # no closing `]`: a literal `[`, as in fnmatch
            else:
                out.append(cls)
                i = end
        else:
            out.append(re.escape(c))
    return re.compile(b"".join(out), re.DOTALL)


def _bracket(pattern: bytes, i: int) -> tuple[int, bytes]:
    """Parse a `[...]` class starting after `[`; return (index after `]`, regex) or (-1, b"")."""
    n = len(pattern)
    negate = i < n and pattern[i : i + 1] in (b"!", b"^")
    if negate:
        i += 1
    members: list[bytes] = []
    first = True
    while i < n:
        c = pattern[i : i + 1]
        if c == b"]" and not first:
            body = b"".join(members)
            return i + 1, b"[" + (b"^" if negate else b"") + body + b"]"
        first = False
        if c == b"\\" and i + 1 < n:
            i += 1
            c = pattern[i : i + 1]
        if c == b"[" and pattern[i + 1 : i + 2] == b":":
            close = pattern.find(b":]", i + 2)
            if close >= 0:
                members.append(_posix_class(pattern[i + 2 : close]))
                i = close + 2
                continue
        if pattern[i + 1 : i + 2] == b"-" and pattern[i + 2 : i + 3] not in (b"]", b""):
            high = pattern[i + 2 : i + 3]
            members.append(re.escape(c) + b"-" + re.escape(high))
            i += 3
            continue
        members.append(re.escape(c))
        i += 1
    return -1, b""


_POSIX_CLASSES = {
    b"alnum": rb"A-Za-z0-9",
    b"alpha": rb"A-Za-z",
    b"digit": rb"0-9",
    b"lower": rb"a-z",
    b"upper": rb"A-Z",
    b"space": rb" \t\n\r\f\v",
    b"blank": rb" \t",
    b"punct": rb"!-/:-@\[-`{-~",
    b"xdigit": rb"0-9A-Fa-f",
    b"cntrl": rb"\x00-\x1f\x7f",
    b"print": rb" -~",
    b"graph": rb"!-~",
}


def _posix_class(name: bytes) -> bytes:
    return _POSIX_CLASSES.get(name, b"")  # an unknown class matches nothing, like fnmatch


def read_filters(root: RootFS) -> tuple[PathFilters, tuple[PkgDBProblem, ...]]:
    """Read the filters the image's dpkg would apply; unreadable config files are problems."""
    filters: list[PathFilter] = []
    problems: list[PkgDBProblem] = []
    sources: list[bytes] = []
    try:
        names = root.listdir(CONFIG_DIR)
    except FileNotFoundError:
        names = []
    except OSError as error:
        problems.append(
            PkgDBProblem("dpkg", CONFIG_DIR, f"cannot list dpkg config: {error.strerror}")
        )
        names = []
    sources.extend(
        CONFIG_DIR + b"/" + name for name in sorted(names) if _VALID_CONFIG_NAME.fullmatch(name)
    )
    sources.append(CONFIG_FILE)
    for source in sources:
        try:
            text = root.read_bytes(source, MAX_CONFIG_BYTES)
        except FileNotFoundError:
            continue
        except OSError as error:
            # dpkg warns and goes on; we say that our view of the filters may be incomplete.
            problems.append(
                PkgDBProblem(
                    "dpkg",
                    source,
                    f"cannot read dpkg config ({error.strerror}): path filters may be missing",
                )
            )
            continue
        filters.extend(_parse_config(text, source, problems))
    return PathFilters(tuple(filters)), tuple(problems)


def _parse_config(text: bytes, source: bytes, problems: list[PkgDBProblem]) -> list[PathFilter]:
    found = []
    for number, line in enumerate(text.split(b"\n"), start=1):
        line = line.rstrip()
        if not line or line.startswith(b"#"):
            continue
        option_match = _OPTION.match(line)
        assert option_match is not None
        option = option_match.group()
        if option not in (b"path-exclude", b"path-include"):
            continue
        value = line[option_match.end() :]
        if value.startswith(b"="):
            value = value[1:]
        value = value.lstrip()
        if value[:1] in (b'"', b"'"):
            if len(value) < 2 or value[-1:] != value[:1]:
                problems.append(
                    PkgDBProblem(
                        "dpkg",
                        source,
                        f"line {number}: unbalanced quotes in {option.decode()} (dpkg refuses it)",
                    )
                )
                continue
            value = value[1:-1]
        if not value:
            problems.append(
                PkgDBProblem("dpkg", source, f"line {number}: {option.decode()} without a pattern")
            )
            continue
        found.append(PathFilter(option == b"path-include", value, source, number))
    return found
