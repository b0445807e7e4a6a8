"""Synthetic feeds: deterministic, decoded exactly by the real decoders, malformed lines rejected, whales rare."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from quantbot.models import WSOL_MINT, ActivityKind, DeadLetter, Frame, FrameKind
from quantbot.pricing import FeedQuote, PricingConfig
from quantbot.recordings import FrameFormatError, decode_frame, read_lines
from quantbot.solana.codec import b58decode
from quantbot.solana.decode import decode_transaction
from quantbot.solana.normalise import parse_transactions
from quantbot.steps import DecodedTransaction, Valuation, ValuedTransaction, parse_frame
from quantbot.synthetic import Expected, FeedSpec, generate_feed, iter_feed
from quantbot.tokens import TokenFacts

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
    [{"txs": -1}, {"garbage_share": 1.0}, {"failed_share": 0.6, "transfer_share": 0.6}, {"tx_per_s": 0.0}],
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
