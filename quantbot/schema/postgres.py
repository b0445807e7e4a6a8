"""PostgreSQL schema: numbered SQL migrations applied up and down under a ledger table.

The migrations are the files `migrations/NNNN_<name>.up.sql` and `NNNN_<name>.down.sql` shipped in
this package: 0001 creates the schema document's eleven tables verbatim, 0002 adds the indexes for the
platform's access paths; later numbers extend the schema. The ledger `schema_migrations` holds one row
per applied migration with the checksum of the file that was applied.

Guarantees:

- Each migration runs in its own transaction together with its ledger row, so the database is always
  at a whole version: a failure rolls the one migration back and leaves the earlier ones applied.
- Two processes migrating at once serialise on a transaction-level advisory lock taken before the
  ledger is read; the second one finds the work done and applies nothing.
- An applied migration whose file changed since (its checksum differs) stops every run: the schema in
  the database is no longer what the files describe, and a human must decide.
- `migrate_down(conn, 0)` reverts every migration and then drops the ledger itself, so the database is
  left exactly as it was before the first `migrate_up`.
- No schema is taken away from under a running flow: every flow holds the session-level advisory lock
  `FLOW_LOCK_KEY` in shared mode for its whole run (`hold_flow_lock`), and a destructive change first
  takes it exclusively (`lock_out_flows`), waiting a while for the flows to end and then refusing with
  `SchemaInUseError`, which names them. `migrate_up` does not take it: migrations up are additive
  (new tables, columns, indexes), so a running flow keeps working during and after them, which is what
  lets a new version's schema be applied before the new version's flows are started.

Exceptions::

    MigrationError             the schema cannot be migrated as asked; fatal, never retried
     ├── MigrationFilesError   the packaged migration files are inconsistent (a packaging bug)
     ├── ChecksumMismatchError an applied migration's file was edited after it was applied
     └── LedgerStateError      the ledger holds versions this code does not know, or has holes
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from quantbot.errors import SchemaError, SchemaInUseError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "FLOW_LOCK_KEY",
    "LEDGER_TABLE",
    "MIGRATIONS",
    "MIGRATION_LOCK_KEY",
    "ChecksumMismatchError",
    "LedgerStateError",
    "LockHolder",
    "Migration",
    "MigrationError",
    "MigrationFilesError",
    "MigrationStatus",
    "current_version",
    "flow_lock_holders",
    "hold_flow_lock",
    "latest_version",
    "load_migrations",
    "lock_out_flows",
    "migrate_down",
    "migrate_up",
    "release_flows",
    "status",
]

logger = logging.getLogger(__name__)

LEDGER_TABLE = "schema_migrations"
"""The ledger: one row per applied migration."""

MIGRATION_LOCK_KEY = 429_863_915_954_341_842
"""The advisory-lock key every migration transaction takes before it reads the ledger.

It is the first eight bytes of `sha256(b"quantbot.schema_migrations")` read as a signed big-endian
64-bit integer: derived from a name rather than picked, so it is reproducible, documents itself, and
is vanishingly unlikely to collide with another application's advisory locks on the same server.
"""

FLOW_LOCK_KEY = 3_825_270_974_237_721_471
"""The advisory-lock key running flows hold shared and destructive migrations take exclusively.

The first eight bytes of `sha256(b"quantbot.running_flows")` as a signed big-endian 64-bit integer,
derived like `MIGRATION_LOCK_KEY` and distinct from it: a migration up serialises with other migrations
but not with flows. Advisory locks are per database, as the schema is.
"""

FLOW_LOCK_POLL_S = 0.1
"""How often `lock_out_flows` asks again while flows hold the lock: short beside any wait worth setting,
and a `pg_try_advisory_lock` costs the server next to nothing."""

_32_BITS = 0xFFFF_FFFF

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")

_LEDGER_DDL = """
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


class MigrationError(SchemaError):
    """The schema cannot be migrated as asked; fatal: retrying changes nothing."""


class MigrationFilesError(MigrationError):
    """The packaged migration files are inconsistent: a missing half, a gap, a bad name."""


class ChecksumMismatchError(MigrationError):
    """An applied migration's file differs from the one that was applied."""


