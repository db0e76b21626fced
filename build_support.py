"""Build checks for setup.py: the version without importing scanner, and the build packages."""

from __future__ import annotations

import ast
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# A probe compiles one line; a minute means a hung compiler, not a slow one.
PROBE_TIMEOUT = 60
# What is kept of a failing command's output, and of the line quoted from it.
MAX_OUTPUT = 64 * 1024
MAX_LINE = 500


class Compiler(Protocol):
    """What the probe uses of setuptools' Unix compiler: its command lines and search paths."""

    compiler_so: list[str]
    linker_so: list[str]
    include_dirs: list[str]
    library_dirs: list[str]


@dataclass(frozen=True)
class Requirement:
    """Something the Cython core's build needs, and the Debian package that provides it."""

    package: str
    what: str
    header: str | None = None
    library: str | None = None
    # Every other header includes the C library's: without it the others cannot be judged.
    needed_by_the_rest: bool = False


@dataclass(frozen=True)
class Missing:
    """A requirement the probe did not find, with what the compiler said."""

    package: str
    what: str
    detail: str


COMPILER = Requirement("gcc", "a C compiler")
# In probe order. Headers the .pyx/.pxd/.h sources include, and the library the hasher links.
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("libc6-dev", "the C library's headers", header="stdio.h", needed_by_the_rest=True),
    Requirement("linux-libc-dev", "the Linux kernel's headers", header="linux/openat2.h"),
    Requirement("python3-dev", "Python's headers", header="Python.h"),
    Requirement(
        "libssl-dev", "OpenSSL 3's headers and libcrypto", header="openssl/evp.h", library="crypto"
    ),
    Requirement("libxxhash-dev", "xxHash's header", header="xxhash.h"),
)


class ProbeError(Exception):
    """The compiler runs but cannot build even an empty file: no package would fix that."""


def read_version(source_dir: Path) -> str:
    """`__version__` of scanner/version.py, read without importing the package (the one source)."""
    path = source_dir / "scanner" / "version.py"
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "__version__"
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                break  # computed, not written down: not a version setup.py can read
            if isinstance(value, str) and value:
                return value
    raise ValueError(f'{path}: no `__version__ = "..."` string')


class _Probe:
    """Runs the compiler on one-line files in a scratch directory, its output kept, not shown."""

    def __init__(self, compiler: Compiler, scratch: Path) -> None:
        self.compiler = compiler
        self.scratch = scratch
        self.count = 0

    def _run(self, command: list[str]) -> str | None:
        """None when the command succeeds, else (the start of) its output; OSError when it
        cannot be started (FileNotFoundError: no compiler)."""
        # Its own session: on a timeout the whole group goes (gcc's cc1 or a wrapper's children
        # would outlive a kill of the driver alone, hung for ever).
        with subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as process:
            output = _bounded_read(process, command[0])
            returncode = process.wait()
        if returncode == 0:
            return None
        return output.decode("utf-8", "replace") or f"exit status {returncode}"

    def compile(self, source: str) -> str | None:
        self.count += 1
        path = self.scratch / f"probe{self.count}.c"
        path.write_text(source, encoding="utf-8")
        includes = [f"-I{directory}" for directory in self.compiler.include_dirs]
        return self._run(
            [*self.compiler.compiler_so, *includes, "-c", str(path), "-o", f"{path}.o"]
        )

    def link(self, library: str) -> str | None:
        """Links a shared object against `library`, as the hasher's extension is linked."""
        error = self.compile("int scan_root_probe;\n")
        if error is not None:
            return error
        objects = str(self.scratch / f"probe{self.count}.c.o")
        paths = [f"-L{directory}" for directory in self.compiler.library_dirs]
        output = str(self.scratch / f"probe{self.count}.so")
        return self._run([*self.compiler.linker_so, objects, *paths, f"-l{library}", "-o", output])


def _bounded_read(process: subprocess.Popen[bytes], name: str) -> bytes:
    """The first MAX_OUTPUT bytes the command writes (the rest read and dropped, so that it is
    not blocked on a full pipe), until it closes its output; ProbeError, with its process group
    killed, when that takes PROBE_TIMEOUT."""
    stream = process.stdout
    assert stream is not None  # stdout=PIPE
    deadline = time.monotonic() + PROBE_TIMEOUT
    kept = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                _kill_group(process)
                raise ProbeError(
                    f"the C compiler ({name}) did not finish a one-line file in {PROBE_TIMEOUT} s"
                )
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return bytes(kept)
            kept += chunk[: MAX_OUTPUT - len(kept)]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group is gone already
        pass
    process.wait()


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    # A compiler's line can be anything long (a macro's expansion, a hostile wrapper's output):
    # the message stays one readable line.
    return (line[: MAX_LINE - 3] + "...") if len(line) > MAX_LINE else line or "failed"


