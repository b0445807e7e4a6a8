"""Scale-out: a replay parsed on many workers and valued in recorded order gives the outputs of one worker.

Pure tests of the in-order valuation and of the cluster's arguments; the whole graph in one process with
several workers (Bytewax's `cluster_main`) against testing sinks; and `quantbot replay` as one process with
two workers and as two processes with two workers each, into real stores, compared with one worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.replay import ReplayPosition, ReplaySource
from flows.graph import FlowConfig, FlowSinks, build_flow
from flows.runtime import flow_config, recovery_config
from quantbot.analytics import AnalyticsConfig
from quantbot.cluster import ClusterSpec, ClusterSpecError, parse_addresses
from quantbot.models import WSOL_MINT, Activity, ActivityKind, DeadLetter, InstructionIndex, PriceTick, TokenAmount
from quantbot.ops import readback, stack
from quantbot.ops import schema as operations
from quantbot.ops.demo import demo_strategy_document, ensure_demo_strategy
from quantbot.pricing import FeedQuote, PricingConfig
from quantbot.settings import Settings, load_settings
from quantbot.signals import load_strategies
from quantbot.steps import DecodedTransaction, InOrderValuation, Sequenced, Valuable, Valuation
from quantbot.synthetic import FeedSpec, generate_feed
from quantbot.units import SECONDS_PER_DAY
from tests.conftest import REPO_ROOT, transactions_parsed

T0 = 1_750_000_000
TOKEN_X = "X1111111111111111111111111111111111111111111"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
PRICING = PricingConfig(stable_mints=frozenset({USDC}))
ANALYTICS = AnalyticsConfig()
# Small enough for the suite (a few seconds per run), large enough for prices, whales and signals.
FLOW_TXS = 1500
CLI_TXS = 2000
WHALE_SCALE_DOWN = 10
# Snapshots every half second: the cluster's kill lands after one, so the restart resumes mid-stream.
SNAPSHOT_INTERVAL_S = "0.5"
# Prices must outlive the comparison: the schema's 30 s TTL would expire them between the runs.
PRICE_TTL_S = "86400"
RUN_TIMEOUT_S = 300
POLL_S = 0.1
KILL_AFTER_S = 10.0
"""The cluster, writing, takes its first snapshot within this (snapshots every `SNAPSHOT_INTERVAL_S`)."""
SNAPSHOT_WAIT_S = 2 * float(SNAPSHOT_INTERVAL_S)
KILL_SPEED = "1"
"""Recorded pace: 2,000 transactions at 400/s stream for 5 s, long enough to be killed mid-stream."""


# ---------------------------------------------------------------------------------------------- units


def _swap(signature: str, sol: float, x: float, at: int) -> DecodedTransaction:
    """A transaction selling `sol` SOL for `x` of TOKEN_X: it prices TOKEN_X once SOL is priced."""
    activity = Activity(
        signature=signature,
        slot=1,
        block_time=at,
        kind=ActivityKind.SWAP,
        index=InstructionIndex(0),
        trader="W1111111111111111111111111111111111111111111",
        venue="raydium_amm_v4",
        input=TokenAmount(WSOL_MINT, int(sol * 1e9), 9),
        output=TokenAmount(TOKEN_X, int(x * 1e6), 6),
    )
    return DecodedTransaction(f"rec@{signature}", signature, (activity,))


def _stream() -> list[list[Valuable]]:
    """Numbered lists as a replay's parse step gives them: a quote, trades, and empty lists between."""
    quote = FeedQuote(token=WSOL_MINT, price_usd=150.0, ts=T0, source="feed")
    lists: list[list[Valuable]] = [[quote]]
    for i in range(1, 40):
        if i % 5 == 0:
            lists.append([])  # a frame that was a dead letter, or decoded to nothing worth valuing
        else:
            lists.append([_swap(f"s{i}", 1.0 + i / 10, 100.0 + i, T0 + i)])
    lists.append([FeedQuote(token=WSOL_MINT, price_usd=160.0, ts=T0 + 50, source="feed")])
    lists.append([_swap("last", 2.0, 300.0, T0 + 51)])
    return lists


