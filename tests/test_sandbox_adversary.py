"""The custom-check sandbox against a hostile script: each way out or around a limit that was found
open (file handles, socket families, memory beyond RLIMIT_AS, signals to PID 1) stays shut."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from child import child_env

from scanner.checks.custom import _cgroup
from scanner.checks.custom.runner import CheckResult, Errored, Failed, _verdict, run_custom_check
from scanner.policy.model import CustomCheckSpec
from scanner.report import Severity

REPO = Path(__file__).resolve().parent.parent
MODES = pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "read-only"])


def spec(script: bytes, **fields: object) -> CustomCheckSpec:
    check = CustomCheckSpec(
        id="9001",
        name="hostile",
        severity=Severity.HIGH,
        description="a script that tries to get out",
        script=script,
        timeout=20.0,
    )
    return dataclasses.replace(check, **fields)


def failed_output(result: CheckResult) -> str:
    """The output of a script that ended with status 1, as every probe here does."""
    assert isinstance(result, Failed), result
    return result.output


# -- file handles ---------------------------------------------------------------------------------

# Run as the target's interpreter (`#!/bin/probe`): opens, by the handle the test computed outside,
# a directory of the target's file system outside the target, and reads a file there.
HANDLE_PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
    char text[512] = {0};
    FILE* script = fopen(argv[1], "r");
    if (!script || fread(text, 1, sizeof text - 1, script) == 0) return 2;
    strtok(text, "\n");                          /* the shebang */
    int type = atoi(strtok(NULL, "\n"));
    char* hex = strtok(NULL, "\n");
    char* name = strtok(NULL, "\n");
    struct { struct file_handle head; unsigned char bytes[128]; } handle;
    handle.head.handle_type = type;
    handle.head.handle_bytes = strlen(hex) / 2;
    for (unsigned i = 0; i < handle.head.handle_bytes; i++)
        sscanf(hex + 2 * i, "%2hhx", &handle.bytes[i]);
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    int outside = open_by_handle_at(mount_fd, &handle.head, O_RDONLY | O_DIRECTORY);
    if (outside < 0) { printf("open_by_handle_at: %s\n", strerror(errno)); return 1; }
    char found[128] = {0};
    int file = openat(outside, name, O_RDONLY);
    if (file >= 0 && read(file, found, sizeof found - 1) > 0) printf("read outside: %s\n", found);
    else printf("opened outside, then: %s\n", strerror(errno));
    return 1;
}
"""


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * 128),
    ]


def file_handle(path: Path) -> tuple[int, bytes]:
    """name_to_handle_at(2) of `path`: (handle type, handle bytes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    handle = _FileHandle(handle_bytes=128)
    mount_id = ctypes.c_int()
    at_fdcwd = -100
    if libc.name_to_handle_at(
        at_fdcwd, os.fsencode(path), ctypes.byref(handle), ctypes.byref(mount_id), 0
    ):
        number = ctypes.get_errno()
        pytest.fail(f"name_to_handle_at {path}: {os.strerror(number)}")
    return handle.handle_type, bytes(handle.f_handle[: handle.handle_bytes])


@pytest.fixture(scope="module")
def handle_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bytes]]:
    """A target root holding only a static probe (and /dev), beside a directory of the same file
    system with a secret in it; the script text that asks the probe for that secret."""
    base = tmp_path_factory.mktemp("handles")
    source = base / "probe.c"
    source.write_text(HANDLE_PROBE)
    root = base / "root"
    (root / "bin").mkdir(parents=True)
    (root / "dev").mkdir()
    built = subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(root / "bin/probe"), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host-secret\n")
    assert os.stat(outside).st_dev == os.stat(root).st_dev
    kind, handle = file_handle(outside)
    yield root, b"#!/bin/probe\n%d\n%s\nsecret\n" % (kind, handle.hex().encode())


@pytest.mark.root
@MODES
def test_a_file_handle_opens_nothing_outside_the_target(
    handle_target: tuple[Path, bytes], overlay: bool
) -> None:
    # With CAP_DAC_READ_SEARCH, open_by_handle_at reaches any inode of the file system the
    # read-only fallback's bind is on: the host's, beyond the target (the "shocker" escape).
    root, script = handle_target
    result = run_custom_check(spec(script), os.fspath(root), overlay=overlay)
    assert failed_output(result) == "open_by_handle_at: Operation not permitted"


@pytest.mark.root
def test_every_file_is_still_read_without_dac_read_search(tmp_path: Path) -> None:
    # DAC_OVERRIDE alone reads a mode-0 file in a mode-0 directory (what a check needs).
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_text("read all the same\n")
    (locked / "file").chmod(0)
    locked.chmod(0)
    try:
        script = f"#!/bin/sh\ncat {locked}/file\nls {locked}\nexit 1\n".encode()
        result = run_custom_check(spec(script), "/", overlay=False)
    finally:
        locked.chmod(0o700)
    assert failed_output(result) == "read all the same\nfile"


# -- sockets --------------------------------------------------------------------------------------

# Which families the script may make a socket of (the live root's python3, by system call).
FAMILY_PROBE = b"""\
#!/usr/bin/python3
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NUMBER = {"x86_64": 41, "aarch64": 198}[os.uname().machine]
for name, family, kind in (
    ("inet", 2, 1), ("inet6", 10, 1), ("netlink", 16, 2),
    ("unix", 1, 1), ("unix with high bits", 1 | 1 << 32, 1), ("unix dgram", 1, 2),
    ("packet", 17, 3), ("alg", 38, 5), ("vsock", 40, 1), ("bluetooth", 31, 1), ("tipc", 30, 2),
    ("rds", 21, 5), ("unspec", 0, 1), ("127", 127, 1),
):
    ctypes.set_errno(0)
    fd = libc.syscall(NUMBER, ctypes.c_long(family), kind, 0)
    print(name, "made" if fd >= 0 else os.strerror(ctypes.get_errno()))
    if fd >= 0:
        os.close(fd)
