"""Synthetic feeds: deterministic, decoded exactly by the real decoders, malformed lines rejected, whales rare."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from quantbot.models import WSOL_MINT, ActivityKind, DeadLetter, Frame, FrameKind, TokenAmount
from quantbot.ops.cli import DEMO_HOURS
from quantbot.ops.demo import demo_feed_spec, demo_strategy_document
from quantbot.pricing import USDC_MINT, USDT_MINT, FeedQuote, PricingConfig
from quantbot.recordings import FrameFormatError, decode_frame, read_lines
from quantbot.solana.codec import b58decode
from quantbot.solana.decode import decode_transaction
from quantbot.solana.normalise import parse_transactions
from quantbot.steps import DecodedTransaction, Valuation, ValuedTransaction, parse_frame
from quantbot.synthetic import Expected, FeedSpec, generate_feed, iter_feed, iter_transactions
from quantbot.tokens import TokenFacts
from tests.conftest import run_cli

START = 1_750_000_000
"""A fixed first block time: feeds with `start_time` set are reproducible byte for byte."""
WHALE_USD = 50_000.0
"""The smallest whale tier of `quantbot.whales.WhaleConfig`."""
VENUES = {"jupiter_v6", "pumpfun", "pumpswap", "raydium_amm_v4", "orca_whirlpool", "meteora_dlmm"}


def _spec(txs: int, seed: int = 11, **overrides: object) -> FeedSpec:
    return FeedSpec(txs=txs, seed=seed, start_time=START, **overrides)  # type: ignore[arg-type]


def test_same_spec_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    """Two runs of one spec write identical files; a different seed writes a different one."""
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"

    stats = generate_feed(_spec(400, seed=5), first)
    generate_feed(_spec(400, seed=5), second)
    generate_feed(_spec(400, seed=6), other)

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert stats.frames == len(first.read_bytes().splitlines())
    assert stats.transactions == 400 and stats.swaps + stats.transfers + stats.failed == 400
    assert stats.accounts_frames > 0


def test_every_transaction_decodes_to_exactly_what_was_generated() -> None:
    """Each transaction decodes, with the real decoders, to its kind, trader, venue, legs, hops and pool reserves."""
    seen: Counter[tuple[str, str, int]] = Counter()
    encodings: Counter[str] = Counter()
    keys: set[str] = set()
    signatures: set[str] = set()
    with_reserves: Counter[str] = Counter()
    for item, expected in iter_feed(_spec(3_000)):
        if expected is None:
            continue
        assert isinstance(item, Frame) and item.source == "synthetic" and item.kind == FrameKind.TRANSACTION
        (tx,) = parse_transactions(item.payload)
        keys.update(tx.account_keys)
        signatures.add(tx.signature)
        result = orjson.loads(item.payload)["result"]
        wire = result["transaction"]
        parsed = isinstance(wire, dict) and isinstance(wire["message"]["accountKeys"][0], dict)
        encodings["base64" if isinstance(wire, list) else "jsonParsed" if parsed else "json"] += 1
        encodings[f"v{result['version']}"] += 1

        activities = decode_transaction(tx)

        assert tx.signature == expected.signature
        seen[(expected.kind, expected.venue, expected.hop_count)] += 1
        if expected.kind == "failed":
            assert tx.failed and activities == []
            continue
        assert len(activities) == 1, (expected, activities)
        (activity,) = activities
        assert activity.kind == ActivityKind(expected.kind)
        assert (activity.trader, activity.venue) == (expected.trader, expected.venue)
        assert (activity.input, activity.output) == (expected.input, expected.output), expected
        assert len(activity.hops) == expected.hop_count
        assert tuple(hop.reserves for hop in activity.hops) == expected.hop_reserves, expected
        with_reserves[activity.venue] += any(hop.reserves is not None for hop in activity.hops)
        deltas = activity.trader_deltas
        if activity.input is not None and activity.input.mint == WSOL_MINT:  # SOL paid, and fees, rent and tips
            assert -deltas[WSOL_MINT] >= activity.input.amount
    assert {len(b58decode(key)) for key in keys} == {32} and {len(b58decode(sig)) for sig in signatures} == {64}
    assert {venue for kind, venue, _ in seen if kind == "swap"} == VENUES
    assert {venue for kind, venue, _ in seen if kind == "failed"} >= {"jupiter_v6", "pumpfun", "pumpswap"}
    assert {venue for kind, venue, _ in seen if kind == "transfer"} == {"system", "spl_token"}
    assert {hops for kind, venue, hops in seen if venue == "jupiter_v6" and kind == "swap"} == {1, 2, 3}
    # Pool reserves come from the venues whose events carry them, and from Jupiter hops through Raydium.
    assert set(+with_reserves) == {"pumpfun", "pumpswap", "raydium_amm_v4", "jupiter_v6"}
    assert encodings["json"] > encodings["jsonParsed"] > encodings["base64"] > 0 and encodings["vlegacy"] > 0


def _rejected(line: bytes) -> bool:
    try:
        frame = decode_frame(line, "feed@0")
    except FrameFormatError:
        return True
    return all(isinstance(out, DeadLetter) for out in parse_frame(frame))


def test_every_malformed_line_becomes_a_dead_letter_and_nothing_else_does() -> None:
    """Malformed lines fail `decode_frame` or become dead letters; every well-formed frame parses."""
    spec = _spec(2_000, garbage_share=0.05)
    malformed = good = 0
    kinds: Counter[str] = Counter()
    for item, _ in iter_feed(spec):
        if isinstance(item, bytes):
            malformed += 1
            assert b"\n" not in item and item.strip()
            assert _rejected(item), item[:200]
            try:
                kinds[decode_frame(item, "feed@0").kind] += 1
            except FrameFormatError:
                kinds["not a frame"] += 1
        else:
            good += 1
            (parsed,) = parse_frame(item)
            assert isinstance(parsed, DecodedTransaction | FeedQuote | TokenFacts), parsed
    assert malformed == pytest.approx(spec.garbage_share * (malformed + good), rel=0.05)
    assert {"not a frame", "transaction", "price"} <= set(kinds) and len(kinds) > 3  # and unknown kinds


@pytest.mark.slow  # generates and values 20,000 transactions: about 20 s
def test_trade_sizes_are_heavy_tailed_so_whales_are_rare() -> None:
    """Valued by the flow's own pricing, some swaps are whales ($50k+), but fewer than 1%."""
    valuation, config = Valuation(), PricingConfig()
    swaps = whales = 0
    for item, _ in iter_feed(_spec(20_000)):
        if isinstance(item, bytes):
            continue
        for parsed in parse_frame(item):
            if not isinstance(parsed, DecodedTransaction | FeedQuote):  # dead letters and token facts
                continue
            valued = valuation.apply(parsed, config)
            if not isinstance(valued, ValuedTransaction):
                continue
            for one in valued.valued:
                if one.activity.kind == ActivityKind.SWAP:
                    swaps += 1
                    whales += (one.usd_value or 0.0) >= WHALE_USD
    assert swaps > 17_000
    assert 0 < whales < 0.01 * swaps


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_feeds_read_back_line_for_line(tmp_path: Path, suffix: str) -> None:
    """A .gz or .zst feed reads back, through `read_lines`, exactly as the plain one."""
    plain, packed = tmp_path / "feed.jsonl", tmp_path / f"feed{suffix}"
    generate_feed(_spec(300), plain)

    stats = generate_feed(_spec(300), packed)

    assert [line.data for line in read_lines(packed)] == [line.data for line in read_lines(plain)]
    assert stats.bytes == packed.stat().st_size < plain.stat().st_size


