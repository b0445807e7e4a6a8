"""Benchmark: the analytics state's cost per trade, on the hot path of the valuation step.

    .venv/bin/python bench/analytics.py                  # 50,000 synthetic transactions, the demo strategy
    .venv/bin/python bench/analytics.py --txs 200000 --tx-per-s 50 --no-reserves

A synthetic feed (`quantbot.synthetic`, the replay benchmark's) is parsed and valued by the flow's own steps
once, beforehand; then every valued transaction and quote goes through `Analytics.observe_trade` /
`observe_quote` in stream order, each call timed alone (`time.perf_counter_ns`). It prints the median,
90th and 99th percentile and mean microseconds per call, the calls per second that makes, and what was
emitted. Timers (snapshots every 5 min of feed time, follow-ups, signal exits) fire inside the calls that
pass them, so the percentiles show them and the mean carries their share.

The stream is run `--passes` times (a fresh state each time, the very same calls) and each call counts
with its fastest time: on a shared machine a call preempted once is not the analytics' cost.

The decoders fill `Hop.reserves` for constant-product pools only (Pump.fun, PumpSwap, Raydium AMM v4, CPMM,
Launchpad); this script gives every other hop with a pool reserves of a plausible depth (`--no-reserves`: leave
them as decoded), so that the pools' liquidity path is measured on every trade, a worst case.
DESIGN §7: the flow values ~2,000+ trades/s per core; the
analytics should cost a few µs of that per typical trade.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from quantbot.analytics import Analytics, AnalyticsConfig  # noqa: E402
from quantbot.models import Activity, Frame, Hop, PriceTick, TickStats, TokenAmount, ValuedActivity  # noqa: E402
from quantbot.ops.demo import demo_strategy_document  # noqa: E402
from quantbot.pricing import FeedQuote, PricingConfig  # noqa: E402
from quantbot.signals import WhaleFollower  # noqa: E402
from quantbot.steps import DecodedTransaction, PricedQuote, Valuation, ValuedTransaction, parse_frame  # noqa: E402
from quantbot.synthetic import FeedSpec, iter_feed  # noqa: E402
from quantbot.tokens import TokenFacts  # noqa: E402
from quantbot.units import NS_PER_US, SECONDS_PER_DAY, SECONDS_PER_HOUR  # noqa: E402

START_TIME = 1_750_032_000
"""A fixed feed start (2025-06-16 UTC): the same spec always gives the same stream."""
RESERVE_MULTIPLE = 200
"""Given reserves hold this many times the hop's amounts: a pool a trade moves by about 0.5 %."""
PERCENTILES = (50, 90, 99)


def with_reserves(activity: Activity) -> Activity:
    """The activity with reserves on each of its pooled hops that has none (after-the-hop amounts, scaled)."""
    hops = tuple(
        hop
        if hop.pool is None or hop.reserves is not None
        else Hop(
            hop.program,
            hop.program_id,
            hop.pool,
            hop.input,
            hop.output,
            hop.price_impact_pct,
            (
                TokenAmount(hop.input.mint, hop.input.amount * RESERVE_MULTIPLE, hop.input.decimals),
                TokenAmount(hop.output.mint, hop.output.amount * RESERVE_MULTIPLE, hop.output.decimals),
            ),
        )
        for hop in activity.hops
    )
    return Activity(
        activity.signature,
        activity.slot,
        activity.block_time,
        activity.kind,
        activity.index,
        activity.trader,
        activity.venue,
        activity.input,
        activity.output,
        hops,
        activity.trader_deltas,
    )


Streamed = ValuedTransaction | PricedQuote | TokenFacts
"""What the analytics is fed: valued transactions and quotes, and the mints' facts (the feed's accounts frames)."""


def valued_stream(spec: FeedSpec, reserves: bool) -> tuple[list[Streamed], list[int]]:
    """The feed parsed and valued in stream order, as the flow's valuation step emits it; and the nanoseconds each
    transaction's valuation (`Valuation.apply`, the step the analytics joins) took, for scale."""
    valuation = Valuation()
    pricing = PricingConfig()
    stream: list[Streamed] = []
    valuing_ns: list[int] = []
    clock = time.perf_counter_ns
    for frame, _ in iter_feed(spec):
        if not isinstance(frame, Frame):
            continue  # a malformed line: a dead letter, nothing to value
        for parsed in parse_frame(frame):
            if isinstance(parsed, DecodedTransaction):
                if reserves:
                    activities = tuple(with_reserves(a) for a in parsed.activities)
                    parsed = DecodedTransaction(parsed.position, parsed.signature, activities, parsed.received_ns)  # noqa: PLW2901
                begin = clock()
                stream.append(valuation.apply(parsed, pricing))
                valuing_ns.append(clock() - begin)
            elif isinstance(parsed, FeedQuote):
                stream.append(valuation.apply(parsed, pricing))
            elif isinstance(parsed, TokenFacts):
                stream.append(parsed)
    return stream, valuing_ns


