"""The synthetic market: SOL/USD, tokens, pools, bonding curves and wallets, all from one seeded RNG.

- **SOL/USD** is a geometric random walk, one step per second of feed time (a few percent a day).
- **Tokens** come in four kinds: majors (deep Raydium, Orca and Meteora pools against SOL and USDC, the
  busiest pools), AMM tokens (one to three AMM pools), graduated Pump.fun tokens (a PumpSwap pool) and
  tokens still on their Pump.fun bonding curve. Each has a USD price that walks with its own volatility,
  moves with the trades (half of the impact for good, half taken back within the hour: `IMPACT_KEPT`)
  and, over hours, trends (`Trend`): now and then a token
  drifts for half an hour to six hours (news, rotations), and after a big trade of a whale wallet it
  drifts the way the whale traded, or against it, by the whale's `edge`. So over a day some tokens move
  tens of percent, and a whale follower's take profit or stop loss is hit within hours after some whales
  and neither after others; a whale's later moves follow from who it is (its influence can be measured).
- **Pools** keep a USD depth; before a trade their reserves are set from the depth and the current prices
  (other traders arbitrage between our trades), then the trade moves them by the pool's curve. Bonding
  curves keep their exact state from trade to trade.
- **Wallets** trade with a Pareto (Zipf) activity distribution; the busiest are the whales, and the big
  trades come from the whales by a Zipf distribution too (a few whale wallets make many of them, as desks
  and bots do). Each keeps its SOL and token balances, so one transaction's post balance is the next
  one's pre balance.

Addresses are random 32-byte keys (the mints of Pump.fun tokens are ground to end in `pump`, as on
mainnet); associated token accounts are derived from wallet and mint by a hash, so they are stable.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, field

from solders.pubkey import Pubkey

from quantbot.models import WSOL_MINT
from quantbot.pricing import USDC_MINT, USDT_MINT
from quantbot.solana.codec import b58decode
from quantbot.synthetic.chain import KNOWN_LAMPORTS, TOKEN_ACCOUNT_RENT
from quantbot.units import SECONDS_PER_HOUR

SOL_DECIMALS = 9
STABLE_DECIMALS = 6
PUMP_DECIMALS = 6
LAMPORTS_PER_SOL = 1_000_000_000
"""10^SOL_DECIMALS."""
SOL_USD_START = 150.0
SOL_VOLATILITY = 0.00015
"""SOL/USD log-volatility per square-root second (~4.4% a day, SOL's usual)."""
TOKEN_VOLATILITY = {"major": 0.0002, "amm": 0.0008, "pumpswap": 0.0015}
"""Log-volatility per square-root second of each kind of token (~6%, ~24% and ~44% a day): memecoins swing
hardest."""
PUMP_SUPPLY = 1_000_000_000
"""Whole tokens minted for every Pump.fun token."""

# Pump.fun bonding curve at creation (the program's global config): virtual SOL and token reserves and
# the real tokens for sale; it completes (and migrates) when the real tokens are sold, ~85 SOL in.
CURVE_VIRTUAL_SOL = 30 * LAMPORTS_PER_SOL
CURVE_VIRTUAL_TOKENS = 1_073_000_000_000_000
"""1,073,000,000 tokens of 6 decimals."""
CURVE_REAL_TOKENS = 793_100_000_000_000
"""793,100,000 tokens of 6 decimals."""
CURVE_MAX_REAL_SOL = 80 * LAMPORTS_PER_SOL
"""A curve stops taking buys short of completion, so every synthetic curve stays a curve."""

RAYDIUM_FEE_BPS = 25
ORCA_FEE_TIERS_BPS = (1, 5, 30, 100)
"""Whirlpool fee tiers, in basis points (0.01% to 1%)."""
DLMM_BIN_STEPS = (1, 5, 10, 20, 25, 80, 100)
"""Meteora DLMM bin steps, in basis points."""
SOL_POOL_EFFECTIVE_DEPTH = 10.0
"""SOL-dollar pools trade as constant-product pools this many times deeper than their (mainnet-like) TVL:
their liquidity is concentrated around the price, and a $1M SOL swap moves mainnet's price by well under
1%. At TVL depth a $250k swap would move SOL 6% off the price feed, which no SOL trade does."""
DEPTH_MULTIPLE = 20.0
"""A trade goes to a pool at least this many times its size (deep enough for a sane price impact)."""
WHALE_WALLET_USD = 25_000.0
"""Trades of at least this much come from the whale wallets."""

# Wallet balances: lognormal SOL holdings (median ~2 SOL; whales ~5,000 SOL).
WALLET_SOL_MU, WALLET_SOL_SIGMA = math.log(2.0), 1.5
WHALE_SOL_MU, WHALE_SOL_SIGMA = math.log(5_000.0), 1.0
KEEPS_WSOL, WHALE_KEEPS_WSOL = 0.4, 0.8
"""Shares of traders (and of whales, mostly bots and desks) that keep a wSOL account."""
ZIPF_EXPONENT = 1.0
"""Activity weight of the wallet (and token) of rank r is 1 / r ** exponent: a Pareto tail."""
SCALE: dict[int, int] = {decimals: 10**decimals for decimals in range(19)}
"""10^decimals as an int, for the decimals mints have (0 to 18)."""
KEY_SIZE = 32
MINT_RENT = 1_461_600
"""Lamports of a rent-exempt SPL mint (82 bytes)."""
CREATOR_LAMPORTS = 50_000_000
POOL_LAMPORTS = {"raydium": 6_124_800, "orca": 5_435_760, "meteora": 7_182_720, "pumpswap": 2_978_880}
"""Rent of each venue's pool state account, as mainnet shows them."""
ACCOUNT_LAMPORTS = {
    "open_orders": 23_357_760,
    "target_orders": 16_258_560,
    "market": 3_591_360,
    "bids": 101_977_920,
    "asks": 101_977_920,
    "event_queue": 79_594_560,
    "market_coin": 2_039_280,
    "market_pc": 2_039_280,
    "market_signer": 0,
    "tick_array_0": 70_407_360,
    "tick_array_1": 70_407_360,
    "tick_array_2": 70_407_360,
    "oracle": 0,
    "dlmm_oracle": 4_000_000,
    "bin_array_0": 71_437_440,
    "bin_array_1": 71_437_440,
}
"""Rent of the venues' other accounts (OpenBook market, tick arrays, bin arrays...), as mainnet shows them."""
PUMP_SUFFIX = "pump"
WHALE_SHARE = 100
"""One wallet in this many is a whale (at least one)."""

# Trends: how token prices move over hours, beyond the random walk and the trades' impact.
TREND_QUIET_S = {"major": 12 * SECONDS_PER_HOUR, "amm": 8 * SECONDS_PER_HOUR, "pumpswap": 6 * SECONDS_PER_HOUR}
"""Mean time between two trends of a token of each kind (exponential): memecoins have news most often."""
TREND_HOURS = (0.5, 6.0)
"""A trend lasts uniformly between these many hours."""
TREND_SIGMA = {"major": 0.06, "amm": 0.15, "pumpswap": 0.2}
"""Standard deviation of a trend's whole log move. With the random walk and the whales' trends, a token's
24 h change has a spread (sd of its log) of ~20% for majors (whose pools take most whales), ~30% for AMM
tokens and ~60% for graduated memecoins, measured on 26 h feeds of 20,000 transactions."""
WHALE_TREND_MOVE = {"major": 0.2, "amm": 0.3, "pumpswap": 0.4}
"""Log move of the trend after a big trade of a whale whose `edge` is 1 (times the edge, in the whale's
direction): +22% for a major, past a follower's +15% take profit; an edge of -0.6 gives -11%, past a
-7.5% stop loss; a noise trader's (|edge| < 0.2) leaves the token to its walk."""
IMPACT_KEPT = 0.5
"""Share of a trade's price impact that stays (what the trade told the market); the rest is taken back by
arbitrage and liquidity over the next hour or so. Empirical studies of large trades find about half of the
impact permanent; without this, a thin pool's price walks away by its trades' impacts alone (hundreds of
percent a day for a busy memecoin)."""
IMPACT_HALF_LIFE_S = 1_800.0
"""Half-life of the transient impact."""
IMPACT_DECAY = 0.5 ** (1.0 / IMPACT_HALF_LIFE_S)
"""What is left of a transient impact after one second."""
WHALE_TREND_USD = 50_000.0
"""Trades of a whale wallet of at least this much set its tokens trending (the smallest whale tier's size)."""
WHALE_TREND_HOURS = (1.0, 4.0)
"""A whale's trend plays out within this many hours (uniformly): before a 3 h follow-up, mostly."""
WHALE_EDGES = ((0.35, 0.6, 1.0), (0.4, -0.2, 0.2), (0.25, -1.0, -0.6))
"""Whale wallets by edge, as (share, low, high) with the edge uniform in [low, high]: informed desks whose
buys come before rises, noise traders, and late ones who buy tops and sell bottoms."""
RAYDIUM_AUTHORITY = "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1"
"""Raydium AMM v4's pool authority, owner of every pool's vaults."""


def _pubkey(raw: bytes) -> str:
    return str(Pubkey.from_bytes(raw))


class Keys:
    """Random and derived public keys, with their raw bytes kept for event payloads and wire messages."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.raw: dict[str, bytes] = {}
        self.lamports: dict[str, int] = dict(KNOWN_LAMPORTS)
        """Lamports of accounts no transaction moves (mints, pool state, vault rent...), by address."""
        self._ata: dict[tuple[str, str], str] = {}

    def known(self, address: str) -> str:
        """Register a well-known address (program id, mint) and return it."""
        if address not in self.raw:
            self.raw[address] = b58decode(address)
        return address

    def new(self, lamports: int | None = None) -> str:
        """A fresh random key (of an account holding `lamports`, if given)."""
        raw = self.rng.randbytes(KEY_SIZE)
        address = _pubkey(raw)
        self.raw[address] = raw
        if lamports is not None:
            self.lamports[address] = lamports
        return address

    def new_with_suffix(self, suffix: str) -> str:
        """A random key whose base58 text ends in `suffix` (how Pump.fun mints look)."""
        while True:
            text = self.new()
            candidate = text[: -len(suffix)] + suffix
            try:
                raw = b58decode(candidate)
            except ValueError:
                continue
            if len(raw) == KEY_SIZE:
                self.raw[candidate] = raw
                self.lamports[candidate] = MINT_RENT
                return candidate

    def ata(self, owner: str, mint: str) -> str:
        """The (stable) associated token account of `owner` for `mint`."""
        found = self._ata.get((owner, mint))
        if found is None:
            raw = hashlib.sha256(self.raw[owner] + self.raw[mint] + b"ata").digest()
            found = self._ata[(owner, mint)] = _pubkey(raw)
            self.raw[found] = raw
            self.lamports[found] = TOKEN_ACCOUNT_RENT
        return found


@dataclass(slots=True)
class Curve:
    """A Pump.fun bonding curve's state (raw units: lamports and token base units)."""

    address: str
    vault: str
    creator_vault: str
    virtual_sol: int = CURVE_VIRTUAL_SOL
    virtual_tokens: int = CURVE_VIRTUAL_TOKENS
    real_sol: int = 0
    real_tokens: int = CURVE_REAL_TOKENS

    def buy(self, sol: int) -> tuple[int, int]:
        """Tokens out for `sol` lamports in, and the exact lamports the curve takes for them."""
        tokens = self.virtual_tokens * sol // (self.virtual_sol + sol)
        tokens = min(tokens, self.real_tokens)
        cost = self.virtual_sol * tokens // (self.virtual_tokens - tokens) + 1
        return tokens, cost

    def sell(self, tokens: int) -> int:
        """Lamports out for `tokens` in."""
        return self.virtual_sol * tokens // (self.virtual_tokens + tokens)

    def apply(self, sol_in: int, tokens_out: int) -> None:
        """Move the curve by a trade (negative amounts for a sell)."""
        self.virtual_sol += sol_in
        self.real_sol += sol_in
        self.virtual_tokens -= tokens_out
        self.real_tokens -= tokens_out

    def price_sol(self, decimals: int) -> float:
        """SOL per whole token at the curve's current reserves."""
        return (self.virtual_sol / LAMPORTS_PER_SOL) / (self.virtual_tokens / SCALE[decimals])


@dataclass(slots=True)
class Token:
    """A traded token: mint, decimals, kind and its USD price walk."""

    mint: str
    decimals: int
    kind: str
    price_usd: float
    volatility: float
    updated_s: float
    creator: str = ""
    curve: Curve | None = None


@dataclass(slots=True)
class Pool:
    """A pool of `mint_a` (priced) against `mint_b` (the quote), with its vaults and venue accounts.

    `extra` holds the venue's other accounts (open orders, tick arrays, oracles...), by name.
    """

    venue: str
    address: str
    mint_a: str
    decimals_a: int
    mint_b: str
    decimals_b: int
    vault_a: str
    vault_b: str
    vault_owner: str
    depth_usd: float
    token: Token | None
    extra: dict[str, str] = field(default_factory=dict)
    flag: bool = False
    """Venue-specific orientation: Raydium, whether `mint_a` is the pool's coin; Orca, whether it is mint A;
    Meteora, whether it is the pair's X."""
    compact: bool = False
    """Raydium: whether its swaps omit the target-orders account (17 accounts instead of 18)."""
    fee_bps: int = 0
    bin_step: int = 0
    """Meteora DLMM: the pair's bin step, in basis points."""
    lut: str = ""
    """The address lookup table holding the pool's accounts."""
    lut_index: dict[str, int] = field(default_factory=dict)
    readonly: frozenset[str] = frozenset()
    """The pool's accounts that its swaps only read."""
    reserve_a: int = 0
    reserve_b: int = 0


@dataclass(slots=True)
class Wallet:
    """A trader: its SOL (lamports) and token balances (raw; a mint is present once it has an account).

    `keeps_wsol`: the trader keeps a wSOL account and trades SOL from it, instead of wrapping SOL into a
    temporary account and unwrapping after each trade.
    """

    address: str
    lamports: int
    keeps_wsol: bool = False
    tokens: dict[str, int] = field(default_factory=dict)


def quote_decimals(quote: str) -> int:
    """Decimals of a quote mint (SOL or a dollar stablecoin)."""
    return SOL_DECIMALS if quote == WSOL_MINT else STABLE_DECIMALS


def cumulative(weights: list[float]) -> list[float]:
    """Running sums of `weights`, for weighted draws by bisection."""
    out = []
    total = 0.0
    for weight in weights:
        total += weight
        out.append(total)
    return out


def zipf_weights(count: int) -> list[float]:
    """Activity weights 1/r^s for ranks 1..count."""
    return [1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, count + 1)]


