"""`quantbot run` with the price feeds, as a user runs it: a loopback Solana node, Hermes and Birdeye peers, into
the real stores; Redis holds Hermes' newest SOL price from `pyth`, Influx both feeds' points, and no key is printed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from quantbot.feeds import SOL_USD_FEED_ID
from quantbot.models import WSOL_MINT
from quantbot.ops import readback
from quantbot.ops.peers.birdeye import BirdeyePeer
from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
from quantbot.ops.peers.hermes import HermesPeer
from quantbot.ops.peers.solana_rpc import SolanaPeer
from tests.conftest import run_cli
from tests.test_run import environment, node_environment, prepared, start, stop, wait_for

pytestmark = pytest.mark.slow  # a node, two feed peers, the four stores and quantbot in a child process

TOKEN = "FeedRunTestMint11111111111111111111111111111"
"""A mint of this test alone, priced by the Birdeye peer."""
BIRDEYE_KEY = "bird-run-k3y-00112233445566"
JUPITER_KEY = "jup-run-k3y-99887766"
SOL_START = 148.5
DEADLINE_S = 60.0
CHAIN_PAST_S = 2.0
"""The node's chain lasts a second: this long after the first pyth price, newer quotes are all pyth's."""
SETTLE_S = 1.0
"""After the peers stop moving their prices, how long before the newest must be in Redis (20 of their ticks)."""


def test_quantbot_run_with_feeds_writes_the_newest_pyth_price_and_both_feeds_points_without_a_key(
    pg_url: str, redis_url: str, mongo_url: str, run_influx: str, tmp_path: Path
) -> None:
    """Redis price:<wSOL> is Hermes' newest price with source pyth; Influx has pyth and birdeye points; no key shows."""
    env = environment(pg_url, redis_url, mongo_url, f"feeds_{time.monotonic_ns()}", run_influx)
    prepared(env)
    log = tmp_path / "run.log"
    started = int(time.time()) - 60  # Birdeye candles start at their minute
    chain = SimulatedChain(ChainSpec(txs=60, seed=8, tx_per_s=60.0))
    with (
        SolanaPeer(chain) as node,
        HermesPeer({SOL_USD_FEED_ID: SOL_START}, interval_s=0.05) as hermes,
        BirdeyePeer({TOKEN: ("FRT", 0.0123)}, api_key=BIRDEYE_KEY, interval_s=0.05) as birdeye,
    ):
        feeds = {
            "QUANTBOT_FEEDS_ENABLED": '["pyth", "birdeye"]',
            "QUANTBOT_PYTH_URL": hermes.url,
            "QUANTBOT_BIRDEYE_WS_URL": birdeye.ws_url,
            "QUANTBOT_BIRDEYE_API_KEY": BIRDEYE_KEY,
            "QUANTBOT_JUPITER_API_KEY": JUPITER_KEY,
            "QUANTBOT_FEEDS_BIRDEYE_TOKENS": f'["{TOKEN}"]',
            "QUANTBOT_LOGGING_LEVEL": "INFO",
        }
        run_env = {**env, **node_environment(node), **feeds}
        process = start(["run", "--no-view"], run_env, log)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            sol_key = f"price:{WSOL_MINT}"
            wait_for(lambda: client.hget(sol_key, "source") == "pyth", "a pyth price in Redis", DEADLINE_S, log)
            time.sleep(CHAIN_PAST_S)  # the chain's trades (a second of them) are behind; pyth goes on
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
