"""The domain's value types, shared by decoders, pricing, whale detection, signals and sinks.

Every type is a frozen, slotted dataclass (`record`): cheap to build on the hot path, hashable where its
fields are, and picklable, so Bytewax can carry it between workers and into recovery snapshots.

Amounts are raw integers (the token's smallest unit, a u64 on chain) with the mint's decimals
beside them; nothing on the decode path is a float.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import field
from enum import StrEnum
from typing import Any, TypeVar, dataclass_transform

_Record = TypeVar("_Record", bound=type)

WSOL_MINT = "So11111111111111111111111111111111111111112"
"""The wrapped-SOL mint; native SOL balance changes are reported under it."""


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: _Record) -> _Record:
    """`@dataclass(frozen=True, slots=True)`, with an `__init__` that fills the slots directly.

    A frozen dataclass's own `__init__` goes through `object.__setattr__` once per field (plain
    assignment is what freezing forbids); writing through each slot's descriptor instead builds a
    record in about 60 % of the time, and the decoder builds several per trade.

    Pickled as a call of the class with its field values (`__reduce__`), rather than by the slotted
    dataclass's `__getstate__`/`__setstate__`, which look the fields up again for every record: records
    cross workers and processes pickled, and this pickles and unpickles them in about a third of the time.
    Pickles of the former form (a snapshot taken before) still load: the class keeps its `__setstate__`.
    """
    made: Any = dataclasses.dataclass(frozen=True, slots=True)(cls)
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    names = [spec.name for spec in dataclasses.fields(made)]
    for number, spec in enumerate(dataclasses.fields(made)):
        setter, value = f"_set{number}", spec.name
        namespace[setter] = made.__dict__[spec.name].__set__
        if spec.default is not dataclasses.MISSING:
            namespace[f"_default{number}"] = spec.default
            params.append(f"{spec.name}=_default{number}")
        elif spec.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{number}"] = spec.default_factory
            params.append(f"{spec.name}=_FACTORY")
            value = f"_factory{number}() if {spec.name} is _FACTORY else {spec.name}"
        else:
            params.append(spec.name)
        body.append(f"    {setter}(self, {value})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # noqa: S102 - code built above from the class's own field names
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{made.__qualname__}.__init__"
    init.__doc__ = made.__init__.__doc__
    made.__init__ = init
    values = operator.attrgetter(*names) if len(names) > 1 else None
    if values is None:  # attrgetter of one name gives the value, not a tuple of one
        made.__reduce__ = lambda self: (made, tuple(getattr(self, name) for name in names))
    else:
        made.__reduce__ = lambda self: (made, values(self))
    return made  # type: ignore[no-any-return]


_FACTORY: Any = object()
"""Default of a field built by a factory: the argument was not given."""


class ActivityKind(StrEnum):
    """What a signer did in a transaction; the whale document's `transactionType`."""

    SWAP = "swap"
    LIQUIDITY_ADD = "liquidity_add"
    LIQUIDITY_REMOVE = "liquidity_remove"
    TRANSFER = "transfer"
    POOL_CREATE = "pool_create"
    """A new pool or bonding curve (with its initial liquidity, if any): neither a trade nor a plain add."""


@record
class TokenAmount:
    """A raw amount of one mint: `amount` in the mint's smallest unit, `decimals` where known."""

    mint: str
    amount: int
    decimals: int | None = None


@record
class InstructionIndex:
    """Where an event sits in its transaction: the outer instruction and, for CPI, the inner one.

    Together with the signature this is the event's natural key: stores write by it, so a replayed
    event overwrites itself instead of adding a row.
    """

    outer: int
    inner: int | None = None


@record
class Hop:
    """One pool touched by a trade, with amounts exactly as the pool's event or transfers report them.

    `price_impact_pct` is filled only where the event carries the pool's own reserves (Pump.fun,
    PumpSwap); it is the relative move of the pool price caused by this hop, in percent.
    """

    program: str
    program_id: str
    pool: str | None
    input: TokenAmount
    output: TokenAmount
    price_impact_pct: float | None = None
    reserves: tuple[TokenAmount, TokenAmount] | None = None
    """The pool's reserves after the hop, (input mint's side, output mint's side), where the pool's own event
    carries them: the two amounts whose product its constant-product curve keeps (Pump.fun and Raydium
    Launchpad curves: their virtual reserves, which set the price; PumpSwap, Raydium AMM v4 and CPMM), so a
    constant-product estimate from them is the pool's own. None elsewhere, concentrated-liquidity pools
    included. Per venue, which field and how: the `reserves_after` of `quantbot/solana/programs/*.py`."""