def test_without_a_start_time_the_feed_ends_now() -> None:
    """With `start_time` None the first block is `now` minus the feed's duration."""
    spec = FeedSpec(txs=400, seed=1, tx_per_s=100.0)
    now = 1_800_000_000.0

    first = next(item for item, expected in iter_feed(spec, now=now) if isinstance(expected, Expected))

    assert isinstance(first, Frame)
    assert orjson.loads(first.payload)["result"]["blockTime"] == now - 400 / 100.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"txs": -1},
        {"garbage_share": 1.0},
        {"failed_share": 0.6, "transfer_share": 0.6},
        {"tx_per_s": 0.0},
        {"hours": 0.0},
        {"hours": -1.0},
        {"hours": float("nan")},
        {"price_every_s": 0.0},
        {"tx_per_s": 100.0, "hours": 1.0},
    ],
    ids=lambda overrides: ",".join(f"{k}={v}" for k, v in overrides.items()),
)
def test_impossible_specs_are_refused(overrides: dict[str, object]) -> None:
    """A spec that cannot describe a feed raises ValueError naming the field."""
    fields: dict[str, object] = {"txs": 10, **overrides}
    with pytest.raises(ValueError, match=next(iter(overrides))):
        FeedSpec(**fields)  # type: ignore[arg-type]