path = PATH_HERE
fd = libc.syscall(NUMBER, ctypes.c_long(1 | 1 << 32), 1, 0)
if fd >= 0:
    socket.socket(fileno=fd).connect(path)
    print("connected")
exit(1)
"""

REFUSED = "Operation not permitted"
FAMILIES = [
    "inet made",
    "inet6 made",
    "netlink made",
    *(
        f"{name} {REFUSED}"
        for name in (
            "unix", "unix with high bits", "unix dgram", "packet", "alg", "vsock", "bluetooth",
            "tipc", "rds", "unspec", "127",
        )
    ),
]  # fmt: skip


@pytest.mark.root
@MODES
def test_only_the_network_namespaces_families_make_sockets(overlay: bool) -> None:
    # A family the filter compared on all 64 bits passed with a high bit set (the kernel reads an
    # int) and reached a host daemon's socket through the read-only bind; AF_VSOCK, not namespaced,
    # reaches a VM's hypervisor. Only the empty network namespace's families are allowed.
    directory = Path("/var/tmp") / f"scan-root-test-{os.getpid()}-{int(overlay)}"  # root fs
    directory.mkdir()
    path = directory / "agent.sock"
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(os.fspath(path))
            listener.listen()
            listener.setblocking(False)
            script = FAMILY_PROBE.replace(b"PATH_HERE", repr(os.fspath(path)).encode())
            result = run_custom_check(spec(script), "/", overlay=overlay)
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody came
    finally:
        path.unlink(missing_ok=True)
        directory.rmdir()
    assert failed_output(result).splitlines() == FAMILIES


# -- memory beyond RLIMIT_AS ----------------------------------------------------------------------

# Memory that no process's address space holds: a memfd, System V segments (detached), files and
# inodes in the scratch tmpfs. Each is tried to its bound, which must be the sandbox's.
MEMORY_PROBE = b"""\
#!/usr/bin/python3
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
try:
    os.memfd_create("hold")
    print("memfd made")
except OSError as error:
    print("memfd", error.strerror)
kept = 0
for _ in range(4):  # 4 x 24 MiB against a limit of 64 MiB
    segment = libc.shmget(0, 24 << 20, 0o1600)
    if segment < 0:
        print("shmget", os.strerror(ctypes.get_errno()))
        break
    address = libc.shmat(segment, None, 0)
    ctypes.memset(address, 1, 24 << 20)
    libc.shmdt(ctypes.c_void_p(address))
    kept += 1
print("segments kept", kept)
print("one segment over the limit", libc.shmget(0, 65 << 20, 0o1600))
written = 0
try:
    with open("/dev/shm/fill", "wb") as handle:
        for _ in range(80):
            handle.write(bytes(1 << 20))
            handle.flush()
            written += 1
except OSError as error:
    print("scratch", error.strerror, "after", written, "MiB")
os.unlink("/dev/shm/fill")
made = 0
try:
    for made in range(100000):
        os.mkdir(f"/dev/shm/{made}")
except OSError as error:
    print("directories", error.strerror, "before", made)
