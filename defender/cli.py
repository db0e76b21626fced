"""`scan-root defend`: the sidecar's loop (scan the task, spool, deliver, sleep), and its health."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _native.cpus import cpu_quota
from scanner.atomic import write_atomically
from scanner.terminate import Terminated, terminating

from .cycle import Defender, DefenderSettings
from .delivery import Backoff, ConsoleClient, flush
from .policy_cache import PolicyCache
from .spool import DEFAULT_MAX_BYTES, Spool, SpoolError
from .vulndb_cache import AdvisoryCache

__all__ = ["main"]

log = logging.getLogger("scan-root.defend")

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
CONSOLE_ENV = "SCAN_ROOT_CONSOLE"
TOKEN_ENV = "SCAN_ROOT_TOKEN"
HEARTBEAT = "last-cycle.json"
DEFAULT_INTERVAL = 3600.0
MAX_TOKEN_BYTES = 4096
# How long one flush may go on before the loop looks at the clock again.
FLUSH_SLICE = 60.0
# --once: attempts before the reports are left in the spool for the next run.
ONCE_TRIES = 3

DESCRIPTION = """\
The defender: runs as a sidecar container of a task (pidMode "task", SYS_PTRACE), scans every
other container of the task through /proc/<pid>/root each --interval, and sends one report per
container to the console (all with the task id as host). Reports wait in --spool while the
console is away and are sent, once each, when it is back. Outside ECS it scans / as a host.
See docs/defender.md."""


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 30m, 1h)") from None
    if not 1 <= value <= 7 * 86400:
        raise argparse.ArgumentTypeError("between 1 s and 7 days")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.01 <= value <= 1024:
        raise argparse.ArgumentTypeError("between 0.01 and 1024 CPUs")
    return value


def _bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = (
        (text[:-1], text[-1].upper()) if text and text[-1].upper() in units else (text, "")
    )
    try:
        value = int(number) * units.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M)") from None
    if value < 1 << 20:
        raise argparse.ArgumentTypeError("at least 1M")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scan-root defend", description=DESCRIPTION)
    p.add_argument("--console", metavar="URL", help=f"the console (default: ${CONSOLE_ENV})")
    p.add_argument("--token-file", metavar="FILE", help=f"the ingest token (default: ${TOKEN_ENV})")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https console")
    p.add_argument(
        "--interval", type=_duration, default=DEFAULT_INTERVAL, help="between cycles (default 1h)"
    )
    p.add_argument("--once", action="store_true", help="one cycle, deliver, exit")
    p.add_argument("--spool", metavar="DIR", default="/var/spool/scan-root")
    p.add_argument("--spool-max-bytes", type=_bytes, default=DEFAULT_MAX_BYTES, metavar="SIZE")
    p.add_argument("--state-dir", metavar="DIR", default="/var/lib/scan-root")
    p.add_argument("--policy-cache", metavar="DIR", default="/var/cache/scan-root")
    p.add_argument(
        "--max-cpu",
        type=_fraction,
        metavar="CPUS",
        help="CPU time / wall time of a cycle (default: this container's cgroup quota)",
    )
    p.add_argument(
        "--vulndb",
        metavar="PATH",
        help="match each container's packages against this advisory database "
        "(`scan-root vulndb import`); a database that cannot be read is a problem in each report",
    )
    p.add_argument("--host-root", default="/", help=argparse.SUPPRESS)
    p.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 when the last cycle finished within two intervals (an ECS healthCheck)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.healthcheck:
        return healthcheck(Path(args.state_dir))
    try:
        client = _client(args)
    except (OSError, ValueError) as error:
        print(f"scan-root defend: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        spool = Spool(args.spool, args.spool_max_bytes)
        policies = PolicyCache(client, args.policy_cache)
        advisories = AdvisoryCache(client, args.policy_cache, args.vulndb)
    except (OSError, ValueError, SpoolError) as error:
        print(f"scan-root defend: {error}", file=sys.stderr)
        return EXIT_USAGE
    max_cpu = args.max_cpu if args.max_cpu is not None else cpu_quota()
    settings = DefenderSettings(
        state_dir=Path(args.state_dir),
        max_cpu=max_cpu,
        host_root=args.host_root,
        vulndb=args.vulndb,
    )
    defender = Defender(settings, spool)
    try:
        with terminating():
            return _run(args, defender, spool, policies, advisories, client)
    except Terminated as stopped:
        # Every report is on disk the moment it is made (fsynced): nothing to flush but logs.
        log.info("stopped by %s; %d report(s) wait in the spool", stopped, len(spool.pending()))
        return 128 + stopped.signum


def _client(args: argparse.Namespace) -> ConsoleClient | None:
    url = args.console or os.environ.get(CONSOLE_ENV)
    if not url:
        if args.once:
            return None  # a one-off scan into the spool, with no console to send it to
        raise ValueError(f"no console: --console URL or ${CONSOLE_ENV}")
    if args.token_file:
        # O_NONBLOCK: a FIFO given as the token file must not hang the sidecar at start (it
        # reads as empty: "no token"); the read is bounded for /dev/zero.
        fd = os.open(args.token_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            token = (handle.read(MAX_TOKEN_BYTES) or b"").decode("ascii", "replace").strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"no token: ${TOKEN_ENV} or --token-file FILE")
    return ConsoleClient(url, token, ca_file=args.ca_file)


def _run(
    args: argparse.Namespace,
    defender: Defender,
    spool: Spool,
    policies: PolicyCache,
    advisories: AdvisoryCache,
    client: ConsoleClient | None,
) -> int:
    backoff = Backoff()
    while True:
        result = defender.cycle(policies.refresh(), advisories=advisories.refresh())
        log.info(
            "cycle: %d container(s), %d report(s), %.1f s, %.1f CPU-s",
            result.containers,
            len(result.reports),
            result.seconds,
            result.cpu_seconds,
        )
        _beat(Path(args.state_dir), args.interval, result.seconds)
        next_cycle = time.monotonic() + args.interval
        if client is not None:
            _deliver(spool, client, backoff, until=next_cycle, tries=ONCE_TRIES if args.once else 0)
        if args.once:
            return EXIT_OK
        time.sleep(max(0.0, next_cycle - time.monotonic()))


def _deliver(
    spool: Spool, client: ConsoleClient, backoff: Backoff, *, until: float, tries: int
) -> None:
    """Flush the spool, backing off while the console is away, until `until` (the next
    cycle) or, with `tries`, that many failed attempts; what is not sent stays spooled."""
    failures = 0
    while True:
        reply = flush(spool, client, deadline=time.monotonic() + FLUSH_SLICE)
        if reply is None:
            backoff.succeeded()
            return
        failures += 1
        delay = backoff.failed(reply.retry_after)
        if (tries and failures >= tries) or time.monotonic() + delay >= until:
            log.warning("%d report(s) wait in the spool: %s", len(spool.pending()), reply.reason)
            return
        time.sleep(delay)


def _beat(state_dir: Path, interval: float, seconds: float) -> None:
    document = {"finished": time.time(), "interval": interval, "seconds": seconds}
    try:
        write_atomically(str(state_dir / HEARTBEAT), json.dumps(document).encode())
    except OSError as error:
        log.error("cannot write the heartbeat: %s", error.strerror)


def healthcheck(state_dir: Path, now: float | None = None) -> int:
    """0 when the last cycle finished within two intervals; 1 (unhealthy) otherwise."""
    try:
        document = json.loads((state_dir / HEARTBEAT).read_bytes()[:4096])
        finished, interval = float(document["finished"]), float(document["interval"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"unhealthy: no finished cycle ({type(error).__name__})", file=sys.stderr)
        return EXIT_UNHEALTHY
    age = (time.time() if now is None else now) - finished
    if age > 2 * interval:
        print(f"unhealthy: the last cycle finished {age:.0f} s ago", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"healthy: the last cycle finished {age:.0f} s ago")
    return EXIT_OK