def test_each_mint_has_its_accounts_frame_before_its_first_swap() -> None:
    """An `accounts` frame (source `rpc`) per mint, once, before the first swap that moves it; the mints are a mix."""
    announced: dict[str, TokenFacts] = {}
    swaps = 0
    for item, expected in iter_feed(_spec(2_000)):
        if isinstance(item, Frame) and item.kind == FrameKind.ACCOUNTS:
            (facts,) = parse_frame(item)
            assert isinstance(facts, TokenFacts) and item.source == "rpc" and facts.mint not in announced
            announced[facts.mint] = facts
        elif expected is not None and expected.kind == "swap":
            swaps += 1
            assert expected.input is not None and expected.output is not None
            assert {expected.input.mint, expected.output.mint} <= set(announced), expected
    every = list(announced.values())
    assert swaps > 1_500 and WSOL_MINT in announced
    assert {f.program for f in every} == {"spl_token", "token_2022"}
    assert {f.metadata_source for f in every} == {"metaplex", "token_2022", None}
    assert any(f.transfer_fee_bps for f in every) and any(f.freeze_authority for f in every)
    assert {f.mutable for f in every} >= {True, False} and {f.mint_authority is None for f in every} == {True, False}
    assert any(f.metadata.keys() == {"description", "image", "externalUrl"} for f in every)
    assert any(f.uri and f.uri.startswith("https://") and not f.metadata for f in every)


# ------------------------------------------------------------------------------------ feeds that span hours

SPAN_HOURS = 26.0
"""The demo's span: a day's window and then some."""
SPAN_SEED = 7
"""The demo's seed: with `MARKET_TXS` over `SPAN_HOURS`, the market measured is the demo's."""
FRAMES_TXS = 2_000
"""Transactions of the spanned feed whose frames are checked (times and price frames)."""
MARKET_TXS = 20_000
"""Transactions of the spanned market measured (the demo's feed): about 40 whales ($50k+)."""
DAY_S = 86_400
HOUR_S = 3_600
PRICE_EVERY_S = 60
"""`SPAN_PRICE_EVERY_S`, the price frames' interval of a spanned feed by default."""
HOLD_S = 12 * HOUR_S
"""A follower that neither takes profit nor stops out within 12 h runs to its time exit (a strategy holding
half a day; the demo's strategies hold 4 h, 24 h and 48 h)."""
QUOTES = {WSOL_MINT, USDC_MINT, USDT_MINT}


@dataclass(frozen=True)
class _Whale:
    at: float
    trader: str
    usd: float
    token: str
    direction: int
    price: float


@dataclass
class _Frames:
    """A spanned feed's frames: its transactions' block times and its SOL/USD quotes."""

    block_times: list[int]
    quotes: list[FeedQuote]


@dataclass
class _Market:
    """A spanned market as its trades show it: each token's USD prices and the whales ($50k+)."""

    last_block: int
    prices: dict[str, list[tuple[float, float]]]
    whales: list[_Whale]


def _frames(spec: FeedSpec) -> _Frames:
    frames = _Frames([], [])
    for item, expected in iter_feed(spec):
        if isinstance(item, bytes):
            continue
        if item.kind == FrameKind.PRICE:
            (quote,) = parse_frame(item)
            assert isinstance(quote, FeedQuote)
            frames.quotes.append(quote)
        elif expected is not None:
            (decoded,) = parse_frame(item)  # within the parse step's time bounds: not a dead letter
            assert isinstance(decoded, DecodedTransaction), decoded
            frames.block_times.append(orjson.loads(item.payload)["result"]["blockTime"])
    return frames