exit(1)
"""


@pytest.mark.root
@pytest.mark.parametrize("cgroup", [True, False], ids=["default", "rlimit-fallback"])
def test_memory_outside_the_address_space_is_bounded(cgroup: bool) -> None:
    # In the fallback (this machine's: cgroup v2 without memory) RLIMIT_AS counts none of this:
    # a script held 600 MiB of memfd and 600 MiB of System V segments under a 256 MiB limit, and
    # 200,000 empty directories (200 MiB of kernel memory) in half a second.
    result = run_custom_check(spec(MEMORY_PROBE, memory_mib=64), "/", cgroup=cgroup)
    lines = failed_output(result).splitlines()
    assert lines[:4] == [
        "memfd Function not implemented",
        "shmget No space left on device",
        "segments kept 2",
        "one segment over the limit -1",
    ], lines
    assert lines[4] in (f"scratch No space left on device after {n} MiB" for n in (63, 64)), lines
    assert lines[5].startswith("directories No space left on device before "), lines
    assert int(lines[5].rsplit(" ", 1)[1]) < 16384


# -- signals to PID 1 -----------------------------------------------------------------------------


@pytest.mark.root
def test_the_script_cannot_end_the_sandbox_with_a_signal() -> None:
    # Python's SIGINT handler made the sandbox's PID 1 die on `kill -INT 1`, its verdict lost.
    script = b"#!/bin/sh\nkill -INT 1\nkill -TERM 1\nkill -HUP 1\n"
    script += b"sleep 0.2\necho still here\nexit 1\n"
    result = run_custom_check(spec(script), "/")
    assert failed_output(result) == "still here"


def test_a_sandbox_that_ends_after_ready_is_not_called_unbuilt() -> None:
    result = _verdict("limits memory 1 MiB\nready overlay\n", "what the script said", 0.5, 1)
    assert isinstance(result, Errored), result
    assert result.reason.startswith("the sandbox ended without saying how the script ended")
    assert result.output == "what the script said" and result.limits == "memory 1 MiB"
    unbuilt = _verdict("", "unshare: unshare failed: Operation not permitted", 0.1, 1)
    assert isinstance(unbuilt, Errored) and "could not be built" in unbuilt.reason


# -- the scanner's own cgroup ---------------------------------------------------------------------


def test_own_cgroup_with_paths_in_any_encoding() -> None:
    # A non-ASCII mount point was decoded as Latin-1 (another path); bytes that are not UTF-8
    # come back as the same bytes.
    cafe = "41 31 0:38 / /sys/fs/caf\u00e9\\040x rw - cgroup2 cgroup2 rw\n"
    assert _cgroup.own_cgroup("0::/\n", cafe) == "/sys/fs/caf\u00e9 x"
    raw = b"41 31 0:38 / /sys/fs/c\xff rw - cgroup2 cgroup2 rw\n".decode("utf-8", "surrogateescape")
    found = _cgroup.own_cgroup("0::/a\n", raw)
    assert os.fsencode(found) == b"/sys/fs/c\xff/a"


FIND_PARENT = """\
import os, subprocess, sys
from scanner.checks.custom import _cgroup
odd = os.path.join(sys.argv[1].encode(), b"volume\\xff")
os.mkdir(odd)
subprocess.run(["mount", "-t", "tmpfs", "scan-root-test", odd], check=True)
try:
    print("parent", _cgroup.find_parent())
except _cgroup.CgroupUnavailable as error:
    print("unavailable", error)
"""


@pytest.mark.root
def test_a_mount_point_that_is_not_utf8_does_not_crash_the_cgroup_lookup(tmp_path: Path) -> None:
    # A volume a hostile image declares under a non-UTF-8 name is a line of the scanner's
    # mountinfo when it runs in that task: reading mountinfo as UTF-8 raised UnicodeDecodeError.
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private"]
        + [sys.executable, "-c", FIND_PARENT, str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(("parent ", "unavailable ")), done.stdout


# -- the 32-bit ABI -------------------------------------------------------------------------------

# The same refused calls made through int $0x80 (the i386 system call table, its own numbers; the
# kernel's seccomp sees another architecture): the filter must hold there too.
I386_PROBE = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>

static long i386(long number, long a, long b, long c) {
    long result;
    __asm__ volatile ("int $0x80" : "=a"(result) : "a"(number), "b"(a), "c"(b), "d"(c) : "memory");
    return result;
}

int main(void) {
    /* Arguments the 32-bit calls point to must lie below 4 GiB. */
    unsigned int* low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    low[0] = 1; low[1] = 1; low[2] = 0;                      /* AF_UNIX, SOCK_STREAM, 0 */
    printf("keyctl %ld\n", i386(288, 0, -4, 0));            /* KEYCTL_GET_KEYRING_ID, user */
    printf("add_key %ld\n", i386(286, 0, 0, 0));
    printf("socketcall unix %ld\n", i386(102, 1, (long)low, 0));
    printf("socket unix %ld\n", i386(359, 1, 1, 0));
    printf("socket vsock %ld\n", i386(359, 40, 1, 0));
    printf("io_uring_setup %ld\n", i386(425, 1, (long)(low + 64), 0));
    printf("open_by_handle_at %ld\n", i386(342, -100, (long)(low + 64), 0));
    printf("memfd_create %ld\n", i386(356, (long)low, 0, 0));
    return 1;
}
"""