def _valued_in_order(lists: list[list[Valuable]]) -> list[object]:
    valuation = Valuation()
    return [booked for items in lists for item in items for booked in valuation.book(item, PRICING, ANALYTICS)]


def test_out_of_order_lists_are_valued_as_in_stream_order() -> None:
    """Lists arriving shuffled are valued exactly as one worker reading the stream in order values them."""
    lists = _stream()
    numbered = [Sequenced(seq, items) for seq, items in enumerate(lists)]
    random.Random(3).shuffle(numbered)
    state = InOrderValuation()
    out = [valued for n in numbered for valued in state.accept(n, PRICING, ANALYTICS)]
    assert out == _valued_in_order(lists)
    assert state.next_seq == len(lists)
    assert state.waiting == {}


def test_a_list_waits_for_every_list_before_it() -> None:
    """Nothing is valued while an earlier number is missing; its arrival releases the whole run in order."""
    lists = _stream()[:4]
    state = InOrderValuation()
    assert state.accept(Sequenced(2, lists[2]), PRICING, ANALYTICS) == []
    assert state.accept(Sequenced(3, lists[3]), PRICING, ANALYTICS) == []
    assert state.accept(Sequenced(1, lists[1]), PRICING, ANALYTICS) == []
    assert sorted(state.waiting) == [1, 2, 3]
    released = state.accept(Sequenced(0, lists[0]), PRICING, ANALYTICS)
    assert released == _valued_in_order(lists)
    assert state.waiting == {}


def test_a_repeated_number_is_valued_once() -> None:
    """A list already valued or already waiting is ignored: each number is valued once."""
    lists = _stream()[:3]
    state = InOrderValuation()
    first = state.accept(Sequenced(0, lists[0]), PRICING, ANALYTICS)
    assert state.accept(Sequenced(0, lists[0]), PRICING, ANALYTICS) == []
    assert state.accept(Sequenced(2, lists[2]), PRICING, ANALYTICS) == []
    assert state.accept(Sequenced(2, lists[2]), PRICING, ANALYTICS) == []
    assert first + state.accept(Sequenced(1, lists[1]), PRICING, ANALYTICS) == _valued_in_order(lists)


def test_a_snapshot_resumes_the_numbering_and_the_prices() -> None:
    """A pickled state, restored, values the rest of the stream as an uninterrupted one does."""
    lists = _stream()
    cut = len(lists) // 2
    state = InOrderValuation()
    out = [v for seq in range(cut) for v in state.accept(Sequenced(seq, lists[seq]), PRICING, ANALYTICS)]
    restored: InOrderValuation = pickle.loads(pickle.dumps(state))  # noqa: S301 - as Bytewax snapshots it
    out += [
        v for seq in range(cut, len(lists)) for v in restored.accept(Sequenced(seq, lists[seq]), PRICING, ANALYTICS)
    ]
    assert out == _valued_in_order(lists)


@pytest.mark.parametrize(
    ("workers", "process_id", "addresses", "problem"),
    [
        (0, None, "", "workers must be at least 1"),
        (1, 0, "", "without the cluster's addresses"),
        (1, None, "a:1;b:2", "without a process id"),
        (1, 2, "a:1;b:2", "not an index into the 2 addresses"),
    ],
)
def test_an_impossible_cluster_is_refused(workers: int, process_id: int | None, addresses: str, problem: str) -> None:
    """A worker count, process id and address list that describe no cluster are refused, naming the problem."""
    with pytest.raises(ClusterSpecError, match=problem):
        ClusterSpec(workers, process_id, parse_addresses(addresses) if addresses else ())


@pytest.mark.parametrize("text", ["", "localhost", "h:0", "h:70000", "h:1;h:1", ":1"])
def test_malformed_addresses_are_refused(text: str) -> None:
    """Addresses without a port, with one out of range, or repeated, are refused."""
    with pytest.raises(ClusterSpecError):
        parse_addresses(text)