def _market(spec: FeedSpec) -> _Market:
    """The market's prices as its own trades tell them: SOL/USD from each SOL-stable swap, a token's USD
    price from each direct swap against SOL or a stable (the quote leg's value over the token amount)."""
    market = _Market(0, defaultdict(list), [])
    sol_usd = None
    for tx in iter_transactions(spec):
        market.last_block = tx.block_time
        expected = tx.expected
        if expected.kind != "swap":
            continue
        given, got = expected.input, expected.output
        assert given is not None and got is not None
        legs = {given.mint: given, got.mint: got}
        if WSOL_MINT in legs and len(QUOTES & set(legs)) == 2:
            sol, stable = legs.pop(WSOL_MINT), next(iter(legs.values()))
            sol_usd = (stable.amount / 10**stable.decimals) / (sol.amount / 10**sol.decimals)
            market.prices[WSOL_MINT].append((tx.block_time, sol_usd))
        if sol_usd is None:
            continue

        def usd(leg: TokenAmount, sol: float = sol_usd) -> float | None:
            whole = leg.amount / 10**leg.decimals
            return whole * sol if leg.mint == WSOL_MINT else whole if leg.mint in QUOTES else None

        for token, quote_usd in ((given, usd(got)), (got, usd(given))):
            if token.mint not in QUOTES and quote_usd is not None and token.amount:
                market.prices[token.mint].append((tx.block_time, quote_usd / (token.amount / 10**token.decimals)))
        value = usd(given) or usd(got)
        if value is None or value < WHALE_USD:
            continue
        # The token followed is the non-quote side, bought or else sold (as `quantbot.signals` follows it).
        followed, direction = (got, 1) if got.mint not in QUOTES else (given, -1)
        if followed.mint in QUOTES:
            followed, direction = (got, 1) if got.mint == WSOL_MINT else (given, -1)
        price = value / (followed.amount / 10**followed.decimals)
        market.whales.append(_Whale(tx.block_time, expected.trader, value, followed.mint, direction, price))
    return market


@pytest.fixture(scope="module")
def span() -> _Frames:
    """The frames of a feed of the demo's span, read once for the tests below."""
    return _frames(FeedSpec(txs=FRAMES_TXS, seed=SPAN_SEED, start_time=START, hours=SPAN_HOURS))


@pytest.fixture(scope="module")
def market() -> _Market:
    """The market of a feed of the demo's span and size, measured once for the tests below."""
    return _market(FeedSpec(txs=MARKET_TXS, seed=SPAN_SEED, start_time=START, hours=SPAN_HOURS))


def test_a_span_spreads_the_transactions_evenly_over_its_hours(span: _Frames) -> None:
    """The first block is at the start, the last one spacing short of start + hours, none further apart."""
    spacing = SPAN_HOURS * HOUR_S / FRAMES_TXS

    assert span.block_times[0] == START
    assert span.block_times[-1] == START + int((FRAMES_TXS - 1) * spacing)
    assert all(0 <= b - a <= spacing + 1 for a, b in itertools.pairwise(span.block_times))


def test_a_span_has_a_sol_price_every_minute_of_feed_time(span: _Frames) -> None:
    """SOL/USD frames come every 60 s of feed time from the first block to the last, and no more often."""
    times = [quote.ts for quote in span.quotes]

    assert times == list(range(START, times[-1] + 1, PRICE_EVERY_S))
    assert span.block_times[-1] - PRICE_EVERY_S <= times[-1] <= span.block_times[-1]
    assert len(times) == (span.block_times[-1] - START) // PRICE_EVERY_S + 1


def test_sol_drifts_a_few_percent_a_day(span: _Frames) -> None:
    """Over the span SOL/USD moves by more than 1% and less than 15% (a day's sd is about 4%)."""
    prices = [quote.price_usd for quote in span.quotes]
    day = [quote.price_usd for quote in span.quotes if quote.ts <= START + DAY_S]

    assert 0.01 < max(prices) / min(prices) - 1 < 0.15
    assert abs(day[-1] / day[0] - 1) < 0.15


def test_over_a_day_some_tokens_rise_and_some_fall_by_tens_of_percent(market: _Market) -> None:
    """Token prices traded in the first hour and again 24 h later: some are 20%+ up, some 20%+ down."""
    changes = []
    for series in market.prices.values():
        first = [price for at, price in series if at < START + HOUR_S]
        later = [price for at, price in series if START + DAY_S <= at < START + DAY_S + HOUR_S]
        if first and later:
            changes.append(later[0] / first[0] - 1)

    assert len(changes) >= 20
    assert sum(change >= 0.2 for change in changes) >= 2
    assert sum(change <= -0.2 for change in changes) >= 2
    assert sum(abs(change) < 0.2 for change in changes) >= 2


def _exit(whale: _Whale, series: list[tuple[float, float]], take_profit: float, stop_loss: float) -> tuple[str, float]:
    """How a follower of `whale` exits (`take_profit`, `stop_loss` or `time_exit`) and after how many seconds."""
    for at, price in series:
        if at <= whale.at:
            continue
        if at > whale.at + HOLD_S:
            break
        move = (price / whale.price - 1) * whale.direction * 100
        if move >= take_profit:
            return "take_profit", at - whale.at
        if move <= -stop_loss:
            return "stop_loss", at - whale.at
    return "time_exit", HOLD_S


