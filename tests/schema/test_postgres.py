"""PostgreSQL migrations against a real server, compared with the schema document's own SQL."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from quantbot.schema import postgres
from quantbot.schema.postgres import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    ChecksumMismatchError,
    LedgerStateError,
    Migration,
    MigrationError,
    current_version,
    migrate_down,
    migrate_up,
    status,
)
from tests.conftest import POSTGRES_ADMIN_URL
from tests.schema import document

# The eleven tables DESIGN.md §5 names; the document must yield exactly these.
DOCUMENT_TABLES = {
    "users",
    "user_profiles",
    "user_api_keys",
    "wallets",
    "portfolios",
    "portfolio_positions",
    "trading_strategies",
    "trading_signals",
    "trades",
    "system_events",
    "user_notifications",
}

Snapshot = dict[str, Any]


def _connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=autocommit)


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a fresh database."""
    with _connect(pg_url) as connection:
        yield connection


@pytest.fixture
def document_url(pg_url: str) -> Iterator[str]:
    """A second fresh database holding the document's CREATE TABLE statements, applied as written."""
    name = f"{pg_url.rsplit('/', 1)[1]}_doc"
    with _connect(POSTGRES_ADMIN_URL) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    try:
        with _connect(url) as connection:
            for block in document.create_table_blocks().values():
                connection.execute(block)
        yield url
    finally:
        with _connect(POSTGRES_ADMIN_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    ).fetchall()
    return {r[0] for r in rows}


def _tables_and_constraints(conn: psycopg.Connection[Any], tables: set[str] | None = None) -> Snapshot:
    """Columns and constraints of `tables` (every table but the ledger by default), in comparable form.

    Comparisons with the document pass its eleven tables: later migrations may add tables of their own.
    """
    columns = conn.execute(
        """
        SELECT c.table_name, c.column_name, c.ordinal_position, c.data_type, c.udt_name,
               c.character_maximum_length, c.numeric_precision, c.numeric_scale, c.datetime_precision,
               c.is_nullable, c.column_default, format_type(a.atttypid, a.atttypmod)
        FROM information_schema.columns c
        JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                           AND a.attname = c.column_name
        WHERE c.table_schema = 'public' AND c.table_name <> 'schema_migrations'
        ORDER BY c.table_name, c.ordinal_position
        """
    ).fetchall()
    columns = [row for row in columns if tables is None or row[0] in tables]
    constraints = conn.execute(
        """
        SELECT rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid),
               ref.relname, con.confupdtype, con.confdeltype, con.condeferrable
        FROM pg_constraint con
        JOIN pg_class rel ON rel.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = rel.relnamespace
        LEFT JOIN pg_class ref ON ref.oid = con.confrelid
        WHERE n.nspname = 'public' AND rel.relname <> 'schema_migrations'
        ORDER BY rel.relname, con.conname
        """
    ).fetchall()
    constraints = [row for row in constraints if tables is None or row[0] in tables]
    return {"columns": columns, "constraints": constraints}


def _indexes(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[str, list[str]]]]:
    """Every index by table: (index name, its columns in order)."""
    rows = conn.execute(
        """
        SELECT t.relname, i.relname, array_agg(a.attname ORDER BY k.ord)
        FROM pg_index x
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE n.nspname = 'public'
        GROUP BY t.relname, i.relname
        ORDER BY t.relname, i.relname
        """
    ).fetchall()
    indexes: dict[str, list[tuple[str, list[str]]]] = {}
    for table, index, columns in rows:
        indexes.setdefault(table, []).append((index, list(columns)))
    return indexes


def _full_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    definitions = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    ).fetchall()
    return {**_tables_and_constraints(conn), "indexes": definitions}


