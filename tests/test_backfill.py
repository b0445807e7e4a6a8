"""`quantbot backfill`: `BackfillSource` against the loopback Solana peer, then the whole command into the stores."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymongo
import pytest
import redis

from connectors.backfill import BackfillRange, BackfillSource
from connectors.rpc import RpcPolicy
from quantbot.events import SystemEvent
from quantbot.models import DeadLetter, Frame
from quantbot.ops.peers import ChainSpec, ChainTransaction, SimulatedChain
from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
from quantbot.recordings import RecordingWriter
from quantbot.settings import Settings, load_settings
from tests.conftest import REPO_ROOT, InfluxEndpoint, run_cli, store_env

START = 1_750_000_000
"""A fixed chain start (Unix seconds), so the chain is the same on every run."""
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
"""Named by nearly every generated transaction: enough of them for several pages of signatures."""
JUPITER = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
RAYDIUM = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"
FAST = RpcPolicy(
    requests_per_s=10_000.0,
    max_in_flight=8,
    timeout_s=5.0,
    retry_budget_s=10.0,
    null_retry_s=2.0,
    backoff_base_s=0.01,
    backoff_cap_s=0.05,
    batch_size=20,
)
"""A policy that retries quickly: loopback answers in a millisecond."""
FAULTS = {"http_429_share": 0.1, "http_503_share": 0.1, "null_first_fetch_share": 0.2, "seed": 3}
"""What the provider does wrong in these tests: rate limits, server errors, transactions not there yet."""
ENVELOPE = re.compile(rb'^\{"jsonrpc":"2\.0","result":(?P<result>.*),"id":\d+\}$', re.DOTALL)


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    """3,000 transactions over about 75 slots, a tenth of them skipped: the token program names ~2,900."""
    return SimulatedChain(ChainSpec(txs=3000, seed=5, start_time=START, tx_per_s=100.0, skipped_slot_share=0.1))


def in_range(chain: SimulatedChain, addresses: set[str], low: int, high: int) -> list[ChainTransaction]:
    """The oracle: the chain's own transactions naming one of `addresses` in slots low..high, failed ones out."""
    return [tx for tx in chain.transactions if tx.mentions & addresses and low <= tx.slot <= high and tx.err is None]


def walk_target(chain: SimulatedChain) -> int:
    """A slot M in the chain's middle whose next slot is produced and the one after skipped."""
    middle = (chain.first_slot + chain.last_slot) // 2
    return next(
        m
        for m in range(middle, chain.last_slot - 3)
        if not chain.is_skipped(m + 1) and chain.is_skipped(m + 2) and chain.block_signatures(m + 3)
    )


