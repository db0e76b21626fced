"""Run one custom check script against a scanned root, isolated, and say how it ended.

Isolation (every run, for a directory, an unpacked image or the live root `/` alike):

- `unshare` (util-linux) starts `_sandbox.py` as PID 1 of fresh mount, pid, network, IPC and UTS
  namespaces. The network namespace is new and empty (not even `lo` is up): the script cannot
  reach the scanner's network, the host's loopback included.
- In the new mount namespace (private propagation: nothing leaks to the host) a size-limited tmpfs
  holds the work: the root is bind-mounted read-only as the lower layer of an overlayfs whose
  upper layer is on that tmpfs, so writes to the target's `/etc` land in a throw-away layer in
  memory. Only the root's own file system is seen, like the scan's walk, which never crosses a
  mount point. If overlayfs cannot be mounted, the root stays a read-only bind (writes fail) and
  the result says so; if neither works the check is an error: it never runs unisolated.
- The script sees the target as it is, its `/tmp` included (where a miner would be dropped);
  a `/tmp` that is a mount of its own (a tmpfs, a volume) is shown too, under its own throw-away
  overlay (read-only in the fallback): the root's bind alone would show the directory beneath.
  A fresh `/proc` (this pid namespace only; kernel knobs and `/proc/keys` masked or read-only as
  Docker does), a read-only `/dev` with only null, zero, full, random, urandom and tty, and the
  script's own scratch space, a size-limited tmpfs `/dev/shm` named by `TMPDIR` (in the read-only
  fallback the target's `/tmp` is read-only too).
- `pivot_root` makes that tree the root and the old root is detached: unlike a chroot there is
  nothing to climb out to. For the live root `/` this is the same files, run directly by the same
  shell; only the writes and the network are taken away.
- The script runs as root with a reduced capability bounding set (no SYS_ADMIN, SYS_CHROOT, MKNOD,
  NET_ADMIN, SYS_MODULE, SYS_PTRACE, DAC_READ_SEARCH, ...) and no_new_privs, in a fixed
  environment (PATH, HOME=/root, LANG=C, TMPDIR=/dev/shm): never the scanner's, which may hold
  secrets.
- Kernel keyrings: the sandbox joins a new, empty session keyring, and a seccomp filter (libseccomp)
  makes add_key, request_key and keyctl fail with EPERM, so no key of the host (root's user keyring
  is shared by every root process) can be read or searched. The same filter refuses sockets of
  every family but the empty network namespace's (AF_INET, AF_INET6, AF_NETLINK): through the
  read-only fallback's bind, a socket file in the target (an ssh-agent's in the live root's
  `/tmp`) would reach a host daemon, and AF_VSOCK a VM's hypervisor; io_uring; open_by_handle_at,
  which reaches the whole file system beneath a bind; memfd_create (ENOSYS: memory no limit of
  the fallback counts); and new user namespaces (in one, the script could mount a tmpfs of its
  own, unbounded). Without libseccomp the check is an error.
- Memory and processes (`memory_mib`, default 256, and `processes`, default 64, per check): a cgroup
  v2 child of the scanner's own cgroup with memory.max (swap 0) and pids.max, when the scanner's
  cgroup can have one (the root cgroup, or a delegated one with memory and pids enabled for its
  children). The script joins it before exec; a kill by the OOM killer or a fork refused at the
  limit makes the check an error, whatever the script's status. Otherwise, weaker: RLIMIT_AS per
  process (an allocation past it fails inside the script, which decides what to do with that, and
  N processes can hold N times the limit; kernel memory held through descriptors, socket buffers
  and pipes, is not counted at all), and the pid namespace's own pid_max (Linux 6.14 and
  later) for the process count, which the scanner cannot see reached. In both, the IPC namespace's
  System V shared memory is capped at `memory_mib` in all, and the two tmpfs (the overlay's upper
  layer, the scratch space) have an inode count as well as a size. RLIMIT_NPROC is not used: the
  kernel never applies it to uid 0, and it counts all of a user's processes on the host. Each
  result names the limits in force (`limits`).
- Its shebang picks the interpreter (the target's, since it runs in the target's root); without one
  the target's `/bin/sh` runs it. Exit 0 passes, 1 fails with its output as the cause; any other
  status, a signal or the timeout is an error. On timeout the whole process group is killed, and
  with PID 1 gone the kernel kills everything left in the pid namespace; its mounts vanish with it.
- Output (stdout and stderr together) is read as it comes, at most OUTPUT_LIMIT bytes kept, the
  rest drained and counted, so the scanner never blocks on a chatty script.

Namespaces and mounts need root: when not root every check is Skipped (never a silent pass).

In an ECS/Fargate task, which grants no CAP_SYS_ADMIN, none of the above can be built; the spec's
`isolation` decides (`auto`: namespaces when CAP_SYS_ADMIN is held, else the chroot;
`namespaces`: an Errored result without it, never a fallback). The chroot (`_sandbox.py --chroot`,
docs/checks.md): chrooted into the root as a uid of its own with CAP_DAC_READ_SEARCH alone,
RLIMIT_FSIZE 0, a seccomp filter refusing what changes the tree and every socket, the script on
its interpreter's stdin; every process of that uid killed when it ends.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import _cgroup
from ._cgroup import Cgroup, CgroupUnavailable
from .spec import CustomCheckSpec, Isolation

__all__ = [
    "OUTPUT_LIMIT",
    "CheckResult",
    "Errored",
    "Failed",
    "Passed",
    "Skipped",
    "run_custom_check",
]

OUTPUT_LIMIT = 64 << 10  # bytes of a script's output kept for the report
CAP_SYS_ADMIN = 21
# The range a chrooted script's uid is drawn from: far from any account's.
CHROOT_UIDS = (2_000_000_000, 2_100_000_000)
_STATUS_LIMIT = 4 << 10
_SANDBOX = Path(__file__).with_name("_sandbox.py")
# The tools are looked up on a fixed PATH, never the scanner's.
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_UNSHARE_FLAGS = (
    "--mount",
    "--pid",
    "--net",
    "--ipc",
    "--uts",
    "--fork",
    "--kill-child",  # if unshare dies, its child (PID 1 of the namespace) is killed
    "--propagation",
    "private",
)


@dataclass(frozen=True, slots=True)
class Passed:
    """Exit status 0."""

    output: str
    isolation: str
    seconds: float
    limits: str  # the memory and process limits in force, and how


@dataclass(frozen=True, slots=True)
class Failed:
    """Exit status 1: `output` is the finding's cause."""

    output: str
    isolation: str
    seconds: float
    limits: str


