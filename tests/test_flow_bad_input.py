"""Bad input through the whole flow into the real stores: a decoder failure and implausible values become
dead letters in PostgreSQL, nothing of them reaches the other stores, and the replay goes on to the end.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymongo
import pytest
import redis

from flows.replay import replay
from quantbot.models import Frame, FrameKind
from quantbot.settings import Settings
from quantbot.solana import decode
from quantbot.solana.decode import decode_transaction
from quantbot.solana.normalise import parse_transactions
from quantbot.solana.programs import pumpfun
from tests.conftest import CORPUS_DIR, run_cli
from tests.test_flow import settings, write_recording  # noqa: F401 - `settings` is the stores fixture

NS = 1_000_000_000
LATENCY_S = 2
"""Seconds between a block and its frame's receipt in the recordings built here."""
PUMPFUN_TX = "3tJczs8y2bR8"
"""The Pump.fun buy whose decoder is forced to fail."""
ROUTE_TX = "1ZSq1Aa2i6ES"
"""A Jupiter route edited into bad values (block time 1718213044)."""
SOL_USD = 150.0


def _corpus_file(prefix: str) -> Path:
    (path,) = [p for p in CORPUS_DIR.glob(f"{prefix}*.json") if ".geyser." not in p.name]
    return path


def _block_time(document: dict[str, Any]) -> int | None:
    block_time: int | None = document.get("result", document).get("blockTime")
    return block_time


def _frame(document: dict[str, Any], position: int) -> Frame:
    """A transaction frame received `LATENCY_S` after its block (receive time unknown without a block time)."""
    block_time = _block_time(document)
    received = (block_time + LATENCY_S) * NS if block_time else 0
    return Frame(received, "corpus", FrameKind.TRANSACTION.value, orjson.dumps(document).decode(), f"test@{position}")


def _price_frame(ts: int, received_s: int) -> Frame:
    payload = orjson.dumps({"symbol": "SOL/USD", "price": SOL_USD, "ts": ts}).decode()
    return Frame(received_s * NS, "feed", FrameKind.PRICE.value, payload)


def _good_frames() -> list[Frame]:
    """A SOL/USD quote, then every RPC-shaped corpus transaction."""
    files = sorted(p for p in CORPUS_DIR.glob("*.json") if p.name != "index.json" and ".geyser." not in p.name)
    quote = _price_frame(1_700_000_000, 1_700_000_001)
    return [quote, *(_frame(orjson.loads(p.read_bytes()), n) for n, p in enumerate(files))]


def _dead_letters(config: Settings) -> list[tuple[str, str, str]]:
    assert config.postgres.url
    with psycopg.connect(config.postgres.url) as conn:
        rows = conn.execute("SELECT position, stage, reason FROM dead_letters ORDER BY position").fetchall()
    return [(str(position), str(stage), str(reason)) for position, stage, reason in rows]


def _whale_signatures(config: Settings) -> set[str]:
    assert config.mongo.url
    with pymongo.MongoClient(config.mongo.url) as client:
        return {doc["signature"] for doc in client[config.mongo.db].whale_activity.find({}, {"signature": 1})}


def _priced_tokens(config: Settings) -> set[str]:
    assert config.redis.url
    client = redis.Redis.from_url(config.redis.url, decode_responses=True)
    return {key.removeprefix("price:") for key in client.scan_iter(match="price:*")}


def _mints(frame: Frame) -> set[str]:
    return {
        leg.mint
        for tx in parse_transactions(frame.payload)
        for activity in decode_transaction(tx)
        for leg in (activity.input, activity.output)
        if leg is not None
    }