def run_source(
    source: BackfillSource, recovery: Path | None = None, stop_after: int | None = None
) -> list[Frame | DeadLetter]:
    """Run `source` in a dataflow of its own; `stop_after` items, ask it to stop."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, run_main

    out: list[Frame | DeadLetter] = []
    flow = Dataflow("backfill_test")
    stream = op.input("in", flow, source)
    if stop_after is not None:

        def count(_step: str, _item: Frame | DeadLetter) -> None:
            if len(out) + 1 >= stop_after:
                source.stop()

        op.inspect("stop_after", stream, count)
    op.output("out", stream, TestingSink(out))
    config = None
    if recovery is not None:
        if not recovery.exists():
            recovery.mkdir(parents=True)
            init_db_dir(recovery, 1)
        config = RecoveryConfig(str(recovery))
    from datetime import timedelta

    run_main(flow, epoch_interval=timedelta(seconds=0.1), recovery_config=config)
    return out


def signature_of(item: Frame | DeadLetter) -> str:
    return item.position.removeprefix("backfill:")


# ---------------------------------------------------------------------------------------- the source


@pytest.mark.slow
def test_a_slot_range_emits_exactly_its_transactions_pages_newest_first_each_oldest_first(
    chain: SimulatedChain,
) -> None:
    """Pages of the token program through 429s, 503s and nulls: exactly the range, exact bytes, in page order.

    The upper bound walks past a slot missing in long-term storage (-32009) and a skipped one (-32007),
    each reported once as a `backfill_slot_unavailable` event.
    """
    high = walk_target(chain)
    low = chain.first_slot + 3
    expected = in_range(chain, {TOKEN_PROGRAM}, low, high)
    events: list[SystemEvent] = []
    assert len(expected) > 1000, "the range must span more than one page"
    assert any(tx.slot > high and TOKEN_PROGRAM in tx.mentions for tx in chain.transactions)
    assert any(tx.slot < low and TOKEN_PROGRAM in tx.mentions for tx in chain.transactions)
    with SolanaPeer(chain, faults=Faults(**FAULTS, long_term_missing_slots=frozenset({high + 1})), speed=None) as peer:
        source = BackfillSource(
            peer.http_url,
            FAST,
            [TOKEN_PROGRAM],
            BackfillRange(from_slot=low, to_slot=high),
            on_event=events.append,
        )
        items = run_source(source)
        counters = peer.counters()

    assert counters.responses[429] and counters.responses[503] and counters.null_first_fetches
    assert all(isinstance(item, Frame) for item in items)
    assert sorted(signature_of(i) for i in items) == sorted(tx.signature for tx in expected)
    for item in items:
        tx = chain.by_signature(signature_of(item))
        match = ENVELOPE.match(item.payload.encode())
        assert tx is not None and match is not None and match["result"] == tx.result("base64")
        assert (item.source, item.kind) == ("backfill", "transaction")
    # Pages newest first, each page oldest first: ascending runs, each older than the one before.
    order = [chain.by_signature(signature_of(i)) for i in items]
    runs: list[list[ChainTransaction]] = [[]]
    for earlier, later in itertools.pairwise(order):
        runs[-1].append(earlier)  # type: ignore[arg-type]
        if (later.slot, later.index) < (earlier.slot, earlier.index):  # type: ignore[union-attr]
            runs.append([])
    runs[-1].append(order[-1])  # type: ignore[arg-type]
    assert len(runs) >= 2 and all(len(run) <= 1000 for run in runs)  # pages of 1,000 signatures at most
    for newer, older in itertools.pairwise(runs):
        assert (older[-1].slot, older[-1].index) < (newer[0].slot, newer[0].index)
    assert [(s.slot, s.code) for s in source.unavailable_slots] == [(high + 1, -32009), (high + 2, -32007)]
    assert [e.details["slot"] for e in events] == [high + 1, high + 2]
    assert {e.event_type.value for e in events} == {"backfill_slot_unavailable"}
    assert source.progress.fetched == len(expected) and source.progress.listed == len(expected)


@pytest.mark.slow
def test_two_addresses_share_a_transaction_once(chain: SimulatedChain) -> None:
    """Jupiter and Raydium partitions: the union of their ranges, each signature fetched and emitted once."""
    low, high = chain.first_slot + 20, chain.first_slot + 40
    expected = in_range(chain, {JUPITER, RAYDIUM}, low, high)
    both = [tx for tx in expected if {JUPITER, RAYDIUM} <= tx.mentions]
    with SolanaPeer(chain, speed=None) as peer:
        source = BackfillSource(peer.http_url, FAST, [JUPITER, RAYDIUM], BackfillRange(from_slot=low, to_slot=high))
        items = run_source(source)

    signatures = [signature_of(i) for i in items]
    assert set(signatures) == {tx.signature for tx in expected}
    # A signature listed by both partitions at once may be fetched by both; emitted twice it is stored once.
    assert len(signatures) - len(set(signatures)) <= len(both)
    assert source.progress.listed == len(expected) + len(both)
    assert source.activity.problem(stale_after_s=0.0) is None  # finished: both partitions ended


@pytest.mark.slow
def test_a_transaction_that_cannot_be_fetched_is_a_dead_letter(chain: SimulatedChain) -> None:
    """Nulls given up on at once (null_retry_s tiny): each such signature is a `fetch` dead letter, never dropped."""
    low, high = chain.first_slot + 10, chain.first_slot + 20
    expected = in_range(chain, {JUPITER}, low, high)
    policy = replace(FAST, null_retry_s=0.001)
    with SolanaPeer(chain, faults=Faults(null_first_fetch_share=0.3, seed=4), speed=None) as peer:
        source = BackfillSource(peer.http_url, policy, [JUPITER], BackfillRange(from_slot=low, to_slot=high))
        items = run_source(source)
        nulls = peer.counters().null_first_fetches

    letters = [i for i in items if isinstance(i, DeadLetter)]
    assert nulls and len(letters) == nulls
    assert {signature_of(i) for i in items} == {tx.signature for tx in expected}
    assert all(letter.stage == "fetch" and "null" in letter.reason for letter in letters)
    assert all(orjson.loads(letter.raw)["result"] is None for letter in letters)
    assert source.progress.failed == nulls


@pytest.mark.slow
def test_a_time_range_and_until_signature_bound_what_is_emitted(chain: SimulatedChain) -> None:
    """--since/--until keep block times inclusive; --until-signature keeps what is newer than that one only."""
    jupiter = [tx for tx in chain.transactions if JUPITER in tx.mentions and tx.err is None]
    since, until = jupiter[100].block_time, jupiter[-100].block_time
    mark = jupiter[-50]
    with SolanaPeer(chain, speed=None) as peer:
        timed = run_source(BackfillSource(peer.http_url, FAST, [JUPITER], BackfillRange(since_s=since, until_s=until)))
        newer = run_source(
            BackfillSource(peer.http_url, FAST, [JUPITER], BackfillRange(until_signature=mark.signature))
        )

    assert {signature_of(i) for i in timed} == {tx.signature for tx in jupiter if since <= tx.block_time <= until}
    assert {signature_of(i) for i in newer} == {tx.signature for tx in jupiter[-49:]}


@pytest.mark.slow
def test_a_provider_unavailable_past_the_budget_ends_the_backfill_with_the_error(chain: SimulatedChain) -> None:
    """Every request 503 past retry_budget_s: nothing emitted, the partition ends, `failure` says why (exit 75)."""
    from connectors.rpc import RpcUnavailableError

    policy = replace(FAST, retry_budget_s=0.3)
    with SolanaPeer(chain, faults=Faults(http_503_share=1.0), speed=None) as peer:
        source = BackfillSource(peer.http_url, policy, [JUPITER], BackfillRange(from_slot=chain.first_slot))
        items = run_source(source)

    assert items == []
    assert isinstance(source.failure, RpcUnavailableError)
    assert "HTTP 503" in str(source.failure)


@pytest.mark.slow
def test_stopped_then_resumed_emits_the_rest(chain: SimulatedChain, tmp_path: Path) -> None:
    """Stopped after 300 items, resumed from the recovery directory: together, the whole range; little twice."""
    low, high = chain.first_slot + 3, chain.last_slot - 3
    expected = {tx.signature for tx in in_range(chain, {TOKEN_PROGRAM}, low, high)}
    request = BackfillRange(from_slot=low, to_slot=high)
    with SolanaPeer(chain, speed=None) as peer:
        first = run_source(
            BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], request), tmp_path / "recovery", stop_after=300
        )
        assert 300 <= len(first) < len(expected)
        second = run_source(BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], request), tmp_path / "recovery")

    together = [signature_of(i) for i in [*first, *second]]
    assert set(together) == expected
    # At most what was emitted after the last snapshot (an epoch of 0.1 s) comes again.
    assert len(together) - len(expected) < len(first)


@pytest.mark.slow
def test_resuming_the_newest_page_after_the_chain_moved_on_loses_nothing(chain: SimulatedChain, tmp_path: Path) -> None:
    """Stopped inside the newest page, resumed after hundreds of newer transactions: nothing in range is skipped.

    Listed again, the newest page holds the newer transactions (out of range) and fewer old ones: the
    resume goes on after the last signature it handled, not after as many entries.
    """
    mark = next(tx for tx in chain.transactions if TOKEN_PROGRAM in tx.mentions)
    request = BackfillRange(until_signature=mark.signature)
    with SolanaPeer(chain, speed=SPEED) as peer:
        _wait_until(lambda: chain.visible_count(peer.elapsed_s) >= STOP_AT_VISIBLE)
        visible_at_start = chain.visible_count(peer.elapsed_s)
        first = run_source(
            BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], request), tmp_path / "recovery", stop_after=300
        )
        moved_on = chain.visible_count(peer.elapsed_s) + MOVED_ON
        _wait_until(lambda: chain.visible_count(peer.elapsed_s) >= moved_on)
        second = run_source(BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], request), tmp_path / "recovery")

    wanted = {
        tx.signature
        for tx in chain.transactions[:visible_at_start]
        if TOKEN_PROGRAM in tx.mentions and tx.err is None and tx is not mark and tx.due_s >= mark.due_s
    }
    together = {signature_of(i) for i in [*first, *second]}
    assert len(first) < len(wanted)
    assert wanted <= together, f"{len(wanted - together)} transactions in range were skipped"


@pytest.mark.slow
def test_resuming_another_range_is_refused(chain: SimulatedChain, tmp_path: Path) -> None:
    """A recovery directory of slots N..M refuses a backfill of other slots: nothing is emitted, the reason said."""
    low, high = chain.first_slot + 3, chain.last_slot - 3
    with SolanaPeer(chain, speed=None) as peer:
        run_source(
            BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], BackfillRange(from_slot=low, to_slot=high)),
            tmp_path / "recovery",
            stop_after=50,
        )
        other = BackfillSource(peer.http_url, FAST, [TOKEN_PROGRAM], BackfillRange(from_slot=low + 1, to_slot=high))
        items = run_source(other, tmp_path / "recovery")

    assert items == []
    assert other.refusal is not None
    assert f"slots {low}..{high}" in str(other.refusal) and "start fresh" in str(other.refusal)


# ------------------------------------------------------------------------------------------ the range


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to_slot": 5}, "needs a lower bound"),
        ({"from_slot": 9, "to_slot": 5}, "--from-slot 9 is after --to-slot 5"),
        ({"from_slot": 1, "since_s": 5}, "one kind of range"),
        ({"since_s": 1, "until_signature": "x"}, "one kind of range"),
        ({"since_s": 9, "until_s": 5}, "is after --until"),
    ],
)
def test_a_range_refuses_what_cannot_be_meant(kwargs: dict[str, Any], message: str) -> None:
    """Mixed kinds of bounds, reversed bounds and a missing lower bound are refused with the reason."""
    with pytest.raises(ValueError, match=re.escape(message)):
        BackfillRange(**kwargs)


def test_a_range_keeps_what_lies_inside() -> None:
    """Slots and block times are inclusive; failed transactions only when asked; past the lower bound paging stops."""
    from connectors.rpc import SignatureInfo

    slots = BackfillRange(from_slot=10, to_slot=20)
    times = BackfillRange(since_s=100, until_s=200, include_failed=True)

    assert slots.keeps(SignatureInfo("a", 10, None, False), 20) and slots.keeps(SignatureInfo("a", 20, None, False), 20)
    assert not slots.keeps(SignatureInfo("a", 21, None, False), 20)
    assert not slots.keeps(SignatureInfo("a", 15, None, True), 20)
    assert times.keeps(SignatureInfo("a", 1, 100, True), 99) and not times.keeps(SignatureInfo("a", 1, 201, False), 99)
    assert slots.passed(SignatureInfo("a", 9, None, False)) and not slots.passed(SignatureInfo("a", 10, None, False))
    assert times.passed(SignatureInfo("a", 1, 99, False))


# ------------------------------------------------------------------------------------------ the stores


@pytest.fixture
def stores(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> Iterator[Callable[[str], dict[str, str]]]:
    """Environments for runs into fresh databases of the test stores, migrated, with every valued trade a whale.

    Each call makes a new PostgreSQL and Mongo database, flushes the Redis test database, and deletes the
    flow's series from VictoriaMetrics, so that one test can compare two runs.
    """
    from quantbot.ops import schema as operations
    from quantbot.ops.demo import ensure_demo_strategy

    made: list[str] = []

    def fresh(name: str) -> dict[str, str]:
        database = f"{pg_url.rsplit('/', 1)[1]}_{name}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        made.append(database)
        redis.Redis.from_url(redis_url).flushdb()
        _delete_flow_series(influx.url)
        env = {
            **store_env(
                pg_url.rsplit("/", 1)[0] + f"/{database}",
                redis_url,
                mongo_url,
                influx,
                mongo_db=database,
                stack_dir=tmp_path / "stack",
            ),
            "QUANTBOT_WHALES_TIERS": '[{name = "test", min_usd = 1.0}]',
            "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": "0.5",
            "QUANTBOT_REDIS_PRICE_TTL_S": "86400",  # the comparison outlives the schema's 30 s
            "QUANTBOT_SOLANA_REQUESTS_PER_S": "10000",
            "QUANTBOT_SOLANA_BACKOFF_BASE_S": "0.01",
            "QUANTBOT_SOLANA_BACKOFF_CAP_S": "0.05",
            "QUANTBOT_SOLANA_RETRY_BUDGET_S": "20",
            "QUANTBOT_LOGGING_LEVEL": "WARNING",
        }
        settings = _settings(env)
        operations.migrate_up(settings)
        ensure_demo_strategy(settings)
        return env

    yield fresh
    with pymongo.MongoClient(mongo_url) as client:
        for database in made:
            client.drop_database(database)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for database in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(config_dir=REPO_ROOT / "config", environ=env)


def _delete_flow_series(url: str) -> None:
    import urllib.parse
    import urllib.request

    from quantbot.ops.readback import FLOW_SERIES

    query = urllib.parse.urlencode({"match[]": FLOW_SERIES})
    with urllib.request.urlopen(f"{url}/api/v1/admin/tsdb/delete_series?{query}", timeout=10):
        pass


def _snapshot(env: dict[str, str]) -> dict[str, Any]:
    from quantbot.ops.readback import store_snapshot

    snapshot = store_snapshot(_settings(env))
    assert snapshot["mongo.whale_activity"], "no whale was stored: the comparison would prove nothing"
    return snapshot


def _compare(first: dict[str, Any], second: dict[str, Any], recording: Path, env: dict[str, str]) -> str | None:
    """The first difference of two snapshots, a sample two trades share in a VictoriaMetrics millisecond aside.

    Which of two such trades' samples the server keeps depends on how the writes were cut into requests
    (`quantbot.ops.readback.shared_milliseconds`); `recording` holds the transactions in the order stored.
    """
    from quantbot.ops.readback import first_difference, settle_shared, shared_milliseconds

    shared = shared_milliseconds(recording, _settings(env))
    for snapshot in (first, second):
        settle_shared(snapshot["influx"], shared)
    return first_difference(first, second)


SPEED = 4.0
"""Chain seconds per wall second of the growing chain: 400 transactions a second."""
STOP_AT_VISIBLE = 1200
"""Transactions visible when the growing chain's backfill starts: more than its newest page."""
MOVED_ON = 400
"""Transactions the growing chain makes between the stop and the resume: the newest page shifts by that."""
WAIT_S = 30.0
"""A growing chain reaches any of these counts in seconds; this long is a broken peer."""