@dataclass(frozen=True, slots=True)
class Errored:
    """Neither pass nor fail: another status, a signal, the timeout, a limit reached, or no
    sandbox."""

    reason: str
    output: str = ""
    seconds: float = 0.0
    limits: str = ""  # empty when the script never ran


@dataclass(frozen=True, slots=True)
class Skipped:
    """Not run at all (not root)."""

    reason: str


# What a check that was started can end as, and what any check can.
RanResult = Passed | Failed | Errored
CheckResult = RanResult | Skipped


def _clean(raw: bytes, dropped: int) -> str:
    """Output made safe for a report: undecodable bytes and control characters escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(
        char
        if char in "\n\t" or not (ord(char) < 32 or 127 <= ord(char) < 160)  # C0, DEL, C1
        else f"\\x{ord(char):02x}"
        for char in text
    ).rstrip()
    if dropped:
        text += f"\n[{dropped} more bytes of output not kept]"
    return text


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (a chrooted script's own): one that left the process
    group (setsid) or outlived its parent would otherwise run on after its check."""
    for _attempt in range(10):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                os.kill(int(name), signal.SIGKILL)
                found = True
            except (FileNotFoundError, ProcessLookupError):
                continue  # gone meanwhile
        if not found:
            return
        time.sleep(0.01)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the session; the namespace's PID 1 dies with unshare (--kill-child), and with it
    every process the script started, even one that left the process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: nothing left to kill
    process.wait()


def can_build_namespaces() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, which the namespace sandbox needs (a Fargate
    container never does)."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def run_custom_check(
    spec: CustomCheckSpec, root: str | bytes, *, overlay: bool = True, cgroup: bool = True
) -> CheckResult:
    """Run `spec`'s script against `root` in the sandbox; never raises for what the script does.

    `overlay=False` skips overlayfs for the read-only fallback (what runs when overlayfs cannot);
    `cgroup=False` skips cgroup v2 for the rlimit fallback. The isolation is the spec's: `auto`
    builds namespaces when it can, else the chroot; `namespaces` demanded where they cannot be
    built is an error, never a fallback.
    """
    if os.geteuid() != 0:
        return Skipped(
            f"custom checks need root to build their sandbox (running as uid {os.geteuid()})"
        )
    namespaces = can_build_namespaces()
    if spec.isolation is Isolation.NAMESPACES and not namespaces:
        return Errored(
            "the policy demands isolation: namespaces, which needs CAP_SYS_ADMIN (a Fargate "
            "task has none); not run"
        )
    if spec.isolation is Isolation.CHROOT or not namespaces:
        command = [sys.executable, "-I", "-S", str(_SANDBOX), "--chroot"]
        return _opened(spec, root, lambda fd, base: _limited(spec, command, fd, base, True, cgroup))
    unshare = shutil.which("unshare", path=_SYSTEM_PATH)
    if unshare is None:
        return Errored("cannot isolate the script: `unshare` (util-linux) is not installed")
    command = [unshare, *_UNSHARE_FLAGS, "--", sys.executable, "-I", "-S", str(_SANDBOX)]
    return _opened(spec, root, lambda fd, base: _limited(spec, command, fd, base, overlay, cgroup))


