"""The analytics state: one object the valuation step keeps and snapshots, fed every trade, quote and token facts.

**Clock.** Feed time only: the newest block time of the trades seen and publish time of the quotes seen (the
wall clock is never read, so a replay at any speed, or resumed from a snapshot, derives the same outputs).
Timers (market snapshots, whale follow-ups, signal transitions) fire when an item moves the clock past them,
before that item is observed, stamped with their own due time, in due-time order (ties: follow-ups, then
signals, then the snapshot; then by signature or signal id). A timer therefore sees every item up to its due
time and none after; a stream that stops fires nothing more. When the clock jumps over several snapshot
boundaries (a gap in the feed), the first one passed is written and the next is the first boundary after the
jump: the ones in between would repeat the state of the last item.

**Outputs of a trade**, in order: the timers that fell due before it; `SignalUpdate`s of signals its prices
closed (take profit, stop loss); its `WhaleTransaction` (at most one per transaction: the largest qualifying
activity), with `relatedTransactions` and, where the wallet has history, `walletProfile.historicalInfluence`;
`WhaleUpdate`s appending it to the wallet's earlier whales within `related_window_s`; its `Signal`s (one per
strategy whose rules it passes, checked against the followed token's liquidity where known); `SignalUpdate`s
of signals settled early for room (`max_pending`); `TokenRequest`s for its mints without facts (each asked
again only after `token_refresh_s` of feed time).

**Ticks.** Each price tick (a trade's or a quote's) is returned with `stats` (`TickStats`):

- `change_24h_pct`, `high_24h`, `low_24h`, `volume_24h_usd`: over the token's window (`quantbot.analytics.window`):
  the change from the price before the window (None while the token's history does not reach back that far);
  high and low include this tick; the volume is the USD value of the token's trades (quotes add none).
- `liquidity_usd`: the USD value of the latest reserves of the token's known pools (`quantbot.analytics.pools`),
  at current prices; None without reserves. Quote assets (SOL, USDC, USDT) have none: every pool of the market
  holds one, and the flow's bounded view of them would be an arbitrary number.
- `market_cap_usd`: price x supply / 10^decimals once the mint's facts are known. None for SOL, whose wrapped
  mint's supply is only what is wrapped.

**Token documents** (`tokens`): emitted when a token's facts arrive, and at each snapshot boundary that is a
multiple of `token_document_every_s` (hourly) for the tokens whose exchanges (pools traded) changed since; only for
tokens whose facts are known, as the schema requires `decimals` (facts arriving later bring the exchanges with
them). `exchanges`: one entry per known pool of the token (at most `MAX_POOLS_PER_TOKEN`, the most recently
traded), `name` (DEX program), `address`, `volume24h`, and with reserves `liquidityUsd` and `priceImpact1000usd`;
largest volume first.

**Whale follow-ups, signal lifecycles, strategy figures, the market snapshot**: `quantbot.analytics.wallets`,
`.lifecycle`, `.strategies`, `.market`.

**Bounds.** Tokens (`max_tokens`), pools (`max_pools`), wallets (`max_wallets`), token facts and requests
(`max_tokens`) are least-recently-used maps; follow-ups and signals waiting on a timer are at most
`max_pending` together: beyond it the oldest (first created) is settled early (a follow-up is dropped: a move
at the wrong time would be a wrong fact; a pending signal expires; an active one closes at the current price,
`exit_reason` `settled_early`) and counted in `quantbot_analytics_settled_early_total`.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from quantbot import metrics
from quantbot.analytics.config import AnalyticsConfig
from quantbot.analytics.lifecycle import (
    ACTIVE,
    CLOSED,
    EXPIRED,
    PENDING,
    SETTLED_EARLY,
    SignalRecord,
    position_size_usd,
)
from quantbot.analytics.market import mover, snapshot_document
from quantbot.analytics.outputs import (
    MarketSnapshot,
    Output,
    StrategyMetrics,
    StrategyPerformance,
    TokenDocument,
    TokenRequest,
    WhaleUpdate,
)
from quantbot.analytics.pools import Pool, impact_1000_usd, liquidity_usd
from quantbot.analytics.slotted import Slotted
from quantbot.analytics.strategies import StrategyBook
from quantbot.analytics.wallets import FollowUp, WalletHistory, move_pct
from quantbot.analytics.window import PriceWindow, SumWindow, bucket_of
from quantbot.models import (
    WSOL_MINT,
    Activity,
    ActivityKind,
    Hop,
    PriceTick,
    TickStats,
    ValuedActivity,
    WhaleTransaction,
)
from quantbot.pricing import KNOWN_SYMBOLS, USDC_MINT, USDT_MINT
from quantbot.signals import QUOTE_MINTS, WhaleFollower, evaluate, followed_token
from quantbot.tokens import TokenFacts, token_document
from quantbot.whales import detect, largest_per_transaction

MAX_POOLS_PER_TOKEN = 8
"""A token's pools kept at most (the most recently traded): its liquidity lives in a few; the rest are noise."""
MAX_VENUES = 64
"""DEX programs with a volume window at most (the decoders know about twenty)."""
HEAP_SLACK = 1_024
"""Stale timer entries (of signals closed by a price, or settled) tolerated before the timer heap is rebuilt."""
STABLE_USD = {USDC_MINT: 1.0, USDT_MINT: 1.0}
"""Stablecoins valued at face when no quote of them was seen (as the valuation does)."""
MOVE_DIGITS = 4
USD_DIGITS = 2
IMPACT_DIGITS = 4

