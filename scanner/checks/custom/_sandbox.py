"""The in-namespace half of the custom-check runner: build the sandbox, run the script, report."""

# This file runs as a script (`python3 -I -S _sandbox.py ...`), as PID 1 of the fresh mount,
# pid, net, ipc and uts namespaces that `unshare` made for it; runner.py is the other half and its
# docstring describes the isolation. It imports only the standard library: it runs before the
# scanner's package could be trusted to be importable, with no site directories.
#
# Arguments: BASE ROOT_FD STATUS_FD MODE MEMORY PROCESSES CGROUP_FD. BASE is an empty directory to
# mount the work on; ROOT_FD the root to scan (an O_PATH directory descriptor); MODE is `overlay`,
# or `read-only` to skip overlayfs; MEMORY (bytes) and PROCESSES are the script's limits; CGROUP_FD
# is the runner's cgroup v2 child's `cgroup.procs`, open for writing, which the script joins before
# it starts (the runner wrote the limits there), or -1: then this file sets rlimits and the pid
# namespace's pid_max instead. fd 0 carries the script's text (read to EOF); STATUS_FD is the
# status pipe, one line per event:
#   "limits <limits>"    the resource limits the script will run under (before "ready")
#   "ready <isolation>"  the sandbox is built and the script is about to run
#   "error <reason>"     the sandbox could not be built, or the script could not be started
#   "exit <code>" / "signal <number>"  how the script ended
# The script's stdout and stderr are our own fd 1 and 2 (the runner's bounded output pipe).

from __future__ import annotations

import ctypes
import os
import resource
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
KEYCTL_JOIN_SESSION_KEYRING = 1  # <linux/keyctl.h>
EPERM = 1
EACCES = 13
EROFS = 30
ENOSYS = 38
# <seccomp.h>: the filter's actions and the one comparison used.
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000  # | the errno
SCMP_CMP_MASKED_EQ = 7  # (argument & datum_a) == datum_b
# The system calls of the kernel's keyrings: denied to the script, so it can neither read a key
# the host holds (root's user keyring is shared by every root process) nor add or request one.
KEYRING_CALLS = (b"add_key", b"request_key", b"keyctl")
# io_uring makes sockets and connects without the system calls the filter sees (as Docker's
# default profile, it is refused whole).
IO_URING_CALLS = (b"io_uring_setup", b"io_uring_enter", b"io_uring_register")
# A file handle opens any inode of the file system the handle's mount is on, outside the bind of
# the target too (the "shocker" escape): refused, as CAP_DAC_READ_SEARCH is dropped.
HANDLE_CALLS = (b"open_by_handle_at",)
# Memory no limit of the fallback counts (an unmapped memfd is neither address space nor a file
# of a size-limited tmpfs): ENOSYS, so that a program falls back to $TMPDIR as it does on an old
# kernel.
MEMFD_CALLS = (b"memfd_create", b"memfd_secret")
# A new user namespace gives the script every capability over namespaces of its own: mounts (a tmpfs
# of half the host's memory, which no limit of the fallback counts) and the kernel surface behind
# them. unshare and clone are refused that flag; clone3 passes its flags in memory the filter
# cannot read, so it is ENOSYS, on which the C library falls back to clone (as under Docker).
CLONE_NEWUSER = 0x10000000
CLONE_CALLS = (b"unshare", b"clone")
# The socket families a socket() may name: those of the network namespace, which is empty. Every
# other family is refused, named or yet to be: AF_UNIX (through the read-only fallback's bind, a
# socket file in the target, an ssh-agent's in the live root's /tmp, is a host daemon's), AF_VSOCK
# (not namespaced: a VM's hypervisor), AF_BLUETOOTH, AF_ALG, ... The kernel reads the family as an
# int: the filter compares the low 32 bits only, or a family with high bits set would pass it.
ALLOWED_FAMILIES = frozenset({2, 10, 16})  # AF_INET, AF_INET6, AF_NETLINK
FAMILY_LIMIT = 128  # the kernel has 46 (AF_MAX); it refuses any family at or past its own
# Chroot isolation (no mount namespace for a read-only view): what would change the target's
# tree is refused as on a read-only file system. The script runs as a uid of its own with
# RLIMIT_FSIZE 0, so it writes no byte to any regular file; O_CREAT stays allowed (`>/dev/null`
# opens with it), so in a directory anyone may write in (the target's /tmp) an empty file can
# be left behind, owned by that uid (runner.py and docs/checks.md say so).
CHROOT_DENIED = (
    b"mkdir",
    b"mkdirat",
    b"mknod",
    b"mknodat",
    b"link",
    b"linkat",
    b"symlink",
    b"symlinkat",
    b"rename",
    b"renameat",
    b"renameat2",
    b"truncate",
    b"ftruncate",
    b"chmod",
    b"fchmod",
    b"fchmodat",
    b"fchmodat2",
    b"chown",
    b"fchown",
    b"lchown",
    b"fchownat",
    b"setxattr",
    b"lsetxattr",
    b"fsetxattr",
    b"setxattrat",
    b"removexattr",
    b"lremovexattr",
    b"fremovexattr",
    b"removexattrat",
    b"utime",
    b"utimes",
    b"futimesat",
    b"utimensat",
    b"mount",
    b"umount2",
    b"pivot_root",
    b"chroot",
    b"fanotify_init",
    b"inotify_init",
    b"inotify_init1",
    b"name_to_handle_at",
)
# Other processes of the task share the pid namespace: nothing to trace or read them with.
CHROOT_TRACING = (
    b"ptrace",
    b"process_vm_readv",
    b"process_vm_writev",
    b"kcmp",
    b"pidfd_getfd",
    b"perf_event_open",
    b"bpf",
    b"setns",
    b"userfaultfd",
)
# <linux/capability.h>: the one capability a chrooted script keeps, to read what root reads.
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_SET_CHILD_SUBREAPER = 36
CAPSET = {"x86_64": 126, "aarch64": 91}
CHROOT_ENVIRONMENT = {
    b"PATH": b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    b"HOME": b"/",
    b"LANG": b"C",
}
# The other architectures a process of this machine can run as; the filter covers them too (for
# an architecture it does not name, libseccomp's default kills the process).
EXTRA_ARCHITECTURES = {"x86_64": (b"x86", b"x32"), "aarch64": (b"arm",)}
# Resource limits without a cgroup: pids in the pid namespace's own pid_max (Linux 6.14 made
# pid_max a per-pid-namespace sysctl; before, it is the host's: never written then). Once the
# namespace's last pid is past RESERVED_PIDS, the kernel allocates from RESERVED_PIDS up to
# pid_max, so RESERVED_PIDS + N leaves N pids for the script and its processes and threads.
PER_NAMESPACE_PID_MAX = (6, 14)
RESERVED_PIDS = 300

