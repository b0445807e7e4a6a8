"""What a synthetic feed is asked to be (`FeedSpec`), what it turned out to be (`FeedStats`), and what the
decoders must find in each of its transactions (`Expected`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from quantbot.models import TokenAmount
from quantbot.units import NS_PER_S, SECONDS_PER_HOUR

BYTES_PER_MB = 1_000_000
DEFAULT_TX_PER_S = 400.0
"""Recorded pace of a feed given neither `tx_per_s` nor `hours`: a busy minute of mainnet's DEX traffic
(a few hundred swap transactions per second), so a feed of N transactions spans N / 400 seconds."""
PRICE_EVERY_S = 5.0
"""SOL/USD price frames of a paced feed (seconds to minutes long): Hermes streams several quotes a second;
one every 5 s keeps the price fresh at a tiny share of the frames."""
SPAN_PRICE_EVERY_S = 60.0
"""SOL/USD price frames of a feed spanning `hours`: one a minute is five per `pricing.feed_stale_s` (300 s),
so SOL/USD never goes stale between two (even if one is lost), and five per market snapshot (every 300 s of
feed time); over a 26 h demo feed that is 1,560 frames, where one every 5 s would be 18,720 (as many as the
transactions)."""
PACE_AGREEMENT = 0.01
"""`tx_per_s` given with `hours` must agree with `txs / (hours x 3600)` within this relative share."""


@dataclass(frozen=True)
class FeedSpec:
    """The shape of a synthetic feed; the same spec (with `start_time` set) always gives the same bytes.

    How far the feed reaches in feed (block) time is set one of two ways: by a pace, `tx_per_s`
    (default `DEFAULT_TX_PER_S`: a feed of seconds to minutes), or by a span, `hours` (the transactions
    spread evenly over that many hours of block time, however many there are: tests and the demo cover
    24 h windows, 3 h follow-ups and signals' exits with a few thousand transactions).

    Attributes:
        txs: transactions to write (malformed lines and price frames come on top).
        seed: seed of the random stream everything is drawn from.
        garbage_share: share of all lines that are malformed (garbage text, truncated JSON, a
            transaction frame whose payload is not a transaction, a frame of an unknown kind, a price
            frame without a number...); each must end as a dead letter.
        failed_share: share of transactions that failed on chain (`meta.err` set): they decode to nothing.
        transfer_share: share of transactions that are plain SOL or SPL token transfers.
        start_time: Unix seconds of the first block; None: now minus the feed's duration, so the feed
            ends now (signals derived from it are still live).
        tx_per_s: recorded pace: transactions per second of feed time (receive times spaced by it); None:
            `txs / (hours x 3600)` with `hours`, else `DEFAULT_TX_PER_S`. Given with `hours`, the two must
            agree (within `PACE_AGREEMENT`).
        price_every_s: a SOL/USD price frame this often, in feed time; None: `PRICE_EVERY_S`, or
            `SPAN_PRICE_EVERY_S` with `hours`.
        tokens: tokens traded.
        wallets: wallets trading.
        hours: the feed's span in hours of block time: transaction `n` is in the block at
            `start_time + n x hours x 3600 / txs`; None: the span follows from the pace.

    Raises:
        ValueError: a field out of range or `tx_per_s` and `hours` that disagree, naming the field.
    """

    txs: int
    seed: int = 0
    garbage_share: float = 0.01
    failed_share: float = 0.03
    transfer_share: float = 0.05
    start_time: int | None = None
    tx_per_s: float | None = None
    price_every_s: float | None = None
    tokens: int = 500
    wallets: int = 5000
    hours: float | None = None

    def __post_init__(self) -> None:
        if self.txs < 0:
            raise ValueError(f"txs must be at least 0, got {self.txs}")
        for name in ("garbage_share", "failed_share", "transfer_share"):
            share = getattr(self, name)
            if not 0.0 <= share < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {share}")
        if self.failed_share + self.transfer_share > 1.0:
            raise ValueError(
                f"failed_share + transfer_share must be at most 1, got {self.failed_share + self.transfer_share}"
            )
        for name in ("tx_per_s", "price_every_s", "hours"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if self.hours is not None and self.tx_per_s is not None:
            spanned = self.txs / (self.hours * SECONDS_PER_HOUR)
            if not math.isclose(self.tx_per_s, spanned, rel_tol=PACE_AGREEMENT):
                raise ValueError(
                    f"tx_per_s {self.tx_per_s} disagrees with hours {self.hours}: {self.txs} transactions over"
                    f" {self.hours} h are {spanned:.6g} per second; give one of the two"
                )
        if self.tokens < 1 or self.wallets < 2:
            raise ValueError(f"need at least 1 token and 2 wallets, got {self.tokens} and {self.wallets}")

    @property
    def duration_s(self) -> float:
        """Seconds of feed time the transactions take: `hours x 3600`, else `txs / pace_per_s`."""
        if self.hours is not None:
            return self.hours * SECONDS_PER_HOUR
        return self.txs / self.pace_per_s

    @property
    def pace_per_s(self) -> float:
        """Transactions per second of feed time (with `hours`, the span's: 0.0 for an empty feed)."""
        if self.hours is not None:
            return self.txs / (self.hours * SECONDS_PER_HOUR)
        if self.tx_per_s is not None:
            return self.tx_per_s
        return DEFAULT_TX_PER_S

    @property
    def price_interval_s(self) -> float:
        """Seconds of feed time between two SOL/USD price frames."""
        if self.price_every_s is not None:
            return self.price_every_s
        return SPAN_PRICE_EVERY_S if self.hours is not None else PRICE_EVERY_S

    def block_ns(self, start_ns: int, number: int) -> int:
        """Unix nanoseconds of the block of transaction `number` of a feed whose first block is at `start_ns`."""
        if self.hours is not None:
            # Integer arithmetic: the last transaction lands exactly one spacing short of the span's end.
            return start_ns + number * round(self.hours * SECONDS_PER_HOUR * NS_PER_S) // self.txs
        return start_ns + round(number * NS_PER_S / self.pace_per_s)


@dataclass(frozen=True)
class FeedStats:
    """What a generated feed holds.

    Attributes:
        frames: lines written (transactions, price frames and malformed lines).
        transactions: transaction frames (swaps, transfers and failed ones; malformed ones not included).
        swaps: successful swap transactions.
        transfers: plain transfer transactions.
        failed: failed transactions.
        price_frames: well-formed SOL/USD price frames.
        garbage_lines: malformed lines.
        bytes: size of the written file (compressed, if it is).
        elapsed_s: generation time.
        accounts_frames: `accounts` frames (one per mint, before its first swap).
        span_s: feed time from the first transaction to the last.
    """

    frames: int
    transactions: int
    swaps: int
    transfers: int
    failed: int
    price_frames: int
    garbage_lines: int
    bytes: int
    elapsed_s: float
    accounts_frames: int = 0
    span_s: float = 0.0

    def describe(self) -> str:
        """One line for humans: "20,000 transactions (17,950 swaps, ...) over 26.0 h of feed time, ... in 3.1 s"."""
        span = (
            f"{self.span_s / SECONDS_PER_HOUR:,.1f} h" if self.span_s >= SECONDS_PER_HOUR else f"{self.span_s:,.0f} s"
        )
        return (
            f"{self.transactions:,} transactions ({self.swaps:,} swaps, {self.transfers:,} transfers, "
            f"{self.failed:,} failed) over {span} of feed time, {self.price_frames:,} price frames, "
            f"{self.accounts_frames:,} accounts frames, {self.garbage_lines:,} malformed lines, "
            f"{self.bytes / BYTES_PER_MB:,.1f} MB in {self.elapsed_s:.1f} s"
        )


@dataclass(frozen=True)
class Expected:
    """What `decode_transaction` must find in one synthetic transaction.

    Attributes:
        signature: the transaction's signature.
        kind: `swap`, `transfer` or `failed` (a failed transaction decodes to no activity at all).
        trader: the signer who traded or sent.
        venue: the decoder's venue name (`jupiter_v6`, `pumpfun`, `pumpswap`, `raydium_amm_v4`,
            `orca_whirlpool`, `meteora_dlmm`, `system`, `spl_token`); for a failed transaction, the venue
            it tried.
        input: what the trader gave (a swap's input, a transfer's amount); None for a failed transaction.
        output: what the trader got (a swap's output); None for transfers and failed transactions.
        hop_count: pools the trade went through (a Jupiter route's hops; 1 for a direct swap; 0 otherwise).
        hop_reserves: per hop, the pool's reserves after it, (input side, output side), as `Hop.reserves` must
            read them from the venue's event (None where the venue's event carries none); empty for
            transfers and failed transactions.
    """

    signature: str
    kind: str
    trader: str
    venue: str
    input: TokenAmount | None
    output: TokenAmount | None
    hop_count: int
    hop_reserves: tuple[tuple[TokenAmount, TokenAmount] | None, ...] = ()
