"""The dataflow's steps as plain functions and state classes: what `flows/` wires together.

Each step is pure or owns its state explicitly, so it is tested without Bytewax, and every flow built by
`flows/graph.py` runs the very same code. Errors are data: a step that cannot use its input returns a
`DeadLetter` naming the stage and the reason, and the flow routes it to the dead-letter store.

The parse step's dead letters, by stage: `frame` (an unknown kind), `normalise` (not a transaction, or
one with an implausible value: see `quantbot.bounds`), `decode` (a program decoder raised: the
transaction yields nothing, since a partial or balance-derived reading would be wrong data), `price`
(not a price quote, or one at an implausible time; one price of a message holding several is positioned
`<frame position>#<feed id or mint>`), `accounts` (an `accounts` frame that is not a mint's facts:
`quantbot.tokens.parse_accounts`' reason).

Price frames are read by their source's parser: `pyth`, `birdeye` and `jupiter` frames carry the
providers' messages as received (`quantbot.feeds`); a price frame of any other source is the home-made
`{"symbol": "SOL/USD", ...}` frame of older recordings (`quantbot.pricing.parse_price_payload`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from quantbot import metrics
from quantbot.analytics import Analytics, AnalyticsConfig, Output
from quantbot.bounds import ParseConfig, known_receive_second, time_problem
from quantbot.feeds import (
    BIRDEYE,
    JUPITER,
    LARGE_TRADE_KIND,
    PYTH,
    FeedMap,
    FeedProblem,
    LargeTrade,
    parse_birdeye_price,
    parse_birdeye_trade,
    parse_hermes,
    parse_jupiter,
)
from quantbot.models import Activity, DeadLetter, Frame, FrameKind, PriceTick, ValuedActivity, record
from quantbot.pricing import (
    FeedQuote,
    LearnedPrices,
    PriceBook,
    PriceDisagreement,
    PriceFormatError,
    PricingConfig,
    parse_price_payload,
)
from quantbot.solana.decode import DecodeError, decode_transaction
from quantbot.solana.normalise import TransactionFormatError, parse_transactions
from quantbot.solana.transaction import Transaction
from quantbot.tokens import TokenFacts, TokenFormatError, parse_accounts
from quantbot.units import NS_PER_S

log = logging.getLogger(__name__)

T = TypeVar("T")


@record
class DecodedTransaction:
    """A transaction's recognised activities (possibly none), with the frame it came from."""

    position: str
    signature: str
    activities: tuple[Activity, ...]
    received_ns: int = 0
    """The frame's receive time: the large-trade check's clock."""


@record
class ValuedTransaction:
    """A transaction's activities valued in USD, in instruction order, and the feed disagreements its trades showed."""

    signature: str
    valued: tuple[ValuedActivity, ...]
    disagreements: tuple[PriceDisagreement, ...] = ()


@record
class PricedQuote:
    """A feed quote taken by the valuation: the price tick it writes, and its disagreement with the chain, if any."""

    tick: PriceTick
    disagreements: tuple[PriceDisagreement, ...] = ()


Parsed = DecodedTransaction | FeedQuote | LargeTrade | TokenFacts | DeadLetter
"""What the parse step makes of a frame."""


def _dead(frame: Frame, stage: str, reason: str, suffix: str = "") -> DeadLetter:
    return DeadLetter(
        position=frame.position + suffix,
        source=frame.source,
        stage=stage,
        reason=reason,
        raw=frame.payload,
        received_ns=frame.received_ns,
    )


_DEFAULT_PARSE = ParseConfig()


_DEFAULT_FEEDS = FeedMap()