def test_a_failing_decoder_in_a_replay_is_a_dead_letter_and_nothing_else(
    settings: Settings,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pump.fun's decoder raising mid-replay: its transaction is a `decode` dead letter in PostgreSQL; no
    whale and no price of its token come from it; every other transaction is stored."""
    # Arrange
    quote, *transactions = _good_frames()
    failing = next(f for f in transactions if _sig(f).startswith(PUMPFUN_TX))
    # The other transactions: those Pump.fun's program plays no part in.
    others = [f for f in transactions if pumpfun.PROGRAM_ID not in _keys(f)]
    frames = [quote, *others[:5], failing, *others[5:]]
    only_its_own = _mints(failing) - set().union(*(_mints(f) for f in others))
    assert only_its_own, "the Pump.fun trade should price a token no other transaction trades"
    write_recording(tmp_path / "rec", frames, [])
    monkeypatch.setitem(decode.DECODERS, pumpfun.PROGRAM_ID, _failing_decoder)

    # Act
    summary = replay(settings, [tmp_path / "rec"])

    # Assert
    signature = _sig(failing)
    letters = _dead_letters(settings)
    # Positions are the recording's (file@line), made unique per transaction by its signature.
    assert [(p.rpartition("#")[2], s) for p, s, _ in letters] == [(signature, "decode")]
    assert pumpfun.PROGRAM_ID in letters[0][2] and "RuntimeError" in letters[0][2]
    assert summary.dead_letters == 1
    assert signature not in _whale_signatures(settings)
    priced = _priced_tokens(settings)
    assert not only_its_own & priced
    route = next(f for f in others if _sig(f).startswith(ROUTE_TX))
    assert _mints(route) <= priced, "the other transactions' trades are stored"


def _keys(frame: Frame) -> list[str]:
    (tx,) = parse_transactions(frame.payload)
    return tx.account_keys


def _sig(frame: Frame) -> str:
    (tx,) = parse_transactions(frame.payload)
    return tx.signature


def _failing_decoder(inv: Any, ctx: Any) -> Any:
    raise RuntimeError("forced decoder failure")


def _bad_route_frames() -> list[tuple[Frame, str]]:
    """Copies of the route transaction, each with one implausible value, and the value its reason names."""
    route: dict[str, Any] = orjson.loads(_corpus_file(ROUTE_TX).read_bytes())
    block_time = _block_time(route)
    assert block_time is not None
    out: list[tuple[Frame, str]] = []
    edits: list[tuple[str, Any, str]] = [
        ("blockTime", 1_262_304_000, "1262304000"),
        ("blockTime", block_time + 86_400, str(block_time + 86_400)),
        ("amount", "-5", "-5"),
        ("decimals", 255, "255"),
        ("preBalances", None, "preBalances"),
    ]
    for number, (field, value, named) in enumerate(edits):
        document = copy.deepcopy(route)
        if field == "blockTime":
            document["blockTime"] = value
        elif field == "preBalances":
            document["meta"]["preBalances"] = document["meta"]["preBalances"][:-1]
        else:
            document["meta"]["postTokenBalances"][0]["uiTokenAmount"][field] = value
        payload = orjson.dumps(document).decode()
        out.append(
            (
                Frame((block_time + LATENCY_S) * NS, "corpus", FrameKind.TRANSACTION.value, payload, f"bad@{number}"),
                named,
            )
        )
    return out


def test_a_recording_mixing_bad_values_replays_to_the_end(
    settings: Settings,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """A millisecond price time and transactions with impossible values, among good frames: `quantbot replay`
    exits 0, each bad frame is a dead letter naming its value, and the good frames are all stored."""
    # Arrange
    good = _good_frames()
    bad = _bad_route_frames()
    received = good[0].received_ns // NS
    ms_price = _price_frame(received * 1_000, received)
    frames = [good[0], ms_price, *[f for f, _ in bad[:2]], *good[1:], *[f for f, _ in bad[2:]]]
    write_recording(tmp_path / "rec", frames, [])
    env = _cli_env(settings)

    # Act
    result = run_cli("replay", "--no-progress", str(tmp_path / "rec"), env=env)

    # Assert
    assert result.returncode == 0, result.stderr[-3000:]
    letters = _dead_letters(settings)
    stages = sorted(stage for _, stage, _ in letters)
    assert stages == sorted(["price"] + ["normalise"] * len(bad)), letters
    reasons = " | ".join(reason for _, _, reason in letters)
    for _, named in bad:
        assert named in reasons, reasons
    assert "milliseconds" in reasons
    assert _whale_signatures(settings)
    priced = _priced_tokens(settings)
    for prefix in (ROUTE_TX, PUMPFUN_TX):
        assert _mints(next(f for f in good[1:] if _sig(f).startswith(prefix))) <= priced


def _cli_env(config: Settings) -> dict[str, str]:
    """The environment that makes `quantbot` see the same stores and thresholds as `config`."""
    assert config.postgres.url and config.redis.url and config.mongo.url and config.influx.url
    token = config.influx.token.get_secret_value() if config.influx.token else ""
    tiers = ", ".join(f'{{name = "{t.name}", min_usd = {t.min_usd}}}' for t in config.whales.tiers)
    return {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": config.postgres.url,
        "QUANTBOT_REDIS_URL": config.redis.url,
        "QUANTBOT_MONGO_URL": config.mongo.url,
        "QUANTBOT_MONGO_DB": config.mongo.db,
        "QUANTBOT_INFLUX_URL": config.influx.url,
        "QUANTBOT_INFLUX_TOKEN": token,
        "QUANTBOT_WHALES_TIERS": f"[{tiers}]",
        "QUANTBOT_STACK_DIR": config.stack.dir,
    }


def test_every_bad_input_at_once_is_a_dead_letter_and_the_good_frames_are_all_stored(
    settings: Settings,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 8's whole list in one replay: garbage lines, a decoder failure, a millisecond price time,
    impossible transaction values, duplicated lines and a corrupted .gz recording beside a good one. The replay
    finishes; each bad input is exactly one dead letter of its stage; the other stores hold exactly what a
    replay of the good frames alone writes; and a resume of the same recovery directory with another
    recording is refused."""
    # Arrange
    from quantbot.errors import ResumeRefusedError
    from quantbot.recordings import RecordingWriter
    from tests.test_flow import GARBAGE, store_state
    from tests.test_replay_integrity import corrupt_gzip

    good = _good_frames()
    failing = next(f for f in good if f.kind == "transaction" and _sig(f).startswith(PUMPFUN_TX))
    # The good frames: the quote and the transactions Pump.fun's (failing) program plays no part in.
    good_only = [good[0], *(f for f in good[1:] if pumpfun.PROGRAM_ID not in _keys(f))]
    bad = [f for f, _ in _bad_route_frames()]
    received = good[0].received_ns // NS
    ms_price = _price_frame(received * 1_000, received)
    mixed = [good[0], ms_price, *good_only[1:6], *good_only[1:6], failing, *bad, *good_only[6:]]  # 5 lines twice
    write_recording(tmp_path / "mixed", mixed, GARBAGE)
    damaged = RecordingWriter(tmp_path / "mixed", prefix="quotes", compression="gzip")
    damaged.write([_price_frame(received + i, received + i) for i in range(2_000)])
    damaged.close()
    (gz,) = damaged.files
    gz.write_bytes(corrupt_gzip(gz.read_bytes()))
    write_recording(tmp_path / "good", good_only, [])
    monkeypatch.setitem(decode.DECODERS, pumpfun.PROGRAM_ID, _failing_decoder)

    # Act
    summary = replay(settings, [tmp_path / "mixed"], recovery_dir=tmp_path / "recovery")
    after_mixed = store_state(settings)
    replay(settings, [tmp_path / "good"])
    after_good = store_state(settings)

    # Assert
    stages = sorted(stage for _, stage, _ in _dead_letters(settings))
    expected = ["decode", "price", "recording", *["frame"] * len(GARBAGE), *["normalise"] * len(bad)]
    assert stages == sorted(expected)
    assert len(summary.warnings) == 1 and gz.name in summary.warnings[0]
    # Everything a replay of the good frames alone writes was already there: nothing good was lost.
    for part in ("signals", "whales", "prices"):
        assert after_mixed[part] == after_good[part], part
    assert after_mixed["whales"] and after_mixed["prices"]
    with pytest.raises(ResumeRefusedError, match="delete the recovery directory"):
        replay(settings, [tmp_path / "good"], recovery_dir=tmp_path / "recovery")
