"""The one transform graph: frames in; prices, whales, signals and dead letters out to the four stores.

Every flow is `build_flow` over its own sources (the replay of recordings, `flows/replay.py`; the live
chain and the price feeds, `flows/live.py` and `flows/feeds.py`; the backfill, `flows/backfill.py`);
everything after the input is the same. Step ids are stable: they key the recovery snapshots (the first
source's input is `frames` whatever the others are, so snapshots taken before feeds existed resume).

Two ways through the valuation, one flag (`in_order`):

- arrival order (live and backfill sources: several partitions, no global order): each item is parsed
  where its partition runs and valued, under one key, in the order it reaches the valuation;
- stream order (a replay's numbered source, `Sequenced` items): items are parsed (the CPU-bound part)
  where the source emits them, which is on every worker of the cluster but the valuing one when the
  replay has a reader for each (`connectors.replay.ReplaySource`'s `readers` and `idle_worker`), then
  put back in sequence order under one key and valued (`quantbot.steps.InOrderValuation`), so the stores
  are the same for any number of workers and processes. Price ticks are written to Redis by the
  valuation's worker, in stream order (the newest price wins by block time, ties by the last write);
  Influx's price points are spread again for the sinks.

Either way the valuation step also runs the analytics (`quantbot.analytics`: whales, signals and their
lifecycle, follow-ups, 24 h windows, snapshots, strategy metrics, token documents), whose outputs leave
the valuation's worker in stream order: a document's follow-ups and a signal's lifecycle steps reach
their store after what they follow up. MongoDB and PostgreSQL are written by one worker each, on a
thread of its own, behind the flow's work (`sinks.behind`: one batch at a time, in order, every write of
an epoch stored before the epoch ends); Redis and InfluxDB in line, by the workers their items are on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink

from quantbot import metrics
from quantbot.analytics import (
    AnalyticsConfig,
    MarketSnapshot,
    SignalUpdate,
    StrategyMetrics,
    StrategyPerformance,
    TokenDocument,
    TokenRequest,
    WhaleUpdate,
)
from quantbot.bounds import ParseConfig
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.feeds import FeedMap, LargeTrade
from quantbot.models import DeadLetter, Frame, PriceTick, Signal, WhaleTransaction
from quantbot.pricing import FeedQuote, PriceDisagreement, PricingConfig
from quantbot.steps import (
    Booked,
    DecodedTransaction,
    InOrderValuation,
    MissedTrade,
    Parsed,
    PricedQuote,
    Sequenced,
    TradeWatch,
    Valuable,
    Valuation,
    ValuedTransaction,
    WatchConfig,
    disagreements_of,
    parse_frame,
    price_ticks,
)
from quantbot.tokens import TokenFacts
from sinks.behind import WriteBehind

log = logging.getLogger(__name__)

ONE_BOOK = "book"
"""Every item is valued under this one key: prices are learned in stream order by one state."""
ONE_WATCH = "watch"
"""Every decoded transaction and large trade is checked under this one key: one set of seen signatures."""
FIRST_INPUT = "frames"
"""The first source's step id, as it was when the flow had one source: its snapshots still resume."""


MONGO_WRITES = (WhaleTransaction, WhaleUpdate, TokenDocument, MarketSnapshot, StrategyPerformance)
SIGNAL_WRITES = (Signal, SignalUpdate)
INFLUX_WRITES = (Signal, SignalUpdate, StrategyMetrics)


@dataclass(frozen=True)
class FlowSinks:
    """Where the flow's four outputs go (real store sinks, or testing sinks)."""

    influx: DynamicSink[PriceTick | Signal | SignalUpdate | StrategyMetrics]
    redis: DynamicSink[PriceTick | Signal | SignalUpdate]
    mongo: DynamicSink[WhaleTransaction | WhaleUpdate | TokenDocument | MarketSnapshot | StrategyPerformance]
    postgres: DynamicSink[Signal | SignalUpdate | DeadLetter]
    """MongoDB and PostgreSQL are written behind the flow's work (`sinks.behind.WriteBehind`), which wraps a
    dynamic sink's partitions."""