class PoolPicker:
    """Picks a pool deep enough for a trade, by popularity among those deep enough (deepest as fallback)."""

    def __init__(self, pools: list[Pool], popularity: list[float]) -> None:
        order = sorted(range(len(pools)), key=lambda i: -pools[i].depth_usd)
        self.pools = [pools[i] for i in order]
        self.neg_depth = [-p.depth_usd for p in self.pools]
        self.cum = cumulative([popularity[i] for i in order])

    def pick(self, rng: random.Random, usd: float) -> Pool:
        """A pool whose depth is at least `DEPTH_MULTIPLE` times `usd` (the deepest when none is)."""
        count = bisect.bisect_right(self.neg_depth, -usd * DEPTH_MULTIPLE)
        if count == 0:
            return self.pools[0]
        return self.pools[bisect.bisect_left(self.cum, rng.random() * self.cum[count - 1])]


class SolPrice:
    """SOL/USD: a geometric random walk with one step per second of feed time."""

    def __init__(self, rng: random.Random, start_s: int) -> None:
        # Its own stream, so prices do not depend on trades.
        self.rng = random.Random(rng.getrandbits(64))  # noqa: S311 - a seeded simulation, not cryptography
        self.second = start_s
        self.price = SOL_USD_START * math.exp(self.rng.gauss(0.0, 0.05))

    def at(self, second: int) -> float:
        """SOL/USD at a whole second (feed time only moves forward)."""
        gauss = self.rng.gauss
        while self.second < second:
            self.price *= math.exp(gauss(0.0, SOL_VOLATILITY))
            self.second += 1
        return self.price


