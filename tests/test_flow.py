"""The whole dataflow on real mainnet transactions, from a recording into the four real stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymongo
import pytest
import redis

from flows.replay import replay
from quantbot.models import WSOL_MINT, Frame
from quantbot.ops.demo import DEMO_STRATEGY_ID, ensure_demo_strategy
from quantbot.recordings import RecordingWriter
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings, load_settings
from tests.conftest import CORPUS_DIR, REPO_ROOT, InfluxEndpoint, store_env

GARBAGE = [
    b"this is not json\n",
    b'{"received_ns": 1, "source": "x", "kind": "transaction", "payl\n',
    b"\xff\xfe\x00binary\n",
]


SOL_USD = 150.0
CORPUS_ACTIVITIES = 62
"""Trades, liquidity changes and transfers in the 41 corpus files (the Geyser twin counted again), as
tests/solana/test_corpus.py pins them transaction by transaction against index.json's facts."""
CORPUS_VALUED_TRANSACTIONS = 22
"""Corpus transactions with a trade the flow can value: a stablecoin or SOL leg, or a token it has
priced earlier in the recording. Token-for-token routes between unpriced tokens stay unvalued (and so
are no whales, whatever the tier), as do the two failed transactions."""


def corpus_index() -> dict[str, dict[str, Any]]:
    """index.json's independently computed facts, by signature."""
    entries: list[dict[str, Any]] = orjson.loads((CORPUS_DIR / "index.json").read_bytes())
    return {entry["signature"]: entry for entry in entries}


def corpus_frames() -> list[Frame]:
    """A SOL/USD quote, then every corpus transaction file as a transaction frame, exactly as recorded."""
    files = sorted(p for p in CORPUS_DIR.glob("*.json") if p.name != "index.json")
    quote = orjson.dumps({"symbol": "SOL/USD", "price": SOL_USD, "ts": 1_700_000_000}).decode()
    return [
        Frame(received_ns=1, source="feed", kind="price", payload=quote),
        *(
            Frame(received_ns=1_000_000_000 * (i + 1), source="corpus", kind="transaction", payload=p.read_text())
            for i, p in enumerate(files)
        ),
    ]