@dataclass(frozen=True)
class FlowConfig:
    """The flow's thresholds, its analytics (whale tiers and strategies included) and its hooks."""

    pricing: PricingConfig
    analytics: AnalyticsConfig
    parse: ParseConfig = field(default_factory=ParseConfig)
    feeds: FeedMap = field(default_factory=FeedMap)
    watch: WatchConfig = field(default_factory=WatchConfig)
    on_event: Callable[[SystemEvent], object] | None = None
    """Where price disagreements and missed large trades are written as `system_events` rows (None: nowhere)."""
    on_missed_trade: Callable[[str], object] | None = None
    """Called with the signature of each missed large trade: where the live flow asks its chain source to
    fetch it over RPC (None: counted and reported only)."""
    on_output: Callable[[object], object] | None = None
    """Called with each of the analytics' outputs (whales, signals, their updates...), on the valuation's worker:
    where the live flow tells the Jupiter poller which tokens matter (`quantbot.interest`)."""
    on_token_request: Callable[[str], object] | None = None
    """Called with each mint whose facts the analytics asks for (`TokenRequest`): where the live flow asks its
    chain source for the mint's accounts (None: a replay, whose recording holds the answers)."""


def _count_frame(item: Frame | DeadLetter) -> None:
    metrics.INPUTS.inc()
    if isinstance(item, Frame):
        metrics.FRAMES.labels(item.source, item.kind).inc()


def _count_parsed(item: Parsed) -> None:
    if isinstance(item, DecodedTransaction):
        metrics.TRANSACTIONS.inc()
        for activity in item.activities:
            metrics.ACTIVITIES.labels(str(activity.kind)).inc()
        if item.activities and (block_time := item.activities[0].block_time) is not None:
            metrics.CHAIN_LAG_SECONDS.observe(time.time() - block_time)


def _value(
    state: Valuation | None, item: Valuable, *, config: PricingConfig, analytics: AnalyticsConfig
) -> tuple[Valuation, list[Booked]]:
    valuation = state if state is not None else Valuation()
    return valuation, valuation.book(item, config, analytics)


def _parse_numbered(
    numbered: Sequenced[Frame | DeadLetter], *, config: ParseConfig, feeds: FeedMap
) -> Sequenced[list[Parsed]]:
    """Exactly one parse result list per source item, dead letters and empty lists included: no gap in the numbers."""
    item = numbered.item
    return Sequenced(numbered.seq, parse_frame(item, config, feeds) if isinstance(item, Frame) else [item])


def _worth_valuing(item: Parsed) -> bool:
    """Feed quotes, token facts, and transactions with something to value (dead letters and reported large
    trades go their own way)."""
    return isinstance(item, FeedQuote | TokenFacts) or (isinstance(item, DecodedTransaction) and bool(item.activities))


def _valuable(numbered: Sequenced[list[Parsed]]) -> Sequenced[list[Valuable]]:
    return Sequenced(numbered.seq, [item for item in numbered.item if _worth_valuing(item)])  # type: ignore[misc]


def _value_in_order(
    state: InOrderValuation | None,
    numbered: Sequenced[list[Valuable]],
    *,
    config: PricingConfig,
    analytics: AnalyticsConfig,
) -> tuple[InOrderValuation, list[Booked]]:
    in_order = state if state is not None else InOrderValuation()
    return in_order, in_order.accept(numbered, config, analytics)


def _count_dead(item: object) -> None:
    if isinstance(item, DeadLetter):
        metrics.DEAD_LETTERS.labels(item.stage).inc()


def _count_valued(item: ValuedTransaction | PricedQuote) -> None:
    if isinstance(item, ValuedTransaction):
        metrics.VALUED.inc(sum(1 for v in item.valued if v.usd_value is not None))