def parse_frame(frame: Frame, config: ParseConfig = _DEFAULT_PARSE, feeds: FeedMap = _DEFAULT_FEEDS) -> list[Parsed]:
    """Frame -> decoded transactions, price quotes, a large trade, token facts, or dead letters saying what was wrong.

    A frame that does not normalise is one dead letter; after that each of its transactions is on its
    own: one with an implausible block time, or whose decoding raised, is a dead letter positioned
    `<frame position>#<signature>` (unique per transaction), and the others are decoded.
    """
    if frame.kind == FrameKind.TRANSACTION:
        try:
            transactions: list[Transaction] = parse_transactions(frame.payload, config.max_decimals)
        except TransactionFormatError as exc:
            return [_dead(frame, "normalise", str(exc))]
        out: list[Parsed] = []
        for tx in transactions:
            if tx.block_time is None:
                # A Yellowstone update carries no block time: the frame's receive time, a second or so after
                # the block, stands in, so that its trade, whale and signal are not dated 1970.
                tx.block_time = known_receive_second(frame.received_ns)
            else:
                problem = time_problem(tx.block_time, "blockTime", frame.received_ns, config)
                if problem is not None:
                    out.append(_dead(frame, "normalise", f"{tx.signature}: {problem}", f"#{tx.signature}"))
                    continue
            try:
                activities = decode_transaction(tx)
            except DecodeError as exc:
                # Counted here, where the program is known; DEAD_LETTERS{stage} counts it in the flow.
                metrics.DECODE_FAILURES.labels(exc.program or "unknown").inc()
                out.append(_dead(frame, "decode", str(exc), f"#{tx.signature}"))
                continue
            out.append(DecodedTransaction(frame.position, tx.signature, tuple(activities), frame.received_ns))
        return out
    if frame.kind == FrameKind.PRICE:
        try:
            return _parse_price(frame, config, feeds)
        except PriceFormatError as exc:
            return [_dead(frame, "price", str(exc))]
    if frame.kind == FrameKind.ACCOUNTS:
        try:
            return [parse_accounts(frame.payload, frame.received_ns, frame.position)]
        except TokenFormatError as exc:
            return [_dead(frame, "accounts", str(exc))]
    if frame.kind == LARGE_TRADE_KIND and frame.source == BIRDEYE:
        try:
            return [parse_birdeye_trade(frame.payload, frame.received_ns, frame.position)]
        except PriceFormatError as exc:
            return [_dead(frame, "price", str(exc))]
    return [_dead(frame, "frame", f"unknown frame kind `{frame.kind}`")]


def _parse_price(frame: Frame, config: ParseConfig, feeds: FeedMap) -> list[Parsed]:
    """A price frame's quotes, by its source's parser (raises `PriceFormatError` for the whole message)."""
    quotes: list[FeedQuote]
    problems: list[FeedProblem] = []
    if frame.source == PYTH:
        quotes, problems = parse_hermes(frame.payload, frame.received_ns, feeds.pyth_mints, config)
    elif frame.source == BIRDEYE:
        quotes = [parse_birdeye_price(frame.payload, frame.received_ns, config)]
    elif frame.source == JUPITER:
        quotes, problems = parse_jupiter(frame.payload, frame.received_ns)
    else:
        quotes = [parse_price_payload(frame.payload, frame.source, frame.received_ns, config)]
    return [*quotes, *(_dead(frame, "price", problem.reason, problem.suffix) for problem in problems)]


@dataclass
class Valuation:
    """The valuation step's state: the prices learned in stream order (see `quantbot.pricing`) and the
    analytics over feed time (`quantbot.analytics`), never settings.

    The settings are given with every item, from the profile of the running process, so a changed
    `[pricing]` or `[analytics]` key takes effect at the next start, snapshot or not.
    """

    learned: LearnedPrices = field(default_factory=LearnedPrices)
    analytics: Analytics = field(default_factory=Analytics)

    def book(self, item: Valuable, config: PricingConfig, analytics: AnalyticsConfig) -> list[Booked]:
        """Value `item` (`apply`) and run the analytics over it: the valued item (its ticks with their 24 h
        statistics) first, then what it set off (whales, signals, follow-ups, snapshots...), in stream order.
        Token facts are not valued: only the analytics takes them."""
        if isinstance(item, TokenFacts):
            return list(self.analytics.observe_facts(item, analytics))
        valued = self.apply(item, config)
        if isinstance(valued, PricedQuote):
            tick, outputs = self.analytics.observe_quote(valued.tick, analytics)
            return [PricedQuote(tick, valued.disagreements), *outputs]
        activities, outputs = self.analytics.observe_trade(valued.signature, valued.valued, analytics)
        return [ValuedTransaction(valued.signature, activities, valued.disagreements), *outputs]

    def apply(self, item: DecodedTransaction | FeedQuote, config: PricingConfig) -> ValuedTransaction | PricedQuote:
        """Value a transaction's activities, or take a feed quote (which becomes a price tick), under `config`."""
        book = PriceBook(config, self.learned)
        if isinstance(item, FeedQuote):
            disagreement = book.apply_quote(item)
            return PricedQuote(book.quote_tick(item), () if disagreement is None else (disagreement,))
        disagreements: list[PriceDisagreement] = []
        valued = tuple(book.value(a, disagreements) for a in item.activities)
        return ValuedTransaction(item.signature, valued, tuple(disagreements))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a snapshot; one of the former layout (a whole `PriceBook`) keeps its prices, not its settings."""
        book = state.get("book")
        if book is not None:
            former = vars(book)  # its attributes as pickled: `tokens` is a property of today's class
            state = {"learned": LearnedPrices(former["feed_sol"], former["trade_sol"], former["tokens"])}
        self.__dict__.update(state)
        if "analytics" not in state:  # a snapshot from before the analytics: it starts now
            self.analytics = Analytics()


@record
class Sequenced(Generic[T]):
    """An item of a source that numbers what it emits: `seq` is its place in the stream, 0 on, no gaps.

    A numbered stream may be spread over workers and put back in order later (`InOrderValuation`).
    """

    seq: int
    item: T


Valuable = DecodedTransaction | FeedQuote | TokenFacts
"""What the valuation step takes."""

Booked = ValuedTransaction | PricedQuote | Output
"""What the valuation step gives: valued items, and the analytics' outputs."""