@record
class Activity:
    """One user-level action recognised in a transaction: a swap, a liquidity add or remove, a transfer.

    For a swap, `input` is what the trader gave and `output` what they got: for an aggregator route,
    the first hop's input and the last hop's output (hops are detail, never summed as volume).
    For liquidity and transfers, `input` is what left the trader and `output` what came back, if anything.
    `trader_deltas` is the trader's exact net raw balance change per mint over the whole transaction
    (native SOL folded into wSOL, the fee excluded, zero changes omitted).
    """

    signature: str
    slot: int | None
    block_time: int | None
    kind: ActivityKind
    index: InstructionIndex
    trader: str
    venue: str
    input: TokenAmount | None
    output: TokenAmount | None
    hops: tuple[Hop, ...] = ()
    trader_deltas: dict[str, int] = field(default_factory=dict, hash=False, compare=True)


class FrameKind(StrEnum):
    """What a frame's payload is; decides how the flow parses it."""

    TRANSACTION = "transaction"
    """A `getTransaction` result (envelope, bare result or Geyser JSON)."""
    PRICE = "price"
    """A price-feed message: Pyth Hermes, Birdeye or Jupiter, as received (or an old recording's home-made one)."""
    ACCOUNTS = "accounts"
    """A `getMultipleAccounts` response for one mint (its JSON-RPC `id` is the mint): the mint account and its
    Metaplex metadata account, the facts of the token's document (`quantbot.tokens`)."""


@record
class Frame:
    """One raw message as received, the unit of recording and replay.

    `payload` is the message text exactly as it arrived; `position` says where the frame came from
    (recording file and line number, or feed and sequence) and keys its dead letter, if any.
    """

    received_ns: int
    source: str
    kind: str
    payload: str
    position: str = ""


@record
class DeadLetter:
    """A frame (or the part of one) the flow could not use, with the reason; stored, never dropped."""

    position: str
    source: str
    stage: str
    reason: str
    raw: str
    received_ns: int


@record
class TickStats:
    """What the flow knows about a token at a tick, beside its price: the `token_prices` point's other fields.

    Each is None where its facts are missing (no pool reserves seen, no supply known, no price 24 h back).
    """

    liquidity_usd: float | None = None
    market_cap_usd: float | None = None
    change_24h_pct: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    volume_24h_usd: float | None = None


@record
class PriceTick:
    """A token's USD unit price implied by one trade (or given by a price feed).

    `volume_usd` is the USD value of the trade that implied it (0 for a feed quote). A trade's tick is
    identified by the trade's natural key (`signature`, `index`); a feed quote's (which has no
    signature) by its source, token and publish time (`block_time`).
    """

    token: str
    price_usd: float
    block_time: int
    source: str
    volume_usd: float
    signature: str
    index: InstructionIndex
    symbol: str | None = None
    stats: TickStats | None = None
    """The token's 24 h window, liquidity and market cap at this tick (`quantbot.analytics`); None before it ran."""

    @property
    def is_quote(self) -> bool:
        """Whether the tick is a price feed's quote rather than a trade's implied price."""
        return not self.signature


@record
class ValuedActivity:
    """An activity with its USD value, or `usd_value=None` when no leg could be valued (kept, not guessed)."""

    activity: Activity
    usd_value: float | None
    sol_usd: float | None
    ticks: tuple[PriceTick, ...] = ()


@record
class WhaleTransaction:
    """A valued activity large enough to matter, with its whale document (the schema's whale activity shape)."""

    valued: ValuedActivity
    tier: str
    document: dict[str, object] = field(hash=False)


@record
class Signal:
    """A trading signal: one strategy's reaction to one whale transaction.

    `signal_id` is derived from strategy and signature, so a replayed whale yields the same signal.
    Times are Unix seconds taken from the chain (block time), never from the wall clock, so that a
    replay writes exactly what the first run wrote.
    """

    signal_id: str
    strategy_id: str
    signal_type: str
    token_address: str
    direction: str
    confidence: float
    price: float | None
    price_target: float | None
    stop_loss: float | None
    take_profit: float | None
    created_at: int
    expires_at: int
    usd_value: float
    strength: float
    metadata: dict[str, object] = field(hash=False)