def timed_pass(
    stream: list[Streamed], config: AnalyticsConfig
) -> tuple[Analytics, list[int], list[int], dict[str, int]]:
    """One pass of a fresh state over the stream: nanoseconds per trade call and per quote call, and the outputs."""
    analytics = Analytics()
    trade_ns: list[int] = []
    quote_ns: list[int] = []
    emitted: dict[str, int] = {}
    clock = time.perf_counter_ns
    for item in stream:
        if isinstance(item, ValuedTransaction):
            begin = clock()
            _, out = analytics.observe_trade(item.signature, item.valued, config)
            trade_ns.append(clock() - begin)
        elif isinstance(item, TokenFacts):
            out = analytics.observe_facts(item, config)
        else:
            begin = clock()
            _, out = analytics.observe_quote(item.tick, config)
            quote_ns.append(clock() - begin)
        for output in out:
            name = type(output).__name__
            emitted[name] = emitted.get(name, 0) + 1
    return analytics, trade_ns, quote_ns, emitted


def copy_floor(stream: list[Streamed], passes: int) -> list[int]:
    """Per trade, the best nanoseconds of building only its stats-carrying copies (what the interface returns)."""
    stats = TickStats(None, None, None, 1.0, 1.0, 1.0)
    best: list[int] = []
    clock = time.perf_counter_ns
    for number in range(passes):
        times: list[int] = []
        for item in stream:
            if not isinstance(item, ValuedTransaction):
                continue
            begin = clock()
            tuple(
                ValuedActivity(
                    v.activity,
                    v.usd_value,
                    v.sol_usd,
                    tuple(
                        [
                            PriceTick(
                                t.token,
                                t.price_usd,
                                t.block_time,
                                t.source,
                                t.volume_usd,
                                t.signature,
                                t.index,
                                t.symbol,
                                stats,
                            )
                            for t in v.ticks
                        ]
                    ),
                )
                for v in item.valued
            )
            times.append(clock() - begin)
        best = times if number == 0 else [min(a, b) for a, b in zip(best, times, strict=True)]
    return best


def percentile(sorted_ns: list[int], pct: int) -> float:
    """The `pct` percentile of sorted nanoseconds, in microseconds."""
    return sorted_ns[min(len(sorted_ns) - 1, len(sorted_ns) * pct // 100)] / NS_PER_US


def main() -> None:
    """Prepare the stream, time every call, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=50_000, help="synthetic transactions")
    parser.add_argument("--tx-per-s", type=float, default=400.0, help="feed-time pace (transactions per second)")
    parser.add_argument("--hours", type=float, help="hours of feed time the feed spans (instead of --tx-per-s)")
    parser.add_argument("--no-reserves", action="store_true", help="keep hops' reserves as decoded")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="identical passes; each call's time is its best (a shared machine's noise out)",
    )
    args = parser.parse_args()
    if args.passes < 1:
        parser.error(f"--passes must be at least 1, got {args.passes}")

    pace = None if args.hours is not None else args.tx_per_s
    spec = FeedSpec(txs=args.txs, seed=args.seed, start_time=START_TIME, tx_per_s=pace, hours=args.hours)
    started = time.perf_counter()
    stream, valuing_ns = valued_stream(spec, reserves=not args.no_reserves)
    print(f"prepared {len(stream):,} valued items in {time.perf_counter() - started:.1f} s")
    print(f"for scale, the valuation of a transaction (one pass): p50 {percentile(sorted(valuing_ns), 50):.1f} µs")
    gc.freeze()  # the prepared stream is not the flow's: keep the collector from walking it during the timing

    config = AnalyticsConfig(strategies=(WhaleFollower.from_document(demo_strategy_document(), SECONDS_PER_DAY),))
    trade_ns: list[int] = []
    quote_ns: list[int] = []
    emitted: dict[str, int] = {}
    for number in range(args.passes):
        analytics, trades, quotes, emitted = timed_pass(stream, config)
        trade_ns = trades if number == 0 else [min(a, b) for a, b in zip(trade_ns, trades, strict=True)]
        quote_ns = quotes if number == 0 else [min(a, b) for a, b in zip(quote_ns, quotes, strict=True)]

    for name, samples in (("observe_trade", trade_ns), ("observe_quote", quote_ns)):
        if not samples:
            continue
        ordered = sorted(samples)
        mean_us = statistics.fmean(samples) / NS_PER_US
        spread = "  ".join(f"p{p} {percentile(ordered, p):6.1f} µs" for p in PERCENTILES)
        print(f"{name}: {len(samples):,} calls  {spread}  mean {mean_us:6.1f} µs  ({1e6 / mean_us:,.0f}/s)")
    floor = sorted(copy_floor(stream, args.passes))
    print(f"of which building the returned copies (ticks with stats, activities): p50 {percentile(floor, 50):.1f} µs")
    feed_s = (analytics.clock or START_TIME) - START_TIME
    kept = f"tokens {len(analytics.tokens):,}, pools {len(analytics.pools):,}"
    print(f"feed time: {feed_s / SECONDS_PER_HOUR:.2f} h; {kept}")
    print("emitted: " + ", ".join(f"{name} {count:,}" for name, count in sorted(emitted.items())))


if __name__ == "__main__":
    main()