def _edge(rng: random.Random) -> float:
    """A whale wallet's edge, drawn by `WHALE_EDGES`."""
    draw = rng.random()
    for share, low, high in WHALE_EDGES:
        if draw < share:
            return rng.uniform(low, high)
        draw -= share
    return 0.0  # rounding left a sliver of the draw: a noise trader


class Trend:
    """A token's trend: its log price drifts by `rate` per second from `start_s` until `end_s`, then is
    quiet until the next one begins at `next_s` (exponentially later, `TREND_QUIET_S`), and so on.

    Evaluated lazily, between two prices of the token: `drift` gives the log move over a stretch of feed
    time, drawing the trends that began in it from the market's trend stream.

    Args:
        kind: the token's kind (`major`, `amm` or `pumpswap`).
        rng: the market's trend stream.
        now_s: feed time from which the token is quiet.
    """

    __slots__ = ("end_s", "kind", "next_s", "rate", "rng", "start_s")

    def __init__(self, kind: str, rng: random.Random, now_s: float) -> None:
        self.kind = kind
        self.rng = rng
        self.start_s = self.end_s = now_s
        self.rate = 0.0
        self.next_s = now_s + rng.expovariate(1.0 / TREND_QUIET_S[kind])

    def begin(self, at_s: float, log_move: float, hours: float) -> None:
        """A trend from `at_s` moving the log price by `log_move` over `hours` (it replaces the current one)."""
        duration = hours * SECONDS_PER_HOUR
        self.start_s, self.end_s, self.rate = at_s, at_s + duration, log_move / duration
        self.next_s = self.end_s + self.rng.expovariate(1.0 / TREND_QUIET_S[self.kind])

    def _overlap(self, since_s: float, until_s: float) -> float:
        return self.rate * max(0.0, min(until_s, self.end_s) - max(since_s, self.start_s))

    def drift(self, since_s: float, until_s: float) -> float:
        """The log move of the trends from `since_s` to `until_s` (feed time only moves forward)."""
        move = 0.0
        while self.next_s <= until_s:
            move += self._overlap(since_s, self.next_s)
            since_s = self.next_s
            rng = self.rng
            self.begin(since_s, rng.gauss(0.0, TREND_SIGMA[self.kind]), rng.uniform(*TREND_HOURS))
        return move + self._overlap(since_s, until_s)