def _public_relations(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = conn.execute(
        """
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' ORDER BY 1
        """
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _ledger(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str]]:
    rows = conn.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def test_document_yields_the_eleven_tables() -> None:
    """The test's own reading of the document finds exactly the eleven tables of DESIGN.md §5."""
    assert set(document.create_table_blocks()) == DOCUMENT_TABLES


def test_migrate_up_matches_the_document_column_by_column_and_constraint_by_constraint(
    conn: psycopg.Connection[Any], document_url: str
) -> None:
    """Every column (type, length, precision, nullability, default) and constraint equals the document's."""
    applied = migrate_up(conn)

    with _connect(document_url) as doc:
        expected = _tables_and_constraints(doc)
    actual = _tables_and_constraints(conn, DOCUMENT_TABLES)
    assert applied == [m.version for m in MIGRATIONS]
    assert _tables(conn) >= DOCUMENT_TABLES | {"schema_migrations"}
    assert {row[0] for row in expected["columns"]} == DOCUMENT_TABLES
    assert actual["columns"] == expected["columns"]
    assert actual["constraints"] == expected["constraints"]


def test_document_types_survive_as_written(conn: psycopg.Connection[Any]) -> None:
    """TIMESTAMP stays without time zone, DECIMAL keeps its precision, VARCHAR(255)[] its element length."""
    migrate_up(conn)

    types = dict(
        conn.execute(
            """
            SELECT c.table_name || '.' || c.column_name, format_type(a.atttypid, a.atttypmod)
            FROM information_schema.columns c
            JOIN pg_attribute a ON a.attrelid = c.table_name::regclass AND a.attname = c.column_name
            WHERE c.table_schema = 'public'
            """
        ).fetchall()
    )
    assert types["users.created_at"] == "timestamp without time zone"
    assert types["trading_signals.confidence"] == "numeric(5,2)"
    assert types["trades.quantity"] == "numeric(30,15)"
    assert types["user_api_keys.permissions"] == "character varying(255)[]"


def test_indexes_cover_the_platforms_access_paths(conn: psycopg.Connection[Any]) -> None:
    """Each access path of the issue is the leading columns of some index."""
    migrate_up(conn)
    indexes = _indexes(conn)

    def served(table: str, path: list[str]) -> bool:
        return any(columns[: len(path)] == path for _, columns in indexes.get(table, []))

    paths = {
        "trading_signals": [["strategy_id", "created_at"], ["token_address", "created_at"], ["status"]],
        "trades": [
            ["user_id", "created_at"],
            ["portfolio_id", "created_at"],
            ["token_address", "created_at"],
            ["created_at"],
        ],
        "system_events": [["created_at"], ["status"]],
        "user_notifications": [["user_id", "status"]],
        "portfolio_positions": [["portfolio_id", "token_address"]],
        "wallets": [["user_id"]],
        "trading_strategies": [["user_id"]],
    }
    missing = [(table, path) for table, table_paths in paths.items() for path in table_paths if not served(table, path)]
    assert missing == []


def test_every_foreign_key_column_leads_an_index(conn: psycopg.Connection[Any]) -> None:
    """Joins and parent deletes never scan a child table for want of an index on its reference."""
    migrate_up(conn)
    indexes = _indexes(conn)
    references = conn.execute(
        """
        SELECT rel.relname, a.attname
        FROM pg_constraint con
        JOIN pg_class rel ON rel.oid = con.conrelid
        JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum = con.conkey[1]
        WHERE con.contype = 'f'
        """
    ).fetchall()

    unindexed = [
        (table, column)
        for table, column in references
        if not any(columns[0] == column for _, columns in indexes.get(table, []))
    ]
    assert len(references) == sum(block.count("REFERENCES") for block in document.create_table_blocks().values())
    assert unindexed == []


def test_down_to_zero_removes_everything_and_up_again_is_identical(conn: psycopg.Connection[Any]) -> None:
    """Up, down to 0 (no relation left, ledger included), up again: the same schema as the first time."""
    migrate_up(conn)
    first = _full_snapshot(conn)

    reverted = migrate_down(conn, 0)
    after_down = _public_relations(conn)
    reapplied = migrate_up(conn)

    assert reverted == [m.version for m in reversed(MIGRATIONS)]
    assert after_down == []
    assert current_version(conn) == len(MIGRATIONS)
    assert reapplied == [m.version for m in MIGRATIONS]
    assert _full_snapshot(conn) == first


def test_each_step_down_reverts_exactly_its_migration(conn: psycopg.Connection[Any]) -> None:
    """Down to 1 reverts every later migration and leaves the schema exactly as 0001 made it."""
    migrate_up(conn, 1)
    at_one = _full_snapshot(conn)
    migrate_up(conn)

    reverted = migrate_down(conn, 1)

    assert reverted == [m.version for m in reversed(MIGRATIONS[1:])]
    assert current_version(conn) == 1
    assert _full_snapshot(conn) == at_one


def test_migrate_up_to_a_target_and_status(conn: psycopg.Connection[Any]) -> None:
    """A target stops the run there; status lists every migration with whether and when it was applied."""
    before = status(conn)
    first = migrate_up(conn, 1)
    middle = status(conn)
    rest = migrate_up(conn)
    again = migrate_up(conn)

    assert [s.applied for s in before] == [False] * len(MIGRATIONS)
    assert first == [1]
    assert middle[0].applied and middle[0].name == "core_tables" and middle[0].applied_at is not None
    assert [s.applied for s in middle[1:]] == [False] * (len(MIGRATIONS) - 1)
    assert rest == [m.version for m in MIGRATIONS[1:]]
    assert again == []
    assert _ledger(conn) == [(m.version, m.name, m.checksum) for m in MIGRATIONS]


@pytest.mark.parametrize("target", [-1, len(MIGRATIONS) + 1, True])
def test_unknown_targets_are_refused(conn: psycopg.Connection[Any], target: int) -> None:
    """A target outside 0..latest is a ValueError naming it, in both directions."""
    with pytest.raises(ValueError, match="unknown schema version"):
        migrate_up(conn, target)
    with pytest.raises(ValueError, match="unknown schema version"):
        migrate_down(conn, target)


@pytest.mark.parametrize(
    "isolation", [None, psycopg.IsolationLevel.REPEATABLE_READ], ids=["default", "repeatable_read"]
)
def test_two_concurrent_migrate_up_runs_end_with_one_schema(
    pg_url: str, document_url: str, isolation: psycopg.IsolationLevel | None
) -> None:
    """Two runs started together both succeed, apply each migration once between them, and agree.

    Also with connections defaulting to REPEATABLE READ, whose snapshot would predate the lock.
    """
    runs = 2
    barrier = threading.Barrier(runs)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with _connect(pg_url) as own:
                own.isolation_level = isolation
                barrier.wait()
                results.append(migrate_up(own))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(v for applied in results for v in applied) == [m.version for m in MIGRATIONS]
    with _connect(pg_url) as conn, _connect(document_url) as doc:
        assert _ledger(conn) == [(m.version, m.name, m.checksum) for m in MIGRATIONS]
        assert _tables_and_constraints(conn, DOCUMENT_TABLES) == _tables_and_constraints(doc)


def test_a_run_waits_while_another_holds_the_migration_lock(pg_url: str) -> None:
    """`migrate_up` takes MIGRATION_LOCK_KEY before reading the ledger, so it waits for a holder."""
    finished = threading.Event()

    def run() -> None:
        with _connect(pg_url) as own:
            migrate_up(own)
        finished.set()

    with _connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runner = threading.Thread(target=run)
        runner.start()
        # Long enough for an unlocked run to finish several times over (a full run takes ~30 ms).
        time.sleep(0.5)
        waited = not finished.is_set()
        tables_while_locked = _tables(holder)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        runner.join(timeout=10)

    assert waited
    assert tables_while_locked == set()
    assert finished.is_set()


def test_lock_key_is_derived_from_its_name() -> None:
    """MIGRATION_LOCK_KEY is the first 8 bytes of sha256("quantbot.schema_migrations"), signed."""
    digest = hashlib.sha256(b"quantbot.schema_migrations").digest()

    assert int.from_bytes(digest[:8], "big", signed=True) == MIGRATION_LOCK_KEY


def test_an_edited_applied_migration_is_refused(conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing an applied migration's up file stops both directions with a checksum error naming it."""
    migrate_up(conn)
    edited = dataclasses.replace(MIGRATIONS[0], up_sql=MIGRATIONS[0].up_sql + "\n-- an afterthought\n")
    monkeypatch.setattr(postgres, "MIGRATIONS", (edited, *MIGRATIONS[1:]))

    with pytest.raises(ChecksumMismatchError, match="0001_core_tables was edited"):
        migrate_up(conn)
    with pytest.raises(ChecksumMismatchError, match="0001_core_tables was edited"):
        migrate_down(conn, 0)
    assert current_version(conn) == len(MIGRATIONS)


def test_a_database_newer_than_the_code_is_refused(conn: psycopg.Connection[Any]) -> None:
    """A ledger row for a version this code does not know stops the run instead of guessing."""
    migrate_up(conn)
    conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')")

    with pytest.raises(LedgerStateError, match="version 99, newer than"):
        migrate_up(conn)
    assert [s.version for s in status(conn)][-1] == 99


def test_a_ledger_with_holes_is_refused(conn: psycopg.Connection[Any]) -> None:
    """A ledger missing a version below its newest is inconsistent: nothing runs until a human looks."""
    migrate_up(conn)
    conn.execute("DELETE FROM schema_migrations WHERE version = 1")

    with pytest.raises(LedgerStateError, match=r"lacks versions \[1\]"):
        migrate_down(conn, 0)


def test_a_failing_migration_rolls_back_alone(conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails leaves none of its changes and no ledger row; earlier ones stay applied."""
    broken = Migration(
        version=len(MIGRATIONS) + 1,
        name="broken",
        up_sql="CREATE TABLE half_done (id int); SELECT 1 / 0;",
        down_sql="DROP TABLE half_done;",
    )
    monkeypatch.setattr(postgres, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate_up(conn)

    assert current_version(conn) == broken.version - 1
    assert "half_done" not in _tables(conn)


def test_a_connection_inside_a_transaction_is_refused(pg_url: str) -> None:
    """Migrations commit their own transactions, so a connection with one open is an error."""
    with _connect(pg_url, autocommit=False) as conn:
        conn.execute("SELECT 1")

        with pytest.raises(MigrationError, match="INTRANS"):
            migrate_up(conn)


def test_a_non_autocommit_connection_commits_each_migration(pg_url: str) -> None:
    """With autocommit off, migrate_up still commits: another connection sees the schema at once."""
    with _connect(pg_url, autocommit=False) as conn:
        migrate_up(conn)
        with _connect(pg_url) as other:
            assert _tables(other) >= DOCUMENT_TABLES | {"schema_migrations"}
        assert conn.info.transaction_status.name == "IDLE"


def test_packaged_migrations_are_contiguous_and_paired() -> None:
    """Versions run 1..N without gaps, each with up and down SQL, and the checksum sums the up file."""
    migrations = postgres.load_migrations()

    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.up_sql.strip() and m.down_sql.strip() for m in migrations)
    assert migrations[0].checksum == hashlib.sha256(migrations[0].up_sql.encode()).hexdigest()
