"""A simulated Solana chain: a deterministic timeline of blocks and DEX transactions for the test peers.

```
ChainSpec(txs, seed, ...) --SimulatedChain--> slots (some skipped) -> blocks -> ChainTransaction...
                                               each transaction: slot, index in block, due_s, result(encoding)
```

The transactions are the synthetic generator's (`quantbot.synthetic.iter_transactions`: Jupiter routes,
Pump.fun, PumpSwap, Raydium, Orca, Meteora swaps, transfers, failed swaps), optionally interleaved with
recorded mainnet `getTransaction` results (`ChainSpec.extra`). The accounts of the generator's mints (each
mint account and its Metaplex metadata account: `quantbot.synthetic.market_accounts`) exist from the start;
no other account does. The chain places them in time and in
slots: the `n`-th transaction arrives `n / tx_per_s` seconds after the chain's start, in the slot of that
moment (slots last `SLOT_MS`), or, when that slot was skipped by its leader, in the next produced slot.

A peer serving the chain makes each transaction visible `due_s` seconds after it starts (divided by its
speed); the chain itself has no clock: every question about visibility takes the elapsed seconds.
Everything is drawn from seeded generators: the same spec (with `start_time` set) gives the same chain.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from quantbot.solana.codec import b58encode, b64decode
from quantbot.solana.normalise import normalise
from quantbot.synthetic import (
    SLOT_ORIGIN,
    Expected,
    FeedSpec,
    SyntheticTransaction,
    TokenAccounts,
    iter_transactions,
    market_accounts,
)
from quantbot.tokens import Account

__all__ = [
    "ENCODINGS",
    "SLOT_MS",
    "ChainBlock",
    "ChainSpec",
    "ChainTransaction",
    "SimulatedChain",
    "load_recorded",
]

SLOT_MS = 400
"""Solana's target slot time, in milliseconds (integer arithmetic keeps slot boundaries exact)."""
MS_PER_S = 1000
ROOT_DISTANCE = 32
"""Slots between a produced slot and the root slot notifications report (a vote lockout's depth)."""
GENESIS_BLOCK_HEIGHT_OFFSET = 20_000_000
"""Mainnet's slot minus block height is of this order (skipped slots since genesis); block heights are
reported as the slot minus this, minus the chain's own skips."""
ENCODINGS = ("json", "jsonParsed", "base64", "base58")
"""The `getTransaction` encodings a generated transaction renders in."""
_WIRE_ENCODINGS = {"base64", "base58"}


@dataclass(frozen=True)
class ChainSpec:
    """The shape of a simulated chain; the same spec (with `start_time` set) gives the same chain.

    Attributes:
        txs: generated transactions (recorded ones in `extra` come on top).
        seed: seed of the generator and of the slot skips.
        tx_per_s: transactions per second of chain time (mainnet's DEX share is about a tenth of its
            ~1,100 non-vote transactions per second).
        start_time: Unix seconds of the chain's first slot; None: the moment the chain is built.
        failed_share: share of generated transactions that failed on chain (`meta.err` set).
        skipped_slot_share: share of slots whose leader produced no block (mainnet skips a few percent).
        extra: recorded `getTransaction` results (bare `result` objects or JSON-RPC envelopes), placed
            evenly on the timeline and re-timed to their place; their encoding is kept as recorded.
    """

    txs: int
    seed: int = 0
    tx_per_s: float = 110.0
    start_time: int | None = None
    failed_share: float = 0.03
    skipped_slot_share: float = 0.05
    extra: Sequence[dict[str, Any]] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.txs < 0:
            raise ValueError(f"txs must be at least 0, got {self.txs}")
        if self.txs + len(self.extra) == 0:
            raise ValueError("a chain needs at least one transaction (txs or extra)")
        if not (self.tx_per_s > 0 and math.isfinite(self.tx_per_s)):
            raise ValueError(f"tx_per_s must be positive and finite, got {self.tx_per_s}")
        if not 0.0 <= self.skipped_slot_share < 1.0:
            raise ValueError(f"skipped_slot_share must be in [0, 1), got {self.skipped_slot_share}")
        if not 0.0 <= self.failed_share < 1.0:
            raise ValueError(f"failed_share must be in [0, 1), got {self.failed_share}")


