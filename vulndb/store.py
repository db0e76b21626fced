"""The local advisory database: one SQLite file, imported into incrementally, read to match."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .managers import manager_of
from .records import Advisory, Distro, Ecosystem, Range, Severity, SourceKind
from .versions import InvalidVersion, Manager, sort_key

__all__ = [
    "Asked",
    "Hit",
    "ImportResult",
    "SourceStatus",
    "StoreError",
    "StoredAdvisory",
    "VulnDB",
    "default_path",
]

SCHEMA_VERSION = 2
# A stored row is ours, but the file may not be: `--vulndb` can name a file someone else wrote.
# Every value read back is bounded before it is decoded (a real row is a few hundred bytes).
MAX_ROW_TEXT = 1 << 20
MAX_RANGES = 4096
# Debian's OSV DSAs list every upstream CVE they fix among the aliases: a Chromium DSA
# names dozens, so the bound is the ranges' one, not a few.
MAX_ALIASES = 4096

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    newest TEXT,
    UNIQUE (kind, label)
);
-- One row per (advisory, ecosystem, package): the unit an import replaces when it changed.
CREATE TABLE units (
    id INTEGER PRIMARY KEY,
    distro TEXT NOT NULL,
    release TEXT NOT NULL,
    package TEXT NOT NULL,
    kind TEXT NOT NULL,
    advisory TEXT NOT NULL,
    source_id INTEGER NOT NULL REFERENCES sources (id),
    digest TEXT NOT NULL,
    aliases TEXT NOT NULL,
    summary TEXT NOT NULL,
    severity INTEGER NOT NULL,
    cvss_vector TEXT,
    cvss_score REAL,
    modified TEXT,
    ranges TEXT NOT NULL,
    versions TEXT NOT NULL,
    UNIQUE (distro, release, package, kind, advisory)
);
CREATE INDEX units_source ON units (source_id);
-- Each range of a unit with its bounds as sort keys (vulndb.versions.sort_key): a match
-- compares bytes. `keyed` 0: some bound has no key (apk, or a version its manager refuses),
-- or the unit lists exact versions, and compare() decides. A unit without ranges has one
-- unkeyed row, so that every unit is found through this table alone.
CREATE TABLE spans (
    unit INTEGER NOT NULL REFERENCES units (id),
    keyed INTEGER NOT NULL,
    introduced BLOB,
    fixed BLOB,
    last_affected BLOB,
    limit_key BLOB,
    fixed_text TEXT
);
CREATE INDEX spans_unit ON spans (unit);
"""


class StoreError(Exception):
    """The database cannot be used (absent, not ours, another schema); the message says why."""


@dataclass(frozen=True, slots=True)
class Asked:
    """One name a root's package goes by, and the sort key of its version (None: none)."""

    name: str
    index: int  # the caller's, handed back in each Hit
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Hit:
    """A stored range that applies to an asked package (`decided`: its keys said so, and
    `fixed` is its fix), or that keys could not judge (compare() must)."""

    unit: int
    index: int
    fixed: str | None
    decided: bool


@dataclass(frozen=True, slots=True)
class StoredAdvisory:
    """One advisory as it applies to one package of one ecosystem, read back for matching."""

    unit: int
    kind: SourceKind
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    cvss_vector: str | None
    cvss_score: float | None
    ecosystem: Ecosystem
    package: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    source_label: str
    source_date: str | None  # the newest `modified` of its import, else the import's time


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did: units added, replaced (changed), unchanged, and advisories read."""

    label: str
    kind: SourceKind | None
    advisories: int
    added: int
    replaced: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One imported source as `scan-root vulndb status` lists it."""

    kind: str
    label: str
    imported_at: str
    newest: str | None
    units: int


