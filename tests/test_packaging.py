"""`python -m build` makes an sdist and a wheel that install in fresh venvs; a missing build package
fails with one message naming it."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from email.message import Message
from email.parser import Parser
from pathlib import Path
from types import ModuleType

import pytest

import scanner

REPO = Path(__file__).resolve().parent.parent
# The isolated builds install setuptools and Cython from the wheelhouse; one compile of the core.
BUILD_TIMEOUT = 300
PIP_TIMEOUT = 120
# Build steps that run outside the build: they must see neither this checkout nor its build mode.
_SCRUBBED = ("PYTHONPATH", "SCANNER_NO_EXTENSIONS", "SCANNER_REQUIRE_EXTENSIONS", "CC", "CFLAGS")


def _load_build_support() -> ModuleType:
    # build_support.py sits beside setup.py and is not installed: load it from the checkout.
    spec = importlib.util.spec_from_file_location("build_support", REPO / "build_support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_support", module)
    spec.loader.exec_module(module)
    return module


build_support = _load_build_support()


def _env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env.update(extra)
    return env


def _run(
    command: list[str | Path],
    *,
    timeout: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ---------------------------------------------------------------- building and installing


class Wheelhouse:
    """A directory of the wheels the builds and installs need, so that after one fetch from the
    index nothing else goes to the network (and a missing network is a skip, never a failure)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self, requirements: list[str]) -> None:
        done = _run(
            [
                *(sys.executable, "-m", "pip", "download", "--dest", self.path),
                *("--timeout", "15", "--retries", "1", "--", *requirements),
            ],
            timeout=PIP_TIMEOUT,
            cwd=self.path,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(
                f"the package index is unreachable, pip could not fetch {requirements}: {last}"
            )

    def env(self, extra: Mapping[str, str] = {}) -> dict[str, str]:
        return _env({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(self.path), **extra})


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    pytest.importorskip("build", reason="pypa `build` is not installed (the test extra has it)")
    house = Wheelhouse(tmp_path_factory.mktemp("wheelhouse"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    house.fetch(list(pyproject["build-system"]["requires"]))
    return house


@pytest.fixture(scope="module")
def sdist(wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist `python -m build --sdist` makes of this checkout (isolated, offline)."""
    out = tmp_path_factory.mktemp("sdist")
    _ok(
        _run(
            [sys.executable, "-m", "build", "--sdist", "--outdir", out, REPO],
            timeout=BUILD_TIMEOUT,
            cwd=out,
            env=wheelhouse.env(),
        )
    )
    (built,) = out.glob("*.tar.gz")
    # What the installed package needs at run time, from the sdist's own metadata.
    wheelhouse.fetch(
        [req for req in _metadata(built).get_all("Requires-Dist", []) if "extra ==" not in req]
    )
    return built


def _metadata(sdist: Path) -> Message:
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{_stem(sdist)}/PKG-INFO")
        assert member is not None
        return Parser().parsestr(member.read().decode("utf-8"))


def _stem(sdist: Path) -> str:
    return sdist.name.removesuffix(".tar.gz")


def _names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        prefix = _stem(sdist) + "/"
        return {member.name.removeprefix(prefix) for member in archive.getmembers()}


class Venv:
    """A fresh venv without pip of its own (the test's pip installs into it: --python)."""

    def __init__(self, path: Path) -> None:
        _ok(
            _run([sys.executable, "-m", "venv", "--without-pip", path], timeout=60, cwd=path.parent)
        )
        self.path = path
        self.python = path / "bin" / "python"

    def install(self, wheelhouse: Wheelhouse, target: Path, extra: Mapping[str, str] = {}) -> None:
        # --no-cache-dir: a wheel pip built from an sdist of the same name in another build mode
        # must not be reused.
        _ok(
            _run(
                [
                    *(sys.executable, "-m", "pip", "--python", self.python),
                    *("install", "--no-cache-dir", "--quiet", target),
                ],
                timeout=BUILD_TIMEOUT,
                cwd=self.path,
                env=wheelhouse.env(extra),
            )
        )

    def version(self, extra: Mapping[str, str] = {}) -> str:
        # Run from the venv's directory: nothing of the checkout can be imported.
        done = _run(
            [self.path / "bin" / "scan-root", "--version"],
            timeout=60,
            cwd=self.path,
            env=_env(extra),
        )
        return _ok(done).strip()

    def native_modules(self) -> list[Path]:
        purelib = _ok(
            _run(
                [self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                timeout=60,
                cwd=self.path,
            )
        ).strip()
        return sorted((Path(purelib) / "_native").glob("*.so"))


# ---------------------------------------------------------------- sdist, wheel, version


def test_sdist_carries_every_source_of_the_cython_core(sdist: Path) -> None:
    names = _names(sdist)
    native = REPO / "_native"
    generated = {path.with_suffix(".c").name for path in native.glob("*.pyx")}
    wanted = {
        f"_native/{path.name}"
        for pattern in ("*.pyx", "*.pxd", "*.h", "*.c")
        for path in native.glob(pattern)
        if path.name not in generated
    }
    assert wanted and not wanted - names, f"missing from the sdist: {sorted(wanted - names)}"
    # Cython's output is rebuilt from the .pyx: a stale copy must not ride along.
    assert not {f"_native/{name}" for name in generated} & names
    assert {"setup.py", "build_support.py", "pyproject.toml", "MANIFEST.in", "LICENSE"} <= names
    assert "docs/install.md" in names
    # Nothing built in place (extensions, bytecode) comes along.
    assert not [name for name in names if name.endswith((".so", ".pyc", ".o"))]


def test_sdist_carries_the_console_and_its_migrations(sdist: Path) -> None:
    """The console's schema is built by Alembic from its migration files: they must ship."""
    names = _names(sdist)
    for path in (
        "console/entry.py",
        "console/migrations/env.py",
        "console/migrations/script.py.mako",
        "console/migrations/versions/0001_initial.py",
    ):
        assert path in names


def test_version_has_one_source(sdist: Path) -> None:
    version = build_support.read_version(REPO)
    assert version == scanner.__version__
    assert _metadata(sdist)["Version"] == version
    # setup.py asks build_support; it never spells the version itself.
    assert not re.search(r"""version\s*=\s*["']""", (REPO / "setup.py").read_text(encoding="utf-8"))


def test_read_version_without_a_version_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "scanner").mkdir()
    (tmp_path / "scanner" / "version.py").write_text("__version__ = compute()\n")
    with pytest.raises(ValueError, match="no `__version__"):
        build_support.read_version(tmp_path)


@pytest.mark.native_only
def test_wheel_built_from_the_sdist_installs_with_the_cython_core(
    sdist: Path, wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    # What `python -m build` does after the sdist: the wheel is built from the unpacked sdist.
    with tarfile.open(sdist) as archive:
        # Our own sdist; the "data" filter where this Python has it (3.11.4 on).
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp_path, filter="data")
        else:
            archive.extractall(tmp_path)
    wheels = tmp_path / "wheels"
    _ok(
        _run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", wheels, tmp_path / _stem(sdist)],
            timeout=BUILD_TIMEOUT,
            cwd=tmp_path,
            env=wheelhouse.env(),
        )
    )
    (wheel,) = wheels.glob("*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name  # a platform wheel: compiled
    venv = Venv(tmp_path / "venv")
    venv.install(wheelhouse, wheel)
    modules = {path.name.split(".")[0] for path in venv.native_modules()}
    # Every .pyx of the source tree is one compiled module of the wheel.
    assert modules == {path.stem for path in (REPO / "_native").glob("*.pyx")}
    # REQUIRE: the command fails rather than fall back to the twin if one module does not load.
    version = venv.version({"SCANNER_REQUIRE_EXTENSIONS": "1"})
    assert version == f"scan-root {scanner.__version__} (cython implementation)"


def test_sdist_installs_as_the_pure_python_build(
    sdist: Path, wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    venv = Venv(tmp_path / "venv")
    venv.install(wheelhouse, sdist, {"SCANNER_NO_EXTENSIONS": "1"})
    assert venv.native_modules() == []
    assert venv.version() == f"scan-root {scanner.__version__} (python implementation)"


# ---------------------------------------------------------------- missing build packages


def _sysroot_without(base: Path, excluded: set[str]) -> Path:
    """A --sysroot that mirrors this machine's headers and libraries but lacks `excluded`
    (paths under /usr/include, at most two deep: multiarch keeps openssl/opensslconf.h)."""
    root = base / "sysroot"
    include = root / "usr" / "include"
    include.mkdir(parents=True)
    for entry in Path("/usr/include").iterdir():
        if entry.name in excluded:
            continue
        inner_excluded = {
            path.split("/", 1)[1] for path in excluded if path.startswith(f"{entry.name}/")
        }
        if inner_excluded:
            (include / entry.name).mkdir()
            for inner in entry.iterdir():
                if inner.name not in inner_excluded:
                    (include / entry.name / inner.name).symlink_to(inner)
        else:
            (include / entry.name).symlink_to(entry)
    # The libraries and C runtime files stay: only the headers are taken away.
    for name in ("lib", "lib64", "usr/lib", "usr/lib64", "usr/local"):
        if Path("/", name).exists():
            (root / name).symlink_to(Path("/", name))
    return root


def _multiarch() -> str:
    return str(sysconfig.get_config_var("MULTIARCH") or "")


def _probe(extra: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, REPO / "build_support.py"], timeout=120, cwd=REPO, env=_env(extra))


@pytest.fixture
def without_openssl(tmp_path: Path) -> Iterator[Path]:
    yield _sysroot_without(tmp_path, {"openssl", f"{_multiarch()}/openssl"})


def test_setup_without_openssl_headers_names_libssl_dev_before_compiling(
    without_openssl: Path, tmp_path: Path
) -> None:
    # The real build path (pip runs the same build_ext), with the headers taken away.
    temp = tmp_path / "temp"
    done = _run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-temp",
            temp,
            "--build-lib",
            tmp_path / "lib",
        ],
        timeout=120,
        cwd=REPO,
        env=_env({"CFLAGS": f"--sysroot={without_openssl}"}),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert output.count("apt-get install libssl-dev\n") == 1, output
    assert "<openssl/evp.h> not found" in output
    for other in ("libxxhash-dev", "python3-dev", "libc6-dev", "gcc:"):
        assert other not in output
    # One message, not the compiler's: nothing was compiled.
    assert "fatal error" not in output and "Traceback" not in output
    assert not temp.exists() or not list(temp.rglob("*.o"))


def test_setup_without_cython_says_so(tmp_path: Path) -> None:
    # A Cython that does not import (a --no-build-isolation build without it), in front of the
    # real one if there is one.
    (tmp_path / "Cython").mkdir()
    (tmp_path / "Cython" / "__init__.py").write_text("raise ImportError('no Cython here')\n")
    temp = tmp_path / "temp"
    done = _run(
        [
            *(sys.executable, "setup.py", "-q", "build_ext"),
            *("--build-temp", temp, "--build-lib", tmp_path / "lib"),
        ],
        timeout=120,
        cwd=REPO,
        env=_env({"PYTHONPATH": str(tmp_path)}),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "needs Cython 3" in output and "Traceback" not in output
    assert not temp.exists() or not list(temp.rglob("*.o"))


def test_missing_xxhash_header_names_libxxhash_dev(tmp_path: Path) -> None:
    done = _probe({"CFLAGS": f"--sysroot={_sysroot_without(tmp_path, {'xxhash.h'})}"})
    assert done.returncode == 1
    assert "apt-get install libxxhash-dev\n" in done.stderr
    assert "libssl-dev" not in done.stderr and "fatal error" not in done.stderr


def test_half_installed_openssl_headers_name_libssl_dev(tmp_path: Path) -> None:
    # evp.h is there, the multiarch opensslconf.h it includes is not: the compiler's own words.
    if not _multiarch() or not Path("/usr/include", _multiarch(), "openssl").is_dir():
        pytest.skip("OpenSSL's headers are not split by multiarch on this machine")
    done = _probe(
        {"CFLAGS": f"--sysroot={_sysroot_without(tmp_path, {f'{_multiarch()}/openssl'})}"}
    )
    assert done.returncode == 1
    assert "apt-get install libssl-dev\n" in done.stderr
    assert "<openssl/evp.h> does not compile" in done.stderr and "opensslconf.h" in done.stderr


def test_missing_c_library_headers_names_libc6_dev_alone(tmp_path: Path) -> None:
    # Without the C library's headers no other header compiles: naming them all would mislead.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _probe({"CFLAGS": f"--sysroot={empty}"})
    assert done.returncode == 1
    assert "apt-get install libc6-dev\n" in done.stderr
    assert "python3-dev" not in done.stderr and "libssl-dev" not in done.stderr


def test_missing_compiler_names_gcc(tmp_path: Path) -> None:
    done = _probe({"CC": str(tmp_path / "no-such-gcc")})
    assert done.returncode == 1
    assert "apt-get install gcc\n" in done.stderr
    assert "Traceback" not in done.stderr


def test_broken_compiler_flags_are_said_not_guessed() -> None:
    done = _probe({"CFLAGS": "-fscan-root-no-such-flag"})
    assert done.returncode == 1
    assert "cannot compile an empty file" in done.stderr and "no-such-flag" in done.stderr
    assert "apt-get" not in done.stderr and "Traceback" not in done.stderr


def test_probe_is_silent_when_the_build_packages_are_present() -> None:
    done = _probe({})
    assert done.returncode == 0, done.stderr
    assert "are present" in done.stdout and "apt-get" not in done.stdout + done.stderr


def test_probe_names_the_package_of_a_header_it_cannot_find() -> None:
    # The probe's own list, with a header no machine has standing in for OpenSSL's.
    absent = build_support.Requirement(
        "libssl-dev", "OpenSSL 3's headers", header="scan_root_no_such_header/evp.h"
    )
    requirements = (*build_support.REQUIREMENTS[:-2], absent)
    missing = build_support.missing_build_packages(_SysconfigCompiler(), requirements)
    assert [m.package for m in missing] == ["libssl-dev"]
    assert "apt-get install libssl-dev\n" in build_support.message(missing)


class _SysconfigCompiler:
    """The compiler as sysconfig describes it (what setuptools starts from)."""

    def __init__(self) -> None:
        cc = str(sysconfig.get_config_var("CC") or "cc").split()
        self.compiler_so = [*cc, *str(sysconfig.get_config_var("CFLAGS") or "").split(), "-fPIC"]
        self.linker_so = str(sysconfig.get_config_var("LDSHARED") or "cc -shared").split()
        self.include_dirs = [sysconfig.get_path("include")]
        self.library_dirs: list[str] = []


def test_probe_names_the_package_of_a_library_it_cannot_link() -> None:
    absent = build_support.Requirement("libssl-dev", "libcrypto", library="scan_root_no_such_lib")
    missing = build_support.missing_build_packages(_SysconfigCompiler(), (absent,))
    assert [m.package for m in missing] == ["libssl-dev"]
    assert "cannot link -lscan_root_no_such_lib" in missing[0].detail


def test_a_hung_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = _SysconfigCompiler()
    # A "compiler" that never answers; the probe gives up after its timeout.
    compiler.compiler_so = [sys.executable, "-c", "import time; time.sleep(30)"]
    monkeypatch.setattr(build_support, "PROBE_TIMEOUT", 0.5)
    with pytest.raises(build_support.ProbeError, match="did not finish"):
        build_support.missing_build_packages(compiler)


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie has ended: whoever adopted it may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_hung_compiler_leaves_no_process_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A driver whose child (gcc's cc1, a ccache) hangs too: killing the driver alone left it.
    pid_file = tmp_path / "grandchild.pid"
    compiler = _SysconfigCompiler()
    compiler.compiler_so = [
        sys.executable,
        "-c",
        (
            "import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(30)\n"
        ),
    ]
    monkeypatch.setattr(build_support, "PROBE_TIMEOUT", 2)
    with pytest.raises(build_support.ProbeError, match="did not finish"):
        build_support.missing_build_packages(compiler)
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # killed with its group: dead (a zombie, or reaped) within a second
        if not _running(grandchild):
            return
        time.sleep(0.01)
    os.kill(grandchild, signal.SIGKILL)
    pytest.fail("the hung compiler's child outlived the probe")


def test_a_compiler_flooding_its_output_is_quoted_in_one_short_line() -> None:
    compiler = _SysconfigCompiler()
    # Eight megabytes on one line, then a failure: the message quotes a bounded part of it.
    compiler.compiler_so = [
        sys.executable,
        "-c",
        "import sys; sys.stdout.write('error: ' + 'x' * (8 << 20)); sys.exit(1)",
    ]
    with pytest.raises(build_support.ProbeError, match="cannot compile an empty file") as raised:
        build_support.missing_build_packages(compiler)
    assert len(str(raised.value)) < 2000


def test_a_missing_linker_is_a_clear_error() -> None:
    done = _probe({"LDSHARED": "/nonexistent/scan-root-ld -shared"})
    assert done.returncode == 1
    assert "cannot run /nonexistent/scan-root-ld" in done.stderr
    assert "Traceback" not in done.stderr and "apt-get" not in done.stderr


def test_a_compiler_that_is_no_program_is_a_clear_error(tmp_path: Path) -> None:
    not_a_program = tmp_path / "cc"
    not_a_program.write_bytes(b"\x00\x01 not an executable format\n")
    not_a_program.chmod(0o755)
    done = _probe({"CC": str(not_a_program)})
    assert done.returncode == 1
    assert "cannot run the C compiler" in done.stderr and "Traceback" not in done.stderr