@dataclass(frozen=True)
class ChainTransaction:
    """One transaction on the chain.

    Attributes:
        signature: its first signature (base58).
        slot: the slot of its block.
        block_time: its block's time (Unix seconds).
        index: its position in its block.
        err: `meta.err` as JSON (None: it succeeded).
        mentions: every account key it names, static and loaded from lookup tables: what logsSubscribe
            `mentions` and getSignaturesForAddress match.
        logs: `meta.logMessages`.
        version: `"legacy"` or 0.
        due_s: seconds after the chain's start at which it appears.
        recorded: whether it is a recorded (`ChainSpec.extra`) transaction rather than a generated one.
    """

    signature: str
    slot: int
    block_time: int
    index: int
    err: Any
    mentions: frozenset[str]
    logs: tuple[str, ...]
    version: int | str
    due_s: float
    recorded: bool = False
    _source: SyntheticTransaction | bytes = field(default=b"", repr=False, compare=False)
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def expected(self) -> Expected | None:
        """What the decoders must find in a generated transaction (the tests' oracle); None for a recorded one."""
        source = self._source
        return None if isinstance(source, bytes) else source.expected

    def result(self, encoding: str = "json") -> bytes:
        """The JSON text of the `getTransaction` `result` object.

        Generated transactions render in the encoding asked (`json`, `jsonParsed`, `base64` or `base58`);
        recorded ones answer as recorded whatever the encoding. Renders are cached.

        Raises:
            ValueError: an encoding not in `ENCODINGS`.
        """
        cached = self._cache.get(encoding)
        if cached is not None:
            return cached
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding `{encoding}`")
        source = self._source
        if isinstance(source, bytes):
            return source
        render = "base64" if encoding == "base58" else encoding
        result = source.render(encoding=render, slot=self.slot, block_time=self.block_time)["result"]
        if encoding == "base58":
            wire, _ = result["transaction"]
            result["transaction"] = [b58encode(b64decode(wire)), "base58"]
        text = self._cache[encoding] = orjson.dumps(result)
        return text


@dataclass(frozen=True)
class ChainBlock:
    """A produced block.

    Attributes:
        slot: its slot.
        parent_slot: the previous produced slot (the first block's parent is the slot before it).
        block_height: blocks produced before it since genesis (skips excluded).
        block_time: Unix seconds.
        blockhash: its hash (base58).
        previous_blockhash: its parent's hash.
        signatures: its transactions' signatures, in block order.
        start_s: seconds after the chain's start at which the slot begins (its slot notification).
        due_s: seconds after the chain's start at which the block is complete (getBlock answers it).
    """

    slot: int
    parent_slot: int
    block_height: int
    block_time: int
    blockhash: str
    previous_blockhash: str
    signatures: tuple[str, ...]
    start_s: float
    due_s: float


def _blockhash(seed: int, slot: int) -> str:
    """A deterministic 32-byte block hash for `slot` of the chain seeded `seed`."""
    return b58encode(hashlib.sha256(f"quantbot-chain/{seed}/{slot}".encode()).digest())


def _recorded_result(document: dict[str, Any]) -> dict[str, Any]:
    """The `result` object of a recorded getTransaction response (an envelope or a bare result)."""
    result = document.get("result", document) if "jsonrpc" in document else document
    if not isinstance(result, dict) or "transaction" not in result or "meta" not in result:
        raise ValueError(
            "an extra transaction must be a getTransaction result or envelope with `transaction` and `meta`"
        )
    return result