def _opened(
    spec: CustomCheckSpec, root: str | bytes, run: Callable[[int, str], CheckResult]
) -> CheckResult:
    """`run(root_fd, work_directory)`, with both made here and always removed."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        return Errored(f"cannot open the root {os.fsdecode(root)}: {error.strerror}")
    try:
        base = tempfile.mkdtemp(prefix="scan-root-check-")
    except OSError as error:
        os.close(root_fd)
        return Errored(f"cannot make the sandbox's work directory: {error}")
    try:
        return run(root_fd, base)
    finally:
        os.close(root_fd)
        # Only empty mount points were ever on disk: the namespace's tmpfs is gone with it.
        shutil.rmtree(base)


def _limited(
    spec: CustomCheckSpec,
    command: list[str],
    root_fd: int,
    base: str,
    overlay: bool,
    cgroup: bool,
) -> CheckResult:
    """Run in a cgroup with the spec's limits when there can be one, else with the fallback's."""
    memory = spec.memory_mib << 20
    try:
        if not cgroup:
            raise CgroupUnavailable("not asked for")
        group = Cgroup.create(_cgroup.find_parent(), memory, spec.processes)
    except CgroupUnavailable as error:
        result = _run(spec, command, root_fd, base, overlay, -1)
        if isinstance(result, Errored) and not result.limits:
            return result
        # Why the weaker limits: the reader of the report should not have to guess.
        return replace(result, limits=f"{result.limits}; cgroup v2 not used: {error}")
    try:
        procs = group.open_procs()
    except OSError as error:
        problem = group.remove()
        return Errored(
            f"cannot open its cgroup: {error.strerror}" + (f"; {problem}" if problem else "")
        )
    try:
        result = _run(spec, command, root_fd, base, overlay, procs)
    finally:
        os.close(procs)
        try:
            oom_kills, refused_forks = group.events()
        except (OSError, ValueError) as error:
            oom_kills = refused_forks = 0
            unread = f"cannot read its cgroup's events: {error}"
        else:
            unread = ""
        problem = "; ".join(text for text in (unread, group.remove()) if text)
    output, seconds, limits = result.output, result.seconds, result.limits
    if oom_kills:
        return Errored(
            f"ran out of memory: {oom_kills} process(es) killed at its limit of "
            f"{spec.memory_mib} MiB",
            output,
            seconds,
            limits,
        )
    if refused_forks:
        return Errored(
            f"reached its limit of {spec.processes} processes: {refused_forks} fork(s) refused",
            output,
            seconds,
            limits,
        )
    if problem:
        return Errored(problem, output, seconds, limits)
    return result


def _arguments(
    command: list[str],
    spec: CustomCheckSpec,
    base: str,
    root_fd: int,
    status_fd: int,
    overlay: bool,
    cgroup_fd: int,
    uid: int,
) -> list[str]:
    """The sandbox's command line (its two modes take their arguments in _sandbox.py's order)."""
    memory, processes = str(spec.memory_mib << 20), str(spec.processes)
    if command[-1] == "--chroot":
        return [*command, str(root_fd), str(status_fd), memory, processes, str(cgroup_fd), str(uid)]
    mode = "overlay" if overlay else "read-only"
    return [*command, base, str(root_fd), str(status_fd), mode, memory, processes, str(cgroup_fd)]


def _run(
    spec: CustomCheckSpec,
    command: list[str],
    root_fd: int,
    base: str,
    overlay: bool,
    cgroup_fd: int,
) -> RanResult:
    status_read, status_write = os.pipe()
    output_read, output_write = os.pipe()
    started = time.monotonic()
    passed = (root_fd, status_write) if cgroup_fd < 0 else (root_fd, status_write, cgroup_fd)
    # The chrooted script's uid: its own, so that RLIMIT_NPROC counts its processes alone, it
    # can signal nothing else, and whatever it leaves running is found and killed by uid.
    uid = CHROOT_UIDS[0] + secrets.randbelow(CHROOT_UIDS[1] - CHROOT_UIDS[0])
    try:
        process = subprocess.Popen(
            _arguments(command, spec, base, root_fd, status_write, overlay, cgroup_fd, uid),
            stdin=subprocess.PIPE,
            stdout=output_write,
            stderr=output_write,
            env={"PATH": _SYSTEM_PATH, "LANG": "C"},
            start_new_session=True,  # its own process group, killed whole on timeout
            pass_fds=passed,
        )
    except OSError as error:
        for fd in (status_read, status_write, output_read, output_write):
            os.close(fd)
        return Errored(f"cannot start the sandbox: {error}")
    os.close(status_write)
    os.close(output_write)
    try:
        return _collect(spec, process, status_read, output_read, started)
    finally:
        if process.returncode is None:
            _kill(process)
        if command[-1] == "--chroot":
            _kill_uid(uid)
        if process.stdin is not None:
            process.stdin.close()
        os.close(status_read)
        os.close(output_read)


def _collect(
    spec: CustomCheckSpec,
    process: subprocess.Popen[bytes],
    status_fd: int,
    output_fd: int,
    started: float,
) -> RanResult:
    assert process.stdin is not None
    script = memoryview(spec.script)
    os.set_blocking(process.stdin.fileno(), False)  # nothing here may block past the deadline
    deadline = started + spec.timeout
    kept = bytearray()
    dropped = 0
    status = bytearray()
    selector = selectors.DefaultSelector()
    selector.register(process.stdin, selectors.EVENT_WRITE, "script")
    selector.register(output_fd, selectors.EVENT_READ, "output")
    selector.register(status_fd, selectors.EVENT_READ, "status")
    timed_out = False
    with selector:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _events in selector.select(remaining):
                if key.data == "script":
                    try:
                        script = script[os.write(key.fd, script[: 1 << 16]) :]
                    except BrokenPipeError:
                        script = script[:0]  # the sandbox died: its status (or silence) says why
                    if not script:
                        selector.unregister(key.fileobj)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.data == "output":
                    room = OUTPUT_LIMIT - len(kept)
                    kept += chunk[:room]
                    dropped += max(0, len(chunk) - room)
                elif len(status) < _STATUS_LIMIT:
                    status += chunk
    seconds = time.monotonic() - started
    output = _clean(bytes(kept), dropped)
    if timed_out:
        _kill(process)
        return Errored(
            f"timed out after {spec.timeout:g} s (the sandbox was killed)",
            output,
            seconds,
            _limits(status.decode("utf-8", "backslashreplace")),
        )
    try:
        # Both pipes are closed: PID 1 is gone, so unshare is only exiting.
        process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
    return _verdict(status.decode("utf-8", "backslashreplace"), output, seconds, process.returncode)


def _limits(status: str) -> str:
    """The limits the sandbox said it set, "" before it said so."""
    for line in status.splitlines():
        word, _, rest = line.partition(" ")
        if word == "limits":
            return rest
    return ""


def _verdict(status: str, output: str, seconds: float, returncode: int) -> RanResult:
    """Turn the sandbox's status lines into a result; silence or a setup error is an error."""
    isolation = ""
    limits = _limits(status)
    for line in status.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ready":
            isolation = rest
        elif word == "error":
            return Errored(rest, output, seconds, limits if isolation else "")
        elif word == "signal":
            return Errored(f"killed by signal {rest}", output, seconds, limits)
        elif word == "exit":
            code = int(rest)
            if not isolation or not limits:
                break  # a status before the sandbox said it was ready: not trusted
            if code == 0:
                return Passed(output, isolation, seconds, limits)
            if code == 1:
                return Failed(output, isolation, seconds, limits)
            return Errored(f"exited with status {code}", output, seconds, limits)
    # unshare's own complaint (no CAP_SYS_ADMIN, no namespaces...) is the last line it wrote.
    said = output.splitlines()[-1] if output else f"unshare exited with status {returncode}"
    if isolation and limits:
        # The script ran: what it printed is the output, not a reason the sandbox gives.
        return Errored(
            f"the sandbox ended without saying how the script ended (unshare's status "
            f"{returncode})",
            output,
            seconds,
            limits,
        )
    return Errored(
        f"the sandbox could not be built, the script did not run: {said}", output, seconds
    )
