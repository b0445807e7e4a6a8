"""`quantbot run` end to end, as a user runs it, against a loopback Solana node that drops its websocket,
answers 429, 503 and null, into the real stores: every DEX transaction recorded and processed once, a
clean stop on SIGTERM, a recording that replays to the same stores, and a kill -9 that loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from quantbot.models import FrameKind
from quantbot.ops import readback, stack
from quantbot.ops import schema as operations
from quantbot.ops.demo import ensure_demo_strategy
from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
from quantbot.ops.peers.yellowstone import GrpcFaults, YellowstonePeer
from quantbot.recordings import RecordingReadError, decode_frame, find_recordings, read_lines
from quantbot.settings import Settings, load_settings
from quantbot.solana.decode import KNOWN_PROGRAMS
from quantbot.solana.normalise import parse_transactions
from tests.conftest import REPO_ROOT, flow_environment, run_cli, transactions_parsed

pytestmark = pytest.mark.slow  # a node, the four stores and quantbot in child processes

PROGRAMS = frozenset(KNOWN_PROGRAMS)
# 3,000 DEX transactions at 150/s: a 20 s chain, so that a run still starting up under load (imports,
# start checks: several seconds on a busy machine) finds it going; each test follows WINDOW_S of it.
TXS, TX_PER_S = 3000, 150.0
WINDOW_S = 6.0
"""Chain seconds a test follows after the run subscribed: three drops, a kill mid-stream."""
ISSUE_FAULTS = {"drop_every_s": 2.0, "http_429_share": 0.05, "http_503_share": 0.02, "null_first_fetch_share": 0.10}
"""The faults the issue asks `quantbot run` to ride through."""
SUBSCRIBING_S = 1.0
"""Chain time a fresh run may take to subscribe after its first notification: earlier transactions are
not its business (a fresh run starts from now)."""
CAUGHT_UP_S = 90.0
"""How long the test waits for the run to have recorded everything the chain made (a few seconds)."""
STOP_S = 30.0
"""SIGTERM to exit: the issue's bound."""
POLL_S = 0.2
GRPC_TOKEN = "x-token-0a1b2c3d4e5f"
"""The loopback Yellowstone peer's token: checked absent from the run's output."""


def node_environment(peer: SolanaPeer) -> dict[str, str]:
    """Where the node is, and quick retries (the faults are frequent; a provider's are not)."""
    return {
        "QUANTBOT_SOLANA_RPC_URL": peer.http_url,
        "QUANTBOT_SOLANA_WS_URL": peer.ws_url,
        "QUANTBOT_SOLANA_REQUESTS_PER_S": "2000",
        "QUANTBOT_SOLANA_BACKOFF_BASE_S": "0.02",
        "QUANTBOT_SOLANA_BACKOFF_CAP_S": "0.3",
        "QUANTBOT_SOLANA_STALE_AFTER_S": "3",
    }


def prepared(env: dict[str, str]) -> Settings:
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    assert all(report.ok for report in operations.migrate_up(settings))
    ensure_demo_strategy(settings)
    return settings


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quantbot", *command],
            cwd=REPO_ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def recorded(directory: Path) -> list[str]:
    """The signatures of the transaction frames in the recordings under `directory`, in order, repeats kept
    (a recording being written ends mid-block: what is readable so far)."""
    if not directory.exists() or not any(directory.rglob("*.jsonl*")):
        return []
    signatures = []
    for path in find_recordings([directory]):
        try:
            for line in read_lines(path):
                frame = decode_frame(line.data, f"{path.name}@{line.offset}")
                if frame.kind == FrameKind.TRANSACTION:  # not the token facts the flow asked for
                    signatures.extend(tx.signature for tx in parse_transactions(frame.payload))
        except RecordingReadError:
            continue
    return signatures


def wanted(chain: SimulatedChain, after_s: float = 0.0, until_s: float = float("inf")) -> set[str]:
    """The chain's successful DEX transactions due between `after_s` and `until_s`."""
    return {tx.signature for tx in chain if tx.err is None and tx.mentions & PROGRAMS and after_s <= tx.due_s < until_s}


def window(chain: SimulatedChain, start_s: float) -> set[str]:
    """What a test waits for the run to have recorded: `WINDOW_S` of the chain from `start_s`."""
    return wanted(chain, after_s=start_s, until_s=start_s + WINDOW_S)


