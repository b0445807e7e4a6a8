"""The `quantbot` command as a user runs it: migrate, doctor and their exit statuses against real stores."""

from __future__ import annotations

import re
import secrets
import socket
from pathlib import Path

import psycopg
import pymongo
import pytest

from quantbot.schema import mongo as mongo_schema
from tests.conftest import InfluxEndpoint, run_cli, store_env

EX_UNAVAILABLE = 69


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path) -> dict[str, str]:
    """A profile whose four stores are the test servers (nothing embedded)."""
    db = f"cli_{secrets.token_hex(4)}"
    return store_env(pg_url, redis_url, mongo_url, influx, mongo_db=db, stack_dir=tmp_path / "stack")


def row(output: str, store: str) -> str:
    """The table row of `store` in a command's output."""
    (line,) = [line for line in output.splitlines() if re.match(rf"^\W*{store}\b", line)]
    return line


def test_migrate_up_twice_then_down_to_zero(env: dict[str, str], pg_url: str, mongo_url: str) -> None:
    """`migrate up` creates every store's schema, again changes nothing, `down --to 0` removes it."""
    first = run_cli("migrate", "up", env=env)
    second = run_cli("migrate", "up", env=env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert "applied 1, 2, 3" in row(first.stdout, "postgres")
    assert "already up to date" in row(second.stdout, "postgres")
    assert "already up to date" in row(second.stdout, "mongo")
    with pymongo.MongoClient(mongo_url) as client:
        assert {c.name for c in mongo_schema.COLLECTIONS} <= set(
            client[env["QUANTBOT_MONGO_DB"]].list_collection_names()
        )

    down = run_cli("migrate", "down", "--to", "0", "--yes", env=env)

    assert down.returncode == 0, down.stdout + down.stderr
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)
    with pymongo.MongoClient(mongo_url) as client:
        assert client[env["QUANTBOT_MONGO_DB"]].list_collection_names() == []


def test_migrate_down_asks_before_dropping_data(env: dict[str, str]) -> None:
    """Without --yes and without a terminal to answer, `migrate down` aborts and drops nothing."""
    run_cli("migrate", "up", env=env)

    result = run_cli("migrate", "down", "--to", "0", env=env)

    assert result.returncode != 0
    assert "already up to date" in row(run_cli("migrate", "up", env=env).stdout, "postgres")


def test_doctor_reports_every_store_and_schema_version(env: dict[str, str]) -> None:
    """With every store up and migrated, doctor says so and exits 0."""
    run_cli("migrate", "up", env=env)

    result = run_cli("doctor", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\byes\b.*\b3/3\b", row(result.stdout, "postgres"))
    assert re.search(r"\byes\b.*4/4 collections", row(result.stdout, "mongo"))
    assert "yes" in row(result.stdout, "influx") and "yes" in row(result.stdout, "redis")


def test_doctor_tells_the_truth_when_a_store_is_down(env: dict[str, str]) -> None:
    """A store that does not answer is marked NO with the reason, and doctor exits 69."""
    env = {**env, "QUANTBOT_REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed_port()}/0"}

    result = run_cli("doctor", env=env)

    assert result.returncode == EX_UNAVAILABLE
    line = row(result.stdout, "redis")
    assert "NO" in line and "refused" in result.stdout.lower()
    assert "hunter2" not in result.stdout + result.stderr
    assert "yes" in row(result.stdout, "postgres")


def test_doctor_without_any_configured_store_says_what_to_do(tmp_path: Path) -> None:
    """On the local profile before `stack up`, doctor names the missing stack instead of crashing."""
    result = run_cli("doctor", env={"QUANTBOT_STACK_DIR": str(tmp_path / "nothing-here")})

    assert result.returncode == EX_UNAVAILABLE
    assert "quantbot stack up" in result.stdout
    assert "Traceback" not in result.stderr


def test_replay_refuses_to_resume_another_recording(env: dict[str, str], tmp_path: Path) -> None:
    """`replay --recovery-dir` given another recording than its snapshot's: exit 1, one line saying what differs."""
    from quantbot.models import Frame
    from quantbot.recordings import RecordingWriter

    assert run_cli("migrate", "up", env=env).returncode == 0
    for name, price in (("one", 150.0), ("two", 151.0)):
        writer = RecordingWriter(tmp_path / name, prefix=name)
        quote = f'{{"symbol": "SOL/USD", "price": {price}, "ts": 1750000000}}'
        writer.write([Frame(received_ns=i, source="feed", kind="price", payload=quote) for i in range(20)])
        writer.close()
    recovery = str(tmp_path / "recovery")
    first = run_cli("replay", str(tmp_path / "one"), "--recovery-dir", recovery, "--no-progress", env=env)
    assert first.returncode == 0, first.stderr

    refused = run_cli("replay", str(tmp_path / "two"), "--recovery-dir", recovery, "--no-progress", env=env)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    (line,) = [line for line in refused.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in refused.stderr and "panicked" not in refused.stderr
    (recorded,) = (tmp_path / "one").iterdir()
    assert line.startswith("error: ") and recorded.name in line and "not among the recordings given" in line
    assert recovery in line and "start fresh" in line
    assert "this run" not in refused.stdout  # nothing was replayed, no summary printed


def test_replay_of_damaged_recordings_stores_the_rest_and_warns(env: dict[str, str], tmp_path: Path) -> None:
    """A corrupted .gz and a cut .zst among others: dead letters at file@offset, warnings, the rest stored, exit 0."""
    from quantbot.models import Frame
    from quantbot.recordings import RecordingReadError, RecordingWriter, read_lines
    from tests.test_replay_integrity import corrupt_gzip

    assert run_cli("migrate", "up", env=env).returncode == 0
    recordings = tmp_path / "recordings"
    start = 1_700_000_000  # plausible quote times: the parse step dead-letters any before Solana's genesis
    quotes = [
        Frame(
            received_ns=(start + i) * 1_000_000_000,
            source="feed",
            kind="price",
            payload=f'{{"symbol": "SOL/USD", "price": {100 + i}, "ts": {start + i}}}',
        )
        for i in range(400)
    ]
    damaged = {}
    for prefix, compression in (("a", "gzip"), ("b", "zstd")):
        writer = RecordingWriter(recordings, prefix=prefix, compression=compression)
        for i in range(0, 400, 100):
            writer.write(quotes[i : i + 100])
            writer.flush()
        writer.close()
        (path,) = writer.files
        data = path.read_bytes()
        path.write_bytes(corrupt_gzip(data) if compression == "gzip" else data[: len(data) * 2 // 3])
        with pytest.raises(RecordingReadError) as error:
            for _ in read_lines(path):
                pass
        damaged[path.name] = error.value.offset
    writer = RecordingWriter(recordings, prefix="c")
    writer.write(quotes[:10])
    writer.close()
    with writer.files[0].open("ab") as fh:
        fh.write(b"".join(b"not a frame %d\n" % i for i in range(7)))

    result = run_cli("replay", str(recordings), "--no-progress", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    for (name, offset), warning in zip(sorted(damaged.items()), warnings, strict=True):
        assert f"{name}@{offset}" in warning
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        letters = conn.execute("SELECT position, stage FROM dead_letters ORDER BY position").fetchall()
    assert [(p, s) for p, s in letters if s == "recording"] == [
        (f"{n}@{o}", "recording") for n, o in sorted(damaged.items())
    ]
    assert len([p for p, s in letters if p.startswith(writer.files[0].name)]) == 7  # the other recording, to its end