RANK_FOLLOW_UP, RANK_SIGNAL, RANK_SNAPSHOT = 0, 1, 2
"""Timer order at one due time: state changes first, then the snapshot that summarises them."""

WHALE_COUNT, WHALE_VOLUME, WHALE_NET_FLOW = 0, 1, 2
"""The columns of the whales' window."""


class TokenState(Slotted):
    """What the analytics keeps per token.

    Attributes:
        first_seen: the feed time the token was first seen (the document's `createdAt`).
        window: its prices over the window.
        pools: its known pools' addresses, most recently traded last (none for quote assets).
    """

    __slots__ = ("first_seen", "pools", "window")

    def __init__(self, first_seen: int) -> None:
        self.first_seen = first_seen
        self.window = PriceWindow()
        self.pools: list[str] = []


def _ceil_to(at: int, interval: int) -> int:
    """The first multiple of `interval` at or after `at`."""
    return -(-at // interval) * interval


def _hop_usd(activity: Activity, usd: float, hop: Hop) -> float | None:
    """A hop's USD value: the trade's, in proportion where the hop carries part of the trade's input or output."""
    if len(activity.hops) == 1:
        return usd
    given, got = activity.input, activity.output
    if given is not None and given.amount > 0 and hop.input.mint == given.mint:
        return usd * hop.input.amount / given.amount
    if got is not None and got.amount > 0 and hop.output.mint == got.mint:
        return usd * hop.output.amount / got.amount
    return None


SIGNATURE_DIGEST_BYTES = 8
"""A repeat is recognised by 64 bits of its signature's digest: two of `repeats_max` (10^4) distinct transactions
share one with probability ~10^-11, and the set pickles at a tenth of the signatures' size."""


@dataclass
class Analytics:
    """The flow's analytics state (module docstring): picklable, bounded, and fed in stream order.

    Attributes:
        clock: feed time, the newest seen; None before the first item.
        next_snapshot: the next snapshot boundary.
        sol_usd: SOL/USD as the valuation last used it (or the last SOL quote).
        tokens: per mint, its `TokenState`; least recently seen first.
        pools: per pool address, its `Pool`; least recently traded first.
        venues: per DEX program, its USD volume over the window.
        whale_flows: the whales' count, USD volume and net flow over the window.
        changed: tokens whose exchanges changed since their last document, in the order they changed.
        facts: per mint, its latest facts; least recently arrived first.
        asked: per mint, the feed time its facts were last asked for or arrived; least recent first.
        wallets: per wallet, its whale history; least recently active first.
        follow_ups: whales waiting for their follow-up, by signature, oldest first.
        signals: signals being followed, by id, oldest first.
        watching: per token, the ids of its active signals (their take-profit and stop-loss checks).
        books: per strategy id, its paper account.
        timers: a heap of (due, rank, key) of follow-ups, signals; stale entries are skipped.
        recent: the last `repeats_max` transactions observed, by an 8-byte digest of their signature: a repeat
            (a duplicated recording line, a transaction delivered twice) is not counted again.
    """

    clock: int | None = None
    next_snapshot: int | None = None
    sol_usd: float | None = None
    tokens: OrderedDict[str, TokenState] = field(default_factory=OrderedDict)
    pools: OrderedDict[str, Pool] = field(default_factory=OrderedDict)
    venues: OrderedDict[str, SumWindow] = field(default_factory=OrderedDict)
    whale_flows: SumWindow = field(default_factory=lambda: SumWindow(3))
    changed: dict[str, None] = field(default_factory=dict)
    facts: OrderedDict[str, TokenFacts] = field(default_factory=OrderedDict)
    asked: OrderedDict[str, int] = field(default_factory=OrderedDict)
    wallets: OrderedDict[str, WalletHistory] = field(default_factory=OrderedDict)
    follow_ups: dict[str, FollowUp] = field(default_factory=dict)
    signals: dict[str, SignalRecord] = field(default_factory=dict)
    watching: dict[str, list[str]] = field(default_factory=dict)
    books: dict[str, StrategyBook] = field(default_factory=dict)
    timers: list[tuple[int, int, str]] = field(default_factory=list)
    recent: OrderedDict[int, None] = field(default_factory=OrderedDict)

    # ---- the three entry points

    def observe_trade(
        self, signature: str, valued: tuple[ValuedActivity, ...], config: AnalyticsConfig
    ) -> tuple[tuple[ValuedActivity, ...], list[Output]]:
        """Observe a valued transaction.

        Args:
            signature: the transaction's signature (its activities carry it too).
            valued: its activities in instruction order, valued (`quantbot.pricing`), with their ticks.
            config: the settings of this start.

        Returns:
            The activities with each tick carrying its `stats`, and the outputs in order (module docstring). A
            transaction observed lately (`repeats_max`) is a repeat: its activities come back without ticks (the
            first time's are stored) and it sets nothing off, so a duplicate counts no volume, no whale twice.
        """
        out: list[Output] = []
        if not valued:
            return valued, out
        digest = int.from_bytes(hashlib.blake2b(signature.encode(), digest_size=SIGNATURE_DIGEST_BYTES).digest())
        recent = self.recent
        if digest in recent:
            return tuple(ValuedActivity(v.activity, v.usd_value, v.sol_usd) for v in valued), out
        recent[digest] = None
        if len(recent) > config.repeats_max:
            recent.popitem(last=False)
        if len(valued) == 1:
            latest = valued[0].activity.block_time or 0
        else:
            latest = max((v.activity.block_time or 0) for v in valued)
        clock = self.clock
        # A transaction without a block time leaves the clock where it is; most leave it and fire nothing.
        if latest and (clock is None or latest > clock or (self.timers and self.timers[0][0] < clock)):
            self._advance(latest, config, out)
        now = self.clock or 0
        now_bucket = now - now % config.bucket_s
        result: list[ValuedActivity] = []
        floor = config.whales.tiers[0][1]
        whales = False
        for item in valued:
            activity = item.activity
            usd, sol_usd = item.usd_value, item.sol_usd
            if sol_usd is not None:
                self.sol_usd = sol_usd
            if activity.hops and activity.kind is ActivityKind.SWAP:
                self._observe_hops(activity, usd, activity.block_time or now, config)
            if item.ticks:
                ticks = tuple([self._tick(tick, now_bucket, config, out) for tick in item.ticks])
                item = ValuedActivity(activity, usd, sol_usd, ticks)  # noqa: PLW2901 - the stats-carrying copy
            result.append(item)
            if usd is not None and usd >= floor:
                whales = True
        if whales:
            found = [
                whale
                for item in result
                if (whale := detect(item, config.whales, self._symbols(item.activity))) is not None
            ]
            for whale in largest_per_transaction(found):
                self._observe_whale(whale, now, config, out)
        self._request_facts(valued, now, config, out)
        return tuple(result), out

    def observe_quote(self, tick: PriceTick, config: AnalyticsConfig) -> tuple[PriceTick, list[Output]]:
        """Observe a price feed's quote (no volume); returns it with its `stats`, and the outputs in order."""
        out: list[Output] = []
        self._advance(tick.block_time, config, out)
        if tick.token == WSOL_MINT:
            self.sol_usd = tick.price_usd
        now_bucket = bucket_of(self.clock or 0, config.bucket_s)
        return self._tick(tick, now_bucket, config, out), out

    def observe_facts(self, facts: TokenFacts, config: AnalyticsConfig) -> list[Output]:
        """Keep a mint's facts (the newest per mint, at most `max_tokens`); returns its `TokenDocument`.

        Facts that come before any trade or quote (no feed time yet) are documented at the first boundary.
        """
        mint = facts.mint
        self.facts[mint] = facts
        self.facts.move_to_end(mint)
        while len(self.facts) > config.max_tokens:
            self.facts.popitem(last=False)
        now = self.clock
        if now is None:
            self.changed[mint] = None
            return []
        self.asked[mint] = now  # answered: not asked again for `token_refresh_s`
        self.asked.move_to_end(mint)
        self.changed.pop(mint, None)
        return [TokenDocument(mint, self._token_document(mint, now, config))]

    # ---- the clock and its timers

    def _advance(self, at: int, config: AnalyticsConfig, out: list[Output]) -> None:
        """Move the clock to `at` (if later), firing first every timer it passes, in order."""
        clock = self.clock
        interval = config.snapshot_interval_s
        if clock is None:
            self.clock = at
            self.next_snapshot = _ceil_to(at, interval)
            for mint in self.facts:  # facts that came before the clock count as answered now
                self.asked[mint] = at
            return
        if at <= clock:
            if not self.timers or self.timers[0][0] >= clock:
                return  # the hot path: nothing is due
            at = clock
        while True:
            timers, snapshot = self.timers, self.next_snapshot
            if timers and timers[0][0] < at and (snapshot is None or timers[0][0] <= snapshot):
                due, rank, key = heapq.heappop(timers)
                self._fire(due, rank, key, config, out)
            elif snapshot is not None and snapshot < at:
                self._snapshot(snapshot, config, out)
                self.next_snapshot = _ceil_to(at, interval)
            else:
                break
        self.clock = at

    def _push(self, due: int, rank: int, key: str) -> None:
        heapq.heappush(self.timers, (due, rank, key))

    def _compact_timers(self) -> None:
        """Rebuild the heap from the live entries once stale ones pile up (bounded memory)."""
        live = len(self.follow_ups) + len(self.signals)
        if len(self.timers) <= 2 * live + HEAP_SLACK:
            return
        timers = [(f.due, RANK_FOLLOW_UP, key) for key, f in self.follow_ups.items()]
        timers += [(r.due, RANK_SIGNAL, key) for key, r in self.signals.items() if r.due is not None]
        heapq.heapify(timers)
        self.timers = timers

    def _fire(self, due: int, rank: int, key: str, config: AnalyticsConfig, out: list[Output]) -> None:
        if rank == RANK_FOLLOW_UP:
            follow_up = self.follow_ups.get(key)
            if follow_up is not None and follow_up.due == due:
                del self.follow_ups[key]
                self._follow_up(follow_up, config, out)
            return
        record = self.signals.get(key)
        if record is None or record.due != due:
            return
        was = record.status
        strategy = self._strategy(record.signal.strategy_id, config)
        closed = record.fire(due, self._price(record.signal.token_address), strategy)
        self._settled(record, was, closed, config)
        out.append(record.update())

    def _follow_up(self, follow_up: FollowUp, config: AnalyticsConfig, out: list[Output]) -> None:
        """A whale's follow-up: its `priceMoveAfter3h`, and a completed follow-up in its wallet's record."""
        price = self._price(follow_up.token)
        if price is None:
            return
        move = move_pct(follow_up.price, price)
        out.append(WhaleUpdate(follow_up.signature, {"significance.priceMoveAfter3h": round(move, MOVE_DIGITS)}))
        self._wallet(follow_up.wallet, config).record(follow_up.direction * move)

    # ---- ticks, pools, prices

    def _token(self, mint: str, at: int, config: AnalyticsConfig) -> TokenState:
        """The token's state, made most recently used (created, and the least recent forgotten, if new)."""
        tokens = self.tokens
        state = tokens.get(mint)
        if state is not None:
            tokens.move_to_end(mint)
            return state
        state = tokens[mint] = TokenState(at)
        if len(tokens) > config.max_tokens:
            gone, _ = tokens.popitem(last=False)
            self.changed.pop(gone, None)
        return state

    def _tick(self, tick: PriceTick, now_bucket: int, config: AnalyticsConfig, out: list[Output]) -> PriceTick:
        """Count a tick in its token's window; returns it with its `stats` (and closes the exits it reaches)."""
        token, price, at = tick.token, tick.price_usd, tick.block_time or self.clock or 0
        tokens = self.tokens
        state = tokens.get(token)
        if state is None:
            state = self._token(token, at, config)
        else:
            tokens.move_to_end(token)
        high, low, volume, before = state.window.observe(
            at - at % config.bucket_s, price, tick.volume_usd, now_bucket, config.window_s
        )
        change = (price / before - 1.0) * 100.0 if before else None  # no reference (or a zero one): no change
        liquidity = self._liquidity(state) if state.pools else None
        market_cap = None
        facts = self.facts.get(token)
        if facts is not None and token != WSOL_MINT:
            scale: int = 10**facts.decimals
            market_cap = price * facts.supply / scale
        watched = self.watching.get(token)
        if watched:
            self._check_exits(watched, price, at, config, out)
        return PriceTick(
            token,
            price,
            tick.block_time,
            tick.source,
            tick.volume_usd,
            tick.signature,
            tick.index,
            tick.symbol,
            TickStats(liquidity, market_cap, change, high, low, volume),
        )

    def _observe_hops(self, activity: Activity, usd: float | None, at: int, config: AnalyticsConfig) -> None:
        """Count each hop's volume at its DEX and pool; keep each pool's latest reserves; note the tokens' pools."""
        bucket = at - at % config.bucket_s
        window_s = config.window_s
        pools, venues, tokens, changed = self.pools, self.venues, self.tokens, self.changed
        hops = activity.hops
        for hop in hops:
            value = usd if usd is None or len(hops) == 1 else _hop_usd(activity, usd, hop)
            if value is not None:
                venue = venues.get(hop.program)
                if venue is None:
                    venue = venues[hop.program] = SumWindow()
                    if len(venues) > MAX_VENUES:
                        venues.popitem(last=False)
                venue.add(bucket, value, window_s)
            address = hop.pool
            if address is None:
                continue
            pool = pools.get(address)
            if pool is None:
                pool = pools[address] = Pool(address, hop.program)
                if len(pools) > config.max_pools:
                    pools.popitem(last=False)
            else:
                pools.move_to_end(address)
            if hop.reserves is not None and at >= pool.reserves_at:
                pool.set_reserves(hop.reserves, at)
            if value is not None:
                pool.volume.add(bucket, value, window_s)
            for mint in (hop.input.mint, hop.output.mint):
                if mint in QUOTE_MINTS:
                    continue
                state = tokens.get(mint)  # its tick, if it has one, makes it the most recently used
                if state is None:
                    state = self._token(mint, at, config)
                known = state.pools
                if not known or known[-1] != address:
                    if address in known:
                        known.remove(address)
                    known.append(address)
                    if len(known) > MAX_POOLS_PER_TOKEN:
                        del known[0]
                changed[mint] = None

    def _price(self, mint: str) -> float | None:
        """The current USD price of `mint`: its latest tick, else SOL/USD for SOL and face value for stablecoins."""
        state = self.tokens.get(mint)
        if state is not None:
            closes = state.window.closes
            if closes:
                return closes[-1]
            if state.window.before is not None:
                return state.window.before
        if mint == WSOL_MINT:
            return self.sol_usd
        return STABLE_USD.get(mint)

    def _decimals(self, mint: str) -> int | None:
        facts = self.facts.get(mint)
        return None if facts is None else facts.decimals

    def _liquidity(self, state: TokenState) -> float | None:
        """The USD value of the latest reserves of the token's known pools; None if none is known.

        The general rules are `quantbot.analytics.pools`'; this is their fast path for reserves in whole units.
        """
        total = None
        pools, price_of = self.pools, self._price
        for address in state.pools:
            pool = pools.get(address)
            if pool is None or pool.reserves is None:
                continue
            first_units, second_units = pool.units
            if first_units is None or second_units is None:
                value = liquidity_usd(pool, price_of, self._decimals)
                if value is None:
                    continue
            else:
                first_price, second_price = price_of(pool.reserves[0].mint), price_of(pool.reserves[1].mint)
                if first_price is None:
                    if second_price is None:
                        continue
                    value = 2.0 * second_units * second_price
                elif second_price is None:
                    value = 2.0 * first_units * first_price
                else:
                    value = first_units * first_price + second_units * second_price
            total = value if total is None else total + value
        return total

    def _symbol(self, mint: str) -> str | None:
        facts = self.facts.get(mint)
        if facts is not None and facts.symbol:
            return facts.symbol
        return KNOWN_SYMBOLS.get(mint)

    def _symbols(self, activity: Activity) -> dict[str, str]:
        """The symbols the facts give for the activity's mints (the whale document's `tokens[].symbol`)."""
        symbols: dict[str, str] = {}
        for leg in (activity.input, activity.output):
            if leg is not None:
                facts = self.facts.get(leg.mint)
                if facts is not None and facts.symbol:
                    symbols[leg.mint] = facts.symbol
        return symbols

    # ---- whales and signals

    def _wallet(self, wallet: str, config: AnalyticsConfig) -> WalletHistory:
        wallets = self.wallets
        history = wallets.get(wallet)
        if history is None:
            history = wallets[wallet] = WalletHistory()
            if len(wallets) > config.max_wallets:
                wallets.popitem(last=False)
        else:
            wallets.move_to_end(wallet)
        return history

    def _observe_whale(self, whale: WhaleTransaction, now: int, config: AnalyticsConfig, out: list[Output]) -> None:
        activity = whale.valued.activity
        signature, at = activity.signature, activity.block_time or now
        usd = whale.valued.usd_value or 0.0
        document = whale.document
        history = self._wallet(activity.trader, config)
        related = history.related(at, signature, config.related_window_s)
        document["relatedTransactions"] = related
        influence = history.influence(config.influence_full_move_pct)
        profile = document.get("walletProfile")
        if influence is not None and isinstance(profile, dict):
            profile["historicalInfluence"] = influence
        history.remember(at, signature, config.related_window_s)
        out.append(whale)
        out.extend(WhaleUpdate(earlier, related=(signature,)) for earlier in related)

        followed = followed_token(whale)
        net = 0.0
        liquidity = None
        if followed is not None:
            token, direction, price = followed
            sign = 1 if direction == "buy" else -1
            if token not in QUOTE_MINTS:
                net = sign * usd
            if price is None:
                price = self._price(token)
            if price is not None and price > 0:
                self.follow_ups[signature] = FollowUp(
                    signature, at + config.follow_up_s, activity.trader, token, sign, price, at
                )
                self._push(at + config.follow_up_s, RANK_FOLLOW_UP, signature)
            liquidity = self._token_liquidity(whale, token)
        self.whale_flows.add_all(bucket_of(at, config.bucket_s), (1.0, usd, net), config.window_s)

        for strategy in config.strategies:
            signal = evaluate(strategy, whale, liquidity)
            if signal is None:
                continue
            out.append(signal)
            if signal.signal_id in self.signals:  # the same transaction again: its lifecycle is under way
                continue
            record = SignalRecord(signal, position_size_usd(signal, strategy))
            self.signals[signal.signal_id] = record
            if record.due is not None:
                self._push(record.due, RANK_SIGNAL, signal.signal_id)
        self._make_room(now, config, out)
        self._compact_timers()

    def _token_liquidity(self, whale: WhaleTransaction, token: str) -> float | None:
        """The followed token's liquidity as this trade left it (its tick's stats), else from its known pools."""
        for tick in whale.valued.ticks:
            if tick.token == token and tick.stats is not None:
                return tick.stats.liquidity_usd
        state = self.tokens.get(token)
        return None if state is None or not state.pools else self._liquidity(state)

    def _strategy(self, strategy_id: str, config: AnalyticsConfig) -> WhaleFollower | None:
        for strategy in config.strategies:
            if strategy.strategy_id == strategy_id:
                return strategy
        return None

    def _book(self, strategy_id: str) -> StrategyBook:
        book = self.books.get(strategy_id)
        if book is None:
            book = self.books[strategy_id] = StrategyBook()
        return book

    def _settled(self, record: SignalRecord, was: str, closed: bool, config: AnalyticsConfig) -> None:
        """Book what a record's change means: an entry, a closed trade; forget it or re-arm its timer."""
        signal_id = record.signal.signal_id
        token = record.signal.token_address
        if was == PENDING and record.status in (ACTIVE, CLOSED):
            self._book(record.signal.strategy_id).enter(signal_id, record.size_usd)
            if record.status == ACTIVE:
                self.watching.setdefault(token, []).append(signal_id)
        if closed:
            self._unwatch(token, signal_id)
            self._book(record.signal.strategy_id).close(
                signal_id, record.changed_at, record.pnl_percent or 0.0, record.size_usd, config.performance_window_days
            )
        if record.due is None:
            del self.signals[signal_id]
        else:
            self._push(record.due, RANK_SIGNAL, signal_id)

    def _unwatch(self, token: str, signal_id: str) -> None:
        watched = self.watching.get(token)
        if watched is not None and signal_id in watched:
            watched.remove(signal_id)
            if not watched:
                del self.watching[token]

    def _check_exits(
        self, watched: list[str], price: float, at: int, config: AnalyticsConfig, out: list[Output]
    ) -> None:
        """Close the token's active signals whose take profit or stop loss `price` reaches (a price after entry)."""
        for signal_id in list(watched):
            record = self.signals[signal_id]
            if at < record.changed_at:
                continue  # a late price, from before the entry
            record.last_price = price
            reason = record.crossing(price)
            if reason is None:
                continue
            record.close(at, price, reason)
            self._settled(record, ACTIVE, True, config)
            out.append(record.update())

    def _make_room(self, now: int, config: AnalyticsConfig, out: list[Output]) -> None:
        """Settle the oldest waiting follow-ups and signals early while more than `max_pending` wait."""
        while len(self.follow_ups) + len(self.signals) > config.max_pending:
            follow_up = next(iter(self.follow_ups.values()), None)
            record = next(iter(self.signals.values()), None)
            if record is None or (follow_up is not None and follow_up.created <= record.signal.created_at):
                assert follow_up is not None
                del self.follow_ups[follow_up.signature]
                metrics.ANALYTICS_SETTLED_EARLY.labels("follow_up").inc()
                continue
            metrics.ANALYTICS_SETTLED_EARLY.labels("signal").inc()
            signal_id = record.signal.signal_id
            if record.status == PENDING:
                record.status, record.changed_at = EXPIRED, now
                record.due = None
                out.append(record.update())
            elif record.status == ACTIVE:
                price = self._price(record.signal.token_address) or record.last_price
                record.close(now, price, SETTLED_EARLY)
                record.due = None
                self._settled(record, ACTIVE, True, config)
                out.append(record.update())
            self.signals.pop(signal_id, None)

    # ---- token facts and documents

    def _request_facts(
        self, valued: tuple[ValuedActivity, ...], now: int, config: AnalyticsConfig, out: list[Output]
    ) -> None:
        """Ask for the facts of the trades' mints whose facts (or a request for them) are `token_refresh_s` old."""
        refresh = config.token_refresh_s
        asked = self.asked
        for item in valued:
            activity = item.activity
            for leg in (activity.input, activity.output):
                if leg is None:
                    continue
                mint = leg.mint
                last = asked.get(mint)
                if last is not None and now - last < refresh:
                    continue
                asked[mint] = now
                asked.move_to_end(mint)
                if len(asked) > config.max_tokens:
                    asked.popitem(last=False)
                out.append(TokenRequest(mint))

    def _exchanges(self, state: TokenState, mint: str, at: int, config: AnalyticsConfig) -> list[dict[str, object]]:
        """The token's `exchanges` at feed time `at`, largest 24 h volume first (ties by pool address)."""
        now_bucket = bucket_of(at, config.bucket_s)
        ranked: list[tuple[float, str, dict[str, object]]] = []
        for address in state.pools:
            pool = self.pools.get(address)
            if pool is None:
                continue
            volume = round(pool.volume.totals(now_bucket, config.window_s)[0], USD_DIGITS)
            entry: dict[str, object] = {"name": pool.venue, "address": address}
            liquidity = liquidity_usd(pool, self._price, self._decimals)
            if liquidity is not None:
                entry["liquidityUsd"] = round(liquidity, USD_DIGITS)
            entry["volume24h"] = volume
            impact = impact_1000_usd(pool, mint, self._price, self._decimals)
            if impact is not None:
                entry["priceImpact1000usd"] = round(impact, IMPACT_DIGITS)
            ranked.append((-volume, address, entry))
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [entry for _, _, entry in ranked]

    def _token_document(self, mint: str, at: int, config: AnalyticsConfig) -> dict[str, object]:
        state = self.tokens.get(mint)
        facts = self.facts.get(mint)
        exchanges = self._exchanges(state, mint, at, config) if state is not None else []
        created = state.first_seen if state is not None else at
        return token_document(mint, facts, exchanges, created, at)

    # ---- the snapshot boundary

    def _snapshot(self, at: int, config: AnalyticsConfig, out: list[Output]) -> None:
        """The market snapshot at boundary `at`, the changed tokens' documents, each strategy's figures."""
        window_s = config.window_s
        now_bucket = bucket_of(at, config.bucket_s)
        oldest = now_bucket - window_s
        candidates: list[tuple[float, str, float, float]] = []
        for mint, state in self.tokens.items():
            window = state.window
            if not window.starts or window.starts[-1] <= oldest:
                continue
            _, _, volume, before = window.stats(now_bucket, window_s)
            price = window.last_price
            if not before or price is None or volume < config.mover_min_volume_usd:
                continue
            change = (price / before - 1.0) * 100.0
            candidates.append((-abs(change), mint, change, volume))
        candidates.sort(key=lambda item: (item[0], item[1]))
        movers = [mover(mint, self._symbol(mint), change, volume) for _, mint, change, volume in candidates]
        del movers[config.top_movers :]
        dex_volume = {venue: window.totals(now_bucket, window_s)[0] for venue, window in self.venues.items()}
        reserves = None
        for pool in self.pools.values():
            if pool.reserves is None or pool.reserves_at <= at - window_s:
                continue
            value = liquidity_usd(pool, self._price, self._decimals)
            if value is not None:
                reserves = value if reserves is None else reserves + value
        whales = self.whale_flows.totals(now_bucket, window_s)
        out.append(
            MarketSnapshot(
                snapshot_document(
                    at, sol_usd=self.sol_usd, movers=movers, whales=whales, dex_volume=dex_volume, reserves_usd=reserves
                )
            )
        )

        if at % config.token_document_every_s == 0:
            changed = [mint for mint in self.changed if mint in self.facts]
            self.changed.clear()
            out.extend(TokenDocument(mint, self._token_document(mint, at, config)) for mint in changed)

        for strategy in config.strategies:
            book = self._book(strategy.strategy_id)
            out.append(StrategyMetrics(strategy.strategy_id, strategy.user_id, at, book.metrics()))
            out.append(
                StrategyPerformance(strategy.strategy_id, at, book.performance(at, config.performance_window_days))
            )
