"""One defender cycle: every container of the task scanned, one report each, into the spool."""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import _native
from _native.throttle import CpuBudget
from scanner import Problem, ProblemKind, Report, Scanner
from scanner.errors import ScannerError
from scanner.targets.ecs import (
    METADATA_ENV,
    ContainerInfo,
    TaskIdentity,
    container_at,
    read_task_metadata,
)
from scanner.version import __version__

from .capping import cap_report
from .discovery import ContainerProcess, cgroup_names, find_processes, same_process
from .policy_cache import PolicyState
from .spool import Spool
from .vulndb_cache import AdvisoryState

__all__ = ["CycleResult", "Defender", "DefenderSettings"]

log = logging.getLogger(__name__)

# Containers the agent lists that are not the application's: the pause container of an awsvpc
# task (Type CNI_PAUSE on EC2; Fargate leaves it out of the document).
APP_TYPE = "NORMAL"
PAUSE_PREFIX = "~internal~ecs~pause"
# A process's metadata URI is asked for its DockerId only when it points at our own agent; at
# most this many distinct ones a cycle (a process may set any URI it likes).
MAX_URIS = 32


@dataclass(frozen=True, slots=True)
class DefenderSettings:
    state_dir: Path  # rescans' state files, one per container
    max_cpu: float | None = None  # CPU time / wall time of a cycle (None: unbounded)
    nice: bool = True
    proc: str = "/proc"
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Outside ECS the defender scans this root as a host (tests point it at a directory).
    host_root: str = "/"
    # The advisory database each container's packages are matched against (baked into the
    # defender's image or mounted; `scan-root vulndb import`); None: no vulnerabilities.
    vulndb: str | None = None


@dataclass(slots=True)
class CycleResult:
    reports: list[str] = field(default_factory=list)  # scan ids spooled this cycle
    containers: int = 0
    unscanned: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0