def test_addresses_are_read_in_order() -> None:
    """Bytewax's `host:port;host:port`, spaces tolerated, in the order given (process I is the I-th)."""
    assert parse_addresses("127.0.0.1:2101; 10.0.0.2:2101") == ("127.0.0.1:2101", "10.0.0.2:2101")
    cluster = ClusterSpec(2, 1, ("a:1", "b:2"))
    assert (cluster.processes, cluster.total_workers) == (2, 4)
    assert cluster.describe() == "process 1 of 2, 2 workers each"


@pytest.mark.parametrize("workers", [2, 3, 4, 5])
def test_the_cluster_knows_where_bytewax_keeps_a_key_and_which_worker_runs(workers: int) -> None:
    """`worker_of_key` and `current_worker` agree with the engine: a keyed step's state runs where predicted."""
    keys = ["book", "watch", "a", "a key longer than two words", ""]
    cluster = ClusterSpec(workers)
    seen: list[tuple[str, int | None]] = []
    flow = Dataflow("where")
    keyed = op.input("in", flow, TestingSource([(key, 1) for key in keys]))
    located = op.stateful_map("locate", keyed, lambda state, _value: (state, cluster.current_worker()))
    op.output("out", located, TestingSink(seen))

    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    assert dict(seen) == {key: cluster.worker_of_key(key) for key in keys}
    assert len({cluster.worker_of_key(key) for key in (*keys, "b", "c", "d")}) > 1, "keys spread"


def test_a_numbered_replay_numbers_on_across_a_resume(tmp_path: Path) -> None:
    """Numbers start at 0, have no gap, and a resume from the snapshot goes on from the next one."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=300, seed=5, start_time=T0), feed)
    source = ReplaySource([feed], batch_size=64, numbered=True)
    partition = source.build_part("frames", "replay", None)
    first = partition.next_batch() + partition.next_batch()
    position = partition.snapshot()
    assert position is not None
    assert position.seq == len(first) == 128
    rest: list[Any] = []
    resumed = ReplaySource([feed], batch_size=64, numbered=True).build_part("frames", "replay", position)
    with pytest.raises(StopIteration):
        while True:
            rest.extend(resumed.next_batch())
    numbers = [n.seq for n in first + rest]
    assert numbers == list(range(len(numbers)))
    plain = ReplaySource([feed], batch_size=64).build_part("frames", "replay", None)
    everything: list[Any] = []
    with pytest.raises(StopIteration):
        while True:
            everything.extend(plain.next_batch())
    assert [n.item for n in first + rest] == everything


def test_a_snapshot_of_a_version_that_did_not_number_is_refused(tmp_path: Path) -> None:
    """A mid-stream snapshot without a count cannot be resumed in order: refused, naming why, its state kept."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=50, seed=5, start_time=T0), feed)
    old = object.__new__(ReplayPosition)  # as unpickled from a snapshot taken before `seq` existed
    for name, value in (("file", feed.name), ("offset", 1000), ("fingerprint", None), ("replayed", ())):
        object.__setattr__(old, name, value)
    source = ReplaySource([feed], numbered=True)
    partition = source.build_part("frames", "replay", old)
    with pytest.raises(StopIteration):
        partition.next_batch()
    assert partition.snapshot() is old
    assert source.refusal is not None
    assert "without numbering them" in str(source.refusal)
    ReplaySource([feed]).build_part("frames", "replay", old)  # the unnumbered replay still takes it


def _lanes(source: ReplaySource, stop_after: int | None = None) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Each partition's numbered items (up to `stop_after` each, batch by batch), and its snapshot then."""
    items: dict[str, list[Any]] = {}
    positions: dict[str, Any] = {}
    for name in source.list_parts():
        partition = source.build_part("frames", name, None)
        got: list[Any] = []
        with contextlib.suppress(StopIteration):
            while stop_after is None or len(got) < stop_after:
                got.extend(partition.next_batch())
        items[name], positions[name] = got, partition.snapshot()
    return items, positions