def default_path() -> Path:
    """$SCAN_ROOT_VULNDB, else $XDG_CACHE_HOME/scan-root/vulndb.sqlite (~/.cache by default)."""
    explicit = os.environ.get("SCAN_ROOT_VULNDB")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "scan-root" / "vulndb.sqlite"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VulnDB:
    """An open advisory database. `open_read` for matching (read-only, never created);
    `open_write` for imports (created when absent). Use as a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open_read(cls, path: str | os.PathLike[str]) -> VulnDB:
        target = Path(path)
        _require_regular(target)
        try:
            connection = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as error:
            raise StoreError(f"{target}: cannot open: {error}") from error
        return cls._checked(connection, target, writable=False)

    @classmethod
    def open_write(cls, path: str | os.PathLike[str]) -> VulnDB:
        target = Path(path)
        if target.exists() or target.is_symlink():
            _require_regular(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            connection = sqlite3.connect(target)
        except sqlite3.Error as error:
            raise StoreError(f"{target}: cannot open: {error}") from error
        return cls._checked(connection, target, writable=True)

    @classmethod
    def _checked(cls, connection: sqlite3.Connection, path: Path, *, writable: bool) -> VulnDB:
        try:
            # A file we did not write must not run code through its schema (triggers, views
            # calling functions) nor change ours: trusted_schema off, and reads are query-only.
            connection.execute("PRAGMA trusted_schema = OFF")
            if not writable:
                connection.execute("PRAGMA query_only = ON")
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables and writable:
                connection.executescript(_SCHEMA)
                connection.execute(
                    "INSERT INTO meta VALUES ('schema', ?), ('created', ?)",
                    (str(SCHEMA_VERSION), _now()),
                )
                connection.commit()
                tables = {"meta", "sources", "units"}
            if not {"meta", "sources", "units"} <= tables:
                raise StoreError(f"{path}: not a scan-root advisory database")
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{path}: advisory database schema {row[0] if row else 'unknown'!s:.20}, "
                    f"this scan-root reads {SCHEMA_VERSION}: import the sources again"
                )
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StoreError(f"{path}: not a usable SQLite database: {error}") from error
        except StoreError:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VulnDB:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- importing -----------------------------------------------------------------------

    def import_advisories(
        self, advisories: Iterable[Advisory], *, label: str, kind: SourceKind | None = None
    ) -> ImportResult:
        """Store every advisory of one source in one transaction: a unit (advisory, ecosystem,
        package) whose content changed is replaced, an identical one left alone. Nothing is
        stored when reading the source fails part way (the caller's error propagates)."""
        units: dict[tuple[str, str, str, str, str], _Unit] = {}
        count = 0
        newest: str | None = None
        seen_kind = kind
        for advisory in advisories:
            count += 1
            seen_kind = seen_kind or advisory.source
            if advisory.modified and (newest is None or advisory.modified > newest):
                newest = advisory.modified
            for affected in advisory.affected:
                if affected.ecosystem.distro is Distro.OTHER:
                    continue  # language ecosystems: no distro matcher reads them
                key = (
                    affected.ecosystem.distro.value,
                    affected.ecosystem.release,
                    affected.package,
                    advisory.source.value,
                    advisory.id,
                )
                unit = units.get(key)
                if unit is None:
                    units[key] = _Unit(
                        advisory,
                        list(affected.ranges),
                        list(affected.versions),
                        manager_of(affected.ecosystem.distro),
                    )
                else:  # one advisory naming a package twice (rpm errata: once per arch)
                    unit.ranges.extend(r for r in affected.ranges if r not in unit.ranges)
                    unit.versions.extend(v for v in affected.versions if v not in unit.versions)
        kind_text = seen_kind.value if seen_kind is not None else "unknown"
        added = replaced = unchanged = 0
        with self._db:
            self._db.execute(
                "INSERT INTO sources (kind, label, imported_at, newest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, label) DO UPDATE SET imported_at = excluded.imported_at, "
                "newest = coalesce(excluded.newest, sources.newest)",
                (kind_text, label, _now(), newest),
            )
            (source_id,) = self._db.execute(
                "SELECT id FROM sources WHERE kind = ? AND label = ?", (kind_text, label)
            ).fetchone()
            for key, unit in units.items():
                row = unit.row()
                # What reading refuses must not be stored: one oversized unit would make every
                # later match of its ecosystem fail (the whole import is rolled back instead).
                _check_fits(key, unit, row)
                digest = hashlib.sha256(json.dumps(row).encode()).hexdigest()
                old = self._db.execute(
                    "SELECT digest, id FROM units WHERE distro = ? AND release = ? AND package = ? "
                    "AND kind = ? AND advisory = ?",
                    key,
                ).fetchone()
                if old is not None and old[0] == digest:
                    unchanged += 1
                    continue
                if old is None:
                    added += 1
                else:
                    replaced += 1
                    self._db.execute("DELETE FROM spans WHERE unit = ?", (old[1],))
                    self._db.execute("DELETE FROM units WHERE id = ?", (old[1],))
                cursor = self._db.execute(
                    "INSERT INTO units (distro, release, package, kind, advisory, "
                    "source_id, digest, aliases, summary, severity, cvss_vector, cvss_score, "
                    "modified, ranges, versions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*key, source_id, digest, *row),
                )
                spans = [
                    _span_keys(unit.manager, r, exact=bool(unit.versions)) for r in unit.ranges
                ]
                self._db.executemany(
                    "INSERT INTO spans (unit, keyed, introduced, fixed, last_affected, "
                    "limit_key, fixed_text) VALUES (?,?,?,?,?,?,?)",
                    [(cursor.lastrowid, *span) for span in spans or [_UNKEYED]],
                )
        return ImportResult(label, seen_kind, count, added, replaced, unchanged)

    # -- reading -------------------------------------------------------------------------

    def ecosystems(self) -> dict[Ecosystem, int]:
        """Every (distro, release) the database holds advisories for, with its unit count."""
        out: dict[Ecosystem, int] = {}
        for distro, release, count in self._db.execute(
            "SELECT distro, release, count(*) FROM units GROUP BY distro, release"
        ):
            parsed = _distro(distro)
            if parsed is not None and isinstance(release, str):
                out[Ecosystem(parsed, release)] = int(count)
        return out

    def has(self, ecosystem: Ecosystem) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM units WHERE distro = ? AND release = ? LIMIT 1",
            (ecosystem.distro.value, ecosystem.release),
        ).fetchone()
        return row is not None

    def advisories_for(
        self, ecosystem: Ecosystem, packages: Sequence[str]
    ) -> Iterator[StoredAdvisory]:
        """Every stored advisory naming one of `packages` in `ecosystem`."""
        asked = [Asked(name, 0, None) for name in sorted(set(packages))]
        return self.advisories(ecosystem, sorted({hit.unit for hit in self.hits(ecosystem, asked)}))

    def hits(self, ecosystem: Ecosystem, asked: Sequence[Asked]) -> Iterator[Hit]:
        """The ranges that apply to the asked (name, version key) pairs, compared by SQLite
        on the stored sort keys (memcmp); and, undecided, every range keys cannot judge (no
        key on either side, exact version lists). A range that does not apply never leaves
        the database: most of a root's advisories are fixed in what it runs."""
        for start in range(0, len(asked), 300):  # 3 host parameters each: well under 32766
            chunk = asked[start : start + 300]
            values = ",".join("(?,?,?)" for _ in chunk)
            parameters: list[object] = []
            for item in chunk:
                parameters += [item.name, item.index, item.key]
            # After the VALUES' anonymous parameters, numbered past them.
            distro, release = len(parameters) + 1, len(parameters) + 2
            parameters += [ecosystem.distro.value, ecosystem.release]
            rows = self._db.execute(
                f"WITH asked (name, idx, key) AS (VALUES {values}) "
                "SELECT u.id, a.idx, s.fixed_text, s.keyed = 1 AND a.key IS NOT NULL "
                f"FROM asked a JOIN units u ON u.distro = ?{distro} AND u.release = ?{release} "
                "AND u.package = a.name JOIN spans s ON s.unit = u.id "
                "WHERE NOT (s.keyed = 1 AND a.key IS NOT NULL) OR ("
                "(s.introduced IS NULL OR a.key >= s.introduced) "
                "AND (s.limit_key IS NULL OR a.key < s.limit_key) "
                "AND CASE WHEN s.fixed IS NOT NULL THEN a.key < s.fixed "
                "WHEN s.last_affected IS NOT NULL THEN a.key <= s.last_affected ELSE 1 END)",
                parameters,
            )
            for unit, index, fixed_text, decided in rows:
                if not isinstance(unit, int) or not isinstance(index, int):
                    raise StoreError(f"{self.path}: a stored unit id is not one")
                fixed = _text(fixed_text, "fixed version", self.path, optional=True)
                yield Hit(unit, index, fixed, bool(decided))

    def advisories(self, ecosystem: Ecosystem, ids: Sequence[int]) -> Iterator[StoredAdvisory]:
        """The advisories of these unit ids (spans_for's), read whole and checked."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT u.id, u.kind, u.advisory, u.aliases, u.summary, u.severity, "
                "u.cvss_vector, u.cvss_score, u.package, u.ranges, u.versions, s.label, "
                "s.newest, s.imported_at, u.distro, u.release "
                "FROM units u JOIN sources s ON s.id = u.source_id "
                # By id alone: with the ecosystem too, SQLite scans the ecosystem's index
                # (measured: 15 ms instead of 3 for 500 ids); the ecosystem is checked below.
                f"WHERE u.id IN ({marks})",
                chunk,
            )
            for row in rows:
                if row[-2:] != (ecosystem.distro.value, ecosystem.release):
                    raise StoreError(f"{self.path}: unit {row[0]!r} is not of {ecosystem}")
                yield _stored(row[:-2], ecosystem, self.path)

    def sources(self) -> list[SourceStatus]:
        rows = self._db.execute(
            "SELECT s.kind, s.label, s.imported_at, s.newest, "
            "(SELECT count(*) FROM units u WHERE u.source_id = s.id) "
            "FROM sources s ORDER BY s.imported_at DESC, s.label"
        )
        return [
            SourceStatus(
                str(kind), str(label), str(at), None if newest is None else str(newest), int(units)
            )
            for kind, label, at, newest, units in rows
        ]


@dataclass(slots=True)
class _Unit:
    advisory: Advisory
    ranges: list[Range]
    versions: list[str]
    manager: Manager | None

    def row(self) -> tuple[str, str, int, str | None, float | None, str | None, str, str]:
        a = self.advisory
        ranges = [[r.introduced, r.fixed, r.last_affected, r.limit] for r in self.ranges]
        return (
            json.dumps(list(a.aliases)),
            a.summary,
            int(a.severity),
            a.cvss_vector,
            a.cvss_score,
            a.modified,
            json.dumps(ranges),
            json.dumps(self.versions),
        )


def _check_fits(key: tuple[str, ...], unit: _Unit, row: tuple[object, ...]) -> None:
    counts = (len(unit.advisory.aliases), len(unit.ranges), len(unit.versions))
    texts = (*key, *(v for v in row if isinstance(v, str)))
    if max(counts) > min(MAX_ALIASES, MAX_RANGES) or max(map(len, texts)) > MAX_ROW_TEXT:
        raise StoreError(
            f"advisory {key[-1][:80]!r} for {key[2][:80]!r}: over the stored bounds "
            f"({MAX_ALIASES} aliases, {MAX_RANGES} ranges or versions, {MAX_ROW_TEXT} "
            "characters a field)"
        )


_SpanRow = tuple[int, bytes | None, bytes | None, bytes | None, bytes | None, str | None]
_UNKEYED: _SpanRow = (0, None, None, None, None, None)


def _span_keys(manager: Manager | None, span: Range, *, exact: bool) -> _SpanRow:
    """(keyed, introduced, fixed, last_affected, limit) keys of one range, and its fix; not
    keyed when the unit also lists exact versions (compare() then judges it whole)."""
    bounds = (
        None if span.introduced == "0" else span.introduced,
        span.fixed,
        span.last_affected,
        span.limit,
    )
    keys: list[bytes | None] = []
    keyed = manager is not None and not exact
    for bound in bounds:
        if bound is None or manager is None:
            keys.append(None)
            continue
        try:
            key = sort_key(manager, bound)
        except InvalidVersion:
            key = None  # compare() will say, for the package it is asked about
        keyed = keyed and key is not None
        keys.append(key)
    return (int(keyed), keys[0], keys[1], keys[2], keys[3], span.fixed)


def _require_regular(path: Path) -> None:
    """Only a regular file is a database: a FIFO would stall, a directory or device is not one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise StoreError(
            f"{path}: no advisory database here; `scan-root vulndb import SOURCE` makes one"
        ) from None
    except OSError as error:
        raise StoreError(f"{path}: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path}: not a regular file")


