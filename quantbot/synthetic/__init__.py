"""Synthetic feeds: realistic recordings of DEX traffic that the real decoders decode (`quantbot synthetic generate`).

A feed is a recording (`quantbot.recordings` line format, source `synthetic`) of:

- `transaction` frames: JSON-RPC `getTransaction` responses, mostly in the `json` encoding and some in
  `jsonParsed` and `base64`, of Jupiter routes, Pump.fun, PumpSwap, Raydium, Orca and Meteora swaps,
  plain transfers and failed swaps, built by `quantbot.synthetic.venues` against `quantbot.synthetic.market`;
- `price` frames: SOL/USD every `FeedSpec.price_interval_s` seconds of feed time, as Pyth's Hermes stream sends it
  (source `pyth`, the SSE event's data: `quantbot.feeds.hermes_message`);
- `accounts` frames: before the first swap of each mint, the `getMultipleAccounts` answer to
  `quantbot.tokens.accounts_request(mint)` (source `rpc`): its mint account and Metaplex metadata account,
  as `quantbot.synthetic.tokens` draws them (the test peer serves the same bytes);
- malformed lines, `garbage_share` of all lines, interleaved evenly: noise, truncated frame lines, frames
  whose payload is a truncated transaction, an RPC error or no transaction at all, frames of an unknown
  kind, Hermes price updates without a price. Every one of them must end as a dead letter.

Everything is drawn from `random.Random(seed)`: the same spec (with `start_time` set) gives the same
bytes. `iter_feed` yields the stream in memory with what the decoder must find in each transaction
(`Expected`); `generate_feed` writes it to a file.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard
from solders.signature import Signature

from quantbot.feeds import PYTH, SOL_USD_FEED_ID, hermes_message
from quantbot.models import Frame, FrameKind
from quantbot.recordings import ZSTD_LEVEL, encode_frame
from quantbot.solana.codec import b58encode
from quantbot.synthetic.chain import TxBuilder
from quantbot.synthetic.market import WHALE_TREND_USD, Keys, Market
from quantbot.synthetic.spec import Expected, FeedSpec, FeedStats
from quantbot.synthetic.tokens import TokenAccounts, quote_accounts, token_accounts
from quantbot.synthetic.venues import LEGACY_SHARE, PUMPFUN_MAX_USD, PUMPSWAP_MAX_USD, VENUE_NAMES, Outcome, Venues
from quantbot.units import NS_PER_S

__all__ = [
    "Expected",
    "FeedSpec",
    "FeedStats",
    "SyntheticTransaction",
    "TokenAccounts",
    "generate_feed",
    "iter_feed",
    "iter_transactions",
    "market_accounts",
]

SOURCE = "synthetic"
ACCOUNTS_SOURCE = "rpc"
"""The `accounts` frames' source: what the live source records its `getMultipleAccounts` answers as."""
SIGNATURE_SIZE = 64
HASH_SIZE = 32
NS = NS_PER_S
SLOT_SECONDS = 0.4
"""Solana's target slot time."""
SLOT_ORIGIN = (1_731_000_000, 300_000_000)
"""(Unix seconds, slot) of a mainnet reference point; slots advance from it at `SLOT_SECONDS`."""
TX_LATENCY_NS = 800_000_000
"""How long after its block a transaction arrives (a logs notification, then `getTransaction`)."""
PRICE_LATENCY_NS = 50_000_000
"""How long after its timestamp a price-feed quote arrives."""
PRICE_DIGITS = 4
"""Decimals of SOL/USD in price frames."""

VENUE_WEIGHTS = {"jupiter": 0.30, "pumpfun": 0.25, "pumpswap": 0.18, "raydium": 0.11, "orca": 0.08, "meteora": 0.08}
"""Share of swaps per venue, roughly mainnet's mix of DEX transactions."""
SIZE_MEDIAN_USD = 30.0
SIZE_SIGMA = 2.6
"""Trade sizes are lognormal in USD: median $30, and with this sigma ~0.2% of trades are $50k+ and a few
in 100,000 are $1M+, so whales are rare."""
SIZE_MIN_USD, SIZE_MAX_USD = 0.01, 10_000_000.0
ENCODING_BASE64_SHARE = 0.1
ENCODING_PARSED_SHARE = 0.15
"""Shares of transactions rendered in the `base64` and `jsonParsed` encodings (the rest in `json`)."""
PARSED_CUTOFF = ENCODING_BASE64_SHARE + ENCODING_PARSED_SHARE
MALFORMED_KINDS = 8
"""Kinds of malformed line `_malformed` draws from, evenly."""
NOISE_MAX_BYTES = 200
SLOT_RANGE = (300_000_000, 400_000_000)
"""Slots that RPC errors and unknown frames name: mainnet's of 2024-2026."""
GZIP_LEVEL = 6
"""zlib's default: most of the ratio at a fraction of level 9's time."""
WRITE_CHUNK_BYTES = 1 << 20
"""Lines are written in chunks of about this many bytes."""


