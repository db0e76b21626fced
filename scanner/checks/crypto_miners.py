"""Check 426: binaries used for crypto mining, by name, by known digest, by content markers.

Signals (each named in the finding; any one suffices — see `scanner.miners` for the rules):
  * name: an executable (or a file in an executable location) named like a known miner
    (xmrig, xmr-stak, minerd, cpuminer, kdevtmpfsi, kinsing, t-rex, ...), version suffixes too;
  * digest: its SHA-256 is in the shipped known-miner list or a `--miner-digests FILE`;
  * content: markers from at least two groups (pool protocol, algorithm, miner options/banner)
    in an executable, so that one stray string is not a finding.
The reference Fargate test (`cp /bin/sleep /tmp/xmrig`) is caught by its name.
Why: miners are the most common payload of a compromised container; they burn the task's CPU
and the account's money.
"""

from __future__ import annotations

from collections.abc import Iterator

from _native import Digest, HashResult, HashStatus, WalkEntry

from .. import miners
from ..errors import UsageError
from ..report import Finding, FindingKind, Problem, ProblemKind, Severity
from .base import Hit, ScanContext

__all__ = ["CryptoMinersCheck"]

ID = "426"
# Bump when a change could turn a clean verdict into a finding (or back): rescan states
# (scanner/state.py) recorded under another version are then dropped.
VERSION = 1
TITLE = "Image contains binaries used for crypto mining"
# Its most severe finding: a SARIF rule's default level must not depend on one run's findings.
WORST = Severity.CRITICAL

# Release archives are published with digests; a dropped archive is as telling as the binary.
_ARCHIVES = (b".tar.gz", b".tgz", b".tar.xz", b".tar.bz2", b".zip", b".tar")


class CryptoMinersCheck:
    """Name, digest and content signals for every executable (and archive) of the walk."""

    id = ID
    version = VERSION
    title = TITLE
    worst: Severity | None = WORST
    markers = miners.MARKERS
    capture: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self._digests: miners.DigestList | None = None

    def prepare(self, context: ScanContext) -> Iterator[Finding | Problem]:
        self._digests = miners.default_digests()
        if not context.options.miner_digests:
            return
        try:
            extra = miners.load_digests(*context.options.miner_digests)
        except miners.MinerDigestsError as error:
            raise UsageError(str(error)) from error
        self._digests = self._digests.merged(extra)
        for problem in extra.problems:
            yield Problem(
                kind=ProblemKind.INPUT,
                message=f"{problem.source}: line {problem.line}: {problem.reason}",
            )

    def wants(self, entry: WalkEntry) -> int:
        if miners.in_scope(entry.path, entry.mode):
            return int(Digest.SHA256 | Digest.CONTENT)
        if entry.path.endswith(_ARCHIVES):
            return int(Digest.SHA256)
        return 0

    def judge(
        self, context: ScanContext, entry: WalkEntry, result: HashResult, hits: list[Hit]
    ) -> Iterator[Finding | Problem]:
        sha256 = result.sha256 if result.status is HashStatus.OK else None
        signals = miners.classify(
            entry.path,
            entry.mode,
            sha256,
            {marker for marker, _start in hits},
            self._digests,
        )
        if not signals.flagged:
            return
        extra: dict[str, object] = {"signals": list(signals.signals)}
        if signals.name:
            extra["miner"] = signals.name
        if signals.digest:
            extra["digest_match"] = signals.digest
        if signals.markers:
            extra["markers"] = list(signals.markers)
        if sha256 is not None:
            extra["sha256"] = sha256.hex()
        yield Finding(
            check=ID,
            title=TITLE,
            severity=Severity.CRITICAL
            if len(signals.signals) > 1 or signals.digest
            else Severity.HIGH,
            kind=FindingKind.CRYPTO_MINER,
            path=entry.path,
            package=context.owner(entry.path),
            detail=f"{', '.join(signals.signals)}: {signals.name or signals.digest or ', '.join(signals.markers)}",
            extra=extra,
        )