class Market:
    """Everything traded in the feed, built from the RNG: tokens, pools, curves and wallets.

    Args:
        rng: the feed's random stream.
        tokens: how many tokens trade.
        wallets: how many wallets trade.
        start_s: Unix seconds of the first block.
    """

    def __init__(self, rng: random.Random, tokens: int, wallets: int, start_s: int) -> None:
        self.rng = rng
        self.keys = Keys(rng)
        for mint in (WSOL_MINT, USDC_MINT, USDT_MINT, RAYDIUM_AUTHORITY):
            self.keys.known(mint)
        self.sol = SolPrice(rng, start_s)
        self.now_s = float(start_s)
        self.tokens: list[Token] = []
        whales = max(1, wallets // WHALE_SHARE)
        self.wallets = [self._wallet(rank < whales) for rank in range(wallets)]
        self._wallet_cum = cumulative(zipf_weights(wallets))
        self.whales = self.wallets[:whales]
        self._whale_cum = cumulative(zipf_weights(whales))
        self.pools: dict[str, list[Pool]] = {v: [] for v in ("raydium", "orca", "meteora", "pumpswap", "pumpfun")}
        self._popularity: dict[int, float] = {}
        self._build_tokens(tokens)
        amm = [p for v in ("raydium", "orca", "meteora") for p in self.pools[v]]
        self.pickers = {
            venue: self._picker(self.pools[venue]) for venue in ("raydium", "orca", "meteora", "pumpswap", "pumpfun")
        }
        self.sol_pools = self._picker([p for p in amm if p.mint_b == WSOL_MINT])
        """AMM pools of a token against SOL: first or last hops of routes."""
        self.dollar_pools = self._picker([p for p in amm if p.mint_a == WSOL_MINT])
        """SOL against USDC or USDT: the middle of routes into and out of dollars."""
        self.sol_usdc_pools = self._picker([p for p in amm if p.mint_a == WSOL_MINT and p.mint_b == USDC_MINT])
        """SOL against USDC: the middle hop of three-hop routes."""
        self.usdc_pools = self._picker([p for p in amm if p.mint_b == USDC_MINT and p.mint_a != WSOL_MINT])
        """Tokens (and USDT) against USDC: the last hop of three-hop routes."""
        self.decimals = {WSOL_MINT: SOL_DECIMALS, USDC_MINT: STABLE_DECIMALS, USDT_MINT: STABLE_DECIMALS}
        self.decimals.update((t.mint, t.decimals) for t in self.tokens)
        # Trends draw from their own stream, taken last: the tokens, pools and wallets above do not depend on it.
        self.moves = random.Random(rng.getrandbits(64))  # noqa: S311 - a seeded simulation, not cryptography
        self.by_mint = {t.mint: t for t in self.tokens}
        self.trends: dict[str, Trend] = {}
        """Each token's trend, by mint, from its first price on (curve tokens have none: trades move them)."""
        self.impact: dict[str, float] = {}
        """Each token's transient impact: the log price its trades added that liquidity has yet to take back."""
        self.edges = {w.address: _edge(self.moves) for w in self.whales}
        """Each whale wallet's edge in [-1, 1]: how its big trades' tokens move afterwards (`WHALE_EDGES`)."""

    # ------------------------------------------------------------------------------------- building

    def _wallet(self, whale: bool) -> Wallet:
        rng = self.rng
        mu, sigma = (WHALE_SOL_MU, WHALE_SOL_SIGMA) if whale else (WALLET_SOL_MU, WALLET_SOL_SIGMA)
        keeps_wsol = rng.random() < (WHALE_KEEPS_WSOL if whale else KEEPS_WSOL)
        return Wallet(self.keys.new(), int(rng.lognormvariate(mu, sigma) * LAMPORTS_PER_SOL), keeps_wsol)

    def _picker(self, pools: list[Pool]) -> PoolPicker:
        return PoolPicker(pools, [self._popularity[id(p)] for p in pools])

    def _build_tokens(self, count: int) -> None:
        rng = self.rng
        keys = self.keys
        majors = max(2, count // 50)  # 2% majors, 30% AMM tokens, 30% graduated, the rest on curves
        amm = max(2, count * 3 // 10)
        graduated = max(2, count * 3 // 10)
        curves = max(2, count - majors - amm - graduated)
        now = self.now_s
        weights = zipf_weights(majors + amm + graduated + curves)
        # The majors' pools are the busiest (as on mainnet): they take the top ranks, the others are shuffled.
        others = weights[majors:]
        rng.shuffle(others)
        rank = iter(weights[:majors] + others)

        # SOL against the dollar, and the dollar stables against each other: the deepest pools.
        for venue, quote, tvl in (
            ("raydium", USDC_MINT, 40e6),
            ("orca", USDC_MINT, 60e6),
            ("meteora", USDC_MINT, 25e6),
            ("raydium", USDT_MINT, 8e6),
            ("orca", USDT_MINT, 12e6),
        ):
            depth = tvl * SOL_POOL_EFFECTIVE_DEPTH
            self._pool(venue, None, (WSOL_MINT, SOL_DECIMALS), (quote, STABLE_DECIMALS), depth=depth, popularity=5.0)
        for venue, depth in (("orca", 15e6), ("meteora", 10e6)):
            self._pool(
                venue, None, (USDT_MINT, STABLE_DECIMALS), (USDC_MINT, STABLE_DECIMALS), depth=depth, popularity=1.0
            )

        for index in range(majors + amm + graduated + curves):
            popularity = next(rank)
            if index < majors:
                kind = "major"
                token = Token(
                    keys.new(MINT_RENT),
                    rng.choice((6, 9)),
                    kind,
                    math.exp(rng.uniform(-3.0, 3.0)),  # $0.05 to $20
                    TOKEN_VOLATILITY[kind],
                    now,
                )
                for venue in ("raydium", "orca", "meteora"):
                    self._pool(
                        venue,
                        token,
                        (token.mint, token.decimals),
                        (WSOL_MINT, SOL_DECIMALS),
                        depth=rng.uniform(2e6, 30e6),  # $2M-$30M deep
                        popularity=popularity,
                    )
                self._pool(
                    rng.choice(("orca", "meteora")),
                    token,
                    (token.mint, token.decimals),
                    (USDC_MINT, STABLE_DECIMALS),
                    depth=rng.uniform(1e6, 10e6),  # $1M-$10M deep
                    popularity=popularity,
                )
            elif index < majors + amm:
                kind = "amm"
                token = Token(
                    keys.new(MINT_RENT),
                    rng.choice((6, 9)),
                    kind,
                    math.exp(rng.uniform(-9.0, 1.5)),  # $0.0001 to $4.50
                    TOKEN_VOLATILITY[kind],
                    now,
                )
                # Half the AMM tokens trade in one pool, the others in two or three.
                venues = rng.sample(("raydium", "orca", "meteora"), rng.choice((1, 1, 2, 3)))
                for venue in venues:
                    quote = USDC_MINT if rng.random() < 0.1 else WSOL_MINT  # ~10% of AMM pools quote in USDC
                    self._pool(
                        venue,
                        token,
                        (token.mint, token.decimals),
                        (quote, quote_decimals(quote)),
                        depth=rng.lognormvariate(math.log(150e3), 1.2),  # median $150k
                        popularity=popularity,
                    )
            elif index < majors + amm + graduated:
                kind = "pumpswap"
                market_cap = rng.lognormvariate(math.log(400e3), 1.5)  # median $400k
                token = Token(
                    keys.new_with_suffix(PUMP_SUFFIX),
                    PUMP_DECIMALS,
                    kind,
                    market_cap / PUMP_SUPPLY,
                    TOKEN_VOLATILITY[kind],
                    now,
                    creator=keys.new(CREATOR_LAMPORTS),
                )
                quote = USDC_MINT if rng.random() < 0.05 else WSOL_MINT  # a few PumpSwap pools quote in USDC
                pool = self._pool(
                    "pumpswap",
                    token,
                    (token.mint, PUMP_DECIMALS),
                    (quote, quote_decimals(quote)),
                    depth=market_cap * rng.uniform(0.05, 0.2),  # pools hold 5-20% of the market cap
                    popularity=popularity,
                )
                pool.extra["creator_vault_authority"] = keys.new(0)
                pool.extra["creator_vault"] = keys.ata(pool.extra["creator_vault_authority"], quote)
            else:
                kind = "curve"
                token = Token(
                    keys.new_with_suffix(PUMP_SUFFIX),
                    PUMP_DECIMALS,
                    kind,
                    0.0,
                    0.0,
                    now,
                    creator=keys.new(CREATOR_LAMPORTS),
                )
                address = keys.new()
                curve = Curve(address, keys.ata(address, token.mint), keys.new(0))
                progress = int(rng.uniform(0.0, 0.6) * CURVE_MAX_REAL_SOL)  # curves up to 60% along
                tokens, cost = curve.buy(progress)
                curve.apply(cost, tokens)
                token.curve = curve
                pool = Pool(
                    "pumpfun",
                    address,
                    token.mint,
                    PUMP_DECIMALS,
                    WSOL_MINT,
                    SOL_DECIMALS,
                    curve.vault,
                    "",
                    address,
                    math.inf,
                    token,
                )
                self._popularity[id(pool)] = popularity
                self.pools["pumpfun"].append(pool)
            self.tokens.append(token)

    def _pool(
        self,
        venue: str,
        token: Token | None,
        side_a: tuple[str, int],
        side_b: tuple[str, int],
        *,
        depth: float,
        popularity: float,
    ) -> Pool:
        """A pool of `side_a` (mint, decimals) against `side_b` on `venue`, with its accounts."""
        (mint_a, decimals_a), (mint_b, decimals_b) = side_a, side_b
        keys = self.keys
        rng = self.rng
        address = keys.new(POOL_LAMPORTS[venue])
        owner = {"raydium": RAYDIUM_AUTHORITY, "orca": address, "meteora": address, "pumpswap": address}[venue]
        vault_a, vault_b = keys.new(TOKEN_ACCOUNT_RENT), keys.new(TOKEN_ACCOUNT_RENT)
        pool = Pool(venue, address, mint_a, decimals_a, mint_b, decimals_b, vault_a, vault_b, owner, depth, token)
        readonly: tuple[str, ...] = ()
        if venue == "raydium":
            pool.flag = rng.random() < 0.7  # most pools list the token as coin, SOL as pc
            pool.compact = rng.random() < 0.3  # newer routers leave out the target orders
            pool.fee_bps = RAYDIUM_FEE_BPS
            for name in (
                "open_orders",
                "target_orders",
                "market",
                "bids",
                "asks",
                "event_queue",
                "market_coin",
                "market_pc",
                "market_signer",
            ):
                pool.extra[name] = keys.new(ACCOUNT_LAMPORTS[name])
            readonly = ("market_signer",)
        elif venue == "orca":
            pool.flag = keys.raw[mint_a] < keys.raw[mint_b]  # Whirlpools order their mints by bytes
            pool.fee_bps = rng.choice(ORCA_FEE_TIERS_BPS)
            for name in ("tick_array_0", "tick_array_1", "tick_array_2", "oracle"):
                pool.extra[name] = keys.new(ACCOUNT_LAMPORTS[name])
            readonly = ("oracle",)
        elif venue == "meteora":
            pool.flag = rng.random() < 0.5  # whether mint_a is the pair's X
            pool.bin_step = rng.choice(DLMM_BIN_STEPS)
            pool.fee_bps = pool.bin_step  # a DLMM pair's base fee is about one bin step
            for name in ("dlmm_oracle", "bin_array_0", "bin_array_1"):
                pool.extra[name.removeprefix("dlmm_")] = keys.new(ACCOUNT_LAMPORTS[name])
        pool.lut = keys.new()
        table = [address, pool.vault_a, pool.vault_b, *pool.extra.values()]
        pool.lut_index = {key: position for position, key in enumerate(table)}
        pool.readonly = frozenset(pool.extra[name] for name in readonly)
        self._popularity[id(pool)] = popularity
        self.pools[venue].append(pool)
        return pool

    # ------------------------------------------------------------------------------------ prices

    def advance(self, now_s: float) -> None:
        """Move feed time forward."""
        self.now_s = now_s

    def sol_usd(self) -> float:
        """SOL/USD now."""
        return self.sol.at(int(self.now_s))

    def usd(self, mint: str, token: Token | None = None) -> float:
        """USD price of one whole unit of `mint` now (`token` given for anything but SOL and stables)."""
        if mint == WSOL_MINT:
            return self.sol_usd()
        if token is None:
            return 1.0
        if token.curve is not None:
            return token.curve.price_sol(token.decimals) * self.sol_usd()
        elapsed = self.now_s - token.updated_s
        if elapsed > 0:
            move = self.rng.gauss(0.0, token.volatility * math.sqrt(elapsed))
            trend = self.trends.get(token.mint)
            if trend is None:
                trend = self.trends[token.mint] = Trend(token.kind, self.moves, token.updated_s)
            move += trend.drift(token.updated_s, self.now_s)
            transient = self.impact.get(token.mint)
            if transient:
                left = transient * IMPACT_DECAY**elapsed
                move -= transient - left
                self.impact[token.mint] = left
            token.price_usd *= math.exp(move)
            token.updated_s = self.now_s
        return token.price_usd

    def whale_traded(self, trader: str, sold: str | None, bought: str | None) -> None:
        """After a big trade of `trader` (a whale wallet, or nothing happens): its tokens start trending.

        The token bought drifts up by the whale's edge times `WHALE_TREND_MOVE` over `WHALE_TREND_HOURS`
        (down for a negative edge), the token sold the other way; SOL, stables and curve tokens do not.

        Args:
            trader: the trading wallet.
            sold: the mint it gave, if any.
            bought: the mint it got, if any.
        """
        edge = self.edges.get(trader)
        if edge is None:
            return
        for mint, direction in ((sold, -1.0), (bought, 1.0)):
            token = self.by_mint.get(mint) if mint is not None else None
            if token is None or token.curve is not None:
                continue
            self.usd(token.mint, token)  # its price and trend brought up to now
            trend = self.trends.get(token.mint)
            if trend is None:
                trend = self.trends[token.mint] = Trend(token.kind, self.moves, self.now_s)
            move = direction * edge * WHALE_TREND_MOVE[token.kind]
            trend.begin(self.now_s, move, self.moves.uniform(*WHALE_TREND_HOURS))

    def anchor(self, pool: Pool) -> None:
        """Set a pool's reserves from its depth and current prices (the arbitrage between our trades)."""
        price_a = self.usd(
            pool.mint_a, pool.token if pool.token is not None and pool.token.mint == pool.mint_a else None
        )
        price_b = self.usd(pool.mint_b)
        half = pool.depth_usd / 2
        pool.reserve_a = max(1, int(half / price_a * 10**pool.decimals_a))
        pool.reserve_b = max(1, int(half / price_b * 10**pool.decimals_b))

    def settle(self, pool: Pool) -> None:
        """After a trade: the pool's token takes the price the trade left (`IMPACT_KEPT` of it for good)."""
        token = pool.token
        if token is None or token.mint != pool.mint_a or pool.reserve_a <= 0:
            return
        price_in_b = (pool.reserve_b / 10**pool.decimals_b) / (pool.reserve_a / 10**pool.decimals_a)
        price = price_in_b * self.usd(pool.mint_b)
        if price > 0 and token.price_usd > 0:
            # The share of the impact that liquidity takes back over the next hour or so (see `usd`).
            jump = math.log(price / token.price_usd) * (1.0 - IMPACT_KEPT)
            self.impact[token.mint] = self.impact.get(token.mint, 0.0) + jump
        token.price_usd = price

    # ----------------------------------------------------------------------------------- choices

    def wallet(self, usd: float) -> Wallet:
        """The trader of a trade worth `usd`: a whale for the big ones, else by activity."""
        rng = self.rng
        if usd >= WHALE_WALLET_USD:
            whale_cum = self._whale_cum
            return self.whales[bisect.bisect_left(whale_cum, rng.random() * whale_cum[-1])]
        cum = self._wallet_cum
        return self.wallets[bisect.bisect_left(cum, rng.random() * cum[-1])]

    def other_wallet(self, not_this: Wallet) -> Wallet:
        """A counterparty for a transfer: any other wallet, uniformly."""
        while True:
            wallet = self.wallets[int(self.rng.random() * len(self.wallets))]
            if wallet is not not_this:
                return wallet