def _count_output(item: object) -> None:
    if isinstance(item, WhaleTransaction):
        metrics.WHALES.labels(item.tier).inc()
    elif isinstance(item, Signal):
        metrics.SIGNALS.labels(item.strategy_id).inc()


def _request(on_request: Callable[[str], object], request: TokenRequest) -> None:
    on_request(request.mint)


def _call(hook: Callable[[object], object], item: object) -> None:
    hook(item)


def _is_valued(item: Booked) -> bool:
    return isinstance(item, ValuedTransaction | PricedQuote)


def _watch(
    state: TradeWatch | None, item: DecodedTransaction | LargeTrade | FeedQuote, *, config: WatchConfig
) -> tuple[TradeWatch, list[MissedTrade]]:
    watch = state if state is not None else TradeWatch()
    return watch, watch.observe(item, config)


def _report_disagreement(found: PriceDisagreement, on_event: Callable[[SystemEvent], object] | None) -> None:
    metrics.PRICE_DISAGREEMENTS.labels(found.feed_source).inc()
    if not found.report:
        return
    log.warning(
        "price_disagreement token=%s feed=%s feed_price=%g chain=%s chain_price=%g share=%.4f at=%d",
        found.token,
        found.feed_source,
        found.feed_price,
        found.chain_source,
        found.chain_price,
        found.share,
        found.at,
    )
    if on_event is not None:
        on_event(
            SystemEvent(
                EventType.PRICE_DISAGREEMENT,
                Severity.WARNING,
                found.feed_source,
                f"{found.token}: {found.feed_source} quotes {found.feed_price:g} USD, {found.chain_source} trades "
                f"{found.chain_price:g} USD ({found.share:.1%} apart)",
                {
                    "token": found.token,
                    "feed_source": found.feed_source,
                    "feed_price": found.feed_price,
                    "chain_source": found.chain_source,
                    "chain_price": found.chain_price,
                    "share": found.share,
                    "block_time": found.at,
                },
            )
        )


def _report_missed(
    missed: MissedTrade,
    on_event: Callable[[SystemEvent], object] | None,
    fetch: Callable[[str], object] | None,
) -> None:
    trade = missed.trade
    if fetch is not None:
        fetch(trade.signature)
    metrics.FEED_MISSED_TRADES.inc()
    log.warning(
        "missed_large_trade signature=%s volume_usd=%.0f block_time=%d waited_s=%.1f",
        trade.signature,
        trade.volume_usd,
        trade.block_time,
        missed.waited_s,
    )
    if on_event is not None:
        on_event(
            SystemEvent(
                EventType.GAP_DETECTED,
                Severity.WARNING,
                "birdeye",
                f"large trade {trade.signature} (${trade.volume_usd:,.0f}) not seen by the flow within "
                f"{missed.waited_s:.0f} s",
                {
                    "signature": trade.signature,
                    "volume_usd": trade.volume_usd,
                    "block_time": trade.block_time,
                    "position": trade.position,
                },
            )
        )


def _watch_large_trades(usable: Stream[Any], config: FlowConfig) -> None:
    """The large-trade check: transactions seen against trades reported; missed ones counted and reported."""
    watched = op.filter("watched", usable, lambda item: isinstance(item, DecodedTransaction | LargeTrade | FeedQuote))
    keyed = op.key_on("one_watch", watched, lambda _item: ONE_WATCH)
    missed = op.flat_map(
        "trade_watch",
        op.key_rm("unkey_watch", op.stateful_map("watch", keyed, partial(_watch, config=config.watch))),
        lambda found: found,
    )
    # MissedTrade(trade=LargeTrade(signature="5TDU...", volume_usd=120_000.0, ...), waited_s=31.2)
    op.inspect("report_missed", missed, lambda _step, m: _report_missed(m, config.on_event, config.on_missed_trade))