@pytest.mark.root
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386 ABI of an x86_64 kernel")
def test_the_filter_holds_for_the_32_bit_abi(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "dev").mkdir()
    (tmp_path / "probe.c").write_text(I386_PROBE)
    built = subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(root / "bin/probe"), str(tmp_path / "probe.c")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    result = run_custom_check(spec(b"#!/bin/probe\n"), os.fspath(root))
    eperm, enosys = "-1", "-38"
    assert failed_output(result).splitlines() == [
        f"keyctl {eperm}",
        f"add_key {eperm}",
        f"socketcall unix {eperm}",
        f"socket unix {eperm}",
        f"socket vsock {eperm}",
        f"io_uring_setup {eperm}",
        f"open_by_handle_at {eperm}",
        f"memfd_create {enosys}",
    ]


# -- a /tmp of its own ----------------------------------------------------------------------------

# The reference check (`[ -e /tmp/xmrig ]`), and a write to /tmp, as a static binary: the target
# root holds nothing else.
TMP_PROBE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int found = access("/tmp/xmrig", F_OK) == 0;
    int fd = open("/tmp/written-in-the-sandbox", O_WRONLY | O_CREAT, 0644);
    printf("%s; write %s\n", found ? "a miner at /tmp/xmrig" : "no miner",
           fd >= 0 ? "kept" : "refused");
    return found;
}
"""


@pytest.fixture
def own_tmp_target(tmp_path: Path) -> Iterator[Path]:
    """A target root whose /tmp is a tmpfs of its own (a live root's or a task's usual /tmp)
    holding a miner; the directory beneath the mount is empty."""
    root = tmp_path / "root"
    for name in ("bin", "dev", "tmp"):
        (root / name).mkdir(parents=True)
    (tmp_path / "probe.c").write_text(TMP_PROBE)
    built = subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(root / "bin/probe"), str(tmp_path / "probe.c")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "scan-root-test", str(root / "tmp")], check=True
    )
    try:
        (root / "tmp/xmrig").write_bytes(b"\x7fELF a miner")
        yield root
    finally:
        subprocess.run(["umount", str(root / "tmp")], check=True)


@pytest.mark.root
@MODES
def test_a_tmp_that_is_a_mount_of_its_own_is_seen(own_tmp_target: Path, overlay: bool) -> None:
    # The root's bind is not recursive: it showed the empty directory beneath the target's /tmp
    # mount, and `[ -e /tmp/xmrig ]` passed with a miner there.
    result = run_custom_check(spec(b"#!/bin/probe\n"), os.fspath(own_tmp_target), overlay=overlay)
    written = "kept" if overlay else "refused"  # in the throw-away layer, or not at all
    assert failed_output(result) == f"a miner at /tmp/xmrig; write {written}"
    assert sorted(os.listdir(own_tmp_target / "tmp")) == ["xmrig"]


# -- user namespaces ------------------------------------------------------------------------------

USERNS_PROBE = b"""\
#!/usr/bin/python3
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
print("unshare", libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), os.strerror(ctypes.get_errno()))
# clone(2) itself, with the flag: the raw system call (x86_64 56, aarch64 220).
NUMBER = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
ctypes.set_errno(0)
print("clone", libc.syscall(NUMBER, CLONE_NEWUSER | 17, None, None, None, None),
      os.strerror(ctypes.get_errno()))  # 17: SIGCHLD; a child would print nothing
# What the C library does with clone3 refused (ENOSYS): falls back, threads and children work.
thread = threading.Thread(target=lambda: print("thread ran"))
thread.start()
thread.join()
done = subprocess.run(["/bin/sh", "-c", "echo child ran"], capture_output=True, text=True)
print(done.stdout.strip())
exit(1)
"""


@pytest.mark.root
def test_no_user_namespace_and_no_tmpfs_of_its_own() -> None:
    # In a user namespace of its own (CAP_SETUID maps root to root) the script mounted a tmpfs of
    # half the host's memory and filled 300 MiB of it under a 64 MiB limit.
    result = run_custom_check(spec(USERNS_PROBE, memory_mib=64), "/", cgroup=False)
    assert failed_output(result).splitlines() == [
        "unshare -1 Operation not permitted",
        "clone -1 Operation not permitted",
        "thread ran",
        "child ran",
    ]
