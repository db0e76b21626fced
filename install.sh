#!/bin/sh
# Sets scan-root up on a Debian machine: system packages, a virtualenv in .venv with the Cython
# core built, and /usr/local/bin/scan-root. `--test` adds what the test suite uses.
# SCANNER_NO_EXTENSIONS=1 ./install.sh gives the pure-Python build instead.
set -eu
cd "$(dirname "$0")"

# images: zstd image layers, and ISA-L's faster gzip decoding (docs/libraries.md).
# console: `scan-root console` (the results store and its API, docs/console.md).
# embed: `scan-root embed` (botocore's ECS model checks the task definition it writes).
extras="[images,console,embed]"
# libxxhash-dev: xxHash's header, compiled into the hasher (Digest.XXH3, incremental rescans).
packages="python3 python3-venv python3-dev gcc libssl-dev libxxhash-dev"
# util-linux's `unshare` isolates custom checks; Essential in Debian, listed to say we rely on it.
# libseccomp2: the custom checks' seccomp filter (loaded through ctypes; without it they error).
packages="$packages util-linux libseccomp2"
if [ "${1:-}" = "--test" ]; then
    extras="[test]"  # which has those of [images], [console] and [embed] too
    # Reference tools the tests compare with, and debootstrap for real Debian roots.
    # db5.3-util writes real Berkeley DB rpmdbs (Debian's rpm only reads them).
    # Real key material for 425's tests: openssl, ssh-keygen, gpg, puttygen, keytool.
    packages="$packages debootstrap debsums dpkg rpm db5.3-util"
    # python3-rpm: rpm's own labelCompare, the referee of vulndb's rpm version order
    # (tests/test_vulndb_versions.py runs it under the system python3).
    packages="$packages python3-rpm"
    packages="$packages openssl openssh-client gnupg putty-tools default-jre-headless"
    # skopeo checks that the test image builder writes layouts real tools accept; with umoci it
    # builds the defender's image (image/build-defender.sh).
    packages="$packages skopeo umoci"
    # libc6-dev: the sandbox tests compile small static probes (gcc -static needs libc.a).
    packages="$packages libc6-dev"
    # The console's tests start a throwaway PostgreSQL server of their own (initdb, pg_ctl).
    packages="$packages postgresql"
    # The web views' acceptance tests drive a real headless Chromium (tests/test_console_browser.py);
    # Debian's chromedriver matches its chromium, so selenium-manager never downloads one.
    packages="$packages chromium chromium-driver"
fi

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
else
    echo "install.sh: not root, so not installing Debian packages; make sure these are present: $packages" >&2
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q ".$extras"
# Rebuild our own package every time: a wheel left from another build mode must not be reused.
.venv/bin/pip install -q --no-deps --force-reinstall --no-cache-dir .

if [ "$(id -u)" = 0 ]; then
    ln -sf "$(pwd)/.venv/bin/scan-root" /usr/local/bin/scan-root
fi
.venv/bin/scan-root --version