def build_flow(
    source: Source[Any] | Sequence[Source[Any]],
    sinks: FlowSinks,
    config: FlowConfig,
    name: str = "quantbot",
    record: Sink[Frame] | None = None,
    *,
    in_order: bool = False,
) -> Dataflow:
    """The dataflow from `source` (or several, merged) to `sinks`; with `record`, every frame read is also written.

    With `in_order`, the one `source` must number what it emits (`Sequenced` items, 0 on, no gaps: see
    `connectors.replay.ReplaySource(numbered=True)`) and the flow values in that order on any number of
    workers (see the module docstring); items are parsed on the worker whose partition emitted them.

    Step ids: the first source's input is `frames`; another's is `feed_<name>` (its `name` attribute, as the
    price feeds have: `feed_pyth`), else `feed_<n>` (its position, 1 on). A feed enabled after a snapshot was
    taken starts fresh and the others resume theirs, whatever the order they are listed in.
    """
    flow = Dataflow(name)
    sources = list(source) if isinstance(source, Sequence) else [source]
    if not sources:
        raise ValueError("a flow needs at least one source")
    inputs = [op.input(FIRST_INPUT, flow, sources[0])]
    inputs += [
        op.input(f"feed_{getattr(extra, 'name', number)}", flow, extra)
        for number, extra in enumerate(sources[1:], start=1)
    ]
    items = inputs[0] if len(inputs) == 1 else op.merge("sources", *inputs)
    dead_frames: Stream[DeadLetter] | None = None
    if in_order:
        if len(sources) != 1:
            raise ValueError("an in-order flow reads one numbered source")
        # Sequenced(seq=1234, item=Frame(kind="transaction", ...) | DeadLetter(stage="frame"))
        op.inspect("count_frames", items, lambda _step, numbered: _count_frame(numbered.item))
        if record is not None:
            frames = op.filter_map("recorded", items, lambda n: n.item if isinstance(n.item, Frame) else None)
            op.output("record", frames, record)
        numbered = op.map("parse_numbered", items, partial(_parse_numbered, config=config.parse, feeds=config.feeds))
        # Sequenced(seq=1234, item=[DecodedTransaction(...), DeadLetter(stage="decode"), ...]), on any worker
        parsed = op.flat_map("parse", numbered, lambda n: n.item)
        keyed_numbered = op.key_on("one_book", op.map("valuable", numbered, _valuable), lambda _n: ONE_BOOK)
        # ("book", Sequenced(seq=1234, item=[DecodedTransaction | FeedQuote | TokenFacts, ...]))
        booked = op.flat_map(
            "valued_in_order",
            op.key_rm(
                "unkey",
                op.stateful_map(
                    "value_in_order",
                    keyed_numbered,
                    partial(_value_in_order, config=config.pricing, analytics=config.analytics),
                ),
            ),
            lambda run: run,
        )
    else:
        # Frame(kind="transaction", payload='{"jsonrpc": ...}') | DeadLetter(stage="frame")
        op.inspect("count_frames", items, lambda _step, item: _count_frame(item))
        split = op.branch("is_frame", items, lambda item: isinstance(item, Frame))
        if record is not None:
            op.output("record", split.trues, record)
        dead_frames = split.falses
        parsed = op.flat_map("parse", split.trues, partial(parse_frame, config=config.parse, feeds=config.feeds))
    # DecodedTransaction(signature="5Q8E...", activities=(Activity(kind="swap", ...),)) | FeedQuote | TokenFacts
    # | LargeTrade | DeadLetter
    op.inspect("count_parsed", parsed, lambda _step, item: _count_parsed(item))
    usable = op.branch("parsed_ok", parsed, lambda item: not isinstance(item, DeadLetter))
    if config.watch.enabled:  # a stateful step over every transaction: only where large trades are reported
        _watch_large_trades(usable.trues, config)
    if not in_order:
        wanted = op.filter("has_activities", usable.trues, _worth_valuing)
        keyed = op.key_on("one_book", wanted, lambda _item: ONE_BOOK)
        # ("book", DecodedTransaction | FeedQuote | TokenFacts)
        booked = op.flat_map(
            "valued",
            op.key_rm(
                "unkey",
                op.stateful_map("value", keyed, partial(_value, config=config.pricing, analytics=config.analytics)),
            ),
            lambda run: run,
        )
    # ValuedTransaction(signature="5Q8E...", valued=(ValuedActivity(usd_value=412_000.0, ticks=...),)) | PricedQuote
    # | WhaleTransaction | Signal | WhaleUpdate | SignalUpdate | TokenDocument | MarketSnapshot | ..., in stream order
    split_booked = op.branch("is_valued", booked, _is_valued)
    valued: Stream[Any] = split_booked.trues
    outputs: Stream[Any] = split_booked.falses
    op.inspect("count_valued", valued, lambda _step, item: _count_valued(item))
    disagreements = op.flat_map("disagreements", valued, disagreements_of)
    # PriceDisagreement(token="So11...", feed_source="pyth", feed_price=151.2, chain_price=139.0, share=0.08)
    op.inspect("report_disagreements", disagreements, lambda _step, d: _report_disagreement(d, config.on_event))
    ticks = op.flat_map("ticks", valued, price_ticks)
    # PriceTick(token="So11...", price_usd=151.2, source="raydium_amm_v4", stats=TickStats(...)), valuation's worker
    store_ticks = ticks
    if in_order:
        # Price points are keyed, idempotent writes: spread over the workers so the sinks' work spreads too.
        store_ticks = op.redistribute("spread_ticks", ticks)
    # WhaleTransaction(tier="whale", document={"_id": "5Q8E...", ...}) | Signal(signal_id="0c1d...", ...)
    # | SignalUpdate(status="closed", exit_reason="take_profit", ...) | MarketSnapshot(document={...}) | ...
    op.inspect("count_outputs", outputs, lambda _step, item: _count_output(item))
    on_output = config.on_output
    if on_output is not None:
        op.inspect("watch_outputs", outputs, lambda _step, item: _call(on_output, item))
    requests = op.filter("token_requests", outputs, lambda item: isinstance(item, TokenRequest))
    on_request = config.on_token_request
    if on_request is not None:
        op.inspect("request_tokens", requests, lambda _step, r: _request(on_request, r))
    documents = op.filter("documents", outputs, lambda item: isinstance(item, MONGO_WRITES))
    signals = op.filter("signals", outputs, lambda item: isinstance(item, SIGNAL_WRITES))
    points = op.filter("points", outputs, lambda item: isinstance(item, INFLUX_WRITES))
    # In stream order, the source's own dead letters were parsed into the numbered lists, like frames.
    dead: Stream[Any] = op.merge("dead_letters", *([] if dead_frames is None else [dead_frames]), usable.falses)
    # DeadLetter(position="frames-...jsonl@1234", stage="normalise", reason="...")
    op.inspect("count_dead", dead, lambda _step, d: _count_dead(d))

    op.output("influx", op.merge("to_influx", store_ticks, points), sinks.influx)
    op.output("redis", op.merge("to_redis", ticks, signals), sinks.redis)
    # Documents, signals and dead letters are few and their stores' round trips long: written behind the
    # flow's work, by one worker (`sinks.behind`). Price points stay spread over the workers.
    to_mongo = WriteBehind(sinks.mongo, "mongo")
    op.output("mongo", op.key_on("mongo_writer", documents, lambda _item: to_mongo.key), to_mongo)
    to_postgres = WriteBehind(sinks.postgres, "postgres")
    postgres_items = op.merge("to_postgres", signals, dead)
    op.output("postgres", op.key_on("postgres_writer", postgres_items, lambda _item: to_postgres.key), to_postgres)
    return flow