# What the script keeps of root's capabilities (Docker's default set: DAC_OVERRIDE already lets a
# check read every file of the target). Everything that could undo the isolation is dropped:
# SYS_ADMIN (mount, unshare, pivot_root), SYS_CHROOT, MKNOD, NET_ADMIN, NET_RAW, SYS_MODULE,
# SYS_RAWIO, SYS_PTRACE, SYS_BOOT, SYS_TIME, SYS_RESOURCE, BPF, PERFMON, and DAC_READ_SEARCH
# (open_by_handle_at reaches the whole file system beneath a bind mount), ...
KEPT_CAPABILITIES = frozenset(
    {
        0,  # CHOWN
        1,  # DAC_OVERRIDE (reads and searches every file and directory)
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
PROC_MASKED = (
    b"kcore",
    b"keys",
    b"key-users",
    b"latency_stats",
    b"timer_list",
    b"timer_stats",
    b"sched_debug",
)
PROC_MASKED_DIRS = (b"acpi", b"scsi")
PROC_READ_ONLY = (b"sys", b"sysrq-trigger", b"irq", b"bus", b"fs")

# Bounded throw-away space: the overlay's upper layer and the script's scratch space live in
# memory. The scratch space is the sandbox's own /dev/shm (TMPDIR): never the target's /tmp, which
# the script sees as it is (a miner copied to /tmp is what a check looks for).
# The inode counts are bounded too: an empty file or directory takes no block of `size` but about
# 1 KiB of kernel memory.
UPPER_SIZE = b"size=256m,nr_inodes=65536"
SCRATCH_SIZE = b"size=64m,nr_inodes=16384"
SCRATCH = b"/dev/shm"
SCRIPT = SCRATCH + b"/.scan-root-check"
ENVIRONMENT = {
    b"PATH": b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    b"HOME": b"/root",
    b"LANG": b"C",
    b"TMPDIR": SCRATCH,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _ArgCmp(ctypes.Structure):
    """libseccomp's struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


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
    if dev is None:
        raise SetupError(
            "the target has no /dev to mount the sandbox's devices and scratch space on "
            "(read-only root)"
        )
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
    os.mkdir(dev + b"/shm", 0o755)
    mount(b"", dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    # Not noexec: the script itself is written there and run.
    mount(b"shm", dev + b"/shm", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777," + SCRATCH_SIZE)
    proc = directory(b"proc")
    if proc is not None:
        mount(b"proc", proc, b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name in PROC_MASKED:
            if os.path.exists(proc + b"/" + name):
                bind_read_only(dev + b"/null", proc + b"/" + name)
        for name in PROC_MASKED_DIRS:
            if os.path.isdir(proc + b"/" + name):
                mount(b"masked", proc + b"/" + name, b"tmpfs", MS_RDONLY, b"size=4k")
        for name in PROC_READ_ONLY:
            if os.path.exists(proc + b"/" + name):
                bind_read_only(proc + b"/" + name, proc + b"/" + name)
    own_tmp = target_tmp(source)
    if own_tmp is not None:
        try:
            show_tmp(own_tmp, base, directory(b"tmp"), writable)
        finally:
            os.close(own_tmp)
    return new_root, isolation


def mount_id(fd: int) -> int:
    """The id of the mount `fd` is on (/proc/self/fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as handle:
        for line in handle:
            if line.startswith(b"mnt_id:"):
                return int(line[7:])
    raise SetupError(f"no mount id in /proc/self/fdinfo/{fd}")


def target_tmp(source: bytes) -> int | None:
    """An O_PATH descriptor of the target's /tmp when that is a mount of its own (a tmpfs, a
    volume: the usual /tmp of a live root or a task), else None. The root's bind is not recursive
    and would show the empty directory beneath it, where a dropped miner is not."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        opened = os.open(source + b"/tmp", flags)
    except OSError:
        return None  # no /tmp directory (a symlink is the root's own, seen through the bind)
    try:
        # The target's very /tmp (its path could have been swapped since the root was opened).
        expected = os.stat(b"tmp", dir_fd=ROOT_FD, follow_symlinks=False)
        found = os.fstat(opened)
        if (found.st_dev, found.st_ino) != (expected.st_dev, expected.st_ino):
            raise SetupError(f"{os.fsdecode(source)}/tmp changed while the sandbox was being built")
        parent = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            separate = mount_id(parent) != mount_id(opened)
        finally:
            os.close(parent)
    except BaseException:
        os.close(opened)
        raise
    if not separate:
        os.close(opened)
        return None
    return opened


def show_tmp(own_tmp: int, base: bytes, tmp: bytes | None, writable: bool) -> None:
    """Mount the target's own /tmp mount (`own_tmp`) on the new root's `tmp`: read-only under a
    throw-away overlay like the root, or read-only alone in the read-only fallback."""
    if tmp is None:
        raise SetupError("the target's /tmp is a mount; the read-only root has no /tmp to show it")
    lower = base + b"/tmp-lower"
    os.mkdir(lower, 0o700)
    # Bound through the descriptor: exactly the directory checked, whatever its path is now.
    bind_read_only(b"/proc/self/fd/%d" % own_tmp, lower, MS_NOSUID | MS_NODEV)
    if not writable:
        bind_read_only(lower, tmp, MS_NOSUID | MS_NODEV)
        return
    for name in (b"tmp-upper", b"tmp-work"):
        os.mkdir(base + b"/" + name, 0o700)
    options = b"lowerdir=%s,upperdir=%s/tmp-upper,workdir=%s/tmp-work" % (lower, base, base)
    mount(b"overlay", tmp, b"overlay", MS_NOSUID | MS_NODEV, options)


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


class Seccomp:
    """The script's seccomp filter, built with libseccomp (the library runc and systemd use) through
    ctypes: everything is allowed but the keyring system calls, sockets of a family outside the
    network namespace (ALLOWED_FAMILIES), io_uring, which could make one unseen, open_by_handle_at,
    memfd_create and new user namespaces; socketpair() stays allowed. Built here, loaded in the
    child just before exec."""

    def __init__(self, *, chrooted: bool = False) -> None:
        try:
            self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as error:
            raise SetupError(f"libseccomp (Debian: libseccomp2) is missing: {error}") from None
        lib = self.lib
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.context = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not self.context:
            raise SetupError("seccomp_init failed")
        for name in EXTRA_ARCHITECTURES.get(os.uname().machine, ()):
            architecture = lib.seccomp_arch_resolve_name(name)
            self._check(
                lib.seccomp_arch_add(self.context, architecture),
                f"seccomp_arch_add {name.decode()}",
            )
        for call in KEYRING_CALLS + IO_URING_CALLS + HANDLE_CALLS:
            self._rule(call, EPERM)
        for call in MEMFD_CALLS + (b"clone3",):
            self._rule(call, ENOSYS)
        for call in CLONE_CALLS:
            self._rule(call, EPERM, _ArgCmp(0, SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
        if chrooted:
            # No network namespace of its own: every socket would be the task's.
            self._rule(b"socket", EACCES)
            for call in CHROOT_DENIED:
                self._rule(call, EROFS, known_only=True)
            for call in CHROOT_TRACING:
                self._rule(call, EPERM, known_only=True)
            return
        for family in range(FAMILY_LIMIT):
            if family not in ALLOWED_FAMILIES:
                self._rule(b"socket", EPERM, _ArgCmp(0, SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, family))

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result < 0:  # libseccomp returns -errno
            raise SetupError(f"{what}: {os.strerror(-result)}")

    def _rule(self, call: bytes, errno: int, *compare: _ArgCmp, known_only: bool = False) -> None:
        number = self.lib.seccomp_syscall_resolve_name(call)
        if number < 0:
            if known_only:
                return  # not a call of this architecture (aarch64 has no mkdir, only mkdirat)
            raise SetupError(f"seccomp: unknown system call {call.decode()}")
        array = (_ArgCmp * len(compare))(*compare) if compare else None
        self._check(
            self.lib.seccomp_rule_add_array(
                self.context, SCMP_ACT_ERRNO | errno, number, len(compare), array
            ),
            f"seccomp rule for {call.decode()}",
        )

    def load(self) -> None:
        self._check(self.lib.seccomp_load(self.context), "seccomp_load")

    def syscall_number(self, call: bytes) -> int:
        return int(self.lib.seccomp_syscall_resolve_name(call))


def new_session_keyring(seccomp: Seccomp) -> None:
    """Join a new, empty session keyring: whatever the scanner's session held is out of reach, even
    of the kernel's own key searches on the script's behalf (which seccomp does not see)."""
    number = seccomp.syscall_number(b"keyctl")
    if _libc.syscall(ctypes.c_long(number), KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        raise _fail("keyctl(KEYCTL_JOIN_SESSION_KEYRING)", b"")


def limit_processes(count: int) -> str:
    """Without a cgroup: leave `count` pids in this pid namespace (see PER_NAMESPACE_PID_MAX).

    RLIMIT_NPROC cannot do it: the kernel never applies it to uid 0 (and for another uid it counts
    every process of that user on the host, not the script's)."""
    release = os.uname().release.split("-")[0].split(".")
    try:
        version = (int(release[0]), int(release[1]))
    except (IndexError, ValueError):
        return f"processes not limited (kernel release {os.uname().release!r} not understood)"
    if version < PER_NAMESPACE_PID_MAX:
        return (
            f"processes not limited (no cgroup v2 pids controller; pid_max is per pid namespace "
            f"from Linux {PER_NAMESPACE_PID_MAX[0]}.{PER_NAMESPACE_PID_MAX[1]}; RLIMIT_NPROC "
            f"does not bind root)"
        )
    # This process is PID 1 of the new pid namespace: both sysctls are that namespace's.
    for name, value in (("ns_last_pid", RESERVED_PIDS), ("pid_max", RESERVED_PIDS + count)):
        with open(f"/proc/sys/kernel/{name}", "w") as handle:
            handle.write(str(value))
    with open("/proc/sys/kernel/pid_max") as handle:
        if int(handle.read()) != RESERVED_PIDS + count:
            raise SetupError("the pid namespace's pid_max did not take")
    return f"{count} processes (the pid namespace's pid_max)"


def limit_ipc(memory: int) -> None:
    """Bound this IPC namespace's System V objects (its sysctls are the namespace's own): shared
    memory to the script's memory limit in all, few message queues and semaphores. A segment
    outlives its detaching, so neither RLIMIT_AS nor a process count bounds it."""
    page = os.sysconf("SC_PAGE_SIZE")
    for name, value in (
        ("shmmax", memory),
        ("shmall", memory // page),
        ("shmmni", 64),
        ("msgmni", 16),  # of msgmnb (16 KiB) each
        ("sem", "32 1024 32 32"),  # per set, in all, per semop, sets
    ):
        with open(f"/proc/sys/kernel/{name}", "w") as handle:
            handle.write(str(value))


def mebibytes(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def run(script: bytes, last: int, seccomp: Seccomp, memory: int, cgroup_fd: int) -> None:
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
            if cgroup_fd >= 0:
                # "0" moves the writer: the script and all it starts are in the limited cgroup,
                # this PID 1 is not (its own memory is not the script's to spend).
                os.write(cgroup_fd, b"0")
                os.close(cgroup_fd)
            else:
                # Per process, and only address space: weaker than memory.max (runner.py says how).
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            drop_privileges(last)
            seccomp.load()  # last: after no_new_privs, which lets it load without CAP_SYS_ADMIN
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


# --- chroot isolation: what a Fargate sidecar can build (no CAP_SYS_ADMIN) -----------------


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def holds_read_search() -> bool:
    """Whether CAP_DAC_READ_SEARCH is ours to keep: Docker's default set, and so Fargate's,
    lacks it (only SYS_PTRACE can be added there)."""
    with open("/proc/self/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"CapPrm:"):
                return bool(int(line.split()[1], 16) >> CAP_DAC_READ_SEARCH & 1)
    return False


def become_reader(uid: int, last: int, read_search: bool) -> None:
    """Root's capabilities given up for `uid`, keeping CAP_DAC_READ_SEARCH alone when
    `read_search`: the script then reads every file root could, and writes only where anyone
    may; the capability survives the exec as an ambient one. Without it (Fargate), the script
    reads only what any user may."""
    kept = CAP_DAC_READ_SEARCH if read_search else -1
    for capability in range(last + 1):
        if capability != kept and _libc.prctl(PR_CAPBSET_DROP, capability) != 0:
            raise _fail("prctl(PR_CAPBSET_DROP)", str(capability).encode())
    if _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_KEEPCAPS)", b"")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if not read_search:
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _fail("prctl(PR_SET_NO_NEW_PRIVS)", b"")
        return  # what KEEPCAPS kept is not effective, and the exec clears it (no ambient)
    number = CAPSET.get(os.uname().machine)
    if number is None:
        raise SetupError(f"capset: unknown system call number on {os.uname().machine}")
    bit = 1 << CAP_DAC_READ_SEARCH
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(bit, bit, bit), _CapData(0, 0, 0))
    if _libc.syscall(ctypes.c_long(number), ctypes.byref(header), data) != 0:
        raise _fail("capset", b"")
    if _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0) != 0:
        raise _fail("prctl(PR_CAP_AMBIENT_RAISE)", b"")
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_NO_NEW_PRIVS)", b"")


def interpreter(script: bytes) -> list[bytes]:
    """The command that reads the script on its standard input: its shebang's interpreter
    (and its one argument, as the kernel splits it), else the target's /bin/sh."""
    if not script.startswith(b"#!"):
        return [b"/bin/sh"]
    line = script[2:].split(b"\n", 1)[0].strip()
    path, _, argument = line.partition(b" ")
    argument = argument.strip()
    if not path.startswith(b"/"):
        raise SetupError("the shebang must name an absolute path")
    return [path, argument] if argument else [path]


def run_chrooted(
    script: bytes,
    uid: int,
    last: int,
    seccomp: Seccomp,
    memory: int,
    processes: int,
    cgroup_fd: int,
    read_search: bool,
) -> None:
    """Start the script chrooted into the target, wait for it, say how it ended."""
    argv = interpreter(script)
    reading, writing = os.pipe()
    os.set_inheritable(STATUS_FD, False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(writing)
            os.dup2(reading, 0)
            os.close(reading)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            # Ignored (and so across the exec): a write to a file fails with EFBIG, as on a
            # full disk, instead of killing the script that tried (`mktemp` in a check).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            os.umask(0o022)
            if cgroup_fd >= 0:
                os.write(cgroup_fd, b"0")
                os.close(cgroup_fd)
            else:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            # The uid is the script's alone: NPROC counts its processes and nothing else's.
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
            os.fchdir(ROOT_FD)
            os.chroot(".")
            os.chdir("/")
            os.close(ROOT_FD)
            become_reader(uid, last, read_search)
            seccomp.load()
            os.execve(argv[0], argv, CHROOT_ENVIRONMENT)
        except (OSError, SetupError) as error:
            status(f"error cannot start the script: {error}")
        os._exit(127)
    os.close(reading)
    try:
        view = memoryview(script)
        while view:
            view = view[os.write(writing, view[: 1 << 16]) :]
    except BrokenPipeError:
        view = view[:0]  # the interpreter stopped reading (it exited): its status says the rest
    finally:
        os.close(writing)
    while True:
        # A subreaper: what the script leaves behind is reaped here, not by the task's init.
        reaped, wait_status = os.wait()
        if reaped == pid:
            break
    # The script's end is the check's: whatever it left running (setsid, a daemon) holds its
    # output open and is killed now, by its uid, as PID 1's end does in the namespaces.
    kill_uid(uid)
    if os.WIFSIGNALED(wait_status):
        status(f"signal {os.WTERMSIG(wait_status)}")
    else:
        status(f"exit {os.waitstatus_to_exitcode(wait_status)}")


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (the script's own), then reap them: as a subreaper, this
    process is the parent of every one of them by now."""
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                os.kill(int(name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def chroot_main() -> int:
    """Arguments: --chroot ROOT_FD STATUS_FD MEMORY PROCESSES CGROUP_FD UID."""
    global ROOT_FD, STATUS_FD
    ROOT_FD, STATUS_FD = int(sys.argv[2]), int(sys.argv[3])
    memory, processes, cgroup_fd, uid = (int(value) for value in sys.argv[4:8])
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    script = b"".join(chunks)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        if cgroup_fd >= 0:
            os.set_inheritable(cgroup_fd, False)
            limits = f"memory {mebibytes(memory)}, {processes} processes (cgroup v2)"
        else:
            limits = (
                f"memory {mebibytes(memory)} per process (RLIMIT_AS), "
                f"{processes} processes (RLIMIT_NPROC of its own uid)"
            )
        if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise _fail("prctl(PR_SET_CHILD_SUBREAPER)", b"")
        last = last_capability()
        seccomp = Seccomp(chrooted=True)
        new_session_keyring(seccomp)
        interpreter(script)  # a shebang that cannot run is said before "ready"
        read_search = holds_read_search()
    except (OSError, SetupError) as error:
        status(f"error the sandbox could not be built: {error}")
        return 0
    reads = (
        "CAP_DAC_READ_SEARCH only: reads as root"
        if read_search
        else "no capabilities: files only root may read are unreadable"
    )
    status(f"limits {limits}")
    status(f"ready chroot (uid {uid}, {reads}; no byte written to a file, no sockets)")
    run_chrooted(script, uid, last, seccomp, memory, processes, cgroup_fd, read_search)
    return 0


def main() -> int:
    if sys.argv[1] == "--chroot":
        return chroot_main()
    global ROOT_FD, STATUS_FD
    ROOT_FD, STATUS_FD = int(sys.argv[2]), int(sys.argv[3])
    # Python's SIGINT handler would let the script end this PID 1 (`kill -INT 1`) and lose its
    # verdict; with the default action, the kernel drops a signal sent to PID 1 from inside.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    memory, processes, cgroup_fd = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    script = b"".join(chunks)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)  # the script reads nothing
    os.close(null)
    try:
        if cgroup_fd >= 0:
            os.set_inheritable(cgroup_fd, False)  # the child writes it and closes it before exec
            limits = f"memory {mebibytes(memory)}, {processes} processes (cgroup v2)"
        else:
            limits = f"memory {mebibytes(memory)} per process (RLIMIT_AS), " + limit_processes(
                processes
            )
        limit_ipc(memory)
        last = last_capability()
        seccomp = Seccomp()
        new_session_keyring(seccomp)
        new_root, isolation = build(os.fsencode(sys.argv[1]), sys.argv[4] == "overlay")
        os.close(ROOT_FD)  # a way back to the scanner's namespace: not kept while the script runs
        enter(new_root)
    except (OSError, SetupError) as error:
        status(f"error the sandbox could not be built: {error}")
        return 0
    status(f"limits {limits}")
    status(f"ready {isolation}")
    run(script, last, seccomp, memory, cgroup_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
