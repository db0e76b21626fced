"""The in-namespace half of the custom-check runner: build the sandbox, run the script, report."""

# This file runs as a script (`python3 -I -S _sandbox.py ...`), as PID 1 of the fresh mount,
# pid, net, ipc and uts namespaces that `unshare` made for it; runner.py is the other half and its
# docstring describes the isolation. It imports only the standard library: it runs before the
# scanner's package could be trusted to be importable, with no site directories.
#
# Arguments: BASE ROOT_FD STATUS_FD MODE. BASE is an empty directory to mount the work on; ROOT_FD
# the root to scan (an O_PATH directory descriptor); MODE is `overlay`, or `read-only` to skip
# overlayfs; fd 0 carries the script's text (read to EOF); STATUS_FD is the status pipe, one line
# per event:
#   "ready <isolation>"  the sandbox is built and the script is about to run
#   "error <reason>"     the sandbox could not be built, or the script could not be started
#   "exit <code>" / "signal <number>"  how the script ended
# The script's stdout and stderr are our own fd 1 and 2 (the runner's bounded output pipe).

from __future__ import annotations

import ctypes
import os
import signal
import sys

ROOT_FD = -1  # set from the arguments by main()
STATUS_FD = -1

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # no glibc wrapper: the system call's number
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24

# What the script keeps of root's capabilities (Docker's default set plus DAC_READ_SEARCH, so a
# check can read every file of the target). Everything that could undo the isolation is dropped:
# SYS_ADMIN (mount, unshare, pivot_root), SYS_CHROOT, MKNOD, NET_ADMIN, NET_RAW, SYS_MODULE,
# SYS_RAWIO, SYS_PTRACE, SYS_BOOT, SYS_TIME, SYS_RESOURCE, BPF, PERFMON, ...
KEPT_CAPABILITIES = frozenset(
    {
        0,  # CHOWN
        1,  # DAC_OVERRIDE
        2,  # DAC_READ_SEARCH
        3,  # FOWNER
        4,  # FSETID
        5,  # KILL (only processes of the sandbox's own pid namespace are visible)
        6,  # SETGID
        7,  # SETUID
        8,  # SETPCAP
        10,  # NET_BIND_SERVICE
        29,  # AUDIT_WRITE
        31,  # SETFCAP
    }
)

# Like Docker's masked and read-only /proc paths: a root script must not reach the host's kernel
# through the fresh /proc (sysrq-trigger, kcore, sysctls are not namespaced).
PROC_MASKED = (b"kcore", b"keys", b"latency_stats", b"timer_list", b"timer_stats", b"sched_debug")
PROC_MASKED_DIRS = (b"acpi", b"scsi")
PROC_READ_ONLY = (b"sys", b"sysrq-trigger", b"irq", b"bus", b"fs")