class LedgerStateError(MigrationError):
    """The ledger records versions this code does not know, or versions with holes between them."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change with its revert.

    Attributes:
        version: The migration's number, 1 for the first; versions are contiguous.
        name: The file name's descriptive part, e.g. `core_tables`.
        up_sql: The SQL that applies the change.
        down_sql: The SQL that reverts exactly what `up_sql` did.
    """

    version: int
    name: str
    up_sql: str
    down_sql: str

    @property
    def checksum(self) -> str:
        """The sha256 (hex) of `up_sql`: what the ledger records and later runs compare against.

        Only the up file is summed: it alone determines the schema an applied migration produced,
        while a down file may still be corrected before it is ever run.
        """
        return hashlib.sha256(self.up_sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """`0001_core_tables`: the migration as its files name it."""
        return f"{self.version:04d}_{self.name}"


class LockHolder(NamedTuple):
    """A session holding the flow lock, as `pg_stat_activity` shows it."""

    pid: int
    application_name: str
    client_addr: str | None
    backend_start: datetime | None

    def describe(self) -> str:
        """`backend pid 4242 "quantbot replay pid=77@host" from 10.0.0.5 since 2026-12-01T21:40:00+00:00`."""
        origin = f" from {self.client_addr}" if self.client_addr else " over a local socket"
        since = f" since {self.backend_start.isoformat(timespec='seconds')}" if self.backend_start else ""
        return f'backend pid {self.pid} "{self.application_name or "?"}"{origin}{since}'


class MigrationStatus(NamedTuple):
    """One migration as the database sees it; `applied_at` is None when not applied."""

    version: int
    name: str
    applied: bool
    applied_at: datetime | None


class _LedgerRow(NamedTuple):
    name: str
    checksum: str
    applied_at: datetime


def load_migrations(package: str = "quantbot.schema", directory: str = "migrations") -> tuple[Migration, ...]:
    """Read the migration files shipped in `package`/`directory`, ordered by version.

    Args:
        package: The package holding the migrations directory.
        directory: The directory, inside `package`, holding `NNNN_<name>.{up,down}.sql` files.

    Returns:
        The migrations, versions 1..N without gaps.

    Raises:
        MigrationFilesError: A file is misnamed, a version lacks its up or down half, two files
            disagree on a version's name, or versions have a gap.
    """
    halves: dict[int, dict[str, tuple[str, str]]] = {}
    for entry in resources.files(package).joinpath(directory).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationFilesError(f"migration file `{entry.name}` is not named NNNN_<name>.(up|down).sql")
        version = int(match["version"])
        halves.setdefault(version, {})[match["direction"]] = (match["name"], entry.read_text("utf-8"))

    migrations = []
    for expected, version in enumerate(sorted(halves), start=1):
        if version != expected:
            raise MigrationFilesError(f"migration versions have a gap: expected {expected:04d}, found {version:04d}")
        pair = halves[version]
        if set(pair) != {"up", "down"}:
            missing = ({"up", "down"} - set(pair)).pop()
            raise MigrationFilesError(f"migration {version:04d} has no {missing} file")
        (up_name, up_sql), (down_name, down_sql) = pair["up"], pair["down"]
        if up_name != down_name:
            raise MigrationFilesError(
                f"migration {version:04d} files disagree on its name: `{up_name}` vs `{down_name}`"
            )
        migrations.append(Migration(version=version, name=up_name, up_sql=up_sql, down_sql=down_sql))
    return tuple(migrations)


MIGRATIONS: tuple[Migration, ...] = load_migrations()
"""Every migration this code knows, version 1 first."""


def latest_version() -> int:
    """The version `migrate_up` reaches by default: the highest known migration."""
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version: the highest applied migration, 0 when none is.

    Args:
        conn: An open connection; no transaction is left open by this call.

    Returns:
        The highest version in the ledger, or 0 when there is no ledger.
    """
    with conn.transaction():
        ledger = _read_ledger(conn) or {}
    return max(ledger, default=0)


def status(conn: psycopg.Connection[Any]) -> list[MigrationStatus]:
    """Every known migration with whether and when it was applied.

    Versions the ledger records but this code does not know (a database migrated by newer code) are
    listed too, under the name the ledger gives them.

    Args:
        conn: An open connection; no transaction is left open by this call.

    Returns:
        One entry per version, ascending.
    """
    with conn.transaction():
        ledger = _read_ledger(conn) or {}
    known = {m.version: m.name for m in MIGRATIONS}
    versions = sorted(set(known) | set(ledger))
    return [
        MigrationStatus(
            version=v,
            name=known[v] if v in known else ledger[v].name,
            applied=v in ledger,
            applied_at=ledger[v].applied_at if v in ledger else None,
        )
        for v in versions
    ]


def migrate_up(conn: psycopg.Connection[Any], target: int | None = None) -> list[int]:
    """Apply the migrations after the database's version, up to `target`.

    Safe to run from several processes at once: each migration's transaction first takes the
    advisory lock `MIGRATION_LOCK_KEY`, then reads the ledger, so concurrent runs apply every
    migration exactly once between them. A database already at or above `target` is left alone.

    Args:
        conn: An open connection with no transaction in progress; autocommit or not, each migration
            is committed before the next starts.
        target: The version to reach; the latest known when None.

    Returns:
        The versions this call applied, ascending (empty when there was nothing to do).

    Raises:
        ValueError: `target` is not a known version (0 is allowed and does nothing).
        ChecksumMismatchError: An applied migration's file was edited since it was applied.
        LedgerStateError: The ledger holds unknown versions or has holes.
        MigrationError: `conn` has a transaction in progress.
    """
    goal = latest_version() if target is None else _checked_target(target)
    _require_idle(conn)
    applied: list[int] = []
    while (version := _step_up(conn, goal)) is not None:
        applied.append(version)
    return applied


def migrate_down(conn: psycopg.Connection[Any], target: int) -> list[int]:
    """Revert the applied migrations above `target`, newest first.

    Reaching 0 also drops the ledger, so `migrate_down(conn, 0)` leaves no trace of `migrate_up`.
    Serialised against concurrent runs exactly as `migrate_up` is.

    Args:
        conn: An open connection with no transaction in progress.
        target: The version to return to; 0 removes everything the migrations created.

    Returns:
        The versions this call reverted, descending (empty when there was nothing to do).

    Raises:
        ValueError: `target` is not 0 or a known version.
        ChecksumMismatchError: An applied migration's file was edited since it was applied.
        LedgerStateError: The ledger holds unknown versions or has holes.
        MigrationError: `conn` has a transaction in progress.
    """
    goal = _checked_target(target)
    _require_idle(conn)
    reverted: list[int] = []
    while (version := _step_down(conn, goal)) is not None:
        reverted.append(version)
    return reverted


def hold_flow_lock(conn: psycopg.Connection[Any]) -> None:
    """Take the flow lock in shared mode for the life of `conn`'s session (a running flow does this).

    Waits while a destructive migration holds it (bounded by the session's `statement_timeout`);
    released by `release_flows` or when the session ends, however the process ends.

    Args:
        conn: A connection in autocommit mode, used for nothing else.
    """
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (FLOW_LOCK_KEY,))


def release_flows(conn: psycopg.Connection[Any], *, shared: bool) -> None:
    """Release the flow lock taken on `conn`: shared by a flow, exclusive by `lock_out_flows`."""
    if shared:
        conn.execute("SELECT pg_advisory_unlock_shared(%s)", (FLOW_LOCK_KEY,))
    else:
        conn.execute("SELECT pg_advisory_unlock(%s)", (FLOW_LOCK_KEY,))


def flow_lock_holders(conn: psycopg.Connection[Any]) -> list[LockHolder]:
    """The other sessions holding the flow lock in this database, oldest first.

    A bigint advisory key is stored in `pg_locks` as its high and low 32 bits (`classid`, `objid`)
    with `objsubid` 1. Without the `pg_read_all_stats` role, another user's client address and start
    time read as NULL.
    """
    rows = conn.execute(
        """
        SELECT a.pid, coalesce(a.application_name, ''), host(a.client_addr), a.backend_start
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid::bigint = %s AND l.objid::bigint = %s
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.pid <> pg_backend_pid()
        ORDER BY a.backend_start, a.pid
        """,
        ((FLOW_LOCK_KEY >> 32) & _32_BITS, FLOW_LOCK_KEY & _32_BITS),
    ).fetchall()
    return [LockHolder(int(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def lock_out_flows(conn: psycopg.Connection[Any], wait_s: float) -> None:
    """Take the flow lock exclusively on `conn`'s session: no flow runs until `release_flows` or the end.

    Waits up to `wait_s` for running flows to end, asking every `FLOW_LOCK_POLL_S`; polling rather
    than queueing, so that a refused migration has never stood in a flow's way.

    Args:
        conn: A connection in autocommit mode; the lock lasts as long as its session.
        wait_s: How long to wait for the running flows, in seconds; 0 asks once.

    Raises:
        SchemaInUseError: Flows still hold the lock after `wait_s`; the message names them.
    """
    deadline = time.monotonic() + wait_s
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (FLOW_LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(min(FLOW_LOCK_POLL_S, max(0.0, deadline - time.monotonic())))
    holders = flow_lock_holders(conn)
    listed = "; ".join(h.describe() for h in holders) or "a session that has just ended"
    raise SchemaInUseError(
        f"the schema is in use by {len(holders) or 1} running flow(s) after waiting {wait_s:g} s: {listed}. "
        "Stop them (or let them finish) and run the command again, or set migrate.lock_wait_s "
        "(QUANTBOT_MIGRATE_LOCK_WAIT_S) to wait longer"
    )


def _checked_target(target: int) -> int:
    if isinstance(target, bool) or not 0 <= target <= latest_version():
        raise ValueError(f"unknown schema version `{target!r}`: known versions are 0..{latest_version()}")
    return target


def _require_idle(conn: psycopg.Connection[Any]) -> None:
    # Comparing by name keeps psycopg's enum out of this module's runtime imports.
    state = conn.info.transaction_status.name
    if state != "IDLE":
        raise MigrationError(
            f"connection is in transaction state `{state}`: migrations commit their own transactions, "
            "so they need a connection with no transaction in progress"
        )


def _lock(conn: psycopg.Connection[Any]) -> None:
    """Serialise with every other migration transaction; call first in the transaction."""
    # READ COMMITTED whatever the connection's default: under REPEATABLE READ or SERIALIZABLE the
    # snapshot would be taken by the lock statement itself, before the wait, and the ledger read after
    # it would miss what the previous lock holder committed.
    conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))


def _step_up(conn: psycopg.Connection[Any], goal: int) -> int | None:
    """Apply the next migration towards `goal` in one locked transaction; None when at `goal`."""
    with conn.transaction():
        _lock(conn)
        ledger = _read_ledger(conn)
        if ledger is None:
            conn.execute(_LEDGER_DDL)
        current = _verified_version(ledger or {})
        if current >= goal:
            return None
        migration = MIGRATIONS[current]
        started = time.perf_counter()
        conn.execute(migration.up_sql)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    logger.info(
        "schema=postgres migration=%s direction=up elapsed_s=%.3f",
        migration.label,
        time.perf_counter() - started,
    )
    return migration.version


def _step_down(conn: psycopg.Connection[Any], goal: int) -> int | None:
    """Revert the newest applied migration above `goal` in one locked transaction; None when at `goal`."""
    with conn.transaction():
        _lock(conn)
        ledger = _read_ledger(conn)
        if ledger is None:
            return None
        current = _verified_version(ledger)
        if current <= goal:
            if goal == 0:
                # An empty ledger (e.g. left by an interrupted older tool) is still ours to remove.
                conn.execute("DROP TABLE schema_migrations")
            return None
        migration = MIGRATIONS[current - 1]
        started = time.perf_counter()
        conn.execute(migration.down_sql)
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.version,))
        if migration.version == 1:
            conn.execute("DROP TABLE schema_migrations")
    logger.info(
        "schema=postgres migration=%s direction=down elapsed_s=%.3f",
        migration.label,
        time.perf_counter() - started,
    )
    return migration.version


def _read_ledger(conn: psycopg.Connection[Any]) -> dict[int, _LedgerRow] | None:
    """The ledger's rows by version; None when the ledger table does not exist."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER_TABLE,)).fetchone()
    if row is None or not row[0]:
        return None
    rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations").fetchall()
    return {int(r[0]): _LedgerRow(name=r[1], checksum=r[2], applied_at=r[3]) for r in rows}


def _verified_version(ledger: dict[int, _LedgerRow]) -> int:
    """The ledger's version after checking it against the files; raises when they disagree."""
    current = max(ledger, default=0)
    if current > latest_version():
        raise LedgerStateError(
            f"database schema is at version {current}, newer than this code's latest {latest_version()}: "
            "upgrade the code before migrating"
        )
    if min(ledger, default=1) < 1:
        raise LedgerStateError(f"ledger `{LEDGER_TABLE}` holds version {min(ledger)}; versions start at 1")
    holes = sorted(set(range(1, current + 1)) - set(ledger))
    if holes:
        raise LedgerStateError(f"ledger `{LEDGER_TABLE}` lacks versions {holes} below its version {current}")
    for version, row in sorted(ledger.items()):
        migration = MIGRATIONS[version - 1]
        if row.checksum != migration.checksum:
            raise ChecksumMismatchError(
                f"migration {migration.label} was edited after it was applied: ledger checksum "
                f"{row.checksum} differs from the file's {migration.checksum}; restore the file and put "
                "the change in a new migration"
            )
    return current