def _venue(rng: random.Random, usd: float) -> str:
    """The venue of a swap worth `usd`: drawn by `VENUE_WEIGHTS`, big trades moved off shallow venues."""
    draw = rng.random()
    venue = "meteora"  # the last weight's, should rounding leave a sliver of the draw
    for name, weight in VENUE_WEIGHTS.items():
        if draw < weight:
            venue = name
            break
        draw -= weight
    # Bonding curves hold ~85 SOL at most and PumpSwap pools are shallow: big trades go elsewhere.
    if venue == "pumpfun" and usd > PUMPFUN_MAX_USD:
        venue = "pumpswap"
    if venue == "pumpswap" and usd > PUMPSWAP_MAX_USD:
        venue = "jupiter"
    return venue


class SyntheticTransaction:
    """One generated transaction, built and ready to render as a `getTransaction` response in any encoding.

    Attributes:
        builder: the recorded transaction (instructions, logs, balances).
        expected: what the decoders must find in it.
        signature: its signature (base58).
        slot: the slot the generator placed it in.
        block_time: its block time (Unix seconds).
        encoding: the encoding the generator drew for it (`json`, `jsonParsed` or `base64`).
        version: 0 for a v0 message, `"legacy"` for a legacy one.
    """

    __slots__ = (
        "_blockhash",
        "_keys",
        "_signature_raw",
        "block_time",
        "builder",
        "encoding",
        "expected",
        "signature",
        "slot",
        "version",
    )

    def __init__(
        self,
        builder: TxBuilder,
        expected: Expected,
        *,
        slot: int,
        block_time: int,
        blockhash: tuple[str, bytes],
        encoding: str,
        version: int | str,
        signature_raw: bytes,
        keys: Keys,
    ) -> None:
        self.builder = builder
        self.expected = expected
        self.signature = expected.signature
        self.slot = slot
        self.block_time = block_time
        self.encoding = encoding
        self.version = version
        self._blockhash = blockhash
        self._signature_raw = signature_raw
        self._keys = keys

    def account_keys(self) -> frozenset[str]:
        """Every account key the transaction names: the fee payer, the message's keys and lookup-table loads."""
        builder = self.builder
        return frozenset((builder.fee_payer, *builder.writable, *builder.readonly, *builder.loaded))

    def render(
        self,
        *,
        request_id: int = 1,
        encoding: str | None = None,
        slot: int | None = None,
        block_time: int | None = None,
    ) -> dict[str, Any]:
        """The JSON-RPC `getTransaction` response `{"jsonrpc", "result", "id"}`.

        Args:
            request_id: the response's id.
            encoding: `json`, `jsonParsed` or `base64`; None: the encoding drawn by the generator.
            slot: the slot to report; None: the generator's.
            block_time: the block time to report; None: the generator's.
        """
        return self.builder.finish(
            self.signature,
            slot=self.slot if slot is None else slot,
            block_time=self.block_time if block_time is None else block_time,
            blockhash=self._blockhash[0],
            request_id=request_id,
            encoding=self.encoding if encoding is None else encoding,
            version=self.version,
            signature_raw=self._signature_raw,
            blockhash_raw=self._blockhash[1],
            key_bytes=self._keys.raw,
            default_lamports=self._keys.lamports,
        )