@dataclass
class InOrderValuation:
    """The in-order valuation step's state: a numbered stream, parsed out of order, valued in stream order.

    Each source item arrives as one `Sequenced` list (what parsing it gave that is worth valuing, possibly
    nothing), from whichever worker parsed it. A list is kept until every list before it has arrived; then
    the contiguous run is valued in sequence order by the same `Valuation` as the unordered flow, so the
    prices learned, and every value, are those of a single worker reading the stream in order.

    Bounded: `waiting` holds only what is in flight between the workers. At an epoch's end every item
    the source emitted in it has arrived, so a snapshot's `waiting` is empty and `next_seq` is the
    source's own counter.

    Attributes:
        next_seq: the sequence number of the next list to value.
        waiting: lists that arrived ahead of `next_seq`, by sequence number.
        valuation: the prices learned so far, in stream order.
    """

    next_seq: int = 0
    waiting: dict[int, list[Valuable]] = field(default_factory=dict)
    valuation: Valuation = field(default_factory=Valuation)

    def accept(
        self, numbered: Sequenced[list[Valuable]], config: PricingConfig, analytics: AnalyticsConfig
    ) -> list[Booked]:
        """Take one numbered list; value and return whatever run it completes, in sequence order (`Valuation.book`).

        A list already valued (`seq` below `next_seq`) or already waiting is a repeat and is ignored:
        each sequence number is valued once.
        """
        if numbered.seq < self.next_seq or numbered.seq in self.waiting:
            log.warning("in_order=repeat seq=%d next_seq=%d ignored", numbered.seq, self.next_seq)
            return []
        self.waiting[numbered.seq] = numbered.item
        out: list[Booked] = []
        while (ready := self.waiting.pop(self.next_seq, None)) is not None:
            for item in ready:
                out.extend(self.valuation.book(item, config, analytics))
            self.next_seq += 1
        return out


def price_ticks(item: ValuedTransaction | PricedQuote) -> list[PriceTick]:
    """The price ticks to store: a feed quote's, or every tick the transaction's trades implied."""
    if isinstance(item, PricedQuote):
        return [item.tick]
    return [tick for valued in item.valued for tick in valued.ticks]


def disagreements_of(item: ValuedTransaction | PricedQuote) -> list[PriceDisagreement]:
    """The feed/chain disagreements the valuation of `item` found."""
    return list(item.disagreements)


@dataclass(frozen=True, slots=True)
class MissedTrade:
    """A large trade a feed reported whose transaction the flow did not see within the allowed delay."""

    trade: LargeTrade
    waited_s: float


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The large-trade check's settings (`[feeds] large_trade_delay_s`, `seen_max`)."""

    enabled: bool = False
    """Whether the flow checks large trades at all: where a feed reports them (Birdeye's large-trade stream)."""
    delay_s: float = 30.0
    """A large trade's transaction not decoded this long (by frame receive times) after the report is missed."""
    seen_max: int = 20_000
    """Signatures (decoded, and reported but not yet seen) remembered at most."""


@dataclass
class TradeWatch:
    """The large-trade check's state: the signatures the flow decoded lately and the reported trades it waits for.

    Time is the frames' receive time (the newest seen), so a replay of a recording finds what the live
    run found. A trade is declared missed when a later item shows its delay has passed; a stream that stops
    altogether declares nothing more.
    """

    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    waiting: OrderedDict[str, LargeTrade] = field(default_factory=OrderedDict)
    clock_ns: int = 0

    def observe(self, item: DecodedTransaction | LargeTrade | FeedQuote, config: WatchConfig) -> list[MissedTrade]:
        """Note a decoded transaction or a reported trade (a quote moves the clock only); returns trades now missed."""
        self.clock_ns = max(self.clock_ns, item.received_ns)
        if isinstance(item, DecodedTransaction):
            self.seen[item.signature] = None
            self.waiting.pop(item.signature, None)
            while len(self.seen) > config.seen_max:
                self.seen.popitem(last=False)
        elif isinstance(item, LargeTrade) and item.signature not in self.seen and item.signature not in self.waiting:
            self.waiting[item.signature] = item
        missed: list[MissedTrade] = []
        delay_ns = int(config.delay_s * NS_PER_S)
        while self.waiting:
            signature, trade = next(iter(self.waiting.items()))
            waited_ns = self.clock_ns - trade.received_ns
            if waited_ns < delay_ns and len(self.waiting) <= config.seen_max:
                break
            del self.waiting[signature]
            missed.append(MissedTrade(trade, waited_ns / NS_PER_S))
        return missed
