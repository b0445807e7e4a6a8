"""The pipeline's Prometheus metrics, counted as items pass the flow's steps.

Served at `/metrics` by `quantbot replay --http-port PORT` (`quantbot.ops.observability`); the replay
and demo summaries read them too. This module defines them and nothing else (no server). Metrics only
count and observe; what a number means is in its help text.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sized
from typing import TypeVar, cast

from prometheus_client import Counter, Histogram

from quantbot.units import SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_WEEK

INPUTS = Counter("quantbot_inputs_total", "Items read from a source: frames and unreadable lines")
FRAMES = Counter("quantbot_frames_total", "Frames read, by the frame's source and kind", ["source", "kind"])
TRANSACTIONS = Counter("quantbot_transactions_total", "Transactions normalised from frames")
ACTIVITIES = Counter(
    "quantbot_activities_total",
    "Activities decoded, by kind: trades (swap), liquidity adds and removes, transfers, pool creations",
    ["kind"],
)
VALUED = Counter("quantbot_activities_valued_total", "Activities given a USD value")
WHALES = Counter("quantbot_whales_total", "Whale transactions detected, by tier", ["tier"])
SIGNALS = Counter("quantbot_signals_total", "Trading signals derived, by strategy", ["strategy"])
DEAD_LETTERS = Counter("quantbot_dead_letters_total", "Inputs the flow could not use, by stage", ["stage"])
DECODE_FAILURES = Counter(
    "quantbot_decode_failures_total",
    "Transactions whose decoding raised (each one a `decode` dead letter), by the program whose decoder "
    "raised (`unknown` when it was none)",
    ["program"],
)

SINK_BATCH_ITEMS = Histogram(
    "quantbot_sink_batch_items",
    "Items per batch a sink was handed, by sink (influx, redis, mongo, postgres, dead_letters)",
    ["sink"],
    # Powers of two up to four times the default replay batch (512): batches merge several source batches.
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
SINK_WRITE_SECONDS = Histogram(
    "quantbot_sink_write_seconds",
    "Seconds a sink took to store one batch, retries and the search for refused items included, by sink",
    ["sink"],
    # From a loopback round trip (~1 ms) to the default retry budget (60 s: a store restarting).
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SINK_WRITE_ERRORS = Counter(
    "quantbot_sink_write_errors_total",
    "Write attempts that failed, by sink: each one retried and each one given up on (which stops the flow); "
    "items a store refuses are dead letters, not errors",
    ["sink"],
)
SINK_RETRIES = Counter(
    "quantbot_sink_retries_total", "Writes attempted again after a transient failure, by sink", ["sink"]
)
RECONNECTS = Counter(
    "quantbot_source_reconnects_total",
    "Reconnections of a live source to its feed, by source (counted by the live sources; a replay never reconnects)",
    ["source"],
)
GAPS = Counter(
    "quantbot_source_gaps_total",
    "Gaps a live source saw across a reconnection, by source (counted by the live sources; a replay has none)",
    ["source"],
)
BACKFILLED_SIGNATURES = Counter(
    "quantbot_backfilled_signatures_total",
    "Transaction signatures fetched over RPC to fill a live source's gaps, by source (counted by the live "
    "sources' backfill; a replay has none)",
    ["source"],
)
FEED_DOWN_SECONDS = Counter(
    "quantbot_feed_down_seconds_total",
    "Seconds a price feed was not receiving, by source: from the loss of its stream (or the last message of a "
    "stream found silent) to the next connection; what a feed misses is at most this long",
    ["source"],
)
FEED_RATE_LIMITED = Counter(
    "quantbot_feed_rate_limited_total",
    "Price-feed requests answered 429 (each one followed by the provider's wait, e.g. Hermes' 60 s), by source",
    ["source"],
)
FEED_DUPLICATES = Counter(
    "quantbot_feed_duplicates_total",
    "Price-feed messages dropped because they re-sent only quotes not newer than ones already emitted, by source",
    ["source"],
)
FEED_MISSED_TRADES = Counter(
    "quantbot_feed_missed_trades_total",
    "Large trades a feed reported (Birdeye) whose transaction the flow did not decode within "
    "`[feeds] large_trade_delay_s`: a gap of the chain source",
)
PRICE_DISAGREEMENTS = Counter(
    "quantbot_price_disagreements_total",
    "Feed quotes and on-chain trade prices of one token further apart than `[pricing] disagreement_share`, by "
    "the feed's source",
    ["source"],
)
ANALYTICS_SETTLED_EARLY = Counter(
    "quantbot_analytics_settled_early_total",
    "Whale follow-ups (dropped: no move at the wrong time) and signals (a pending one expired, an active one closed "
    "at the current price) settled before their time because `[analytics] max_pending` were waiting, by kind "
    "(follow_up, signal)",
    ["kind"],
)
CHAIN_LAG_SECONDS = Histogram(
    "quantbot_chain_lag_seconds",
    "Now minus the block time, for each transaction with activities as the flow decodes it: a live feed's lag "
    "behind the chain; a replay of old recordings shows their age",
    # A live feed's lag, from a block (0.4 s) to minutes; then an hour, a day and a week for replays.
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, SECONDS_PER_HOUR, SECONDS_PER_DAY, SECONDS_PER_WEEK),
)

WriteBatch = TypeVar("WriteBatch", bound=Callable[..., None])


def observe_batches(sink: str) -> Callable[[WriteBatch], WriteBatch]:
    """Decorate a sink's `write_batch(self, items)`: each batch that returns counts its size and duration.

    A batch that raises (the flow stops) is not observed; its failed attempts are write errors.
    """

    def decorate(write_batch: WriteBatch) -> WriteBatch:
        items_of, seconds_of = SINK_BATCH_ITEMS.labels(sink), SINK_WRITE_SECONDS.labels(sink)

        @functools.wraps(write_batch)
        def observed(self: object, items: Sized) -> None:
            start = time.perf_counter()
            write_batch(self, items)
            seconds_of.observe(time.perf_counter() - start)
            items_of.observe(len(items))

        return cast("WriteBatch", observed)

    return decorate


def total(metric: Counter | Histogram) -> float:
    """Over all label values: a counter's sum, a histogram's number of observations (0 before the first)."""
    return _summed(metric, "_count" if isinstance(metric, Histogram) else "_total")


def observed_sum(histogram: Histogram) -> float:
    """The sum of everything a histogram observed, over all its label values (seconds, items, ...)."""
    return _summed(histogram, "_sum")


def _summed(metric: Counter | Histogram, suffix: str) -> float:
    return sum(sample.value for family in metric.collect() for sample in family.samples if sample.name.endswith(suffix))


# Store writes given up on, counted by the sinks' retry policy (`sinks.retry.Retry.call`). Writes and their
# time are the observations of SINK_WRITE_SECONDS (`total`, `observed_sum`).
STORE_WRITE_FAILURES = Counter(
    "quantbot_store_write_failures_total", "Store writes given up on: a permanent failure or the retry budget spent"
)
OPERATIONAL_WRITE_FAILURES = Counter(
    "quantbot_operational_write_failures_total",
    "system_performance points or system_events rows that could not be written, by kind",
    ["kind"],
)

# The Solana JSON-RPC client (`connectors/rpc.py`): every call answered or given up on, and every retry.
RPC_REQUESTS = Counter(
    "quantbot_rpc_requests_total",
    "Solana JSON-RPC calls by method and outcome: ok, null (getTransaction not found, asked again or given up "
    "on), rpc_error, rate_limited (HTTP 429), server_error (5xx, timeouts, connection errors), node_not_ready; "
    "a batch of N calls counts N",
    ["method", "outcome"],
)
RPC_RETRIES = Counter(
    "quantbot_rpc_retries_total",
    "Solana JSON-RPC calls asked again, by reason: rate_limited, server_error, node_not_ready, null",
    ["reason"],
)


def bucket_counts(histogram: Histogram) -> dict[float, float]:
    """A histogram's cumulative counts per bucket upper bound, over all its label values."""
    counts: dict[float, float] = {}
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return counts


def quantile(histogram: Histogram, q: float, since: dict[float, float] | None = None) -> float | None:
    """The upper bound of the bucket holding the `q` quantile of what was observed (since `since`, a
    `bucket_counts` taken earlier); None before any observation. Coarse by design: as fine as the buckets."""
    now = bucket_counts(histogram)
    earlier = since or {}
    cumulative = sorted((bound, count - earlier.get(bound, 0.0)) for bound, count in now.items())
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    wanted = q * cumulative[-1][1]
    return next(bound for bound, count in cumulative if count >= wanted)
