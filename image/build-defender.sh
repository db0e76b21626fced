#!/bin/sh
# Builds the defender's OCI image without a Docker engine (docs/defender-image.md):
#   image/build-defender.sh OUT_DIR [--wheel FILE]
# debootstrap (minbase bookworm + python3) -> the scan-root wheel and its runtime dependencies in
# /usr/local/lib/python3.11/dist-packages -> umoci packs the root as one layer of an OCI layout
# (OUT_DIR/oci) -> skopeo writes a `docker save` archive (OUT_DIR/scan-root-defender.tar) for
# `docker load` or for pushing to a registry. Needs root, debootstrap, umoci, skopeo, network to
# the Debian mirror and to PyPI. The wheel is built from this checkout unless --wheel gives one.
set -eu

out=${1:?usage: image/build-defender.sh OUT_DIR [--wheel FILE]}
wheel=
if [ "${2:-}" = "--wheel" ]; then
    wheel=${3:?--wheel needs a file}
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${SCANNER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/scanner/version.py")
tag="scan-root-defender:$version"
rootfs="$out/rootfs"
# Fixed timestamps in the layer and the config: the same inputs give the same image.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}

mkdir -p "$out"
rm -rf "$rootfs" "$out/oci" "$out/wheels" "$out/scan-root-defender.tar"

# The distribution the wheel's compiled core was built for (bookworm: glibc 2.36, Python 3.11).
debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$mirror" >"$out/debootstrap.log"

mkdir -p "$out/wheels"
if [ -z "$wheel" ]; then
    # The Cython core, whatever the calling environment asks of other builds.
    env -u SCANNER_NO_EXTENSIONS "$python" -m pip wheel -q --no-deps -w "$out/wheels" "$repo"
    wheel=$(ls "$out/wheels"/scan_root-*.whl)
fi
site="$rootfs/usr/local/lib/python3.11/dist-packages"
mkdir -p "$site"
# Only the scanner's own dependencies (setup.py install_requires): the console and embed
# extras stay out of the defender.
"$python" -m pip install -q --no-compile --no-deps --target "$site" \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    --implementation cp --abi cp311 PyYAML xxhash tqdm cvss
"$python" -m pip install -q --no-compile --no-deps --target "$site" "$wheel"
rm -rf "$site/bin"
cat >"$rootfs/usr/local/bin/scan-root" <<'SCRIPT'
#!/usr/bin/python3 -I
import sys

from console.entry import main

sys.exit(main())
SCRIPT
chmod 755 "$rootfs/usr/local/bin/scan-root"
# apt's downloads and lists are no package's files: dropping them keeps 448's records whole.
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
rm -f "$rootfs"/var/log/*.log "$rootfs"/var/cache/ldconfig/aux-cache
mkdir -p "$rootfs/var/spool/scan-root" "$rootfs/var/lib/scan-root" "$rootfs/var/cache/scan-root"

umoci init --layout "$out/oci"
umoci new --image "$out/oci:$version"
umoci insert --image "$out/oci:$version" "$rootfs" /
umoci config --image "$out/oci:$version" \
    --config.entrypoint /usr/local/bin/scan-root --config.cmd defend \
    --config.user 0 --config.workingdir / \
    --config.label "org.opencontainers.image.title=scan-root-defender" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.licenses=GPL-3.0-or-later" \
    --os linux --architecture amd64
umoci gc --layout "$out/oci"
skopeo copy -q "oci:$out/oci:$version" "docker-archive:$out/scan-root-defender.tar:$tag"
echo "$tag: $(stat -c %s "$out/scan-root-defender.tar") bytes ($out/scan-root-defender.tar)"