def _distro(value: object) -> Distro | None:
    try:
        return Distro(value)
    except ValueError:
        return None


def _text(value: object, what: str, path: Path, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_ROW_TEXT:
        raise StoreError(f"{path}: a stored {what} is not text of a sane size")
    return value


def _json_list(value: object, what: str, path: Path, bound: int) -> list[object]:
    text = _text(value, what, path)
    try:
        decoded = json.loads(text or "")
    except (ValueError, RecursionError) as error:
        raise StoreError(f"{path}: a stored {what} is not JSON") from error
    if not isinstance(decoded, list) or len(decoded) > bound:
        raise StoreError(f"{path}: a stored {what} is not a list of sane size")
    return decoded


def _strings(values: list[object], what: str, path: Path) -> tuple[str, ...]:
    if not all(isinstance(v, str) and len(v) <= MAX_ROW_TEXT for v in values):
        raise StoreError(f"{path}: a stored {what} holds something other than text")
    return tuple(str(v) for v in values)


def _stored(row: tuple[object, ...], ecosystem: Ecosystem, path: Path) -> StoredAdvisory:
    """A row read back, checked: a database someone else wrote gets a StoreError, not a crash."""
    unit, kind, advisory, aliases, summary, severity, vector, score, package = row[:9]
    ranges_raw, versions_raw, label, newest, imported_at = row[9:]
    if not isinstance(unit, int) or isinstance(unit, bool):
        raise StoreError(f"{path}: a stored unit id is not one")
    try:
        source_kind = SourceKind(kind)
        level = Severity(severity if isinstance(severity, int) else -1)
    except ValueError as error:
        raise StoreError(f"{path}: a stored kind or severity is unknown") from error
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 10
    ):
        raise StoreError(f"{path}: a stored CVSS score is not one")
    ranges: list[Range] = []
    for item in _json_list(ranges_raw, "range list", path, MAX_RANGES):
        if not isinstance(item, list) or len(item) != 4:
            raise StoreError(f"{path}: a stored range is malformed")
        introduced, fixed, last, limit = item
        if not isinstance(introduced, str) or not all(
            v is None or isinstance(v, str) for v in (fixed, last, limit)
        ):
            raise StoreError(f"{path}: a stored range is malformed")
        ranges.append(Range(introduced, fixed, last, limit))
    return StoredAdvisory(
        unit=unit,
        kind=source_kind,
        id=_text(advisory, "advisory id", path) or "",
        aliases=_strings(_json_list(aliases, "alias list", path, MAX_ALIASES), "alias", path),
        summary=_text(summary, "summary", path) or "",
        severity=level,
        cvss_vector=_text(vector, "CVSS vector", path, optional=True),
        cvss_score=None if score is None else float(score),
        ecosystem=ecosystem,
        package=_text(package, "package", path) or "",
        ranges=tuple(ranges),
        versions=_strings(_json_list(versions_raw, "version list", path, MAX_RANGES), "v", path),
        source_label=_text(label, "source label", path) or "",
        source_date=_text(newest, "date", path, optional=True)
        or _text(imported_at, "date", path, optional=True),
    )
