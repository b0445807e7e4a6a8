"""The pipeline's Prometheus metrics, counted as items pass the flow's steps.

Served by `quantbot replay --metrics-port PORT` for scraping; the replay and demo summaries
read them too. Counters only count; what a number means is in its help text.
"""

from __future__ import annotations

from prometheus_client import Counter

INPUTS = Counter("quantbot_inputs_total", "Items read from a source: frames and unreadable lines")
FRAMES = Counter("quantbot_frames_total", "Frames read from a source, by kind", ["kind"])
TRANSACTIONS = Counter("quantbot_transactions_total", "Transactions normalised from frames")
ACTIVITIES = Counter("quantbot_activities_total", "Activities decoded, by kind (swap, transfer, ...)", ["kind"])
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


def total(counter: Counter) -> float:
    """The sum of a counter over all its label values (0 before the first increment)."""
    return sum(
        sample.value for metric in counter.collect() for sample in metric.samples if sample.name.endswith("_total")
    )


# Store writes, counted by the sinks' retry policy (`sinks.retry.Retry.call`): one per batch write.
STORE_WRITES = Counter("quantbot_store_writes_total", "Store writes (one per batch) that succeeded, retries included")
STORE_WRITE_FAILURES = Counter(
    "quantbot_store_write_failures_total", "Store writes given up on: a permanent failure or the retry budget spent"
)
STORE_WRITE_SECONDS = Counter(
    "quantbot_store_write_seconds_total", "Seconds spent in successful store writes, retries and backoff included"
)
OPERATIONAL_WRITE_FAILURES = Counter(
    "quantbot_operational_write_failures_total",
    "system_performance points or system_events rows that could not be written, by kind",
    ["kind"],
)
