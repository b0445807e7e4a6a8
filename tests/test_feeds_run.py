"""`quantbot run` with the price feeds, as a user runs it: a loopback Solana node, Hermes, Birdeye and Jupiter peers,
into the real stores; Redis holds Hermes' newest SOL price from `pyth`, Influx both streaming feeds' points,
Jupiter is asked for the tokens whales traded, and no key is printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pymongo
import pytest
import redis

from quantbot.feeds import SOL_USD_FEED_ID
from quantbot.models import WSOL_MINT
from quantbot.ops import readback
from quantbot.ops import schema as operations
from quantbot.ops.peers.birdeye import BirdeyePeer
from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
from quantbot.ops.peers.hermes import HermesPeer
from quantbot.ops.peers.jupiter import JupiterPeer
from quantbot.ops.peers.solana_rpc import SolanaPeer
from quantbot.schema.mongo import WHALE_ACTIVITY
from quantbot.settings import load_settings
from quantbot.signals import QUOTE_MINTS
from tests.conftest import REPO_ROOT, flow_environment, run_cli

pytestmark = pytest.mark.slow  # a node, two feed peers, the four stores and quantbot in a child process

TOKEN = "FeedRunTestMint11111111111111111111111111111"
"""A mint of this test alone, priced by the Birdeye peer."""
BIRDEYE_KEY = "bird-run-k3y-00112233445566"
JUPITER_KEY = "jup-run-k3y-99887766"
SOL_START = 148.5
DEADLINE_S = 60.0
CHAIN_TXS = 240
CHAIN_TX_PER_S = 20.0
"""The node's chain lasts 12 s: long enough for the run to subscribe and see whales, then it is over."""
CHAIN_PAST_S = 2.0
"""This long after the chain's last trade, newer SOL quotes are all pyth's."""
SETTLE_S = 1.0
"""After the peers stop moving their prices, how long before the newest must be in Redis (20 of their ticks)."""
STOP_S = 30.0
"""SIGTERM to exit: the live issue's bound."""
POLL_S = 0.2
WHALE_FROM_USD = 1_000.0
"""The test's whale threshold: the simulated chain's trades are retail-sized, a few of them pass it."""


def wait_for(check: Callable[[], bool], what: str, deadline_s: float, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; the run's log:\n{log.read_text()[-4000:]}")
        time.sleep(POLL_S)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quantbot", *command],
            cwd=REPO_ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM `process`, which must exit 0 within `STOP_S`."""
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"`quantbot run` did not exit within {STOP_S:g} s of SIGTERM:\n{log.read_text()[-4000:]}")
    assert status == 0, log.read_text()[-4000:]


def test_quantbot_run_with_feeds_writes_the_newest_pyth_price_and_both_feeds_points_without_a_key(
    pg_url: str, redis_url: str, mongo_url: str, run_influx: str, tmp_path: Path
) -> None:
    """Redis price:<wSOL> is Hermes' newest price with source pyth; Influx has pyth and birdeye points; Jupiter is asked
    for the tokens whales traded (none configured); no key shows."""
    mongo_db = f"feeds_{time.monotonic_ns()}"
    env = flow_environment(pg_url, redis_url, mongo_url, mongo_db, run_influx)
    assert all(
        report.ok for report in operations.migrate_up(load_settings(config_dir=REPO_ROOT / "config", environ=env))
    )
    log = tmp_path / "run.log"
    started = int(time.time()) - 60  # Birdeye candles start at their minute
    chain = SimulatedChain(ChainSpec(txs=CHAIN_TXS, seed=8, tx_per_s=CHAIN_TX_PER_S))
    with (
        SolanaPeer(chain) as node,
        HermesPeer({SOL_USD_FEED_ID: SOL_START}, interval_s=0.05) as hermes,
        BirdeyePeer({TOKEN: ("FRT", 0.0123)}, api_key=BIRDEYE_KEY, interval_s=0.05) as birdeye,
        JupiterPeer({}, api_key=JUPITER_KEY) as jupiter,
        pymongo.MongoClient(mongo_url) as mongo,
    ):
        feeds = {
            "QUANTBOT_FEEDS_ENABLED": '["pyth", "birdeye", "jupiter"]',
            "QUANTBOT_JUPITER_URL": jupiter.url,
            "QUANTBOT_FEEDS_JUPITER_REQUESTS_PER_S": "20",
            "QUANTBOT_WHALES_TIERS": f'[{{name = "large", min_usd = {WHALE_FROM_USD}}}]',
            "QUANTBOT_PYTH_URL": hermes.url,
            "QUANTBOT_BIRDEYE_WS_URL": birdeye.ws_url,
            "QUANTBOT_BIRDEYE_API_KEY": BIRDEYE_KEY,
            "QUANTBOT_JUPITER_API_KEY": JUPITER_KEY,
            "QUANTBOT_FEEDS_BIRDEYE_TOKENS": f'["{TOKEN}"]',
            "QUANTBOT_LOGGING_LEVEL": "INFO",
        }
        node_env = {"QUANTBOT_SOLANA_RPC_URL": node.http_url, "QUANTBOT_SOLANA_WS_URL": node.ws_url}
        run_env = {**env, **node_env, **feeds}
        chain_ends = time.monotonic() + CHAIN_TXS / CHAIN_TX_PER_S
        process = start(["run", "--no-view"], run_env, log)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            whales = mongo[mongo_db][WHALE_ACTIVITY.name]

            def whale_tokens_asked() -> set[str]:
                whaled = {
                    leg["address"] for doc in whales.find({}, {"tokens": 1}) for leg in doc["tokens"]
                } - QUOTE_MINTS
                return whaled & {mint for ids in jupiter.requests for mint in ids}

            wait_for(lambda: bool(whale_tokens_asked()), "Jupiter asked for a whale's token", DEADLINE_S, log)
            time.sleep(max(0.0, chain_ends - time.monotonic()))
            sol_key = f"price:{WSOL_MINT}"
            wait_for(lambda: client.hget(sol_key, "source") == "pyth", "a pyth price in Redis", DEADLINE_S, log)
            time.sleep(CHAIN_PAST_S)  # the chain's trades are behind; pyth goes on
            hermes.paused = birdeye.paused = True
            newest = hermes.latest(SOL_USD_FEED_ID).price
            wait_for(
                lambda: _close(client.hget(sol_key, "price"), newest),
                f"Hermes' newest price {newest} in Redis",
                SETTLE_S + DEADLINE_S,
                log,
            )
            sol = client.hgetall(sol_key)
        finally:
            stop(process, log)
        shown = run_cli("config", "show", env=run_env)

    assert sol["source"] == "pyth" and float(sol["price"]) == pytest.approx(newest, rel=1e-9)
    series = readback.influx_export(run_influx, '{__name__="token_prices_price", source=~"pyth|birdeye"}')
    found = {
        (s["metric"]["source"], s["metric"]["token_address"])
        for s in series
        if any(ms >= started * 1000 for ms in s["timestamps"])
    }
    assert found == {("pyth", WSOL_MINT), ("birdeye", TOKEN)}
    output = log.read_text() + shown.stdout + shown.stderr
    assert BIRDEYE_KEY not in output and JUPITER_KEY not in output
    assert "x-api-key=***" in log.read_text()
    assert shown.returncode == 0 and "birdeye_api_key" in shown.stdout


def _close(stored: str | None, expected: float) -> bool:
    return stored is not None and abs(float(stored) - expected) <= abs(expected) * 1e-9