def _wait_until(check: Callable[[], bool]) -> None:
    """Poll `check` until it holds; fail after `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, "the peer's chain did not grow"
        time.sleep(0.05)  # a poll, bounded by the deadline above


KILL_AFTER_WHALES = 20
"""The crashed backfill is killed once this many whales are stored: mid-way (the range holds hundreds)."""
STOP_DEADLINE_S = 30.0
"""A backfill sent SIGTERM exits within this (a process supervisor's usual grace period before SIGKILL)."""
KILL_DEADLINE_S = 90.0
"""Start-up and the first whales take seconds; a backfill storing none for this long is broken."""


def _wait_for_whales(env: dict[str, str], process: subprocess.Popen[Any], wanted: int) -> int:
    """Poll the whales stored until `wanted` are (the process still running); how many there were."""
    deadline = time.monotonic() + KILL_DEADLINE_S
    with pymongo.MongoClient(env["QUANTBOT_MONGO_URL"]) as client:
        whales = client[env["QUANTBOT_MONGO_DB"]].whale_activity
        while (stored := whales.count_documents({})) < wanted:
            assert process.poll() is None, f"the backfill ended ({process.returncode}) before the kill"
            assert time.monotonic() < deadline, f"{stored} whales stored after {KILL_DEADLINE_S:.0f} s"
            time.sleep(0.1)  # a poll, bounded by the deadline above
    return stored


def _replay_of(chain: SimulatedChain, transactions: list[ChainTransaction], path: Path) -> Path:
    """A recording (in directory `path`) of `transactions` as the peer answers getTransaction, in the order given."""
    writer = RecordingWriter(path)
    writer.write(
        [
            Frame(
                received_ns=(START + n) * 1_000_000_000,
                source="backfill",
                kind="transaction",
                payload=(b'{"jsonrpc":"2.0","result":' + tx.result("base64") + b',"id":1}').decode(),
                position=f"backfill:{tx.signature}",
            )
            for n, tx in enumerate(transactions)
        ]
    )
    writer.close()
    (recording,) = writer.files
    return recording


@pytest.mark.slow
def test_a_slot_range_stores_what_a_replay_of_the_chains_own_list_stores(
    chain: SimulatedChain, stores: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    """Backfilling Jupiter over slots N..M (429s, 503s, nulls) leaves the stores a replay of the chain's list leaves."""
    from flows.backfill import BackfillRequest, backfill
    from flows.replay import replay

    low, high = chain.first_slot + 10, chain.first_slot + 50
    expected = in_range(chain, {JUPITER}, low, high)
    assert len(expected) < 1000  # one page: emitted oldest first, the chain's order

    env = stores("backfill")
    with SolanaPeer(chain, faults=Faults(**FAULTS), speed=None) as peer:
        settings = _settings({**env, "QUANTBOT_SOLANA_RPC_URL": peer.http_url})
        summary = backfill(settings, BackfillRequest((JUPITER,), BackfillRange(from_slot=low, to_slot=high)))
    backfilled = _snapshot(env)

    env = stores("oracle")
    recording = _replay_of(chain, expected, tmp_path / "oracle")
    replay(_settings(env), [recording])
    oracle = _snapshot(env)

    assert summary.fetched == len(expected) and summary.fetch_failures == 0
    assert {w["_id"] for w in backfilled["mongo.whale_activity"]} <= {tx.signature for tx in expected}
    assert _compare(backfilled, oracle, recording, env) is None


@pytest.mark.slow
def test_sigterm_and_kill_9_mid_backfill_then_resume_leave_the_stores_of_an_uninterrupted_backfill(
    chain: SimulatedChain, stores: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    """Backfill stopped by SIGTERM, resumed, SIGKILLed, resumed to the end: the stores of a run left alone."""
    low, high = chain.first_slot + 3, chain.last_slot - 3
    command = [
        sys.executable,
        "-m",
        "quantbot",
        "backfill",
        "--program",
        JUPITER,
        "--from-slot",
        str(low),
        "--to-slot",
        str(high),
        "--no-progress",
    ]
    # 100 calls/s in batches of 5 make the ~850 Jupiter transactions last about 9 s: the kill lands mid-way.
    # The uninterrupted reference runs at full speed: the pace changes when, not what, is stored.
    paced = {"QUANTBOT_SOLANA_REQUESTS_PER_S": "100", "QUANTBOT_SOLANA_BACKFILL_BATCH_SIZE": "5"}
    with SolanaPeer(chain, faults=Faults(**FAULTS), speed=None) as peer:
        env = {**stores("reference"), "QUANTBOT_SOLANA_RPC_URL": peer.http_url}
        reference = run_cli(*command[3:], env=env)
        assert reference.returncode == 0, reference.stderr
        uninterrupted = _snapshot(env)

        env = {**stores("crashed"), **paced, "QUANTBOT_SOLANA_RPC_URL": peer.http_url}
        recovery = ["--recovery-dir", str(tmp_path / "recovery")]
        # First a clean stop (SIGTERM: exit 0, "stopped"), then a crash (SIGKILL), then a run to the end.
        stopped = subprocess.Popen(
            [*command, *recovery],
            env={"PATH": "/usr/bin:/bin", **env},
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stopped_at = _wait_for_whales(env, stopped, KILL_AFTER_WHALES)
        finally:
            stopped.send_signal(signal.SIGTERM)
            out, err = stopped.communicate(timeout=STOP_DEADLINE_S)
        assert stopped.returncode == 0, err
        assert "stopped before the end" in out
        crashed = subprocess.Popen(
            [*command, *recovery],
            env={"PATH": "/usr/bin:/bin", **env},
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            killed_at = _wait_for_whales(env, crashed, stopped_at + KILL_AFTER_WHALES)
        finally:
            os.kill(crashed.pid, signal.SIGKILL)
            crashed.wait()
        resumed = run_cli(*command[3:], *recovery, env=env)
        assert resumed.returncode == 0, resumed.stderr
        after = _snapshot(env)

    recording = _replay_of(chain, in_range(chain, {JUPITER}, low, high), tmp_path / "order")
    assert 0 < stopped_at < killed_at < len(after["mongo.whale_activity"])
    assert _compare(uninterrupted, after, recording, env) is None


@pytest.mark.slow
def test_unavailable_slots_are_system_events(chain: SimulatedChain, stores: Callable[[str], dict[str, str]]) -> None:
    """Slots walked past to fix --to-slot (one -32009, one -32007) are rows of system_events, and in the summary."""
    high = walk_target(chain)
    env = stores("events")
    faults = Faults(long_term_missing_slots=frozenset({high + 1}))
    with SolanaPeer(chain, faults=faults, speed=None) as peer:
        env = {**env, "QUANTBOT_SOLANA_RPC_URL": peer.http_url}
        result = run_cli(
            "backfill", "--program", RAYDIUM, "--from-slot", str(high - 5), "--to-slot", str(high), env=env
        )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        rows = conn.execute(
            "SELECT details->>'slot', details->>'code' FROM system_events"
            " WHERE event_type = 'backfill_slot_unavailable' ORDER BY 1"
        ).fetchall()
    assert rows == [(str(high + 1), "-32009"), (str(high + 2), "-32007")]
    assert re.search(r"slots without a block walked past\s*│\s*2", result.stdout), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-slot", "1"], "give at least one --program or --address"),
        (["--program", "nope", "--from-slot", "1"], "`nope` is not a base58 program id"),
        (["--program", JUPITER, "--to-slot", "5"], "needs a lower bound"),
        (["--program", JUPITER, "--from-slot", "9", "--to-slot", "5"], "--from-slot 9 is after --to-slot 5"),
        (["--program", JUPITER, "--from-slot", "1", "--since", "2026-01-01T00:00Z"], "one kind of range"),
        (["--program", JUPITER, "--since", "2026-01-01T00:00"], "has no time zone"),
        (["--program", JUPITER, "--since", "yesterday"], "not an ISO 8601 time"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    """Each wrong invocation exits 2 with a message saying what is wrong, before anything connects."""
    from click.testing import CliRunner

    from quantbot.ops.cli import cli

    result = CliRunner().invoke(cli, ["backfill", *args])

    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.slow
def test_no_rpc_url_exits_78_naming_the_variable(stores: Callable[[str], dict[str, str]]) -> None:
    """Without QUANTBOT_SOLANA_RPC_URL the backfill exits 78 (EX_CONFIG) and says which variable to set."""
    result = run_cli("backfill", "--program", JUPITER, "--from-slot", "1", env=stores("no_rpc"))

    assert result.returncode == 78
    assert "QUANTBOT_SOLANA_RPC_URL" in result.stderr


@pytest.mark.slow
def test_a_provider_down_past_the_budget_exits_75(
    chain: SimulatedChain, stores: Callable[[str], dict[str, str]]
) -> None:
    """Every RPC request 503 past retry_budget_s: exit 75 (try again later), the provider's URL masked."""
    env = {**stores("down"), "QUANTBOT_SOLANA_RETRY_BUDGET_S": "0.5"}
    with SolanaPeer(chain, faults=Faults(http_503_share=1.0), speed=None) as peer:
        keyed = f"{peer.http_url}?api-key=SECRETKEY"
        result = run_cli(
            "backfill", "--program", JUPITER, "--from-slot", "1", env={**env, "QUANTBOT_SOLANA_RPC_URL": keyed}
        )

    assert result.returncode == 75, result.stderr
    assert "HTTP 503" in result.stderr and "run the same command again later" in result.stderr
    assert "SECRETKEY" not in result.stdout + result.stderr