def load_recorded(directory: Path) -> list[dict[str, Any]]:
    """The recorded getTransaction documents of a corpus directory, for `ChainSpec.extra`.

    Reads every `*.json` file but `index.json` and the Yellowstone-shaped `*.geyser.json` twins, in name order.

    Raises:
        FileNotFoundError: `directory` is not a directory.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"no corpus directory `{directory}`")
    documents = []
    for path in sorted(directory.glob("*.json")):
        if path.name == "index.json" or path.name.endswith(".geyser.json"):
            continue
        documents.append(orjson.loads(path.read_bytes()))
    return documents


class SimulatedChain:
    """A deterministic chain of blocks and transactions built from a `ChainSpec`.

    Args:
        spec: the chain's shape.
        now: Unix seconds taken as the start when `spec.start_time` is None (default: the clock).

    Raises:
        ValueError: an extra document that is not a transaction, or a signature that occurs twice.
    """

    def __init__(self, spec: ChainSpec, now: float | None = None) -> None:
        self.spec = spec
        self.start_time = spec.start_time if spec.start_time is not None else int(time.time() if now is None else now)
        self.first_slot = SLOT_ORIGIN[1] + (self.start_time - SLOT_ORIGIN[0]) * MS_PER_S // SLOT_MS
        total = spec.txs + len(spec.extra)
        extra_at = {(2 * j + 1) * total // (2 * len(spec.extra)): j for j in range(len(spec.extra))}
        self._feed = FeedSpec(
            txs=spec.txs,
            seed=spec.seed,
            failed_share=spec.failed_share,
            tx_per_s=spec.tx_per_s,
            start_time=self.start_time,
        )
        self._token_accounts: dict[str, TokenAccounts] | None = None
        self._accounts: dict[str, Account] | None = None
        generated = iter_transactions(self._feed)
        skips = random.Random(f"quantbot-chain/skips/{spec.seed}")  # noqa: S311 - a seeded simulation
        skipped: list[bool] = []  # by slot offset from first_slot, drawn in order
        transactions: list[ChainTransaction] = []
        block_index = 0
        previous_offset = -1
        for position in range(total):
            arrives_ms = position * MS_PER_S / spec.tx_per_s
            offset = int(arrives_ms // SLOT_MS)
            offset = max(offset, previous_offset)
            while True:
                while len(skipped) <= offset:
                    # The first slot is always produced: the chain starts with a block.
                    skipped.append(bool(skipped) and skips.random() < spec.skipped_slot_share)
                if not skipped[offset]:
                    break
                offset += 1
            block_index = block_index + 1 if offset == previous_offset else 0
            previous_offset = offset
            slot = self.first_slot + offset
            block_time = self.start_time + offset * SLOT_MS // MS_PER_S
            due_s = max(arrives_ms, offset * SLOT_MS) / MS_PER_S
            j = extra_at.get(position)
            if j is None:
                transactions.append(self._generated(next(generated), slot, block_time, block_index, due_s))
            else:
                transactions.append(self._recorded(spec.extra[j], slot, block_time, block_index, due_s))
        self.transactions: tuple[ChainTransaction, ...] = tuple(transactions)
        """The transactions in chain order (slot, then index in block)."""
        self.last_slot = transactions[-1].slot
        self.slots: tuple[int, ...] = tuple(self.first_slot + k for k, skip in enumerate(skipped) if not skip)
        """The produced slots, ascending; the slots between them were skipped."""
        self._produced = frozenset(self.slots)
        self._dues = [tx.due_s for tx in transactions]
        self._by_signature: dict[str, int] = {}
        self._by_address: dict[str, list[int]] = {}
        self._by_slot: dict[int, list[str]] = {}
        for position, tx in enumerate(transactions):
            if tx.signature in self._by_signature:
                raise ValueError(f"signature `{tx.signature}` occurs twice on the chain")
            self._by_signature[tx.signature] = position
            for key in tx.mentions:
                self._by_address.setdefault(key, []).append(position)
            self._by_slot.setdefault(tx.slot, []).append(tx.signature)
        self._blocks = self._chain_blocks()

    # ------------------------------------------------------------------------------------ building

    @staticmethod
    def _generated(
        built: SyntheticTransaction, slot: int, block_time: int, index: int, due_s: float
    ) -> ChainTransaction:
        builder = built.builder
        err = None
        if builder.failed_at is not None:
            outer, code = builder.failed_at
            err = {"InstructionError": [outer, {"Custom": code}]}
        return ChainTransaction(
            signature=built.signature,
            slot=slot,
            block_time=block_time,
            index=index,
            err=err,
            mentions=built.account_keys(),
            logs=tuple(builder.logs),
            version=built.version,
            due_s=due_s,
            _source=built,
        )

    @staticmethod
    def _recorded(document: dict[str, Any], slot: int, block_time: int, index: int, due_s: float) -> ChainTransaction:
        result = dict(_recorded_result(document))
        result["slot"] = slot
        result["blockTime"] = block_time
        parsed = normalise(result)[0]
        meta = result["meta"]
        version = result.get("version", "legacy")
        return ChainTransaction(
            signature=parsed.signature,
            slot=slot,
            block_time=block_time,
            index=index,
            err=meta.get("err"),
            mentions=frozenset(parsed.account_keys),
            logs=tuple(meta.get("logMessages") or ()),
            version=version if version is not None else "legacy",
            due_s=due_s,
            recorded=True,
            _source=orjson.dumps(result),
        )

    def _chain_blocks(self) -> dict[int, ChainBlock]:
        blocks: dict[int, ChainBlock] = {}
        parent = self.first_slot - 1
        parent_hash = _blockhash(self.spec.seed, parent)
        skipped_so_far = 0
        for slot in range(self.first_slot, self.last_slot + 1):
            if slot not in self._produced:
                skipped_so_far += 1
                continue
            offset = slot - self.first_slot
            blockhash = _blockhash(self.spec.seed, slot)
            blocks[slot] = ChainBlock(
                slot=slot,
                parent_slot=parent,
                block_height=slot - GENESIS_BLOCK_HEIGHT_OFFSET - skipped_so_far,
                block_time=self.start_time + offset * SLOT_MS // MS_PER_S,
                blockhash=blockhash,
                previous_blockhash=parent_hash,
                signatures=tuple(self._by_slot.get(slot, ())),
                start_s=offset * SLOT_MS / MS_PER_S,
                due_s=(offset + 1) * SLOT_MS / MS_PER_S,
            )
            parent, parent_hash = slot, blockhash
        return blocks

    # ------------------------------------------------------------------------------------ questions

    def __len__(self) -> int:
        return len(self.transactions)

    def __iter__(self) -> Iterator[ChainTransaction]:
        return iter(self.transactions)

    @property
    def duration_s(self) -> float:
        """Seconds from the chain's start until its last block is complete."""
        return self._blocks[self.last_slot].due_s

    @property
    def token_accounts(self) -> dict[str, TokenAccounts]:
        """The accounts of every mint the chain's transactions trade, by mint (drawn on first use: ~0.1 s)."""
        if self._token_accounts is None:
            self._token_accounts = market_accounts(self._feed)
        return self._token_accounts

    def account(self, address: str) -> Account | None:
        """The account at `address` as (owner program, data, lamports): a mint of the chain's market or its
        Metaplex metadata account; None for any other address (the chain holds no other account)."""
        if self._accounts is None:
            self._accounts = {
                key: value for accounts in self.token_accounts.values() for key, value in accounts.by_address().items()
            }
        return self._accounts.get(address)

    def by_signature(self, signature: str) -> ChainTransaction | None:
        """The transaction with `signature`, or None."""
        position = self._by_signature.get(signature)
        return None if position is None else self.transactions[position]

    def visible_count(self, visible_until_s: float) -> int:
        """How many transactions (a prefix of `transactions`) have appeared `visible_until_s` after the start."""
        return bisect.bisect_right(self._dues, visible_until_s)

    def is_visible(self, tx: ChainTransaction, visible_until_s: float) -> bool:
        """Whether `tx` has appeared `visible_until_s` seconds after the start."""
        return tx.due_s <= visible_until_s

    def is_skipped(self, slot: int) -> bool:
        """Whether `slot` lies between the first and last slots and has no block."""
        return self.first_slot < slot < self.last_slot and slot not in self._produced

    def block(self, slot: int) -> ChainBlock | None:
        """The block of a produced slot, or None (skipped, or outside the chain)."""
        return self._blocks.get(slot)

    def block_signatures(self, slot: int) -> tuple[str, ...]:
        """The signatures of the block at `slot`, in block order (empty for a skipped or unknown slot)."""
        block = self._blocks.get(slot)
        return () if block is None else block.signatures

    def blocks(self) -> Iterator[ChainBlock]:
        """The produced blocks, in slot order."""
        return iter(self._blocks.values())

    def signatures_for_address(
        self,
        address: str,
        *,
        before: str | None = None,
        until: str | None = None,
        limit: int = 1000,
        visible_until_s: float = math.inf,
    ) -> list[ChainTransaction]:
        """getSignaturesForAddress's answer: transactions mentioning `address`, newest first.

        Args:
            address: the account key.
            before: start searching backwards from this transaction, excluded; one that is unknown (or
                not yet visible) gives an empty answer, as the RPC's does.
            until: stop at this transaction, excluded; one that is unknown searches to the oldest.
            limit: the most transactions to return.
            visible_until_s: only transactions that appeared by this many seconds after the start.
        """
        positions = self._by_address.get(address, [])
        visible = self.visible_count(visible_until_s)
        high = bisect.bisect_left(positions, visible)  # entries [0, high) are visible
        if before is not None:
            at = self._by_signature.get(before)
            if at is None or at >= visible:
                return []
            high = min(high, bisect.bisect_left(positions, at))
        low = 0
        if until is not None:
            at = self._by_signature.get(until)
            if at is not None and at < visible:
                low = bisect.bisect_right(positions, at)
        low = max(low, high - max(limit, 0))
        transactions = self.transactions
        return [transactions[positions[i]] for i in range(high - 1, low - 1, -1)]

    def prerender(self, encodings: Iterable[str] = ("json",)) -> None:
        """Render every transaction in `encodings` now (about 0.2 ms each), so a peer serving the chain at
        a benchmark's pace spends its time answering rather than rendering; costs the rendered bytes in memory."""
        for tx in self.transactions:
            for encoding in encodings:
                tx.result(encoding)

    def mentioning(self, programs: Iterable[str], *, visible_until_s: float = math.inf) -> list[ChainTransaction]:
        """The transactions mentioning any of `programs`, in chain order, among those visible by then."""
        wanted = frozenset(programs)
        visible = self.visible_count(visible_until_s)
        return [tx for tx in self.transactions[:visible] if tx.mentions & wanted]

    def dex_signatures(self, programs: Iterable[str], *, visible_until_s: float = math.inf) -> frozenset[str]:
        """The signatures of the transactions mentioning any of `programs` (the tests' oracle of what a
        peer emitted for logsSubscribe on those programs)."""
        return frozenset(tx.signature for tx in self.mentioning(programs, visible_until_s=visible_until_s))
