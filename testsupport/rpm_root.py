"""An rpm root of realistic size, made with Debian's rpmbuild and rpm, for benchmarking check 448 on rpm.

rpmbuild packs trees copied from a Debian root into one package, and `rpm --root` installs it
into an empty root with a fresh rpmdb: a real rpm database (SHA-256 file digests, modes, sizes,
link targets) for a realistic mix of files, without a Red Hat mirror. `bench/roots.py rpm-apps`
(testsupport/rootcache.py's ensure_rpm) builds and caches it; this module only makes one.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

NAME = "srbench"
RPM = ["rpm", "--dbpath", "/var/lib/rpm"]  # Debian's rpm defaults to ~/.rpmdb
# Keep the build fast and the files as they are: an uncompressed payload, no stripping, no
# debuginfo, no brp-* post-install scripts (which would rewrite shebangs and strip binaries),
# no /usr/lib/.build-id links (extra files that are not in the source tree).
RPMBUILD_DEFINES = {
    "_binary_payload": "w0.ufdio",
    "__strip": "/bin/true",
    "debug_package": "%{nil}",
    "__os_install_post": "%{nil}",
    "_build_id_links": "none",
}
SPEC = """\
Name: {name}
Version: 1.0
Release: 1
Summary: scan-root benchmark root: Debian application files repackaged
License: various
BuildArch: x86_64
AutoReqProv: no
%description
Files copied from a debootstrap root, packaged as they are, for benchmarking check 448 on rpm.
%install
{install}
%files
{files}
"""


def spec(sources: Sequence[tuple[Path, str]]) -> str:
    """The spec of one package holding each `(source tree, absolute destination)` copy."""
    install = []
    for source, destination in sources:
        parent = str(Path(destination).parent)
        install.append(f"mkdir -p %{{buildroot}}{shlex.quote(parent)}")
        # cp -a keeps modes, symlinks and hard links; --reflink shares blocks where the fs can.
        install.append(
            f"cp -a --reflink=auto {shlex.quote(str(source))} %{{buildroot}}{shlex.quote(destination)}"
        )
    # A directory in %files takes its whole tree: every file, link and directory under it.
    files = "\n".join(destination for _source, destination in sources)
    return SPEC.format(name=NAME, install="\n".join(install), files=files)


def build(target: Path, sources: Sequence[tuple[Path, str]], workdir: Path) -> None:
    """Make an rpm root at `target` (must not exist) holding `sources`; `workdir` is scratch space.

    Raises RuntimeError with the tool's output tail when rpmbuild or rpm fails.
    """
    for tool in ("rpmbuild", "rpm"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is not installed (./install.sh --test installs rpm)")
    workdir.mkdir(parents=True)
    (workdir / f"{NAME}.spec").write_text(spec(sources))
    defines = [
        arg for key, value in RPMBUILD_DEFINES.items() for arg in ("--define", f"{key} {value}")
    ]
    _run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {workdir}", *defines,
          str(workdir / f"{NAME}.spec")])  # fmt: skip
    [package] = (workdir / "RPMS" / "x86_64").glob("*.rpm")
    target.mkdir()
    _run([*RPM, "--root", str(target), "--initdb"])
    _run([*RPM, "--root", str(target), "-i", "--nodeps", "--noscripts", str(package)])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