# Bounded throw-away space: the overlay's upper layer and the private /tmp live in memory.
UPPER_SIZE = b"size=256m"
TMP_SIZE = b"size=64m"
SCRIPT = b"/tmp/.scan-root-check"
ENVIRONMENT = {
    b"PATH": b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    b"HOME": b"/root",
    b"LANG": b"C",
}

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The sandbox could not be built; the check is an error, the script never runs."""


def _fail(call: str, path: bytes) -> SetupError:
    number = ctypes.get_errno()
    return SetupError(f"{call} {os.fsdecode(path)}: {os.strerror(number)}")


def mount(
    source: bytes, target: bytes, fstype: bytes | None, flags: int, data: bytes = b""
) -> None:
    if _libc.mount(source, target, fstype, ctypes.c_ulong(flags), data or None) != 0:
        raise _fail("mount", target)


def bind_read_only(source: bytes, target: bytes, extra: int = 0) -> None:
    mount(source, target, None, MS_BIND)
    # A bind mount takes MS_RDONLY only on a remount.
    mount(b"", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | extra)


def status(line: str) -> None:
    os.write(STATUS_FD, line.encode("utf-8", "backslashreplace") + b"\n")


def build(base: bytes, overlay: bool) -> tuple[bytes, str]:
    """Mount the new root under `base`; return it and a description of the isolation used."""
    if any(char in base for char in b",:\\"):
        raise SetupError(
            f"the work directory {os.fsdecode(base)} holds , : or \\ (overlay options)"
        )
    mount(b"", b"/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    mount(b"scan-root", base, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0700," + UPPER_SIZE)
    for name in (b"lower", b"upper", b"work", b"merged"):
        os.mkdir(base + b"/" + name, 0o700)
    lower = base + b"/lower"
    # Not recursively: the script sees one file system, as the scan's walk (which never crosses
    # a mount point) does. The descriptor's mount belongs to the scanner's namespace, which a bind
    # may not take from, so bind its path here and check it is still the directory opened.
    source = os.readlink(b"/proc/self/fd/%d" % ROOT_FD)
    bind_read_only(source, lower, MS_NOSUID | MS_NODEV)
    opened, bound = os.fstat(ROOT_FD), os.stat(lower)
    if (opened.st_dev, opened.st_ino) != (bound.st_dev, bound.st_ino):
        raise SetupError(f"{os.fsdecode(source)} changed while the sandbox was being built")
    options = b"lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (lower, base, base)
    merged = base + b"/merged"
    try:
        if not overlay:
            raise SetupError("not asked for")
        mount(b"overlay", merged, b"overlay", MS_NOSUID | MS_NODEV, options)
    except SetupError as error:
        # Equally safe: the root is read-only, only the private tmpfs /tmp is writable.
        new_root, isolation = lower, f"read-only bind (overlay: {error})"
    else:
        new_root, isolation = merged, "overlay"
    writable = new_root == merged

    def directory(name: bytes) -> bytes | None:
        path = new_root + b"/" + name
        if not os.path.isdir(path) or os.path.islink(path):
            if not writable:
                return None
            if os.path.lexists(path):
                os.unlink(path)  # only in the throw-away upper layer
            os.mkdir(path, 0o755)
        return path

    dev = directory(b"dev")
    if dev is not None:
        mount(b"dev", dev, b"tmpfs", MS_NOSUID | MS_NOEXEC, b"mode=0755,size=64k")
        for name, minor_major in (
            (b"null", (1, 3)),
            (b"zero", (1, 5)),
            (b"full", (1, 7)),
            (b"random", (1, 8)),
            (b"urandom", (1, 9)),
            (b"tty", (5, 0)),
        ):
            os.mknod(dev + b"/" + name, 0o666 | 0o020000, os.makedev(*minor_major))
            os.chmod(dev + b"/" + name, 0o666)  # the umask must not narrow it
        for name, target in (
            (b"fd", b"/proc/self/fd"),
            (b"stdin", b"/proc/self/fd/0"),
            (b"stdout", b"/proc/self/fd/1"),
            (b"stderr", b"/proc/self/fd/2"),
        ):
            os.symlink(target, dev + b"/" + name)
        mount(b"", dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    proc = directory(b"proc")
    if proc is not None:
        mount(b"proc", proc, b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name in PROC_MASKED:
            if dev is not None and os.path.exists(proc + b"/" + name):
                bind_read_only(dev + b"/null", proc + b"/" + name)
        for name in PROC_MASKED_DIRS:
            if os.path.isdir(proc + b"/" + name):
                mount(b"masked", proc + b"/" + name, b"tmpfs", MS_RDONLY, b"size=4k")
        for name in PROC_READ_ONLY:
            if os.path.exists(proc + b"/" + name):
                bind_read_only(proc + b"/" + name, proc + b"/" + name)
    tmp = directory(b"tmp")
    if tmp is None:
        raise SetupError("the target has no /tmp to mount the private /tmp on (read-only root)")
    mount(b"tmp", tmp, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777," + TMP_SIZE)
    return new_root, isolation


def enter(new_root: bytes) -> None:
    """Make `new_root` the root and detach the old one: unlike chroot, nothing to escape to."""
    os.chdir(new_root)
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the
    # new root in this mount namespace (the idiom of lxc and runc).
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError(f"pivot_root: unknown system call number on {os.uname().machine}")
    if _libc.syscall(ctypes.c_long(number), b".", b".") != 0:
        raise _fail("pivot_root", new_root)
    if _libc.umount2(b".", MNT_DETACH) != 0:
        raise _fail("umount", b"/ (the old root)")
    os.chdir(b"/")


def last_capability() -> int:
    """The kernel's highest capability number (read from the host's /proc, before pivoting)."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as handle:
        return int(handle.read())


def drop_privileges(last: int) -> None:
    """Shrink the bounding set: after exec the script keeps only KEPT_CAPABILITIES."""
    for capability in range(last + 1):
        if capability not in KEPT_CAPABILITIES and _libc.prctl(PR_CAPBSET_DROP, capability) != 0:
            raise _fail("prctl(PR_CAPBSET_DROP)", str(capability).encode())
    # No set-uid binary or file capability can give any of it back.
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_NO_NEW_PRIVS)", b"")


def run(script: bytes, last: int) -> None:
    """Start the script, wait for it as PID 1, say how it ended; our exit ends the namespace."""
    with open(SCRIPT, "wb") as handle:
        handle.write(script)
    os.chmod(SCRIPT, 0o755)
    # The shebang names the target's interpreter; without one, the target's /bin/sh runs it.
    argv = [SCRIPT] if script.startswith(b"#!") else [b"/bin/sh", SCRIPT]
    os.set_inheritable(STATUS_FD, False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec, and
            # `yes | head` must behave in the script as it does anywhere else.
            for number in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)
            os.umask(0o022)  # a fixed start, like the environment
            drop_privileges(last)
            os.execve(argv[0], argv, ENVIRONMENT)
        except (OSError, SetupError) as error:
            status(f"error cannot start the script: {error}")
        os._exit(127)
    while True:
        # As PID 1 we also reap whatever the script left behind; only its own end counts.
        reaped, wait_status = os.wait()
        if reaped == pid:
            break
    if os.WIFSIGNALED(wait_status):
        status(f"signal {os.WTERMSIG(wait_status)}")
    else:
        status(f"exit {os.waitstatus_to_exitcode(wait_status)}")


def main() -> int:
    global ROOT_FD, STATUS_FD
    ROOT_FD, STATUS_FD = int(sys.argv[2]), int(sys.argv[3])
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    script = b"".join(chunks)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)  # the script reads nothing
    os.close(null)
    try:
        last = last_capability()
        new_root, isolation = build(os.fsencode(sys.argv[1]), sys.argv[4] == "overlay")
        os.close(ROOT_FD)  # a way back to the scanner's namespace: not kept while the script runs
        enter(new_root)
    except (OSError, SetupError) as error:
        status(f"error the sandbox could not be built: {error}")
        return 0
    status(f"ready {isolation}")
    run(script, last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