def _mixed_recordings(tmp_path: Path) -> list[Path]:
    """Two recordings, the first a gzip one damaged midway (its dead letter takes a number too)."""
    first, second = tmp_path / "frames-1.jsonl", tmp_path / "frames-2.jsonl"
    generate_feed(FeedSpec(txs=300, seed=5, start_time=T0, garbage_share=0.05), first)
    generate_feed(FeedSpec(txs=200, seed=6, start_time=T0 + 600), second)
    damaged = first.with_name("frames-1.jsonl.gz")
    data = gzip.compress(first.read_bytes())
    damaged.write_bytes(data[: len(data) * 2 // 3])  # cut short: a recorder killed mid-write
    first.unlink()
    return [damaged, second]


def test_readers_share_the_stream_each_number_once(tmp_path: Path) -> None:
    """Three readers emit, between them, every item of the one-reader stream under its number, each once."""
    files = _mixed_recordings(tmp_path)
    single = ReplaySource(files, batch_size=64, numbered=True)
    (alone,) = _lanes(single)[0].values()
    three = ReplaySource(files, batch_size=64, numbered=True, readers=3)

    lanes, _ = _lanes(three)

    assert list(lanes) == ["replay-0-of-3", "replay-1-of-3", "replay-2-of-3"]
    for lane, items in enumerate(lanes.values()):
        assert items, "every reader has a share"
        assert all(item.seq % 3 == lane for item in items)
    merged = sorted((item for items in lanes.values() for item in items), key=lambda item: item.seq)
    assert merged == alone
    assert [item.seq for item in merged] == list(range(len(alone)))
    assert any(isinstance(item.item, DeadLetter) and item.item.stage == "recording" for item in merged)
    assert len(three.damaged) == len(single.damaged) == 1, "the damaged recording is reported once"


def test_each_reader_resumes_from_its_own_snapshot(tmp_path: Path) -> None:
    """Readers stopped at different points and resumed from their snapshots emit, together, the stream once."""
    files = _mixed_recordings(tmp_path)
    (alone,) = _lanes(ReplaySource(files, batch_size=64, numbered=True))[0].values()
    source = ReplaySource(files, batch_size=16, numbered=True, readers=2)
    first = source.build_part("frames", "replay-0-of-2", None)
    second = source.build_part("frames", "replay-1-of-2", None)
    before = first.next_batch() + second.next_batch() + second.next_batch() + second.next_batch()
    snapshots = {"replay-0-of-2": first.snapshot(), "replay-1-of-2": second.snapshot()}

    resumed = ReplaySource(files, batch_size=16, numbered=True, readers=2)
    after: list[Any] = []
    for name, position in snapshots.items():
        partition = resumed.build_part("frames", name, position)
        with contextlib.suppress(StopIteration):
            while True:
                after.extend(partition.next_batch())

    assert sorted(before + after, key=lambda item: item.seq) == alone


def test_a_partition_of_another_reader_count_is_refused(tmp_path: Path) -> None:
    """A partition name that is not one of this replay's readers is an error naming it, not a silent lane."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=20, seed=5, start_time=T0), feed)
    with pytest.raises(ValueError, match="replay-1-of-3"):
        ReplaySource([feed], numbered=True, readers=2).build_part("frames", "replay-1-of-3", None)
    with pytest.raises(ValueError, match="numbers what it emits"):
        ReplaySource([feed], readers=2)


@pytest.mark.slow
def test_the_recovery_directory_is_initialised_once_by_processes_starting_together(tmp_path: Path) -> None:
    """Three processes initialising one recovery directory at once leave it initialised once, all of them resuming."""
    directory = tmp_path / "recovery"
    script = (
        "import sys; from pathlib import Path; from flows.runtime import recovery_config;"
        " recovery_config(Path(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", script, str(directory)], env=env) for _ in range(3)]
    assert [child.wait(timeout=RUN_TIMEOUT_S) for child in children] == [0, 0, 0]
    parts = sorted(p.name for p in directory.glob("part-*.sqlite3"))
    assert parts == ["part-0.sqlite3"]
    assert recovery_config(directory) is not None


# ------------------------------------------------------------------------------ the graph, many workers


def _config() -> FlowConfig:
    settings = load_settings(config_dir=REPO_ROOT / "config", environ={"QUANTBOT_PROFILE": "default"})
    document = demo_strategy_document()
    # Thresholds a short feed reaches many times: whales at a tenth of the configured tiers, followed at any
    # strength (the demo's liquidity filter is not checked by the flow).
    document["parameters"] = {**document["parameters"], "minTransactionValueUsd": 0, "minWhaleInfluenceScore": 0}
    config = flow_config(settings, load_strategies([document], SECONDS_PER_DAY))
    whales = config.analytics.whales
    tiers = tuple((name, usd / WHALE_SCALE_DOWN) for name, usd in whales.tiers)
    analytics = dataclasses.replace(config.analytics, whales=dataclasses.replace(whales, tiers=tiers))
    return dataclasses.replace(config, analytics=analytics)


def _outputs(feed: Path, workers: int) -> dict[str, list[Any]]:
    """What each sink of the in-order graph receives replaying `feed` on `workers` workers of one process."""
    out: dict[str, list[Any]] = {"influx": [], "redis": [], "mongo": [], "postgres": []}
    sinks = FlowSinks(*(TestingSink(out[name]) for name in ("influx", "redis", "mongo", "postgres")))
    source = ReplaySource([feed], batch_size=32, numbered=True, readers=workers)
    flow = build_flow(source, sinks, _config(), in_order=True)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def test_the_graph_on_three_workers_gives_the_outputs_of_one(tmp_path: Path) -> None:
    """Three workers give one worker's outputs; Redis's price writes in the very same order (newest wins)."""
    feed = tmp_path / "feed.jsonl"
    # Ending today: signals are derived from recent whales only.
    midnight = int(time.time()) // SECONDS_PER_DAY * SECONDS_PER_DAY
    generate_feed(FeedSpec(txs=FLOW_TXS, seed=17, start_time=midnight, garbage_share=0.02), feed)
    one = _outputs(feed, 1)
    three = _outputs(feed, 3)
    # Prices reach Redis from the valuation's worker, in stream order; signals (keyed) from any worker.
    assert [i for i in three["redis"] if isinstance(i, PriceTick)] == [
        i for i in one["redis"] if isinstance(i, PriceTick)
    ]
    for name in ("influx", "redis", "mongo", "postgres"):
        assert sorted(map(repr, three[name])) == sorted(map(repr, one[name])), name
    assert sum(isinstance(i, PriceTick) for i in one["redis"]) > FLOW_TXS // 2
    assert one["mongo"], "the feed has whales"
    assert any(not isinstance(i, DeadLetter) for i in one["postgres"]), "the whales gave signals"
    assert any(isinstance(i, DeadLetter) for i in one["postgres"]), "the garbage gave dead letters"


# --------------------------------------------------------------------- quantbot replay, real processes


def _environment(postgres_url: str, redis_url: str, mongo_url: str, mongo_db: str, influx_url: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": postgres_url,
        "QUANTBOT_REDIS_URL": redis_url,
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": mongo_db,
        "QUANTBOT_INFLUX_URL": influx_url,
        "QUANTBOT_INFLUX_TOKEN": "test-token",
        "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": SNAPSHOT_INTERVAL_S,
        "QUANTBOT_REDIS_PRICE_TTL_S": PRICE_TTL_S,
        "QUANTBOT_LOGGING_LEVEL": "WARNING",
    }


def _prepared(env: dict[str, str]) -> Settings:
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    reports = operations.migrate_up(settings)
    assert all(report.ok for report in reports), reports
    ensure_demo_strategy(settings)
    return settings


def _replay(recording: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "quantbot", "replay", str(recording), "--no-progress", *extra]


def _run_all(commands: list[list[str]], env: dict[str, str], logs: Path) -> None:
    """Start every command at once (a cluster's processes), wait for all; each must exit 0."""
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for i, command in enumerate(commands):
        with (logs / f"process-{i}.log").open("ab") as out:
            children.append(subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=REPO_ROOT))
    statuses = [child.wait(timeout=RUN_TIMEOUT_S) for child in children]
    assert statuses == [0] * len(commands), [(logs / f"process-{i}.log").read_text() for i in range(len(commands))]


def _cluster(recording: Path, *extra: str) -> list[list[str]]:
    """Two processes with two workers each on loopback."""
    addresses = f"127.0.0.1:{stack.free_port()};127.0.0.1:{stack.free_port()}"
    return [
        _replay(recording, "--workers", "2", "--process-id", str(i), "--addresses", addresses, *extra) for i in (0, 1)
    ]


def _snapshot(settings: Settings, recording: Path) -> dict[str, Any]:
    snapshot = readback.store_snapshot(settings)
    readback.settle_shared(snapshot["influx"], readback.shared_milliseconds(recording, settings))
    return snapshot


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def _compare(reference: dict[str, Any], other: dict[str, Any]) -> None:
    counts = readback.counts(other)
    assert counts == readback.counts(reference)
    assert all(counts[part] > 0 for part in counts), counts
    assert readback.first_difference(reference, other) is None


def _wait_for(what: str, check: Any, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Poll `check()` until it is true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _dead_letters(postgres_url: str) -> int:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return int(row[0]) if row else 0


def _valuation_snapshots(recovery: Path) -> int:
    """How many snapshots of the in-order valuation `recovery` holds (Bytewax's SQLite partitions)."""
    count = 0
    for part in recovery.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            try:
                row = db.execute("SELECT count(*) FROM snaps WHERE step_id LIKE '%value_in_order%'").fetchone()
            except sqlite3.OperationalError:
                continue  # its tables are not created yet
        count += int(row[0]) if row else 0
    return count


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A synthetic recording of `CLI_TXS` transactions ending now (its signals are still active)."""
    path = tmp_path / "feed.jsonl"
    midnight = int(time.time()) // SECONDS_PER_DAY * SECONDS_PER_DAY
    # Seed 30: four swaps of $100k+ among the 2,000, so the demo strategy signals (a few seeds in ten have none).
    generate_feed(FeedSpec(txs=CLI_TXS, seed=30, start_time=midnight, garbage_share=0.02), path)
    return path


def _one_worker_reference(
    recording: Path, tmp_path: Path, *, postgres_url: str, redis_url: str, mongo_url: str, influx_url: str
) -> dict[str, Any]:
    """The stores of `quantbot replay` on one worker (each run compared has databases of its own)."""
    suffix = f"{os.getpid()}_{time.monotonic_ns()}"
    env = _environment(postgres_url, redis_url, mongo_url, f"reference_{suffix}", influx_url)
    settings = _prepared(env)
    _run_all([_replay(recording)], env, tmp_path / "logs-1x1")
    return _snapshot(settings, recording)


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["1x2", "2x2"])
def test_two_workers_and_two_processes_of_two_store_what_one_worker_does(  # noqa: PLR0917 - fixtures
    topology: str,
    recording: Path,
    tmp_path: Path,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    reference_influx: str,
    run_influx: str,
) -> None:
    """`quantbot replay` as one process of two workers, or two processes of two on loopback: the stores of 1×1."""
    reference = _one_worker_reference(
        recording,
        tmp_path,
        postgres_url=reference_pg_url,
        redis_url=redis_url,
        mongo_url=mongo_url,
        influx_url=reference_influx,
    )
    env = _environment(pg_url, redis_url, mongo_url, f"{topology}_{os.getpid()}_{time.monotonic_ns()}", run_influx)
    settings = _prepared(env)
    _flush_redis(redis_url)  # the reference's price and signal keys: Redis has one database for both runs
    commands = [_replay(recording, "--workers", "2")] if topology == "1x2" else _cluster(recording)
    _run_all(commands, env, tmp_path / f"logs-{topology}")
    _compare(reference, _snapshot(settings, recording))
    if topology == "2x2":
        parsed = [transactions_parsed(tmp_path / "logs-2x2" / f"process-{i}.log") for i in (0, 1)]
        assert all(count > 0 for count in parsed), f"each process parses a share of the transactions: {parsed}"
        assert sum(parsed) == CLI_TXS


@pytest.mark.slow
@pytest.mark.parametrize("resumed_as", ["2x2", "1x1"])
def test_a_cluster_killed_mid_replay_and_restarted_stores_what_one_worker_does(  # noqa: PLR0917 - fixtures
    resumed_as: str,
    recording: Path,
    tmp_path: Path,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    reference_influx: str,
    run_influx: str,
) -> None:
    """kill -9 of both processes of a 2×2 replay, then restarted on the same recovery dir: the stores of 1×1.

    Restarted as the same cluster, each reader resumes from its own snapshot; restarted as one process of
    one worker, the four readers' partitions are retired and the one reader reads again from the start,
    the valuation skipping what it had valued.
    """
    reference = _one_worker_reference(
        recording,
        tmp_path,
        postgres_url=reference_pg_url,
        redis_url=redis_url,
        mongo_url=mongo_url,
        influx_url=reference_influx,
    )
    env = _environment(pg_url, redis_url, mongo_url, f"killed_{os.getpid()}_{time.monotonic_ns()}", run_influx)
    settings = _prepared(env)
    _flush_redis(redis_url)
    recovery = tmp_path / "recovery"
    logs = tmp_path / "logs-killed"
    logs.mkdir()
    paced = ("--recovery-dir", str(recovery), "--speed", KILL_SPEED)
    with (logs / "killed.log").open("ab") as out:
        children = [
            subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=REPO_ROOT)
            for command in _cluster(recording, *paced)
        ]
        # Mid-stream: the stores are being written to, and a snapshot or two later the cluster dies.
        _wait_for("the replay's first writes", lambda: _dead_letters(pg_url) > 0)
        _wait_for("a snapshot", lambda: _valuation_snapshots(recovery) > 0, timeout_s=KILL_AFTER_S)
        time.sleep(SNAPSHOT_WAIT_S)  # bounded: one more snapshot interval, so the kill follows a snapshot
        assert all(child.poll() is None for child in children), "the cluster ended before its kill"
        for child in children:
            child.send_signal(signal.SIGKILL)
        for child in children:
            child.wait(timeout=RUN_TIMEOUT_S)
    assert any(recovery.glob("part-*.sqlite3"))
    resumed = ("--recovery-dir", str(recovery))
    commands = _cluster(recording, *resumed) if resumed_as == "2x2" else [_replay(recording, *resumed)]
    _run_all(commands, env, tmp_path / "logs-resumed")
    _compare(reference, _snapshot(settings, recording))


@pytest.mark.parametrize("command", ["replay", "run", "backfill"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--process-id", "0"], "without the cluster's addresses"),
        (["--addresses", "127.0.0.1:2101;127.0.0.1:2102"], "without a process id"),
        (["--process-id", "2", "--addresses", "127.0.0.1:2101;127.0.0.1:2102"], "not an index into the 2"),
        (["--process-id", "0", "--addresses", "127.0.0.1"], "is not host:port"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_an_impossible_cluster_on_the_command_line_exits_2(command: str, args: list[str], message: str) -> None:
    """`replay`, `run` and `backfill` refuse arguments that describe no cluster: exit 2, before anything connects."""
    from click.testing import CliRunner

    from quantbot.ops.cli import cli

    given = {"replay": ["replay", "nowhere.jsonl"], "run": ["run"], "backfill": ["backfill", "--from-slot", "1"]}
    result = CliRunner().invoke(cli, [*given[command], *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
