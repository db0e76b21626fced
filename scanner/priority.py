"""--nice: the lowest CPU priority (nice 19) and the idle I/O class, best-effort, for this process."""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["IOPRIO_CLASS_IDLE", "lower_priority", "set_idle_io"]

# linux/ioprio.h: ioprio_set(IOPRIO_WHO_PROCESS, 0 = the calling thread, class << 13 | data).
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_IDLE = 3
# ioprio_set's syscall number per architecture (arch/x86/entry/syscalls/syscall_64.tbl: 251;
# include/uapi/asm-generic/unistd.h, used by arm64: 30).
_IOPRIO_SET = {"x86_64": 251, "amd64": 251, "aarch64": 30, "arm64": 30}


def set_idle_io() -> str | None:
    """Put this thread (and the threads it starts afterwards) in the idle I/O class.

    None on success, else why not. Idle means: served only when no other process wants the
    disk, and only by schedulers that implement classes (BFQ; "none" and mq-deadline, common on
    virtual and NVMe disks, ignore I/O priorities, so there this changes nothing).
    """
    number = _IOPRIO_SET.get(platform.machine().lower())
    if number is None:
        return f"ioprio_set: no syscall number known for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) != 0:
        code = ctypes.get_errno()
        return f"ioprio_set (idle I/O class) refused: {os.strerror(code)}"
    return None


def lower_priority() -> list[str]:
    """nice 19 and the idle I/O class for the scan; what could not be done, as messages.

    Both are per-thread attributes on Linux that new threads inherit, so this must run before
    the scan starts its worker threads (hash_files starts them per call). Lowering is always
    allowed without privileges; it can still be refused (seccomp, an unknown architecture), and
    it cannot be undone without CAP_SYS_NICE, which is why a library caller must ask for it.
    """
    failed = []
    try:
        os.nice(19 - os.nice(0))  # to 19 whatever the current niceness; never raises it
    except OSError as error:
        failed.append(f"nice 19 refused: {error.strerror}")
    refused = set_idle_io()
    if refused is not None:
        failed.append(refused)
    return failed
