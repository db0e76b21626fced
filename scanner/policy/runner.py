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
- A fresh `/proc` (this pid namespace only; kernel knobs masked or read-only as Docker does), a
  read-only `/dev` with only null, zero, full, random, urandom and tty, and a private tmpfs `/tmp`.
- `pivot_root` makes that tree the root and the old root is detached: unlike a chroot there is
  nothing to climb out to. For the live root `/` this is the same files, run directly by the same
  shell; only the writes and the network are taken away.
- The script runs as root with a reduced capability bounding set (no SYS_ADMIN, SYS_CHROOT, MKNOD,
  NET_ADMIN, SYS_MODULE, SYS_PTRACE, ...) and no_new_privs, in a fixed environment (PATH,
  HOME=/root, LANG=C): never the scanner's, which may hold secrets.
- Its shebang picks the interpreter (the target's, since it runs in the target's root); without one
  the target's `/bin/sh` runs it. Exit 0 passes, 1 fails with its output as the cause; any other
  status, a signal or the timeout is an error. On timeout the whole process group is killed, and
  with PID 1 gone the kernel kills everything left in the pid namespace; its mounts vanish with it.
- Output (stdout and stderr together) is read as it comes, at most OUTPUT_LIMIT bytes kept, the
  rest drained and counted, so the scanner never blocks on a chatty script.

Namespaces and mounts need root: when not root every check is Skipped (never a silent pass). In an
ECS/Fargate task, which grants no CAP_SYS_ADMIN, the sandbox cannot be built and each check is an
Errored result naming why.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .model import CustomCheckSpec

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


@dataclass(frozen=True, slots=True)
class Failed:
    """Exit status 1: `output` is the finding's cause."""

    output: str
    isolation: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Errored:
    """Neither pass nor fail: another status, a signal, the timeout, or no sandbox."""

    reason: str
    output: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Skipped:
    """Not run at all (not root)."""

    reason: str


CheckResult = Passed | Failed | Errored | Skipped


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


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the session; the namespace's PID 1 dies with unshare (--kill-child), and with it
    every process the script started, even one that left the process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: nothing left to kill
    process.wait()


def run_custom_check(
    spec: CustomCheckSpec, root: str | bytes, *, overlay: bool = True
) -> CheckResult:
    """Run `spec`'s script against `root` in the sandbox; never raises for what the script does.

    `overlay=False` skips overlayfs for the read-only fallback (what runs when overlayfs cannot).
    """
    if os.geteuid() != 0:
        return Skipped(
            f"custom checks need root to build their sandbox (running as uid {os.geteuid()})"
        )
    unshare = shutil.which("unshare", path=_SYSTEM_PATH)
    if unshare is None:
        return Errored("cannot isolate the script: `unshare` (util-linux) is not installed")
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
        return _run(spec, unshare, root_fd, base, overlay)
    finally:
        os.close(root_fd)
        # Only empty mount points were ever on disk: the namespace's tmpfs is gone with it.
        shutil.rmtree(base)


def _run(
    spec: CustomCheckSpec, unshare: str, root_fd: int, base: str, overlay: bool
) -> CheckResult:
    status_read, status_write = os.pipe()
    output_read, output_write = os.pipe()
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [
                unshare,
                *_UNSHARE_FLAGS,
                "--",
                sys.executable,
                "-I",
                "-S",
                str(_SANDBOX),
                base,
                str(root_fd),
                str(status_write),
                "overlay" if overlay else "read-only",
            ],
            stdin=subprocess.PIPE,
            stdout=output_write,
            stderr=output_write,
            env={"PATH": _SYSTEM_PATH, "LANG": "C"},
            start_new_session=True,  # its own process group, killed whole on timeout
            pass_fds=(root_fd, status_write),
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
) -> CheckResult:
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
            f"timed out after {spec.timeout:g} s (the sandbox was killed)", output, seconds
        )
    try:
        # Both pipes are closed: PID 1 is gone, so unshare is only exiting.
        process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
    return _verdict(status.decode("utf-8", "backslashreplace"), output, seconds, process.returncode)


def _verdict(status: str, output: str, seconds: float, returncode: int) -> CheckResult:
    """Turn the sandbox's status lines into a result; silence or a setup error is an error."""
    isolation = ""
    for line in status.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ready":
            isolation = rest
        elif word == "error":
            return Errored(rest, output, seconds)
        elif word == "signal":
            return Errored(f"killed by signal {rest}", output, seconds)
        elif word == "exit":
            code = int(rest)
            if not isolation:
                break  # a status before the sandbox said it was ready: not trusted
            if code == 0:
                return Passed(output, isolation, seconds)
            if code == 1:
                return Failed(output, isolation, seconds)
            return Errored(f"exited with status {code}", output, seconds)
    # unshare's own complaint (no CAP_SYS_ADMIN, no namespaces...) is the last line it wrote.
    said = output.splitlines()[-1] if output else f"unshare exited with status {returncode}"
    return Errored(
        f"the sandbox could not be built, the script did not run: {said}", output, seconds
    )
