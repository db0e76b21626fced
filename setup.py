"""Build script: the Cython core in _native/ is compiled unless SCANNER_NO_EXTENSIONS=1."""

import os
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import SetupError

HERE = Path(__file__).resolve().parent
# build_support.py ships in the sdist next to this file; PEP 517 backends do not put it on the path.
sys.path.insert(0, str(HERE))
import build_support

NO_EXTENSIONS = os.environ.get("SCANNER_NO_EXTENSIONS") == "1"


def native_extensions() -> list:
    common: dict[str, list[str]] = {
        "extra_compile_args": ["-O2", "-pthread"],
        "extra_link_args": ["-pthread"],
    }
    hasher_common: dict[str, list[str]] = {
        "include_dirs": ["_native"],
        "depends": [
            "_native/_hashjob.pxd",
            "_native/md5_multi.h",
            "_native/md5_multi.pxd",
            "_native/ac.h",
            "_native/ac.pxd",
            "_native/_matcher.pxd",
            "_native/xxh_inline.h",
            "_native/xxh.pxd",
            "_native/openssl.pxd",
            "_native/posix.pxd",
            "_native/threads.pxd",
        ],
        **common,
    }
    return [
        Extension("_native._walker", ["_native/_walker.pyx"], **common),
        # Tar header and pax record parsing for image layers (scanner/targets/_tar.py).
        Extension("_native._untar", ["_native/_untar.pyx"], **common),
        Extension("_native._prefetch", ["_native/_prefetch.pyx"], **common),
        # Removal of an image's scratch tree on two threads (scanner/targets/image.py).
        Extension("_native._remove", ["_native/_remove.pyx"], **common),
        # ac.h: the Aho-Corasick DFA the content checks' markers are found with.
        Extension(
            "_native._matcher",
            ["_native/_matcher.pyx"],
            include_dirs=["_native"],
            depends=["_native/ac.h", "_native/ac.pxd"],
            **common,
        ),
        # The hasher, one module per part (_hashjob.pxd: the records they share). Every part
        # includes the headers of those records' types (ac.h, md5_multi.h, xxh_inline.h).
        # _hash_open: opening files beneath the root; _hash_readahead: the fadvise thread;
        # _hasher: requests in, HashResults out.
        *(
            Extension(f"_native.{name}", [f"_native/{name}.pyx"], **hasher_common)
            for name in ("_hash_open", "_hash_readahead", "_hasher")
        ),
        # libcrypto (OpenSSL 3, Apache-2.0) gives md5/sha1/sha256 with the CPU's SHA extensions:
        # the one-pass read (_hash_digest) and the worker pool that owns the EVP contexts.
        # xxh_inline.h: xxHash (libxxhash-dev's header, BSD-2-Clause) inlined, no link.
        *(
            Extension(
                f"_native.{name}", [f"_native/{name}.pyx"], libraries=["crypto"], **hasher_common
            )
            for name in ("_hash_digest", "_hash_pool")
        ),
        # md5_multi.c: multi-buffer MD5 (AVX2/AVX-512 kernels chosen at run time by CPUID; each
        # kernel carries its own target attribute, so no -m flags and any x86-64/aarch64 builds).
        Extension(
            "_native._hash_lanes",
            ["_native/_hash_lanes.pyx", "_native/md5_multi.c"],
            **hasher_common,
        ),
    ]


class BuildNative(build_ext):
    """Probes for the build packages before anything is compiled, then cythonizes and compiles.

    Cythonizing here, not when setup.py is read, keeps `sdist` and the metadata steps free of
    Cython's work and of generated .c files.
    """

    def build_extensions(self) -> None:
        # The Debian packages first: they are what a new machine lacks, and the probe needs no
        # Cython.
        try:
            missing = build_support.missing_build_packages(self.compiler)
        except build_support.ProbeError as error:
            raise SetupError(f"scan-root: {error}") from error
        if missing:
            raise SetupError(build_support.message(missing))
        try:
            # Imported here so that a pure-Python install does not need Cython at all.
            from Cython.Build import cythonize
        except ImportError as error:
            raise SetupError(
                "scan-root: the Cython core needs Cython 3 to build (pyproject.toml's build "
                "requirements; pip installs it unless --no-build-isolation): "
                "pip install 'Cython>=3.0,<4', or SCANNER_NO_EXTENSIONS=1 for the pure-Python build"
            ) from error
        by_name = {extension.name: extension for extension in self.extensions}
        for compiled in cythonize(
            self.extensions,
            language_level=3,
            compiler_directives={"embedsignature": True},
            force=self.force,
        ):
            by_name[compiled.name].sources = compiled.sources
        super().build_extensions()


# The console's dependencies: Starlette under uvicorn (its httptools parser on uvloop: both in
# C), SQLAlchemy 2 with Alembic's migrations, psycopg 3 for PostgreSQL, argon2 for the web
# users' passwords.
CONSOLE = [
    "starlette>=0.37",
    "uvicorn>=0.29",
    "httptools>=0.6",
    "uvloop>=0.19",
    "jinja2>=3.1",
    "python-multipart>=0.0.9",
    "SQLAlchemy>=2.0.30",
    "alembic>=1.13",
    "psycopg[binary]>=3.1",
    "argon2-cffi>=23.1",
]