class Defender:
    """Keeps one scan session per container (so a quiet rescan costs a walk) and runs cycles."""

    def __init__(self, settings: DefenderSettings, spool: Spool) -> None:
        self.settings = settings
        self.spool = spool
        self._sessions: dict[str, Scanner] = {}
        self._vulndb = settings.vulndb
        self._cycles = 0
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def cycle(
        self,
        policy: PolicyState,
        stop: Callable[[], bool] = lambda: False,
        advisories: AdvisoryState | None = None,
    ) -> CycleResult:
        """Scan every container once (or `host_root` outside ECS); reports go to the spool.
        `advisories` (the console's database, fetched) wins over settings.vulndb."""
        if advisories is not None:
            self._vulndb = advisories.path
        started, cpu_started = time.monotonic(), time.process_time()
        budget = self._budget()
        result = CycleResult()
        identity, metadata_problems = read_task_metadata(self.settings.environ)
        extra = [Problem(ProblemKind.POLICY, message) for message in policy.problems]
        extra += [Problem(ProblemKind.TASK_METADATA, message) for message in metadata_problems]
        if advisories is not None:
            # Without a database nothing is matched (the report has no `vulnerabilities`: the
            # console shows "unknown"); with the cached one, what it matched stands.
            kind = ProblemKind.ADVISORIES if advisories.path else ProblemKind.VULNERABILITIES
            extra += [Problem(kind, message) for message in advisories.problems]
        if identity is None:
            host = socket.gethostname()
            report = self._scan("host", self.settings.host_root, None, policy, budget, host)
            self._spool(report, extra, result)
        else:
            targets = self._app_containers(identity)
            result.containers = len(targets)
            discovery = find_processes(
                [container.docker_id for container in targets],
                resolve_uri=self._uri_resolver(),
                proc=self.settings.proc,
            )
            for container in targets:
                if stop():
                    break
                process = discovery.found.get(container.docker_id)
                if process is None:
                    result.unscanned += 1
                    report = _unscanned(identity, container, discovery.problems)
                else:
                    report = self._scan_container(identity, container, process, policy, budget)
                self._spool(report, extra, result)
            # Sessions of containers gone from the task are dropped with what they kept.
            for gone in set(self._sessions) - {c.docker_id for c in targets} - {"host"}:
                del self._sessions[gone]
        if budget is not None:
            budget.pace()
        result.seconds = time.monotonic() - started
        result.cpu_seconds = time.process_time() - cpu_started
        return result

    def _budget(self) -> CpuBudget | None:
        fraction = self.settings.max_cpu
        if fraction is None:
            return None
        if self._cycles == 0:
            # The first cycle counts the interpreter's start and imports too: what the task's
            # quota sees of a `--once` run is the whole process.
            self._cycles += 1
            return CpuBudget.since_process_start(fraction)
        self._cycles += 1
        return CpuBudget.start(fraction)

    def _app_containers(self, identity: TaskIdentity) -> list[ContainerInfo]:
        own = identity.container.docker_id if identity.container is not None else None
        if own is None:
            # The endpoint did not say which container we are: our own cgroup does.
            try:
                with open(f"{self.settings.proc}/self/cgroup", "rb") as handle:
                    names = cgroup_names(handle.read(64 * 1024))
            except OSError:
                names = set()
            own = next((c.docker_id for c in identity.containers if c.docker_id in names), None)
        return [
            container
            for container in identity.containers
            if container.docker_id != own
            and container.container_type in (None, APP_TYPE)
            and not container.name.startswith(PAUSE_PREFIX)
        ]

    def _uri_resolver(self) -> Callable[[str], str | None]:
        ours = urllib.parse.urlsplit(self.settings.environ.get(METADATA_ENV, ""))
        asked = 0

        def resolve(uri: str) -> str | None:
            nonlocal asked
            try:
                theirs = urllib.parse.urlsplit(uri)
            except ValueError:
                # A process's environment is the container's to write: "http://[::1" made
                # urlsplit raise and the whole cycle with it (tests/test_defender_adversary.py).
                return None
            if not ours.netloc or (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
                return None  # never a request to where a process's environment points
            if asked >= MAX_URIS:
                return None
            asked += 1
            container = container_at(uri)
            return None if container is None else container.docker_id

        return resolve

    def _scan_container(
        self,
        identity: TaskIdentity,
        container: ContainerInfo,
        process: ContainerProcess,
        policy: PolicyState,
        budget: CpuBudget | None,
    ) -> Report:
        root = f"{self.settings.proc}/{process.pid}/root"
        report = self._scan(container.docker_id, root, process.pid, policy, budget, identity.host)
        report.target_kind = "task"
        report.target_details["container"] = container.to_dict()
        report.target_details.setdefault("host", identity.host)
        if not same_process(process, self.settings.proc):
            # The pid may now be another process's: what was read may not be this container's.
            report.problems.append(
                Problem(
                    ProblemKind.CONTAINER,
                    f"container {container.name}: its process {process.pid} exited during the "
                    "scan; the results may be partial",
                )
            )
        return report

    def _scan(
        self,
        key: str,
        root: str,
        pid: int | None,
        policy: PolicyState,
        budget: CpuBudget | None,
        host: str,
    ) -> Report:
        session = self._sessions.setdefault(key, Scanner())
        state = self.settings.state_dir / f"{_safe(key)}.state"
        try:
            return session.scan_root(
                root,
                policy=policy.policy,
                process_pid=pid,
                process_env=pid is not None or root == "/",
                state=str(state),
                rescan="stat",
                max_cpu=budget,
                nice=self.settings.nice,
                vulndb=self._vulndb,
            )
        except ScannerError as error:
            # The root could not be opened at all (the container went away): said, not raised.
            report = _empty_report(root, host)
            report.problems.append(Problem(ProblemKind.CONTAINER, f"{root}: {error}"))
            return report

    def _spool(self, report: Report, extra: Iterable[Problem], result: CycleResult) -> None:
        losses, mark = self.spool.take_losses()
        report.problems.extend(extra)
        report.problems.extend(Problem(ProblemKind.DELIVERY, message) for message in losses)
        body = cap_report(report)
        try:
            self.spool.put(report.scan_id, body)
        except ValueError as error:
            log.error("report %s not spooled: %s", report.scan_id, error)
            return
        except OSError as error:
            # A full disk (ENOSPC) or a spool someone else broke: the report is lost, so it is
            # said in the log and kept among the losses for the next report, not a traceback.
            log.error("report %s not spooled: %s", report.scan_id, error.strerror or error)
            self.spool.lost(report.scan_id)
            return
        self.spool.commit_losses(mark)
        result.reports.append(report.scan_id)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:128]


def _empty_report(root: str, host: str) -> Report:
    return Report(
        root=root,
        scanner_version=__version__,
        implementation=_native.IMPLEMENTATION,
        checks=(),
        target_details={"host": host},
    )


def _unscanned(identity: TaskIdentity, container: ContainerInfo, problems: list[str]) -> Report:
    """The report of a container not scanned: its problem, so the console shows it unverified."""
    report = _empty_report(f"container:{container.name}", identity.host)
    report.target_kind = "task"
    report.target_details["task"] = identity.task_dict()
    report.target_details["container"] = container.to_dict()
    said = [message for message in problems if container.docker_id in message]
    report.problems.extend(
        Problem(ProblemKind.CONTAINER, f"container {container.name}: {message}")
        for message in said or ["no process found"]
    )
    return report