def test_whale_followers_take_profit_stop_out_or_time_out(market: _Market) -> None:
    """With the demo strategy's exits, some whale followers take profit or stop out within hours, others time out."""
    parameters = demo_strategy_document()["parameters"]
    take_profit, stop_loss = parameters["takeProfitPercent"], parameters["stopLossPercent"]
    exits: dict[str, list[float]] = defaultdict(list)
    for whale in market.whales:
        reason, after_s = _exit(whale, market.prices[whale.token], take_profit, stop_loss)
        if reason != "time_exit" or whale.at + HOLD_S <= market.last_block:  # else still open
            exits[reason].append(after_s)

    assert min(exits["take_profit"], default=HOLD_S) < 4 * HOUR_S
    assert min(exits["stop_loss"], default=HOLD_S) < 4 * HOUR_S
    assert len(exits["time_exit"]) >= 2
    assert len(exits["take_profit"]) + len(exits["stop_loss"]) >= 5


def test_some_whale_wallets_trade_several_whales_a_day(market: _Market) -> None:
    """Whales ($50k+) come from few wallets: one makes at least three within 24 h, and others repeat too."""
    per_wallet: dict[str, list[float]] = defaultdict(list)
    for whale in market.whales:
        per_wallet[whale.trader].append(whale.at)

    busiest = max(per_wallet.values(), key=len)
    assert len(market.whales) >= 15
    assert sum(at <= busiest[0] + DAY_S for at in busiest) >= 3
    assert sum(len(times) >= 2 for times in per_wallet.values()) >= 3


def test_a_spanned_feed_is_deterministic_and_ends_now_without_a_start(tmp_path: Path) -> None:
    """A spanned spec writes the same bytes twice; without a start time its first block is now - hours."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    spec = FeedSpec(txs=200, seed=4, start_time=START, hours=3.0)
    generate_feed(spec, first)
    stats = generate_feed(spec, second)
    now = 1_800_000_000.0

    head = next(item for item, expected in iter_feed(FeedSpec(txs=20, hours=2.0), now=now) if expected)

    assert first.read_bytes() == second.read_bytes()
    assert stats.span_s == pytest.approx(3.0 * 3600 * 199 / 200, abs=1.0)
    assert isinstance(head, Frame) and orjson.loads(head.payload)["result"]["blockTime"] == now - 2 * 3600


def test_a_pace_and_a_span_that_agree_are_one_spec() -> None:
    """`tx_per_s` given with `hours` is accepted when they name the same pace; the span decides."""
    spec = FeedSpec(txs=7_200, hours=2.0, tx_per_s=1.0)

    assert spec.pace_per_s == 1.0 and spec.duration_s == 7_200.0 and spec.price_interval_s == PRICE_EVERY_S


def test_the_demo_feed_spans_its_hours_and_ends_at_midnight() -> None:
    """By default the demo's feed spans 26 h of feed time or more, ending at the midnight before now."""
    now = 1_800_050_000.0  # 13:53:20 UTC
    midnight = 1_800_057_600 - DAY_S

    spec = demo_feed_spec(txs=200, hours=DEMO_HOURS, seed=7, garbage_share=0.01, now=now)
    blocks = [tx.block_time for tx in iter_transactions(spec)]

    assert DEMO_HOURS >= 26.0
    assert blocks[0] == spec.start_time == midnight - DEMO_HOURS * HOUR_S
    assert midnight - DEMO_HOURS * HOUR_S / 200 <= blocks[-1] < midnight


def test_synthetic_generate_takes_a_span_in_hours(tmp_path: Path) -> None:
    """`quantbot synthetic generate --hours 2` writes a feed over 2 h of feed time; `--hours 0` is refused."""
    out = tmp_path / "feed.jsonl"

    options = ("--hours", "2", "--start-time", str(START), "--garbage", "0")
    done = run_cli("synthetic", "generate", "--txs", "50", *options, "--out", str(out))
    refused = run_cli("synthetic", "generate", "--txs", "50", "--hours", "0", "--out", str(tmp_path / "no.jsonl"))

    assert done.returncode == 0, done.stderr
    assert "over 2.0 h of feed time" in " ".join(done.stdout.split())
    frames = [decode_frame(line.data, f"feed@{line.offset}") for line in read_lines(out)]
    times = [orjson.loads(f.payload)["result"]["blockTime"] for f in frames if f.kind == FrameKind.TRANSACTION]
    assert (times[0], times[-1]) == (START, START + 49 * 2 * HOUR_S // 50)
    assert refused.returncode == 2 and "--hours" in refused.stderr and not (tmp_path / "no.jsonl").exists()