class _Stream:
    """The feed's state while it is generated: market, venues, the current slot and the price clock."""

    def __init__(self, spec: FeedSpec, now: float) -> None:
        self.spec = spec
        self.start = spec.start_time if spec.start_time is not None else int(now - spec.duration_s)
        self.rng = random.Random(spec.seed)  # noqa: S311 - a seeded simulation, not cryptography
        self.market = Market(self.rng, spec.tokens, spec.wallets, self.start)
        self.venues = Venues(self.market, self.rng)
        self.slot = -1
        self.blockhash = ("", b"")
        self.next_price_ns = self.start * NS
        self.price_every_ns = int(spec.price_interval_s * NS)
        self.last: SyntheticTransaction | None = None
        """The transaction `transaction` built last."""
        self.announced: set[str] = set()
        """Mints whose `accounts` frame the feed holds already."""
        self._accounts: dict[str, TokenAccounts] | None = None

    def accounts(self) -> dict[str, TokenAccounts]:
        """Every mint's accounts (the market's tokens and the quote mints), by mint; drawn on first use."""
        if self._accounts is None:
            seed = self.spec.seed
            found = {accounts.mint: accounts for accounts in quote_accounts(seed)}
            found.update((token.mint, token_accounts(seed, token)) for token in self.market.tokens)
            self._accounts = found
        return self._accounts

    def accounts_frames(self, received_ns: int) -> Iterator[Frame]:
        """An `accounts` frame for each mint the last transaction swaps (hops included) for the first time."""
        built = self.last
        if built is None or built.expected.kind != "swap":
            return
        expected = built.expected
        mints = [balance.mint for balance in built.builder.token_balances.values()]
        mints += [leg.mint for leg in (expected.input, expected.output) if leg is not None]
        known = self.accounts()
        for mint in dict.fromkeys(mints):
            if mint in self.announced or mint not in known:
                continue
            self.announced.add(mint)
            payload = known[mint].response(built.slot)
            yield Frame(received_ns, ACCOUNTS_SOURCE, FrameKind.ACCOUNTS.value, payload)

    def size_usd(self) -> float:
        """A trade size in USD (lognormal, clipped)."""
        usd = self.rng.lognormvariate(math.log(SIZE_MEDIAN_USD), SIZE_SIGMA)
        return min(max(usd, SIZE_MIN_USD), SIZE_MAX_USD)

    def build(self, number: int, at_ns: int) -> SyntheticTransaction:
        """The `number`-th transaction, in a block at `at_ns` (Unix nanoseconds), built but not rendered."""
        at_s = at_ns / NS
        rng = self.rng
        spec = self.spec
        self.market.advance(at_s)
        usd = self.size_usd()
        draw = rng.random()
        venues = self.venues
        outcome: Outcome
        if draw < spec.transfer_share:
            tx, outcome = venues.transfer(usd)
        else:
            fail = draw < spec.transfer_share + spec.failed_share
            venue = _venue(rng, usd)
            if venue == "jupiter":
                tx, outcome = venues.jupiter(usd, fail)
            elif venue == "pumpfun":
                tx, outcome = venues.pumpfun(usd, fail)
            elif venue == "pumpswap":
                tx, outcome = venues.pumpswap(usd, fail)
            else:
                tx, outcome = venues.amm_swap(venue, usd, fail)
            if usd >= WHALE_TREND_USD and outcome.kind == "swap":
                sold, bought = outcome.input, outcome.output
                self.market.whale_traded(outcome.trader, sold.mint if sold else None, bought.mint if bought else None)
        slot = SLOT_ORIGIN[1] + int((at_s - SLOT_ORIGIN[0]) / SLOT_SECONDS)
        if slot != self.slot:
            raw_hash = rng.randbytes(HASH_SIZE)
            self.slot, self.blockhash = slot, (b58encode(raw_hash), raw_hash)
        signature_raw = rng.randbytes(SIGNATURE_SIZE)
        signature = str(Signature.from_bytes(signature_raw))
        draw = rng.random()
        encoding = "base64" if draw < ENCODING_BASE64_SHARE else "jsonParsed" if draw < PARSED_CUTOFF else "json"
        pump = outcome.venue in (VENUE_NAMES["pumpfun"], VENUE_NAMES["pumpswap"])
        legacy = pump and not tx.loaded and rng.random() < LEGACY_SHARE
        expected = Expected(
            signature,
            outcome.kind,
            outcome.trader,
            outcome.venue,
            outcome.input,
            outcome.output,
            outcome.hop_count,
            outcome.hop_reserves,
        )
        return SyntheticTransaction(
            tx,
            expected,
            slot=slot,
            block_time=at_ns // NS,
            blockhash=self.blockhash,
            encoding=encoding,
            version="legacy" if legacy else 0,
            signature_raw=signature_raw,
            keys=self.market.keys,
        )

    def transaction(self, number: int, at_ns: int) -> tuple[Frame, Expected]:
        """The `number`-th transaction, in a block at `at_ns` (Unix nanoseconds), as a feed frame."""
        built = self.last = self.build(number, at_ns)
        envelope = built.render(request_id=number + 1)
        received_ns = at_ns + TX_LATENCY_NS
        frame = Frame(received_ns, SOURCE, FrameKind.TRANSACTION.value, orjson.dumps(envelope).decode())
        return frame, built.expected

    def prices_until(self, received_ns: int) -> Iterator[Frame]:
        """Price frames received before `received_ns`."""
        while self.next_price_ns + PRICE_LATENCY_NS <= received_ns:
            at_ns = self.next_price_ns
            price = round(self.market.sol.at(at_ns // NS), PRICE_DIGITS)
            payload = hermes_message(SOL_USD_FEED_ID, price, at_ns // NS)
            yield Frame(at_ns + PRICE_LATENCY_NS, PYTH, FrameKind.PRICE.value, payload)
            self.next_price_ns += self.price_every_ns


def _malformed(rng: random.Random, last: Frame, received_ns: int) -> bytes:
    """One malformed line (without its newline), of a kind drawn at random."""
    kind = rng.randrange(MALFORMED_KINDS)
    if kind == 0:  # binary noise, as a corrupted write leaves
        noise = bytearray(rng.randbytes(rng.randrange(1, NOISE_MAX_BYTES)))
        noise = noise.replace(b"\n", b"\x00").replace(b"\r", b"\x00")
        return b"\x00" + bytes(noise)
    if kind == 1:  # text that is not JSON: a proxy's error page, a log line
        return rng.choice(
            (
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                b"upstream connect error or disconnect/reset",
                b"ERROR websocket closed: 1006",
                b"null",
                b"[]",
                b'"transaction"',
            )
        )
    if kind == 2:  # a frame line cut short (a recorder killed mid-write)
        line = encode_frame(last).rstrip(b"\n")
        return line[: rng.randrange(1, len(line) - 1)]
    if kind == 3 and last.kind == FrameKind.TRANSACTION.value:  # a transaction cut short
        payload = last.payload[: rng.randrange(1, len(last.payload) - 1)]
        return _line(received_ns, FrameKind.TRANSACTION.value, payload)
    if kind == 4:  # an RPC error, or a transaction the node no longer has
        slot = rng.randrange(*SLOT_RANGE)
        response = rng.choice(
            (
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32009, "message": f"Slot {slot} was skipped, or missing in long-term storage"},
                    "id": slot,
                },
                {"jsonrpc": "2.0", "error": {"code": -32429, "message": "rate limit exceeded"}, "id": slot},
                {"jsonrpc": "2.0", "result": None, "id": slot},
            )
        )
        return _line(received_ns, FrameKind.TRANSACTION.value, orjson.dumps(response).decode())
    if kind == 5:  # a frame of a kind the flow does not know
        unknown = rng.choice(("slot", "account", "block", "vote", "logs"))
        return _line(received_ns, unknown, orjson.dumps({"slot": rng.randrange(*SLOT_RANGE)}).decode())
    if kind == 6:  # a Hermes price update without a price
        price = rng.choice(("n/a", None, -1, 0, "151.2", True))
        payload = hermes_message(SOL_USD_FEED_ID, price, received_ns // NS)
        return _line(received_ns, FrameKind.PRICE.value, payload, PYTH)
    # a transaction frame that carries something else
    payload = hermes_message(SOL_USD_FEED_ID, 150.0, received_ns // NS)
    return _line(received_ns, FrameKind.TRANSACTION.value, payload)


def _line(received_ns: int, kind: str, payload: str, source: str = SOURCE) -> bytes:
    return encode_frame(Frame(received_ns, source, kind, payload)).rstrip(b"\n")


def iter_feed(spec: FeedSpec, now: float | None = None) -> Iterator[tuple[Frame | bytes, Expected | None]]:
    """The feed as a stream, in file order.

    Args:
        spec: the feed's shape.
        now: Unix seconds taken as "now" when `spec.start_time` is None (default: the clock).

    Yields:
        `(frame, expected)` for each transaction, `(frame, None)` for each price and accounts frame, and
        `(line, None)` for each malformed line (its bytes, without the newline).
    """
    stream = _Stream(spec, time.time() if now is None else now)
    # Malformed lines draw from their own stream, so the rest of the feed does not depend on garbage_share.
    rng = random.Random(stream.rng.getrandbits(64))  # noqa: S311 - a seeded simulation, not cryptography
    garbage_per_line = spec.garbage_share / (1.0 - spec.garbage_share)
    owed = 0.0
    start_ns = stream.start * NS
    for number in range(spec.txs):
        frame, expected = stream.transaction(number, spec.block_ns(start_ns, number))
        if stream.next_price_ns + PRICE_LATENCY_NS <= frame.received_ns:
            for price in stream.prices_until(frame.received_ns):
                yield price, None
                owed += garbage_per_line
                while owed >= 1.0:
                    owed -= 1.0
                    yield _malformed(rng, price, price.received_ns), None
        for accounts in stream.accounts_frames(frame.received_ns):  # a mint's facts before its first swap
            yield accounts, None
            owed += garbage_per_line
            while owed >= 1.0:
                owed -= 1.0
                yield _malformed(rng, accounts, accounts.received_ns), None
        yield frame, expected
        owed += garbage_per_line
        while owed >= 1.0:
            owed -= 1.0
            yield _malformed(rng, frame, frame.received_ns), None


def iter_transactions(spec: FeedSpec, now: float | None = None) -> Iterator[SyntheticTransaction]:
    """The feed's transactions alone (no price frames, no malformed lines), built but not rendered.

    They are the very transactions `iter_feed` renders for the same spec (same signatures, same contents),
    spaced by the spec's pace (or spread over its `hours`) from the start time; render each in the encoding
    wanted.

    Args:
        spec: the feed's shape (`garbage_share` and the price frames' interval do not matter here).
        now: Unix seconds taken as "now" when `spec.start_time` is None (default: the clock).
    """
    stream = _Stream(spec, time.time() if now is None else now)
    start_ns = stream.start * NS
    for number in range(spec.txs):
        yield stream.build(number, spec.block_ns(start_ns, number))


def market_accounts(spec: FeedSpec, now: float | None = None) -> dict[str, TokenAccounts]:
    """The accounts of every mint the feed of `spec` trades (its tokens and the quote mints), by mint: the bytes
    its `accounts` frames answer with (the test peer's chain serves them).

    Args:
        spec: the feed's shape.
        now: Unix seconds taken as "now" when `spec.start_time` is None (default: the clock).
    """
    return _Stream(spec, time.time() if now is None else now).accounts()


def _open(path: Path, name: str) -> tuple[IO[bytes], IO[bytes]]:
    """The file at `path`, and the stream to write through: compressed as the recording `name` says."""
    raw: Any = path.open("wb")
    if name.endswith(".gz"):
        return raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[return-value]
    if name.endswith(".zst"):
        return raw, zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(raw, closefd=False)
    return raw, raw


def generate_feed(spec: FeedSpec, out: Path) -> FeedStats:
    """Write the feed to `out` (`.jsonl`, `.jsonl.gz` or `.jsonl.zst`), atomically: a temporary file, renamed.

    Args:
        spec: the feed's shape.
        out: the recording to write; its suffix chooses the compression.

    Returns:
        What the feed holds, with the file's size and the time it took.
    """
    began = time.perf_counter()
    counts = {"swap": 0, "transfer": 0, "failed": 0}
    prices = accounts = garbage = 0
    first_ns = last_ns = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    raw, stream = _open(temporary, out.name)
    try:
        chunk: list[bytes] = []
        size = 0
        for item, expected in iter_feed(spec):
            if isinstance(item, bytes):
                line = item + b"\n"
                garbage += 1
            else:
                line = encode_frame(item)
                if expected is not None:
                    counts[expected.kind] += 1
                    first_ns = first_ns or item.received_ns
                    last_ns = item.received_ns
                elif item.kind == FrameKind.ACCOUNTS:
                    accounts += 1
                else:
                    prices += 1
            chunk.append(line)
            size += len(line)
            if size >= WRITE_CHUNK_BYTES:
                stream.write(b"".join(chunk))
                chunk.clear()
                size = 0
        stream.write(b"".join(chunk))
        if stream is not raw:
            stream.close()
        raw.close()
        os.replace(temporary, out)
    except BaseException:
        raw.close()
        temporary.unlink(missing_ok=True)
        raise
    transactions = sum(counts.values())
    return FeedStats(
        frames=transactions + prices + accounts + garbage,
        transactions=transactions,
        swaps=counts["swap"],
        transfers=counts["transfer"],
        failed=counts["failed"],
        price_frames=prices,
        garbage_lines=garbage,
        bytes=out.stat().st_size,
        elapsed_s=time.perf_counter() - began,
        accounts_frames=accounts,
        span_s=(last_ns - first_ns) / NS,
    )