@pytest.fixture
def settings(pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at the test stores, migrated, with whale tiers low enough for the corpus' trades."""
    db = f"flow_{int(time.time() * 1000)}"
    env = {
        **store_env(pg_url, redis_url, mongo_url, influx, mongo_db=db, stack_dir=tmp_path / "stack"),
        # Corpus trades are small; a $1 whale tier makes every valued trade a whale.
        "QUANTBOT_WHALES_TIERS": '[{name = "test", min_usd = 1.0}]',
        "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": "0.5",
    }
    settings = load_settings("default", REPO_ROOT / "config", environ=env)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
    with pymongo.MongoClient(mongo_url) as client:
        mongo_schema.apply(client[db])
    ensure_demo_strategy(settings)
    with pymongo.MongoClient(mongo_url) as client:  # follow every whale, however small
        client[db].strategy_configs.update_one(
            {"_id": DEMO_STRATEGY_ID},
            {"$set": {"parameters.minTransactionValueUsd": 0, "parameters.minWhaleInfluenceScore": 0}},
        )
    yield settings
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(db)


def write_recording(path: Path, frames: list[Frame], garbage: list[bytes]) -> None:
    writer = RecordingWriter(path)
    writer.write(frames)
    writer.close()
    (recording,) = writer.files
    with recording.open("ab") as fh:
        for line in garbage:
            fh.write(line)


def store_state(settings: Settings) -> dict[str, Any]:
    """Everything the flow wrote, as comparable plain data."""
    assert settings.postgres.url and settings.mongo.url and settings.redis.url
    with psycopg.connect(settings.postgres.url) as conn:
        # A signal's outcome (its lifecycle: `quantbot.analytics`) depends on how far the stream's time went,
        # not on the signal: left out, as its status is.
        signals = conn.execute(
            "SELECT signal_id::text, token_address, direction, confidence::text, created_at,"
            " (metadata - 'outcome')::text FROM trading_signals ORDER BY signal_id"
        ).fetchall()
        letters = conn.execute("SELECT position, stage, reason, raw FROM dead_letters ORDER BY position").fetchall()
    with pymongo.MongoClient(settings.mongo.url) as client:
        # Likewise a whale's follow-ups: its move 3 h later, the wallet's other whales and their moves.
        follow_ups = {
            "significance.priceMoveAfter3h": 0,
            "relatedTransactions": 0,
            "walletProfile.historicalInfluence": 0,
        }
        whales = list(client[settings.mongo.db].whale_activity.find({}, follow_ups).sort("_id"))
    client_r = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    prices = {key: client_r.hgetall(key) for key in sorted(client_r.scan_iter(match="price:*"))}
    return {"signals": signals, "dead_letters": letters, "whales": whales, "prices": prices}


def test_corpus_replay_reaches_all_four_stores(settings: Settings, tmp_path: Path, influx: InfluxEndpoint) -> None:
    """Real transactions plus garbage: priced trades, whales, signals and dead letters land in every store."""
    frames = corpus_frames()
    write_recording(tmp_path / "rec", frames, GARBAGE)

    summary = replay(settings, [tmp_path / "rec"], recovery_dir=tmp_path / "recovery")

    state = store_state(settings)
    assert summary.frames == len(frames)
    assert summary.transactions == len(frames) - 1
    assert summary.activities == CORPUS_ACTIVITIES
    assert len(state["whales"]) == CORPUS_VALUED_TRANSACTIONS
    assert summary.dead_letters == len(GARBAGE)
    assert [letter[1] for letter in state["dead_letters"]] == ["frame"] * len(GARBAGE)
    # Kept as text: undecodable bytes backslash-escaped, NUL (which PostgreSQL text cannot hold) as \x00.
    assert {letter[3] for letter in state["dead_letters"]} == {
        g.rstrip(b"\n").decode(errors="backslashreplace").replace("\x00", "\\x00") for g in GARBAGE
    }
    # The corpus holds one transaction twice (RPC and Geyser twins): detected twice, stored once.
    twins = {p.name.removesuffix(".geyser.json") for p in CORPUS_DIR.glob("*.geyser.json")}
    assert 0 < len(state["whales"]) <= summary.whales <= len(state["whales"]) + len(twins)
    assert 0 < len(state["signals"]) <= summary.signals <= len(state["signals"]) + len(twins)
    assert all(orjson.loads(s[5])["whale_signature"] for s in state["signals"])
    assert state["prices"], "no price:* hash was written"
    usdc_legs = [w for w in state["whales"] if any(t["address"].startswith("EPjFW") for t in w["tokens"])]
    assert all(w["valueUsd"] > 0 for w in usdc_legs)
    points = influx.export('{__name__="token_prices_price"}')
    assert sum(len(series["values"]) for series in points) >= len(state["prices"])


def test_replaying_twice_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    """A second replay of the same recording (no recovery: from the start) leaves every store as it was."""
    write_recording(tmp_path / "rec", corpus_frames(), GARBAGE)
    replay(settings, [tmp_path / "rec"])
    first = store_state(settings)

    replay(settings, [tmp_path / "rec"])

    assert store_state(settings) == first


def test_whale_documents_carry_the_signers_net_token_changes(settings: Settings, tmp_path: Path) -> None:
    """Each whale is its signer's trade, and each token leg holds the signer's net raw change of that mint.

    The oracle is index.json (balance deltas computed from the raw transactions by other tools), not the
    decoder: DESIGN.md §4 says a token-side amount equals the trader's net balance change for that mint.
    SOL legs are left out: the signer's SOL change also pays rent, tips and fees.
    """
    write_recording(tmp_path / "rec", corpus_frames(), [])
    index = corpus_index()

    replay(settings, [tmp_path / "rec"])

    whales = store_state(settings)["whales"]
    assert len(whales) == CORPUS_VALUED_TRANSACTIONS
    compared = 0
    for whale in whales:
        facts = index[whale["signature"]]
        assert facts["err"] is None, f"failed transaction {whale['signature']} became a whale"
        assert whale["walletAddress"] == facts["signer"]
        for token in whale["tokens"]:
            delta = facts["signer_token_deltas_raw"].get(token["address"])
            if token["address"] == WSOL_MINT or delta is None:
                continue
            assert int(token["rawAmount"]) == abs(delta), (whale["signature"], token)
            assert token["direction"] == ("buy" if delta > 0 else "sell")
            compared += 1
    # 19 of the 22 whales have a non-SOL leg that index.json has the signer's delta for: two move only SOL,
    # and 33LHUzKf...'s recorded token balances do not move at all (its amount comes from the Pump.fun event).
    assert compared == 19


# VictoriaMetrics makes a new series searchable a little after its first sample is flushed (its index
# is cached); a read-back waits this long at most for the count it expects.
SERIES_VISIBLE_S = 15.0


def _samples_once_counted(influx: InfluxEndpoint, start: int, end: int, expected: int) -> list[tuple[str, int, float]]:
    """The token_prices samples in [start, end), read back once `expected` are visible (or the wait ran out)."""
    deadline = time.monotonic() + SERIES_VISIBLE_S
    samples = _token_price_samples(influx, start, end)
    while len(samples) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        samples = _token_price_samples(influx, start, end)
    return samples


def _token_price_samples(influx: InfluxEndpoint, start: int, end: int) -> list[tuple[str, int, float]]:
    """Every token_prices sample with a time in [start, end) Unix seconds: (series, ms, price), sorted."""
    samples = []
    for series in influx.export('{__name__="token_prices_price"}'):
        name = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        samples += [
            (name, ms, value)
            for ms, value in zip(series["timestamps"], series["values"], strict=True)
            if start * 1000 <= ms < end * 1000
        ]
    return sorted(samples)


def _tick_identities(settings: Settings, recording: Path) -> set[tuple[object, ...]]:
    """The natural keys of the price ticks a replay of `recording` derives: a trade's, or a quote's publish time."""
    from bytewax.testing import TestingSink, run_main

    from connectors.replay import ReplaySource
    from flows.graph import FlowSinks, build_flow
    from flows.runtime import flow_config
    from quantbot.models import PriceTick

    out: list[object] = []
    sinks = FlowSinks(TestingSink(out), TestingSink([]), TestingSink([]), TestingSink([]))
    run_main(build_flow(ReplaySource([recording]), sinks, flow_config(settings, [])))
    return {
        (t.token, t.source, t.signature, t.index) if t.signature else (t.token, t.source, t.block_time)
        for t in out
        if isinstance(t, PriceTick)
    }


def test_duplicated_frames_add_no_influx_point(settings: Settings, tmp_path: Path, influx: InfluxEndpoint) -> None:
    """A recording with 5 of its lines duplicated leaves exactly the token_prices points of the original."""
    from quantbot.synthetic import FeedSpec, generate_feed

    # Two transactions a second, so that no two trades share a VictoriaMetrics millisecond (it keeps
    # one of them, its choice) and the comparison can be exact, prices included.
    start = 1_500_000_000
    original = tmp_path / "original" / "feed.jsonl"
    generate_feed(FeedSpec(txs=200, seed=21, garbage_share=0.0, start_time=start, tx_per_s=2.0), original)
    lines = original.read_bytes().splitlines(keepends=True)
    transactions = [i for i, line in enumerate(lines) if b'"kind":"transaction"' in line][10:15]
    duplicated = tmp_path / "duplicated" / "feed.jsonl"
    duplicated.parent.mkdir()
    duplicated.write_bytes(b"".join(line * (2 if i in transactions else 1) for i, line in enumerate(lines)))
    assert len(transactions) == 5
    expected = len(_tick_identities(settings, original))

    replay(settings, [original])
    points = _samples_once_counted(influx, start, start + 3600, expected)
    replay(settings, [duplicated])

    assert len(points) == expected
    assert _samples_once_counted(influx, start, start + 3600, expected) == points


def test_two_recordings_of_the_same_time_keep_every_point(
    settings: Settings, tmp_path: Path, influx: InfluxEndpoint
) -> None:
    """Two recordings covering the same seconds, replayed one after the other: every trade of both keeps its point."""
    from quantbot.synthetic import FeedSpec, generate_feed

    # Two transactions a second: trades of one token on one venue rarely share a second, so none
    # shares a millisecond either (VictoriaMetrics keeps milliseconds; see sinks.influx).
    start = 1_500_100_000
    first, second = tmp_path / "a" / "feed.jsonl", tmp_path / "b" / "feed.jsonl"
    for seed, path in ((31, first), (32, second)):
        generate_feed(FeedSpec(txs=200, seed=seed, garbage_share=0.0, start_time=start, tx_per_s=2.0), path)
    expected = _tick_identities(settings, first) | _tick_identities(settings, second)

    replay(settings, [first])
    replay(settings, [second])

    assert len(_samples_once_counted(influx, start, start + 3600, len(expected))) == len(expected)
