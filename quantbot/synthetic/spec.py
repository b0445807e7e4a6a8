"""What a synthetic feed is asked to be (`FeedSpec`), what it turned out to be (`FeedStats`), and what the
decoders must find in each of its transactions (`Expected`)."""

from __future__ import annotations

from dataclasses import dataclass

from quantbot.models import TokenAmount

BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class FeedSpec:
    """The shape of a synthetic feed; the same spec (with `start_time` set) always gives the same bytes.

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
        tx_per_s: recorded pace: transactions per second of feed time (receive times spaced by it).
        price_every_s: a SOL/USD price frame this often, in feed time.
        tokens: tokens traded.
        wallets: wallets trading.
    """

    txs: int
    seed: int = 0
    garbage_share: float = 0.01
    failed_share: float = 0.03
    transfer_share: float = 0.05
    start_time: int | None = None
    tx_per_s: float = 400.0
    price_every_s: float = 5.0
    tokens: int = 500
    wallets: int = 5000

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
        if self.tx_per_s <= 0 or self.price_every_s <= 0:
            raise ValueError(f"tx_per_s and price_every_s must be positive, got {self.tx_per_s}, {self.price_every_s}")
        if self.tokens < 1 or self.wallets < 2:
            raise ValueError(f"need at least 1 token and 2 wallets, got {self.tokens} and {self.wallets}")


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

    def describe(self) -> str:
        """One line for humans: "20,000 transactions (17,950 swaps, ...), 200 malformed lines, 9.8 MB in 3.1 s"."""
        return (
            f"{self.transactions:,} transactions ({self.swaps:,} swaps, {self.transfers:,} transfers, "
            f"{self.failed:,} failed), {self.price_frames:,} price frames, {self.accounts_frames:,} accounts frames, "
            f"{self.garbage_lines:,} malformed lines, "
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