# `scan-root embed` checks what it writes against ECS's own RegisterTaskDefinition model, which
# botocore ships (offline; docs/embed.md).
EMBED = ["botocore>=1.34"]

if NO_EXTENSIONS:
    print("*** scan-root: Pure Python build (SCANNER_NO_EXTENSIONS=1) ***", file=sys.stderr)
    ext_modules = []
else:
    print("*** scan-root: Accelerated build (Cython core in _native/) ***", file=sys.stderr)
    ext_modules = native_extensions()

setup(
    name="scan-root",
    version=build_support.read_version(HERE),
    description="Compliance and integrity scanner for container root filesystems (AWS Fargate first)",
    license="GPL-3.0-or-later",
    classifiers=[
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Cython",
    ],
    python_requires=">=3.11",
    packages=find_packages(
        include=[
            "scanner",
            "scanner.*",
            "pkgdb",
            "pkgdb.*",
            "_native",
            "console",
            "console.*",
            "defender",
            "defender.*",
            "taskdef",
            "taskdef.*",
            "vulndb",
            "vulndb.*",
        ]
    ),
    package_data={
        "scanner": ["py.typed", "data/*.txt"],
        "pkgdb": ["py.typed"],
        "defender": ["py.typed"],
        "taskdef": ["py.typed"],
        "vulndb": ["py.typed"],
        "_native": ["py.typed", "*.pxd", "*.h"],
        # The Alembic migrations are run from the installed package (console/database.py).
        "console": [
            "py.typed",
            "migrations/*.py",
            "migrations/*.mako",
            "migrations/versions/*.py",
            "templates/*.html",
            "templates/*/*.html",
            "static/*",
        ],
    },
    # PyYAML reads policy files (docs/libraries.md); python-debian is only the
    # tests' referee for our deb822 reader. xxhash: Digest.XXH3 in the pure-Python hasher
    # (incremental rescans). tqdm: the progress bars on a terminal, lighter than rich (no
    # dependencies of its own) and imported only when stderr is a terminal.
    install_requires=[
        "PyYAML>=6.0",
        "xxhash>=3.0",
        "tqdm>=4.66",
        # CVSS base scores of advisory vectors (vulndb.sources): FIRST's formulas for v2, v3.x
        # and v4 are long and easy to get subtly wrong; this library is kept and tested.
        "cvss>=3.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            # Random test order, so that a test passing only after another fails CI; the header
            # prints the seed, and `pytest --randomly-seed=N` replays that order.
            "pytest-randomly>=3.15",
            "pytest-benchmark>=4",
            # tests/test_packaging.py builds the sdist and the wheel with it.
            "build>=1.0",
            "hypothesis>=6",
            # Referees: python-debian for deb822, rpmfile for .rpm package files.
            "python-debian>=0.1.49",
            "rpmfile>=2.2",
            # The second, independent apk version order of the vulnerability end-to-end tests
            # (nexB's AlpineLinuxVersion), where it parses a version (it refuses `_git`).
            "univers>=30",
            "zstandard>=0.22",  # zstd-compressed image layers in the image tests
            "isal>=1.6",  # ISA-L gzip decoding of image layers (tests also run without it)
            # SARIF output is validated against the official schema; the two validators make
            # jsonschema check the schema's "uri"/"uri-reference"/"date-time" formats, which it
            # otherwise skips silently.
            "jsonschema>=4.18",
            "rfc3986-validator>=0.1.1",
            "rfc3339-validator>=0.1.4",
            # The gates .ci/run passes before the tests, pinned: a new release must not turn a
            # clean tree red (bump them on purpose, with the fixes).
            "ruff==0.17.6",
            "mypy==2.4.1",
            "types-PyYAML",
            "types-tqdm",
            # The console's tests, on SQLite and on a throwaway PostgreSQL (httpx: their client).
            *CONSOLE,
            "httpx>=0.27",
            # The web views in a real headless Chromium (Debian's chromium and chromedriver).
            # Below 4.50: newer releases need a package this project's mirrors do not carry.
            "selenium>=4.20,<4.50",
            *EMBED,
        ],
        # `scan-root console`: the results store and its API (docs/console.md). Kept out of the
        # base install so that a defender's image stays small.
        "console": CONSOLE,
        # `scan-root embed`: botocore's ECS model and validator judge the task definition made.
        "embed": EMBED,
        # zstd-compressed image layers (docker/OCI); without it such a layer is a clear error.
        "zstd": ["zstandard>=0.22"],
        # Images: zstd layers, and gzip layers decoded with ISA-L (~2x zlib; else zlib).
        "images": ["zstandard>=0.22", "isal>=1.6"],
    },
    # console.entry hands `scan-root console ...` to the console and the rest to scanner.cli:main
    # (which the scanner alone still is): the scanner never imports the console.
    entry_points={"console_scripts": ["scan-root = console.entry:main"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildNative},
    zip_safe=False,
)
