"""The one transform graph: frames in; prices, whales, signals and dead letters out to the four stores.

Every flow is `build_flow` over its own source (the replay of recordings, `flows/replay.py`; the live
chain, `flows/live.py`; the backfill, `flows/backfill.py`); everything after the input is the same.
Step ids are stable: they key the recovery snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from quantbot import metrics
from quantbot.bounds import ParseConfig
from quantbot.models import DeadLetter, Frame, PriceTick, Signal, WhaleTransaction
from quantbot.pricing import FeedQuote, PricingConfig
from quantbot.signals import WhaleFollower
from quantbot.steps import (
    DecodedTransaction,
    Valuation,
    ValuedTransaction,
    parse_frame,
    price_ticks,
    signals_of,
    whales_of,
)
from quantbot.whales import WhaleConfig

ONE_BOOK = "book"
"""Every item is valued under this one key: prices are learned in stream order by one state."""


@dataclass(frozen=True)
class FlowSinks:
    """Where the flow's four outputs go (real store sinks, or testing sinks)."""

    influx: Sink[PriceTick | Signal]
    redis: Sink[PriceTick | Signal]
    mongo: Sink[WhaleTransaction]
    postgres: Sink[Signal | DeadLetter]


@dataclass(frozen=True)
class FlowConfig:
    """The flow's thresholds and strategies."""

    pricing: PricingConfig
    whales: WhaleConfig
    strategies: Sequence[WhaleFollower]
    parse: ParseConfig = field(default_factory=ParseConfig)


def _count_frame(item: Frame | DeadLetter) -> None:
    metrics.INPUTS.inc()
    if isinstance(item, Frame):
        metrics.FRAMES.labels(item.source, item.kind).inc()


def _count_parsed(item: DecodedTransaction | FeedQuote | DeadLetter) -> None:
    if isinstance(item, DecodedTransaction):
        metrics.TRANSACTIONS.inc()
        for activity in item.activities:
            metrics.ACTIVITIES.labels(str(activity.kind)).inc()
        if item.activities and (block_time := item.activities[0].block_time) is not None:
            metrics.CHAIN_LAG_SECONDS.observe(time.time() - block_time)


def _value(
    state: Valuation | None, item: DecodedTransaction | FeedQuote, *, config: PricingConfig
) -> tuple[Valuation, ValuedTransaction | PriceTick]:
    valuation = state if state is not None else Valuation()
    return valuation, valuation.apply(item, config)


def _count_dead(item: object) -> None:
    if isinstance(item, DeadLetter):
        metrics.DEAD_LETTERS.labels(item.stage).inc()


def _count_valued(item: ValuedTransaction | PriceTick) -> None:
    if isinstance(item, ValuedTransaction):
        metrics.VALUED.inc(sum(1 for v in item.valued if v.usd_value is not None))


def build_flow(
    source: Source[Any],
    sinks: FlowSinks,
    config: FlowConfig,
    name: str = "quantbot",
    record: Sink[Frame] | None = None,
) -> Dataflow:
    """The dataflow from `source` to `sinks`; with `record`, every frame read is also written there as read."""
    flow = Dataflow(name)
    items = op.input("frames", flow, source)
    # Frame(kind="transaction", payload='{"jsonrpc": ...}') | DeadLetter(stage="frame")
    op.inspect("count_frames", items, lambda _step, item: _count_frame(item))
    split = op.branch("is_frame", items, lambda item: isinstance(item, Frame))
    if record is not None:
        op.output("record", split.trues, record)
    parsed = op.flat_map("parse", split.trues, partial(parse_frame, config=config.parse))
    # DecodedTransaction(signature="5Q8E...", activities=(Activity(kind="swap", ...),)) | FeedQuote | DeadLetter
    op.inspect("count_parsed", parsed, lambda _step, item: _count_parsed(item))
    usable = op.branch("parsed_ok", parsed, lambda item: not isinstance(item, DeadLetter))
    wanted = op.filter(
        "has_activities", usable.trues, lambda item: not isinstance(item, DecodedTransaction) or bool(item.activities)
    )
    keyed = op.key_on("one_book", wanted, lambda _item: ONE_BOOK)
    # ("book", DecodedTransaction | FeedQuote)
    valued = op.key_rm("unkey", op.stateful_map("value", keyed, partial(_value, config=config.pricing)))
    # ValuedTransaction(signature="5Q8E...", valued=(ValuedActivity(usd_value=412_000.0, ...),)) | PriceTick
    op.inspect("count_valued", valued, lambda _step, item: _count_valued(item))
    ticks = op.flat_map("ticks", valued, price_ticks)
    # PriceTick(token="So11...", price_usd=151.2, source="raydium_amm_v4", ...)
    whales = op.flat_map("whales", valued, partial(whales_of, config=config.whales))
    # WhaleTransaction(tier="whale", document={"_id": "5Q8E...", ...})
    op.inspect("count_whales", whales, lambda _step, w: metrics.WHALES.labels(w.tier).inc())
    signals = op.flat_map("signals", whales, partial(signals_of, strategies=list(config.strategies)))
    # Signal(signal_id="0c1d...", direction="buy", token_address="Dez...", ...)
    op.inspect("count_signals", signals, lambda _step, s: metrics.SIGNALS.labels(s.strategy_id).inc())
    dead = op.merge("dead_letters", split.falses, usable.falses)
    # DeadLetter(position="frames-...jsonl@1234", stage="normalise", reason="...")
    op.inspect("count_dead", dead, lambda _step, d: _count_dead(d))

    op.output("influx", op.merge("to_influx", ticks, signals), sinks.influx)
    op.output("redis", op.merge("to_redis", ticks, signals), sinks.redis)
    op.output("mongo", whales, sinks.mongo)
    op.output("postgres", op.merge("to_postgres", signals, dead), sinks.postgres)
    return flow