def missing_build_packages(
    compiler: Compiler, requirements: Sequence[Requirement] = REQUIREMENTS
) -> list[Missing]:
    """The requirements `compiler` cannot find, in order; [] when the build can go ahead.

    Raises ProbeError when the compiler runs but cannot compile an empty file (a broken CFLAGS,
    say): that is no missing package, and its own message says more than a guess would.
    """
    with tempfile.TemporaryDirectory(prefix="scan-root-build-probe-") as scratch:
        probe = _Probe(compiler, Path(scratch))
        try:
            error = probe.compile("int scan_root_probe;\n")
        except (FileNotFoundError, PermissionError) as exc:
            return [Missing(COMPILER.package, COMPILER.what, f"{compiler.compiler_so[0]}: {exc}")]
        except OSError as exc:  # there, but no program this machine runs (ENOEXEC...)
            raise ProbeError(f"cannot run the C compiler {exc.filename}: {exc.strerror}") from exc
        if error is not None:
            raise ProbeError(
                f"the C compiler ({' '.join(compiler.compiler_so)}) cannot compile an empty file: "
                f"{_first_error(error)}"
            )
        try:
            return _probe_all(probe, requirements)
        except OSError as exc:  # the linker (LDSHARED) is missing or no program: no package guess
            raise ProbeError(f"cannot run {exc.filename or 'the linker'}: {exc.strerror}") from exc


def _probe_all(probe: _Probe, requirements: Sequence[Requirement]) -> list[Missing]:
    # Usually everything is there: one compile and one link say so.
    headers = "".join(f"#include <{r.header}>\n" for r in requirements if r.header)
    libraries = [r.library for r in requirements if r.library]
    if probe.compile(headers) is None and all(probe.link(lib) is None for lib in libraries):
        return []
    missing: list[Missing] = []
    for requirement in requirements:
        detail = _probe_one(probe, requirement)
        if detail is None:
            continue
        missing.append(Missing(requirement.package, requirement.what, detail))
        if requirement.needed_by_the_rest:
            break
    return missing


def _probe_one(probe: _Probe, requirement: Requirement) -> str | None:
    if requirement.header is not None:
        error = probe.compile(f"#include <{requirement.header}>\n")
        if error is not None:
            # gcc's and clang's words for the header itself missing; a header it includes
            # missing (a partial install) is told as the compiler says it.
            header = requirement.header
            if f"{header}: No such file" in error or f"'{header}' file not found" in error:
                return f"<{header}> not found"
            return f"<{requirement.header}> does not compile: {_first_error(error)}"
    if requirement.library is not None:
        error = probe.link(requirement.library)
        if error is not None:
            return f"cannot link -l{requirement.library}: {_first_error(error)}"
    return None


def message(missing: Sequence[Missing]) -> str:
    """The one message a failed probe gives: what is missing and the packages to install."""
    packages = " ".join(dict.fromkeys(m.package for m in missing))
    lines = ["scan-root: cannot build the Cython core, build packages are missing:"]
    lines += [f"  {m.package}: {m.what} ({m.detail})" for m in missing]
    lines += [
        f"Install them (Debian/Ubuntu): apt-get install {packages}",
        "or install the pure-Python build instead: SCANNER_NO_EXTENSIONS=1 pip install .",
    ]
    return "\n".join(lines)


def probe_with_setuptools() -> list[Missing]:
    """The probe run with the compiler setuptools' build_ext sets up (CC, CFLAGS and all)."""
    # Untyped in the setuptools a fresh venv brings (typed from 71 on, hence unused-ignore).
    from setuptools import Distribution, Extension  # type: ignore[import-untyped,unused-ignore]
    from setuptools.command.build_ext import (  # type: ignore[import-untyped,unused-ignore]
        build_ext,
    )

    found: list[Missing] = []

    class ProbeOnly(build_ext):  # type: ignore[misc,unused-ignore]
        def build_extensions(self) -> None:
            found.extend(missing_build_packages(self.compiler))

    with tempfile.TemporaryDirectory(prefix="scan-root-build-probe-") as scratch:
        # The extension is never compiled: it only makes build_ext set its compiler up.
        distribution = Distribution(
            {"name": "scan-root-probe", "ext_modules": [Extension("probe", ["probe.c"])]}
        )
        command = ProbeOnly(distribution)
        command.build_temp = command.build_lib = scratch
        command.ensure_finalized()
        command.run()
    return found


def main() -> int:
    """`python3 build_support.py`: says whether the Cython core can be built here."""
    try:
        missing = probe_with_setuptools()
    except ProbeError as error:
        print(f"scan-root: {error}", file=sys.stderr)
        return 1
    if missing:
        print(message(missing), file=sys.stderr)
        return 1
    print("scan-root: the build packages of the Cython core are present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