def wait_for(check: Callable[[], bool], what: str, deadline_s: float, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; the run's log:\n{log.read_text()[-4000:]}")
        time.sleep(POLL_S)


def live_from(peer: SolanaPeer, log: Path) -> float:
    wait_for(lambda: bool(peer.notified), "the first notification", CAUGHT_UP_S, log)
    first = min(peer.chain.by_signature(s).due_s for s in peer.notified)  # type: ignore[union-attr]
    return first + SUBSCRIBING_S


def stop(process: subprocess.Popen[bytes], log: Path) -> float:
    """SIGTERM `process`; the seconds it took to exit 0."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"`quantbot run` did not exit within {STOP_S:g} s of SIGTERM:\n{log.read_text()[-4000:]}")
    assert status == 0, log.read_text()[-4000:]
    return time.monotonic() - began


def reset_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture
def chain() -> Iterator[SimulatedChain]:
    yield SimulatedChain(ChainSpec(txs=TXS, seed=21, tx_per_s=TX_PER_S))


def test_run_through_faults_records_each_transaction_once_and_replays_to_the_same_stores(  # noqa: PLR0917
    chain: SimulatedChain,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    run_influx: str,
    reference_influx: str,
    tmp_path: Path,
) -> None:
    """Through drops every 2 s, 5 % 429, 2 % 503 and 10 % null first fetches, `quantbot run --record` records
    and processes every DEX transaction once; SIGTERM exits 0 within 30 s; the recording's replay writes the
    same stores."""
    suffix = str(time.monotonic_ns())
    env = flow_environment(pg_url, redis_url, mongo_url, f"live_{suffix}", run_influx)
    settings = prepared(env)
    records, log = tmp_path / "recordings", tmp_path / "run.log"
    with SolanaPeer(chain, faults=Faults(**ISSUE_FAULTS, seed=4)) as peer:  # type: ignore[arg-type]
        process = start(
            ["run", "--record", str(records), "--recovery-dir", str(tmp_path / "recovery"), "--no-view"],
            {**env, **node_environment(peer)},
            log,
        )
        try:
            expected = window(chain, live_from(peer, log))
            wait_for(lambda: set(recorded(records)) >= expected, "every DEX transaction recorded", CAUGHT_UP_S, log)
        finally:
            took = stop(process, log)
        counters = peer.counters()
    signatures = recorded(records)
    assert len(signatures) == len(set(signatures)), "a transaction was recorded twice"
    assert expected <= set(signatures) <= wanted(chain)
    assert counters.drops >= 2 and counters.responses[429] and counters.responses[503]
    assert counters.null_first_fetches > 0
    assert took < STOP_S
    live = readback.store_snapshot(settings)
    assert live["influx"] and live["redis"], "the run wrote no prices: nothing compared"

    assert_replay_writes_the_same(
        live,
        records,
        redis_url,
        replay_env=flow_environment(reference_pg_url, redis_url, mongo_url, f"replay_{suffix}", reference_influx),
    )


def assert_replay_writes_the_same(
    live: dict[str, Any], records: Path, redis_url: str, replay_env: dict[str, str]
) -> None:
    """`quantbot replay` of the run's recording into fresh stores writes what the run wrote."""
    reset_redis(redis_url)
    replay_settings = prepared(replay_env)
    result = run_cli("replay", str(records), "--no-progress", env=replay_env)
    assert result.returncode == 0, result.stdout + result.stderr
    replayed = readback.store_snapshot(replay_settings)
    # Two trades of one series may share a millisecond on VictoriaMetrics (see `readback.shared_milliseconds`).
    (recording,) = find_recordings([records])
    shared = readback.shared_milliseconds(recording, replay_settings)
    for snapshot in (live, replayed):
        readback.settle_shared(snapshot["influx"], shared)
    assert readback.first_difference(live, replayed) is None


def test_grpc_run_through_drops_records_each_transaction_once_and_replays_to_the_same_stores(  # noqa: PLR0917
    chain: SimulatedChain,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    run_influx: str,
    reference_influx: str,
    tmp_path: Path,
) -> None:
    """With `[solana] source = "grpc"`, through a Yellowstone stream dropped every 2 s (each reconnection asks
    `from_slot`), `quantbot run --record` records and processes every DEX transaction once, SIGTERM exits 0
    within 30 s, the token appears nowhere, the traded tokens' facts come from the JSON-RPC node (token
    documents), and the recording replays to the same stores."""
    suffix = str(time.monotonic_ns())
    env = flow_environment(pg_url, redis_url, mongo_url, f"grpc_{suffix}", run_influx)
    settings = prepared(env)
    records, log = tmp_path / "recordings", tmp_path / "run.log"
    with (
        YellowstonePeer(chain, faults=GrpcFaults(drop_every_s=2.0), token=GRPC_TOKEN) as peer,
        SolanaPeer(chain, speed=None) as rpc_node,
    ):
        node = {
            "QUANTBOT_SOLANA_SOURCE": "grpc",
            "QUANTBOT_SOLANA_GRPC_URL": peer.url,
            "QUANTBOT_SOLANA_GRPC_TOKEN": GRPC_TOKEN,
            "QUANTBOT_SOLANA_RPC_URL": rpc_node.http_url,
            "QUANTBOT_SOLANA_REQUESTS_PER_S": "2000",
            "QUANTBOT_SOLANA_BACKOFF_BASE_S": "0.02",
            "QUANTBOT_SOLANA_BACKOFF_CAP_S": "0.3",
            "QUANTBOT_LOGGING_LEVEL": "INFO",
        }
        process = start(
            ["run", "--record", str(records), "--recovery-dir", str(tmp_path / "recovery"), "--no-view"],
            {**env, **node},
            log,
        )
        try:
            wait_for(lambda: bool(peer.sent), "the first update", CAUGHT_UP_S, log)
            first = min(chain.by_signature(s).due_s for s in peer.sent)  # type: ignore[union-attr]
            expected = window(chain, first + SUBSCRIBING_S)
            wait_for(lambda: set(recorded(records)) >= expected, "every DEX transaction recorded", CAUGHT_UP_S, log)
        finally:
            took = stop(process, log)
        streams = peer.streams
    signatures = recorded(records)
    assert len(signatures) == len(set(signatures)), "a transaction was recorded twice"
    assert expected <= set(signatures) <= wanted(chain)
    assert streams >= 3 and took < STOP_S
    assert GRPC_TOKEN not in log.read_text()
    live = readback.store_snapshot(settings)
    assert live["influx"] and live["redis"], "the run wrote no prices: nothing compared"
    assert live["mongo.tokens"], "no token documents: the facts were not asked for over JSON-RPC"
    assert {token["_id"] for token in live["mongo.tokens"]} <= set(chain.token_accounts)
    assert_replay_writes_the_same(
        live,
        records,
        redis_url,
        replay_env=flow_environment(reference_pg_url, redis_url, mongo_url, f"replay_{suffix}", reference_influx),
    )


def test_run_killed_with_sigkill_and_restarted_loses_nothing(  # noqa: PLR0917
    chain: SimulatedChain,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    run_influx: str,
    reference_influx: str,
    tmp_path: Path,
) -> None:
    """`quantbot run` killed with SIGKILL mid-stream and restarted with the same recovery directory fetches what
    it had pending and backfills what the chain made meanwhile: every transaction is in the stores, once."""
    suffix = str(time.monotonic_ns())
    env = flow_environment(pg_url, redis_url, mongo_url, f"killed_{suffix}", run_influx)
    settings = prepared(env)
    records, recovery, log = tmp_path / "recordings", tmp_path / "recovery", tmp_path / "run.log"
    command = ["run", "--record", str(records), "--recovery-dir", str(recovery), "--no-view"]
    with SolanaPeer(chain, faults=Faults(**ISSUE_FAULTS, seed=6)) as peer:  # type: ignore[arg-type]
        node = node_environment(peer)
        process = start(command, {**env, **node}, log)
        expected = window(chain, live_from(peer, log))
        wait_for(lambda: len(recorded(records)) > len(expected) // 4, "a quarter of the chain", CAUGHT_UP_S, log)
        time.sleep(0.6)  # past a snapshot (every 0.5 s)
        process.kill()
        process.wait()
        before_restart = len(recorded(records))
        time.sleep(1.0)  # the chain goes on while nothing listens
        process = start(command, {**env, **node}, log)
        try:
            wait_for(lambda: set(recorded(records)) >= expected, "every DEX transaction", CAUGHT_UP_S, log)
        finally:
            stop(process, log)
    signatures = recorded(records)
    assert expected <= set(signatures) <= wanted(chain)
    assert before_restart < len(set(signatures)), "the kill came after everything was recorded: nothing tested"
    killed = readback.store_snapshot(settings)
    assert killed["postgres.dead_letters"] == []

    # The same transactions, each once, in the order they were first recorded, replayed into fresh stores:
    # the same keys everywhere (values may differ in the last digits: after the kill, re-fetched trades
    # were valued in another order than the first process had valued them).
    reset_redis(redis_url)
    replay_env = flow_environment(reference_pg_url, redis_url, mongo_url, f"reference_{suffix}", reference_influx)
    assert keys(killed) == keys(replay_first_seen(records, tmp_path / "deduplicated", replay_env))


def test_run_as_two_processes_of_two_workers_records_and_stores_each_transaction_once(  # noqa: PLR0917
    chain: SimulatedChain,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    run_influx: str,
    reference_influx: str,
    tmp_path: Path,
) -> None:
    """`quantbot run` as a cluster of two processes with two workers each, two program groups: the groups'
    partitions run on different workers, every DEX transaction is recorded (twice only where both groups'
    gap backfills list it) and stored once, the two processes stop on SIGTERM with status 0, and a replay of
    what they recorded stores the same keys."""
    suffix = str(time.monotonic_ns())
    env = flow_environment(pg_url, redis_url, mongo_url, f"cluster_{suffix}", run_influx)
    settings = prepared(env)
    records, recovery = tmp_path / "recordings", tmp_path / "recovery"
    programs = sorted(PROGRAMS)
    groups = json.dumps([programs[::2], programs[1::2]])
    addresses = ";".join(f"127.0.0.1:{stack.free_port()}" for _ in range(2))
    logs = [tmp_path / f"process-{i}.log" for i in range(2)]
    with SolanaPeer(chain, faults=Faults(drop_every_s=3.0, seed=8)) as peer:
        cluster_env = {**env, **node_environment(peer), "QUANTBOT_SOLANA_PROGRAM_GROUPS": groups}
        processes = [
            start(
                [
                    "run",
                    "--record",
                    str(records),
                    "--recovery-dir",
                    str(recovery),
                    "--no-view",
                    "--workers",
                    "2",
                    "--process-id",
                    str(i),
                    "--addresses",
                    addresses,
                ],
                cluster_env,
                log,
            )
            for i, log in enumerate(logs)
        ]
        try:
            expected = window(chain, live_from(peer, logs[0]))
            wait_for(lambda: set(recorded(records)) >= expected, "every DEX transaction", CAUGHT_UP_S, logs[0])
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            statuses = [process.wait(STOP_S) for process in processes]
    assert statuses == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)
    signatures = recorded(records)
    # Only a transaction of both groups' programs may be recorded twice: listed by both partitions' gap
    # backfills after a drop (a backfill's list carries no logs to say which group owns it); stored once.
    twice = {signature for signature in signatures if signatures.count(signature) > 1}
    both_groups = {
        tx.signature
        for tx in chain
        if tx.mentions & set(json.loads(groups)[0]) and tx.mentions & set(json.loads(groups)[1])
    }
    assert twice <= both_groups, "a transaction of one group's programs was recorded twice"
    assert expected <= set(signatures) <= wanted(chain)
    parsed = [transactions_parsed(log) for log in logs]
    assert sum(parsed) == len(signatures), f"each recorded transaction parsed once in the cluster: {parsed}"
    writers = {path.name.split("-")[1] for path in find_recordings([records])}
    assert len(writers) == len(json.loads(groups)), f"each group's partition on a worker of its own: {writers}"
    live = readback.store_snapshot(settings)
    assert live["influx"] and live["redis"], "the cluster wrote no prices: nothing compared"

    # The workers' recordings as one, in the order the frames were received (the order the one valuing worker
    # took them in, to within the moment a frame takes to reach it), each transaction once.
    reset_redis(redis_url)
    replay_env = flow_environment(reference_pg_url, redis_url, mongo_url, f"reference_{suffix}", reference_influx)
    replayed = replay_first_seen(records, tmp_path / "deduplicated", replay_env, by_receive_time=True)
    # A trade is priced when its other leg's price is known: where that price comes from a trade of the other
    # group, which of the two reached the one valuing worker first decides, and the receive times a replay
    # orders by can differ from that arrival by the moment a frame takes to cross. A few keys (a token's only
    # priced trade, its price key) may be written by one and not the other; the rest are the same keys.
    cluster_keys, replay_keys = keys(live), keys(replayed)
    for family in ("signals", "whales", "redis", "influx"):
        ours, theirs = stored_keys(cluster_keys[family]), stored_keys(replay_keys[family])
        assert theirs or family in {"signals", "whales"}, f"the replay stored no {family}: nothing compared"
        assert len(ours ^ theirs) <= max(ORDER_SLACK_KEYS, len(theirs) // 100), (family, sorted(ours ^ theirs)[:5])


ORDER_SLACK_KEYS = 10
"""Keys of one family a cluster run and the replay of its recordings may differ by (or 1 %, the larger)."""


def stored_keys(family: list[Any]) -> set[str]:
    """A family of `keys(...)` as a set: each Influx sample (series and time) on its own."""
    if family and isinstance(family[0], tuple):  # Influx: (series, sample times)
        return {f"{metric!r}@{at}" for metric, times in family for at in times}
    return {str(key) for key in family}


def replay_first_seen(
    records: Path, directory: Path, replay_env: dict[str, str], *, by_receive_time: bool = False
) -> dict[str, Any]:
    """The stores `quantbot replay` writes, into `replay_env`'s, from the recordings deduplicated (`deduplicate`)."""
    deduplicate(records, directory / "frames.jsonl", by_receive_time=by_receive_time)
    replay_settings = prepared(replay_env)
    result = run_cli("replay", str(directory), "--no-progress", env=replay_env)
    assert result.returncode == 0, result.stdout + result.stderr
    return readback.store_snapshot(replay_settings)


def deduplicate(directory: Path, out: Path, *, by_receive_time: bool = False) -> None:
    """The recordings' frames, each transaction's first only (the token facts asked for, all), as one recording:
    file after file, or with `by_receive_time` merged in the order the frames were received."""
    lines: list[tuple[int, bytes, str | None]] = []
    for path in find_recordings([directory]):
        try:
            for line in read_lines(path):
                frame = decode_frame(line.data, path.name)
                signature = None
                if frame.kind == FrameKind.TRANSACTION:
                    (tx,) = parse_transactions(frame.payload)
                    signature = tx.signature
                lines.append((frame.received_ns, line.data.rstrip(b"\n") + b"\n", signature))
        except RecordingReadError:
            continue
    if by_receive_time:
        lines.sort(key=lambda line: line[0])  # stable: a worker's own order where two frames share a time
    seen: set[str] = set()
    out.parent.mkdir(parents=True)
    with out.open("wb") as file:
        for _, data, signature in lines:
            if signature is None or signature not in seen:
                if signature is not None:
                    seen.add(signature)
                file.write(data)


STAT_FIELDS = frozenset(
    f"token_prices_{name}" for name in ("market_cap", "liquidity", "price_change_24h", "high_24h", "low_24h")
)
"""A price point's statistics depend on what the flow knew when it wrote it (a token's facts, asked for again
after a restart, come back at another moment of a live stream): which of them a point carries is no identity."""


def keys(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What identifies each stored item: signal ids, whale ids, Redis keys, Influx series and sample times."""
    return {
        "signals": sorted(row[0] for row in snapshot["postgres.trading_signals"]),
        "whales": sorted(document["_id"] for document in snapshot["mongo.whale_activity"]),
        "redis": sorted(snapshot["redis"]),
        "influx": sorted(
            (sorted(series["metric"].items()), [t for t, _ in series["samples"]])
            for series in snapshot["influx"]
            if series["metric"]["__name__"] not in STAT_FIELDS
        ),
    }


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "QUANTBOT_SOLANA_RPC_URL"),
        ({"QUANTBOT_SOLANA_SOURCE": "grpc"}, "QUANTBOT_SOLANA_GRPC_URL"),
        ({"QUANTBOT_SOLANA_RPC_URL": "ftp://node"}, "is not a http or https URL"),
    ],
)
def test_run_without_a_node_says_which_variable_to_set(env: dict[str, str], named: str) -> None:
    """No node configured for the source: exit 78 at once, naming the variable, before any store is asked."""
    result = run_cli("run", "--no-view", env={"QUANTBOT_PROFILE": "default", **env})

    assert result.returncode == 78, result.stdout + result.stderr
    assert named in result.stderr


def test_record_writes_recordings_that_replay_without_processing_anything(  # noqa: PLR0917 - pytest fixtures
    chain: SimulatedChain, pg_url: str, redis_url: str, mongo_url: str, run_influx: str, tmp_path: Path
) -> None:
    """`quantbot record --out DIR --duration S` writes what the node notified as recordings (exit 0), and
    stores nothing but its run's events: a later `quantbot replay DIR` does the processing."""
    env = flow_environment(pg_url, redis_url, mongo_url, f"record_{time.monotonic_ns()}", run_influx)
    settings = prepared(env)
    out = tmp_path / "recorded"
    with SolanaPeer(chain) as peer:
        result = run_cli("record", "--out", str(out), "--duration", "4", env={**env, **node_environment(peer)})
        notified = set(peer.notified)
    assert result.returncode == 0, result.stdout + result.stderr
    signatures = recorded(out)
    assert signatures and len(signatures) == len(set(signatures))
    assert set(signatures) <= wanted(chain) and set(signatures) & notified
    assert f"quantbot replay {out}" in result.stdout
    stored = readback.store_snapshot(settings)
    assert stored["influx"] == [] and stored["redis"] == {} and stored["mongo.whale_activity"] == []
