"""One synthetic transaction per call, shaped like mainnet's for each venue, with what it must decode to.

Every builder decides the trade first (pool, direction, raw amounts from the USD size and the pool's
curve), then records the transaction as the runtime would run it (`TxBuilder`): compute-budget
instructions, the associated token accounts it creates, SOL wrapped into a temporary wSOL account and
unwrapped after, the venue's instruction with the token transfers and events beneath it, an optional Jito
tip. The shapes follow the recorded mainnet corpus:

- Jupiter v6 `route`: one to three hops through Raydium AMM v4, Orca Whirlpool and Meteora DLMM pools,
  each hop followed by Jupiter's `SwapEvent` as a CPI event; pool accounts often come from lookup tables.
- Raydium AMM v4 `swap_base_in`: a `ray_log` line, two token transfers.
- Orca Whirlpool `swap`: two token transfers and a `Traded` event as a `Program data:` log.
- Meteora DLMM `swap`: two `TransferChecked`s and a `Swap` CPI event.
- Pump.fun `buy`/`sell` on a bonding curve: lamports moved by System transfers (buy) or by the program
  (sell), a `TradeEvent` as both a `Program data:` log and a CPI event.
- PumpSwap `buy`/`sell`: four `TransferChecked`s (trade, protocol fee, creator fee) and a
  `BuyEvent`/`SellEvent` with the pool's reserves, as a log and a CPI event.
- Plain SOL and SPL token transfers, sometimes with a memo or an account created for the recipient.

A failed transaction is any of the swaps stopped by a slippage error: Jupiter after its hops ran (as
mainnet's failed routes show), the others at their own instruction. Its balances roll back but the fee.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from quantbot.models import WSOL_MINT, TokenAmount
from quantbot.pricing import USDC_MINT
from quantbot.solana.events import instruction_discriminator
from quantbot.solana.programs import jupiter, meteora_dlmm, orca, pumpfun, pumpswap, raydium_amm, routes
from quantbot.synthetic.chain import (
    ACCOUNT_SIZE_RETURN_LOG,
    ATA_CREATE_IDEMPOTENT,
    ATA_PROGRAM,
    CLOSE_ACCOUNT,
    COMPUTE_BUDGET_PROGRAM,
    CREATE_TOKEN_ACCOUNT,
    GET_ACCOUNT_DATA_SIZE,
    IMMUTABLE_OWNER,
    MEMO_PROGRAM,
    MICRO_LAMPORTS,
    SIGNATURE_FEE,
    SYNC_NATIVE,
    SYSTEM_PROGRAM,
    TOKEN_ACCOUNT_RENT,
    TOKEN_PROGRAM,
    EventPacker,
    TxBuilder,
    b58_constant,
    b64,
    cpi_event_data,
    initialize_account3,
    log_lines,
    system_transfer,
    token_transfer,
    token_transfer_checked,
    u128,
    unit_limit,
    unit_price,
)
from quantbot.synthetic.market import CURVE_MAX_REAL_SOL, LAMPORTS_PER_SOL, RAYDIUM_AUTHORITY, Market, Pool, Wallet

JUPITER = jupiter.PROGRAM_ID
RAYDIUM = raydium_amm.PROGRAM_ID
ORCA = orca.PROGRAM_ID
DLMM = meteora_dlmm.PROGRAM_ID
PUMPFUN = pumpfun.PROGRAM_ID
PUMPSWAP = pumpswap.PROGRAM_ID
VENUE_PROGRAMS = {"raydium": RAYDIUM, "orca": ORCA, "meteora": DLMM}
VENUE_NAMES = {
    "jupiter": jupiter.NAME,
    "raydium": raydium_amm.NAME,
    "orca": orca.NAME,
    "meteora": meteora_dlmm.NAME,
    "pumpfun": pumpfun.NAME,
    "pumpswap": pumpswap.NAME,
}
"""Venue -> the name its decoder reports."""

# Well-known accounts of the programs, as mainnet transactions name them.
JUPITER_EVENT_AUTHORITY = "D8cy77BBepLMngZx6ZukaTff5hCt1HrWyKk3Hnd9oitf"
DLMM_EVENT_AUTHORITY = "D1ZN9Wj1fRSUQfCjhvnu1hqDMT7hzjzBBpi12nVniYD6"
PUMPFUN_GLOBAL = "4wTV1YmiEkRvAtNtsSGPtUrqRYQMe5SKy2uB4Jjaxnjf"
PUMPFUN_EVENT_AUTHORITY = "Ce6TQqeHC9p8KetsN6JsjHK7UTZk7nasjjnr7XxXp9F1"
PUMPFUN_FEE_RECIPIENTS = (
    "CebN5WGQ4jvEPvsVU4EoHEpgzq1VV7AbicfhtW4xC9iM",
    "62qc2CNXwrYqQScmEdiZFFAnJR262PxWEuNQtxfafNgV",
)
PUMPSWAP_GLOBAL_CONFIG = "ADyA8hdefvWN2dbGGWFotbzWxrAvLW83WG6QCVXvJKqw"
PUMPSWAP_EVENT_AUTHORITY = "GS4CU59F31iL7aR2Q8zVS8DRrcRnXX1yjQ66TqNVQnaR"
PUMPSWAP_PROTOCOL_FEE_RECIPIENT = "FWsW1xNtWscwNmKv6wVsU1iTzRN6wmmk3MjxRP5tT7hz"
OPENBOOK_PROGRAM = "srmqPvymJeFKQ4zGQed1GFppgkRHL9kaELCbyksJtPX"
JITO_TIP_ACCOUNTS = (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
)
WELL_KNOWN = (
    JUPITER,
    RAYDIUM,
    ORCA,
    DLMM,
    PUMPFUN,
    PUMPSWAP,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    MEMO_PROGRAM,
    JUPITER_EVENT_AUTHORITY,
    DLMM_EVENT_AUTHORITY,
    PUMPFUN_GLOBAL,
    PUMPFUN_EVENT_AUTHORITY,
    *PUMPFUN_FEE_RECIPIENTS,
    PUMPSWAP_GLOBAL_CONFIG,
    PUMPSWAP_EVENT_AUTHORITY,
    PUMPSWAP_PROTOCOL_FEE_RECIPIENT,
    RAYDIUM_AUTHORITY,
    OPENBOOK_PROGRAM,
    *JITO_TIP_ACCOUNTS,
)

# Instruction data prefixes (Anchor discriminators; Raydium's one-byte tag).
ROUTE = instruction_discriminator("route")
SWAP = instruction_discriminator("swap")
BUY = instruction_discriminator("buy")
SELL = instruction_discriminator("sell")
RAYDIUM_SWAP_BASE_IN = 9
# Jupiter `Swap` enum variants of the route plan (the program's IDL).
JUPITER_VARIANT = {"raydium": 7, "orca": 17, "meteora": 38}

# Events, packed in the decoders' own layouts.
JUPITER_SWAP_EVENT = EventPacker(routes.SWAP_EVENT)
PUMPFUN_TRADE_EVENT = EventPacker(pumpfun.TRADE_EVENT, len(pumpfun.TRADE_EVENT.fields) - 1)
"""Every `TradeEvent` field but the trailing `ix_name` string, which `_ix_name` appends."""
PUMPSWAP_BUY_EVENT = EventPacker(pumpswap.BUY_EVENT)
PUMPSWAP_SELL_EVENT = EventPacker(pumpswap.SELL_EVENT)
ORCA_TRADED = EventPacker(orca.TRADED)
DLMM_SWAP = EventPacker(meteora_dlmm.SWAP)
RAY_LOG_SWAP_BASE_IN = struct.Struct("<B7Q")
"""`ray_log` of a `SwapBaseIn`: log type, then seven u64 (see `raydium_amm.RAY_LOGS`)."""
LOG_SWAP_BASE_IN = raydium_amm.LOG_SWAP_BASE_IN
TRANSFER_LOG = log_lines("Instruction: Transfer")
TRANSFER_CHECKED_LOG = log_lines("Instruction: TransferChecked")
SYNC_NATIVE_LOG = log_lines("Instruction: SyncNative")
CLOSE_LOG = log_lines("Instruction: CloseAccount")
DATA_SIZE_LOG = log_lines("Instruction: GetAccountDataSize")
INIT_ACCOUNT_LOG = log_lines("Instruction: InitializeAccount3")
_U64 = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")

# Fees, in basis points of the amount they are taken from.
BPS = 10_000
ORCA_PROTOCOL_SHARE = 0.13
"""Share of a Whirlpool's fee that goes to the protocol; the rest is the LPs'."""
PUMPFUN_FEE_BPS = 95
PUMPFUN_CREATOR_FEE_BPS = 5
PUMPSWAP_LP_FEE_BPS = 20
PUMPSWAP_PROTOCOL_FEE_BPS = 5
PUMPSWAP_CREATOR_FEE_BPS = 5
SLIPPAGE_BPS = 50
"""Slippage tolerance traders set (0.5%): minimum outputs and maximum inputs are this far off the quote."""
DLMM_PROTOCOL_SHARE = 0.05
"""Share of a DLMM pair's fee that goes to the protocol."""
DLMM_FEE_SCALE = 10**5
"""DLMM reports fee rates with 9 decimals of a unit: a basis point is 10^5."""
FULL_PERCENT = 100
"""A route step takes all of its input (Jupiter's `percent`)."""
ROUTE_ATTEMPTS = 8
"""Draws of a multi-hop route before settling for one hop (a draw fails when its pools do not chain)."""
Q64 = 1 << 64
"""Whirlpool square-root prices are Q64.64 fixed point."""

# Custom error codes the programs fail with when the price moved past the trader's limit.
ERRORS = {
    "jupiter": (
        6001,
        "AnchorError occurred. Error Code: SlippageToleranceExceeded. Error Number: 6001. "
        "Error Message: Slippage tolerance exceeded.",
    ),
    "raydium": (30, "Error: exceeds desired slippage limit"),
    "orca": (
        6036,
        "AnchorError occurred. Error Code: AmountOutBelowMinimum. Error Number: 6036. "
        "Error Message: Amount out below minimum threshold.",
    ),
    "meteora": (
        6003,
        "AnchorError occurred. Error Code: ExceededAmountSlippageTolerance. Error Number: 6003. "
        "Error Message: Exceeded amount slippage tolerance.",
    ),
    "pumpfun": (
        6002,
        "AnchorError thrown in programs/pump/src/lib.rs:745. Error Code: TooMuchSolRequired. "
        "Error Number: 6002. Error Message: slippage: Too much SOL required to buy the given amount "
        "of tokens..",
    ),
    "pumpfun_sell": (
        6003,
        "AnchorError thrown in programs/pump/src/lib.rs:810. Error Code: TooLittleSolReceived. "
        "Error Number: 6003. Error Message: slippage: Too little SOL received to sell the given "
        "amount of tokens.",
    ),
    "pumpswap": (
        6004,
        "AnchorError thrown in programs/pump-amm/src/instructions/buy.rs:173. Error Code: "
        "ExceededSlippage. Error Number: 6004. Error Message: Exceeded slippage.",
    ),
}

# Compute units each program uses itself (its callees counted apart), from mainnet logs.
UNITS_TRANSFER = 4_645
UNITS_TRANSFER_CHECKED = 6_238
UNITS_SYNC_NATIVE = 3_045
UNITS_CLOSE = 2_915
UNITS_DATA_SIZE = 1_569
UNITS_IMMUTABLE_OWNER = 1_405
UNITS_INIT_ACCOUNT = 3_158
UNITS_ATA = 16_183
UNITS_NATIVE = 150
UNITS_CPI_EVENT = 2_003
UNITS_MEMO = 11_000
UNITS_VENUE = {
    "jupiter": 28_000,
    "raydium": 20_000,
    "orca": 38_000,
    "meteora": 45_000,
    "pumpfun": 30_000,
    "pumpswap": 40_000,
}
IMMUTABLE_OWNER_LOGS = log_lines(
    "Instruction: InitializeImmutableOwner", "Please upgrade to SPL Token 2022 for immutable owner support"
)
CREATE_TOKEN_ACCOUNT_TEXT = b58_constant(CREATE_TOKEN_ACCOUNT)
PRIORITY_MU, PRIORITY_SIGMA = math.log(20_000), 1.5
"""Priority fees, micro-lamports per compute unit: lognormal, median 20,000."""
UNIT_LIMITS = (200_000, 300_000, 400_000, 600_000, 1_000_000, 1_400_000)
"""Compute-unit limits traders request: a handful of round numbers."""

MAX_FEE_LAMPORTS = 20_000_000
"""Upper bound on a transaction's fee and tip: kept in hand when topping a wallet up."""
CURVE_ACCOUNT_RENT = 1_461_600
"""Lamports of a bonding curve account besides the SOL it holds."""
PUMPFUN_MAX_USD = 1_000.0
"""Larger trades do not go to a bonding curve (it holds ~85 SOL at most): they go to PumpSwap or Jupiter."""
PUMPSWAP_MAX_USD = 50_000.0
"""Larger trades of graduated tokens are routed through Jupiter."""
HOPS_WEIGHTS = (0.55, 0.35, 0.10)
"""Jupiter routes of one, two and three hops."""
LOOKUP_TABLE_SHARE = 0.6
"""Share of Jupiter routes that load their pools' accounts from address lookup tables."""
LEGACY_SHARE = 0.3
"""Share of Pump.fun and PumpSwap transactions sent as legacy messages (bots still do)."""
TIP_SHARE = 0.25
"""Share of swaps that tip a Jito validator."""
MEMO_SHARE = 0.1
"""Share of SOL transfers that carry a memo."""
NEW_RECIPIENT_SHARE = 0.3
"""Share of transfers that go to an address outside the feed's wallets."""
CHECKED_SHARE = 0.6
"""Share of SPL transfers sent as `TransferChecked` (the rest as plain `Transfer`)."""
BUY_SHARE = 0.55
"""Share of Pump.fun and PumpSwap trades that buy: memecoin flow leans to buying."""
BUDGETED_TRANSFER_SHARE = 0.6
"""Share of plain SOL transfers that set a compute budget (wallets do, scripts often do not)."""
HOLDING_EXTRA_MAX = 3.0
"""A trader found short of a token held it from outside the feed: up to this many times more than it gives."""
TOP_UP_MU, TOP_UP_SIGMA = math.log(1e9), 1.0
"""A wallet found short of SOL was funded outside the feed: lognormal, median 1 SOL (in lamports) on top."""
TIP_MU, TIP_SIGMA = math.log(50_000), 1.2
"""Jito tips in lamports: lognormal, median 50,000."""
FEE_ACCOUNT_START = 5_000 * LAMPORTS_PER_SOL
"""Starting balance of fee recipients' accounts (protocol, creators): they only grow."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a built transaction must decode to (the signature is added when it is rendered)."""

    kind: str
    trader: str
    venue: str
    input: TokenAmount | None
    output: TokenAmount | None
    hop_count: int
    hop_reserves: tuple[tuple[TokenAmount, TokenAmount] | None, ...] = ()
    """Per hop, the pool's reserves after it as `Hop.reserves` must read them (None: its venue's event has none)."""


@dataclass(slots=True)
class Hop:
    """One pool of a trade: pool, direction and raw amounts (in includes the pool's fee)."""

    pool: Pool
    mint_in: str
    decimals_in: int
    mint_out: str
    decimals_out: int
    amount_in: int
    amount_out: int
    fee: int
    reserve_in: int
    reserve_out: int


def _amm_reserves(hop: Hop) -> tuple[TokenAmount, TokenAmount] | None:
    """An AMM hop's pool reserves after it, (input side, output side), where its venue's event reports them:
    a Raydium AMM v4 `ray_log` gives the reserves before the swap, which then take the input and give the
    output (the pool's fee stays in it). Orca's and Meteora DLMM's events carry none."""
    if hop.pool.venue != "raydium":
        return None
    return (
        TokenAmount(hop.mint_in, hop.reserve_in + hop.amount_in, hop.decimals_in),
        TokenAmount(hop.mint_out, hop.reserve_out - hop.amount_out, hop.decimals_out),
    )


def _ceil_bps(amount: int, bps: int) -> int:
    return -(-amount * bps // BPS)


class _Trade:
    """One transaction under construction: the builder, the trader and the trader's token accounts."""

    __slots__ = ("accounts", "keys", "temp_wsol", "tx", "venues", "wallet")

    def __init__(self, venues: Venues, wallet: Wallet, units: int) -> None:
        self.venues = venues
        self.keys = venues.market.keys
        self.wallet = wallet
        self.tx = TxBuilder(wallet.address, units)
        self.tx.set_lamports(wallet.address, wallet.lamports)
        self.tx.w(wallet.address)
        self.accounts: dict[str, str] = {}
        self.temp_wsol: str | None = None

    def account(self, mint: str, decimals: int, give: int = 0) -> str:
        """The trader's token account for `mint`, ready to give `give` raw units.

        SOL goes through a temporary wSOL account (created, funded with `give` and synced here, closed by
        `close`) unless the trader keeps one; a token account the trader lacks is created, or, when it must
        give from it, taken to have existed with enough in it (bought or wrapped outside the feed).
        """
        found = self.accounts.get(mint)
        if found is not None:
            return found
        tx = self.tx
        wallet = self.wallet
        address = self.keys.ata(wallet.address, mint)
        self.accounts[mint] = address
        if mint == WSOL_MINT and not wallet.keeps_wsol:
            self.temp_wsol = address
            self.venues.create_ata(tx, wallet.address, address, WSOL_MINT)
            if give:
                tx.call(SYSTEM_PROGRAM, (wallet.address, address), system_transfer(give), UNITS_NATIVE)
                tx.move_lamports(wallet.address, -give)
                tx.move_lamports(address, give)
                tx.call(TOKEN_PROGRAM, (address,), SYNC_NATIVE, UNITS_SYNC_NATIVE, SYNC_NATIVE_LOG, text="J")
            return address
        held = wallet.tokens.get(mint)
        if held is None and not give:
            self.venues.create_ata(tx, wallet.address, address, mint)
            tx.token(address, mint, wallet.address, decimals=decimals, pre=None, post=0)
            tx.w(address)
            return address
        if held is None or held < give:
            held = give + int(give * self.venues.rng.uniform(0.0, HOLDING_EXTRA_MAX))
            wallet.tokens[mint] = held
        self.venues.hold(tx, address, mint, wallet.address, decimals=decimals, amount=held)
        return address

    def close(self) -> None:
        """Close the temporary wSOL account (its lamports, rent and wSOL, go back to the trader)."""
        temp = self.temp_wsol
        if temp is None:
            return
        tx = self.tx
        owner = self.wallet.address
        tx.call(TOKEN_PROGRAM, (temp, owner, owner), CLOSE_ACCOUNT, UNITS_CLOSE, CLOSE_LOG, text="A")
        entry = tx.lamports[temp]
        tx.move_lamports(owner, entry[1])
        entry[1] = 0

    def shift(self, account: str, delta: int) -> None:
        """Move a token account's balance (and, for wSOL, its lamports) by `delta` after the transaction."""
        balance = self.tx.token_balances.get(account)
        if balance is not None:
            assert balance.post is not None
            balance.post += delta
            if balance.mint == WSOL_MINT:
                self.tx.move_lamports(account, delta)
        elif account == self.temp_wsol:
            self.tx.move_lamports(account, delta)

    def commit(self) -> None:
        """Carry the trader's balances after the transaction into the wallet (only the fee if it failed)."""
        tx = self.tx
        wallet = self.wallet
        if tx.failed_at is not None:
            wallet.lamports -= tx.fee
            return
        wallet.lamports = tx.lamports[wallet.address][1] - tx.fee
        for balance in tx.token_balances.values():
            if balance.owner == wallet.address and balance.post is not None:
                wallet.tokens[balance.mint] = balance.post


class Venues:
    """Builds the feed's transactions against a `Market`.

    Args:
        market: tokens, pools and wallets.
        rng: the feed's random stream (the market's).
    """

    def __init__(self, market: Market, rng: random.Random) -> None:
        self.market = market
        self.rng = rng
        for key in WELL_KNOWN:
            market.keys.known(key)
        self.fee_accounts: dict[str, int] = {}
        self._owner_data: dict[str, bytes] = {}
        self._budgets: dict[tuple[int, int], tuple[int, tuple[bytes, str], tuple[bytes, str]]] = {}

    # --------------------------------------------------------------------------------------- common

    def fund(self, wallet: Wallet, lamports: int) -> None:
        """Make sure the wallet holds `lamports` plus fees (it was funded outside the feed if it did not)."""
        needed = lamports + 3 * TOKEN_ACCOUNT_RENT + MAX_FEE_LAMPORTS
        if wallet.lamports < needed:
            wallet.lamports = needed + int(self.rng.lognormvariate(TOP_UP_MU, TOP_UP_SIGMA))

    def begin(self, wallet: Wallet, units: int) -> _Trade:
        """A new transaction of `wallet` with its compute-budget instructions and priority fee."""
        trade = _Trade(self, wallet, units)
        tx = trade.tx
        rng = self.rng
        # Priority fees are lognormal (median 20k micro-lamports per unit), rounded to two digits as wallets do.
        price = int(float(f"{rng.lognormvariate(PRIORITY_MU, PRIORITY_SIGMA):.2g}"))
        budget = self._budgets.get((units, price))
        if budget is None:
            limit, price_data = unit_limit(units), unit_price(price)
            budget = self._budgets[(units, price)] = (
                SIGNATURE_FEE + -(-units * price // MICRO_LAMPORTS),
                (limit, b58_constant(limit)),
                (price_data, b58_constant(price_data)),
            )
        tx.fee, first, second = budget
        if rng.random() < 0.5:  # wallets put either instruction first
            first, second = second, first
        tx.call(COMPUTE_BUDGET_PROGRAM, (), first[0], UNITS_NATIVE, text=first[1])
        tx.call(COMPUTE_BUDGET_PROGRAM, (), second[0], UNITS_NATIVE, text=second[1])
        return trade

    def end(self, trade: _Trade, tip: bool = True) -> None:
        """Close the temporary wSOL account, tip Jito maybe, and commit the trader's balances."""
        trade.close()
        tx = trade.tx
        rng = self.rng
        if tip and rng.random() < TIP_SHARE:
            account = JITO_TIP_ACCOUNTS[int(rng.random() * len(JITO_TIP_ACCOUNTS))]
            lamports = int(float(f"{rng.lognormvariate(TIP_MU, TIP_SIGMA):.2g}"))
            tx.w(account)
            tx.call(SYSTEM_PROGRAM, (trade.wallet.address, account), system_transfer(lamports), UNITS_NATIVE)
            if tx.failed_at is None:
                tx.move_lamports(trade.wallet.address, -lamports)
                tx.move_lamports(account, lamports, self._fee_account(account, lamports))
        trade.commit()

    def _fee_account(self, account: str, add: int) -> int:
        """Balance before of an account that only collects (fees, tips); it grows by `add`."""
        before = self.fee_accounts.get(account, FEE_ACCOUNT_START)
        self.fee_accounts[account] = before + add
        return before

    def create_ata(self, tx: TxBuilder, payer: str, account: str, mint: str, owner: str | None = None) -> None:
        """An outer `CreateIdempotent` of `account`, the associated token account of `owner` (the payer) for `mint`."""
        owner = owner or payer
        owner_data = self._owner_data.get(owner)
        if owner_data is None:
            owner_data = self._owner_data[owner] = initialize_account3(self.market.keys.raw[owner])
        tx.w(payer, account)
        tx.r(owner, mint, SYSTEM_PROGRAM, TOKEN_PROGRAM, ATA_PROGRAM)
        accounts = (payer, account, owner, mint, SYSTEM_PROGRAM, TOKEN_PROGRAM)
        if not tx.enter(ATA_PROGRAM, accounts, ATA_CREATE_IDEMPOTENT, "2"):
            return
        tx.log("CreateIdempotent")
        tx.call(
            TOKEN_PROGRAM,
            (mint,),
            GET_ACCOUNT_DATA_SIZE,
            UNITS_DATA_SIZE,
            DATA_SIZE_LOG,
            text="84eT",
            before_success=(ACCOUNT_SIZE_RETURN_LOG,),
        )
        tx.call(SYSTEM_PROGRAM, (payer, account), CREATE_TOKEN_ACCOUNT, UNITS_NATIVE, text=CREATE_TOKEN_ACCOUNT_TEXT)
        tx.log("Initialize the associated token account")
        tx.call(TOKEN_PROGRAM, (account,), IMMUTABLE_OWNER, UNITS_IMMUTABLE_OWNER, IMMUTABLE_OWNER_LOGS, text="P")
        tx.call(
            TOKEN_PROGRAM,
            (account, mint),
            owner_data,
            UNITS_INIT_ACCOUNT,
            INIT_ACCOUNT_LOG,
            text=b58_constant(owner_data),
        )
        tx.leave(UNITS_ATA)
        tx.move_lamports(payer, -TOKEN_ACCOUNT_RENT)
        tx.move_lamports(account, TOKEN_ACCOUNT_RENT)

    def hold(self, tx: TxBuilder, account: str, mint: str, owner: str, *, decimals: int, amount: int) -> None:
        """A pool's (or fee collector's) token account holding `amount` before the transaction."""
        tx.token(account, mint, owner, decimals=decimals, pre=amount, post=amount)
        tx.w(account)
        if mint == WSOL_MINT:
            tx.set_lamports(account, TOKEN_ACCOUNT_RENT + amount)

    # ------------------------------------------------------------------------------------ AMM hops

    def quote_hop(self, pool: Pool, mint_in: str, amount_in: int) -> Hop:
        """Price a trade of `amount_in` of `mint_in` against `pool` (its reserves anchored first)."""
        self.market.anchor(pool)
        a_in = mint_in == pool.mint_a
        r_in, r_out = (pool.reserve_a, pool.reserve_b) if a_in else (pool.reserve_b, pool.reserve_a)
        fee = _ceil_bps(amount_in, pool.fee_bps)
        net = amount_in - fee
        out = r_out * net // (r_in + net)
        if a_in:
            return Hop(pool, mint_in, pool.decimals_a, pool.mint_b, pool.decimals_b, amount_in, out, fee, r_in, r_out)
        return Hop(pool, mint_in, pool.decimals_b, pool.mint_a, pool.decimals_a, amount_in, out, fee, r_in, r_out)

    def settle_hop(self, hop: Hop) -> None:
        """After a hop ran: the pool's reserves move by it, and its token takes the price it left."""
        pool = hop.pool
        if hop.mint_in == pool.mint_a:
            pool.reserve_a, pool.reserve_b = hop.reserve_in + hop.amount_in, hop.reserve_out - hop.amount_out
        else:
            pool.reserve_b, pool.reserve_a = hop.reserve_in + hop.amount_in, hop.reserve_out - hop.amount_out
        self.market.settle(pool)

    @staticmethod
    def pool_accounts(pool: Pool, user: str, user_in: str, user_out: str, hop: Hop) -> tuple[str, ...]:
        """The swap instruction's accounts for one hop, in the program's order."""
        extra = pool.extra
        if pool.venue == "raydium":
            coin_vault, pc_vault = (pool.vault_a, pool.vault_b) if pool.flag else (pool.vault_b, pool.vault_a)
            head: tuple[str, ...] = (TOKEN_PROGRAM, pool.address, RAYDIUM_AUTHORITY, extra["open_orders"])
            if not pool.compact:
                head += (extra["target_orders"],)
            return (
                *head,
                coin_vault,
                pc_vault,
                OPENBOOK_PROGRAM,
                extra["market"],
                extra["bids"],
                extra["asks"],
                extra["event_queue"],
                extra["market_coin"],
                extra["market_pc"],
                extra["market_signer"],
                user_in,
                user_out,
                user,
            )
        if pool.venue == "orca":
            input_is_a = (hop.mint_in == pool.mint_a) == pool.flag
            user_a, user_b = (user_in, user_out) if input_is_a else (user_out, user_in)
            vault_a, vault_b = (pool.vault_a, pool.vault_b) if pool.flag else (pool.vault_b, pool.vault_a)
            return (
                TOKEN_PROGRAM,
                user,
                pool.address,
                user_a,
                vault_a,
                user_b,
                vault_b,
                extra["tick_array_0"],
                extra["tick_array_1"],
                extra["tick_array_2"],
                extra["oracle"],
            )
        reserve_x, reserve_y = (pool.vault_a, pool.vault_b) if pool.flag else (pool.vault_b, pool.vault_a)
        mint_x, mint_y = (pool.mint_a, pool.mint_b) if pool.flag else (pool.mint_b, pool.mint_a)
        # `bin_array_bitmap_extension` and `host_fee_in` are optional: the program's own id stands for None.
        return (
            pool.address,
            DLMM,
            reserve_x,
            reserve_y,
            user_in,
            user_out,
            mint_x,
            mint_y,
            extra["oracle"],
            DLMM,
            user,
            TOKEN_PROGRAM,
            TOKEN_PROGRAM,
            DLMM_EVENT_AUTHORITY,
            DLMM,
            extra["bin_array_0"],
            extra["bin_array_1"],
        )

    def declare_pool(self, trade: _Trade, pool: Pool, accounts: Sequence[str], lookup: bool) -> None:
        """Declare a hop's accounts (vault balances included), loading the pool's from its table if `lookup`."""
        tx = trade.tx
        self.hold(tx, pool.vault_a, pool.mint_a, pool.vault_owner, decimals=pool.decimals_a, amount=pool.reserve_a)
        self.hold(tx, pool.vault_b, pool.mint_b, pool.vault_owner, decimals=pool.decimals_b, amount=pool.reserve_b)
        tx.r(VENUE_PROGRAMS[pool.venue], TOKEN_PROGRAM, pool.mint_a, pool.mint_b)
        lut_index = pool.lut_index
        for key in accounts:
            if key in lut_index:
                if lookup:
                    tx.lookup(pool.lut, lut_index[key], key, key not in pool.readonly)
                elif key in pool.readonly:
                    tx.r(key)
                else:
                    tx.w(key)
            elif key not in tx.writable:
                tx.r(key)

    def run_hop(self, trade: _Trade, hop: Hop, accounts: Sequence[str], user_in: str, user_out: str) -> None:
        """Invoke one pool's swap: its data, transfers, event or log, and the balances it moves."""
        tx = trade.tx
        pool = hop.pool
        venue = pool.venue
        user = trade.wallet.address
        raw = self.market.keys.raw
        a_in = hop.mint_in == pool.mint_a
        vault_in, vault_out = (pool.vault_a, pool.vault_b) if a_in else (pool.vault_b, pool.vault_a)
        minimum = hop.amount_out - hop.amount_out * SLIPPAGE_BPS // BPS
        if venue == "raydium":
            if not tx.enter(RAYDIUM, accounts, bytes([RAYDIUM_SWAP_BASE_IN]) + _QQ.pack(hop.amount_in, minimum)):
                return
            # The log reports the reserves before the trade; direction 1 pays pc for coin, 2 coin for pc.
            if a_in == pool.flag:
                pool_coin, pool_pc, direction = hop.reserve_in, hop.reserve_out, 2
            else:
                pool_coin, pool_pc, direction = hop.reserve_out, hop.reserve_in, 1
            source = tx.token_balances.get(user_in)
            user_source = source.pre if source is not None and source.pre is not None else hop.amount_in
            log = RAY_LOG_SWAP_BASE_IN.pack(
                LOG_SWAP_BASE_IN, hop.amount_in, minimum, direction, user_source, pool_coin, pool_pc, hop.amount_out
            )
            tx.log("ray_log: " + b64(log))
            tx.call(
                TOKEN_PROGRAM, (user_in, vault_in, user), token_transfer(hop.amount_in), UNITS_TRANSFER, TRANSFER_LOG
            )
            tx.call(
                TOKEN_PROGRAM,
                (vault_out, user_out, RAYDIUM_AUTHORITY),
                token_transfer(hop.amount_out),
                UNITS_TRANSFER,
                TRANSFER_LOG,
            )
        elif venue == "orca":
            input_is_a = a_in == pool.flag
            sqrt_before, sqrt_after = self._sqrt_prices(hop)
            data = SWAP + _QQ.pack(hop.amount_in, minimum) + sqrt_after.to_bytes(16, "little") + bytes((1, input_is_a))
            if not tx.enter(ORCA, accounts, data):
                return
            tx.log("Instruction: Swap")
            tx.call(
                TOKEN_PROGRAM, (user_in, vault_in, user), token_transfer(hop.amount_in), UNITS_TRANSFER, TRANSFER_LOG
            )
            tx.call(
                TOKEN_PROGRAM,
                (vault_out, user_out, pool.address),
                token_transfer(hop.amount_out),
                UNITS_TRANSFER,
                TRANSFER_LOG,
            )
            protocol_fee = int(hop.fee * ORCA_PROTOCOL_SHARE)
            tx.data_log(
                ORCA_TRADED.pack(
                    {
                        "whirlpool": raw[pool.address],
                        "a_to_b": input_is_a,
                        "pre_sqrt_price": u128(sqrt_before),
                        "post_sqrt_price": u128(sqrt_after),
                        "input_amount": hop.amount_in,
                        "output_amount": hop.amount_out,
                        "input_transfer_fee": 0,
                        "output_transfer_fee": 0,
                        "lp_fee": hop.fee - protocol_fee,
                        "protocol_fee": protocol_fee,
                    }
                )
            )
        else:
            if not tx.enter(DLMM, accounts, SWAP + _QQ.pack(hop.amount_in, minimum)):
                return
            tx.log("Instruction: Swap")
            tx.call(
                TOKEN_PROGRAM,
                (user_in, hop.mint_in, vault_in, user),
                token_transfer_checked(hop.amount_in, hop.decimals_in),
                UNITS_TRANSFER_CHECKED,
                TRANSFER_CHECKED_LOG,
            )
            tx.call(
                TOKEN_PROGRAM,
                (vault_out, hop.mint_out, user_out, pool.address),
                token_transfer_checked(hop.amount_out, hop.decimals_out),
                UNITS_TRANSFER_CHECKED,
                TRANSFER_CHECKED_LOG,
            )
            start_bin, end_bin = self._bins(hop)
            protocol_fee = int(hop.fee * DLMM_PROTOCOL_SHARE)
            event = DLMM_SWAP.pack(
                {
                    "lb_pair": raw[pool.address],
                    "from": raw[user],
                    "start_bin_id": start_bin,
                    "end_bin_id": end_bin,
                    "amount_in": hop.amount_in,
                    "amount_out": hop.amount_out,
                    "swap_for_y": a_in == pool.flag,
                    "fee": hop.fee,
                    "protocol_fee": protocol_fee,
                    "fee_bps": u128(pool.fee_bps * DLMM_FEE_SCALE),
                    "host_fee": 0,
                }
            )
            tx.call(DLMM, (DLMM_EVENT_AUTHORITY,), cpi_event_data(event), UNITS_CPI_EVENT)
        tx.leave(UNITS_VENUE[venue])
        trade.shift(user_in, -hop.amount_in)
        trade.shift(vault_in, hop.amount_in)
        trade.shift(vault_out, -hop.amount_out)
        trade.shift(user_out, hop.amount_out)

    @staticmethod
    def _reserves_ab(hop: Hop) -> tuple[int, int, int, int]:
        """The pool's (reserve_a, reserve_b) before and after a hop."""
        after_in, after_out = hop.reserve_in + hop.amount_in, hop.reserve_out - hop.amount_out
        if hop.mint_in == hop.pool.mint_a:
            return hop.reserve_in, hop.reserve_out, after_in, after_out
        return hop.reserve_out, hop.reserve_in, after_out, after_in

    def _sqrt_prices(self, hop: Hop) -> tuple[int, int]:
        """A Whirlpool's Q64.64 square-root price (its token B per token A, raw) before and after a hop."""
        a0, b0, a1, b1 = self._reserves_ab(hop)
        if hop.pool.flag:
            return int(math.sqrt(b0 / a0) * Q64), int(math.sqrt(b1 / a1) * Q64)
        return int(math.sqrt(a0 / b0) * Q64), int(math.sqrt(a1 / b1) * Q64)

    def _bins(self, hop: Hop) -> tuple[int, int]:
        """A DLMM pair's active bin (price Y per X, raw, in steps of `bin_step` bps) before and after a hop."""
        step = math.log1p(hop.pool.bin_step / BPS)
        a0, b0, a1, b1 = self._reserves_ab(hop)
        before, after = (b0 / a0, b1 / a1) if hop.pool.flag else (a0 / b0, a1 / b1)
        return round(math.log(before) / step), round(math.log(after) / step)

    # ------------------------------------------------------------------------------- direct swaps

    def amm_swap(self, venue: str, usd: float, fail: bool) -> tuple[TxBuilder, Outcome]:
        """A direct swap on one Raydium, Orca or Meteora pool."""
        market = self.market
        rng = self.rng
        pool = market.pickers[venue].pick(rng, usd)
        market.anchor(pool)
        sell_a = rng.random() < 0.5  # either side of the pool, evenly
        mint_in, decimals_in = (pool.mint_a, pool.decimals_a) if sell_a else (pool.mint_b, pool.decimals_b)
        token = pool.token if pool.token is not None and pool.token.mint == mint_in else None
        amount_in = max(1, int(usd / market.usd(mint_in, token) * 10**decimals_in))
        hop = self.quote_hop(pool, mint_in, amount_in)
        wallet = market.wallet(usd)
        self.fund(wallet, amount_in if mint_in == WSOL_MINT else 0)
        trade = self.begin(wallet, rng.choice(UNIT_LIMITS[:3]))
        user_in = trade.account(hop.mint_in, hop.decimals_in, give=hop.amount_in)
        user_out = trade.account(hop.mint_out, hop.decimals_out)
        accounts = self.pool_accounts(pool, wallet.address, user_in, user_out, hop)
        self.declare_pool(trade, pool, accounts, lookup=False)
        name = VENUE_NAMES[venue]
        if fail:
            self._fail_at(
                trade, VENUE_PROGRAMS[venue], accounts, venue, data=SWAP + _QQ.pack(amount_in, hop.amount_out)
            )
            self.end(trade)
            return trade.tx, Outcome("failed", wallet.address, name, None, None, 0)
        self.run_hop(trade, hop, accounts, user_in, user_out)
        self.settle_hop(hop)
        self.end(trade)
        given = TokenAmount(hop.mint_in, hop.amount_in, hop.decimals_in)
        got = TokenAmount(hop.mint_out, hop.amount_out, hop.decimals_out)
        return trade.tx, Outcome("swap", wallet.address, name, given, got, 1, (_amm_reserves(hop),))

    def _fail_at(
        self,
        trade: _Trade,
        program: str,
        accounts: Sequence[str],
        venue: str,
        *,
        data: bytes,
        instruction: str = "Swap",
    ) -> None:
        """The venue's instruction starts, finds the price past the trader's limit, and fails."""
        tx = trade.tx
        code, message = ERRORS[venue]
        if tx.enter(program, accounts, data):
            if venue != "raydium":  # Raydium AMM v4 logs no instruction name
                tx.log("Instruction: " + instruction)
            tx.fail(code, UNITS_VENUE[venue.removesuffix("_sell")] // 2, message)

    # ------------------------------------------------------------------------------------ Jupiter

    def _route_pools(self, usd: float) -> list[tuple[Pool, str]] | None:
        """A route as (pool, input mint) per hop, or None when the drawn pools do not chain."""
        market = self.market
        rng = self.rng
        hops = rng.choices((1, 2, 3), HOPS_WEIGHTS)[0]
        if hops == 1:
            draw = rng.random()
            # 70% token/SOL pools, 20% SOL/dollar, 10% token/USDC.
            picker = market.sol_pools if draw < 0.7 else market.dollar_pools if draw < 0.9 else market.usdc_pools
            pool = picker.pick(rng, usd)
            return [(pool, pool.mint_a if rng.random() < 0.5 else pool.mint_b)]
        first = market.sol_pools.pick(rng, usd)
        if hops == 2:
            # Into or out of dollars 60% of the time, else into another token.
            second = market.dollar_pools.pick(rng, usd) if rng.random() < 0.6 else market.sol_pools.pick(rng, usd)
            path = [first.mint_a, WSOL_MINT, second.mint_b if second.mint_a == WSOL_MINT else second.mint_a]
            pools = [first, second]
        else:
            pools = [first, market.sol_usdc_pools.pick(rng, usd), market.usdc_pools.pick(rng, usd)]
            path = [first.mint_a, WSOL_MINT, USDC_MINT, pools[2].mint_a]
        if len(set(path)) != len(path):
            return None
        if rng.random() < 0.5:  # either direction, evenly
            path.reverse()
            pools.reverse()
        return list(zip(pools, path[:-1], strict=True))

    def jupiter(self, usd: float, fail: bool) -> tuple[TxBuilder, Outcome]:
        """A Jupiter v6 `route` of one to three hops (one `SwapEvent` CPI event per hop)."""
        market = self.market
        rng = self.rng
        plan = None
        for _ in range(ROUTE_ATTEMPTS):
            plan = self._route_pools(usd)
            if plan is not None:
                break
        if plan is None:
            pool = market.sol_pools.pick(rng, usd)
            plan = [(pool, pool.mint_b)]
        first_pool, first_mint = plan[0]
        token = first_pool.token if first_pool.token is not None and first_pool.token.mint == first_mint else None
        decimals = first_pool.decimals_a if first_mint == first_pool.mint_a else first_pool.decimals_b
        amount = max(1, int(usd / market.usd(first_mint, token) * 10**decimals))
        hops: list[Hop] = []
        for pool, mint_in in plan:
            hop = self.quote_hop(pool, mint_in, amount)
            hops.append(hop)
            amount = hop.amount_out
        wallet = market.wallet(usd)
        first, last = hops[0], hops[-1]
        self.fund(wallet, first.amount_in if first.mint_in == WSOL_MINT else 0)
        trade = self.begin(wallet, rng.choice(UNIT_LIMITS[2:]))
        tx = trade.tx
        user = wallet.address
        user_accounts = [trade.account(first.mint_in, first.decimals_in, give=first.amount_in)]
        user_accounts.extend(trade.account(hop.mint_out, hop.decimals_out) for hop in hops)
        lookup = rng.random() < LOOKUP_TABLE_SHARE
        hop_accounts = []
        for position, hop in enumerate(hops):
            accounts = self.pool_accounts(hop.pool, user, user_accounts[position], user_accounts[position + 1], hop)
            self.declare_pool(trade, hop.pool, accounts, lookup)
            hop_accounts.append(accounts)
        tx.r(JUPITER, JUPITER_EVENT_AUTHORITY, last.mint_out)
        # `destination_token_account` and `platform_fee_account` are optional: Jupiter's id stands for None.
        route_accounts = [
            TOKEN_PROGRAM,
            user,
            user_accounts[0],
            user_accounts[-1],
            JUPITER,
            last.mint_out,
            JUPITER,
            JUPITER_EVENT_AUTHORITY,
            JUPITER,
        ]
        steps = bytearray(struct.pack("<I", len(hops)))
        for position, (hop, accounts) in enumerate(zip(hops, hop_accounts, strict=True)):
            route_accounts.append(VENUE_PROGRAMS[hop.pool.venue])
            route_accounts.extend(accounts)
            steps.append(JUPITER_VARIANT[hop.pool.venue])
            if hop.pool.venue == "orca":
                steps.append((hop.mint_in == hop.pool.mint_a) == hop.pool.flag)  # Whirlpool { a_to_b }
            steps += bytes((FULL_PERCENT, position, position + 1))
        minimum = last.amount_out - last.amount_out * SLIPPAGE_BPS // BPS
        data = ROUTE + bytes(steps) + _QQ.pack(first.amount_in, minimum) + struct.pack("<HB", SLIPPAGE_BPS, 0)
        raw = market.keys.raw
        if tx.enter(JUPITER, route_accounts, data):
            tx.log("Instruction: Route")
            for position, (hop, accounts) in enumerate(zip(hops, hop_accounts, strict=True)):
                self.run_hop(trade, hop, accounts, user_accounts[position], user_accounts[position + 1])
                event = JUPITER_SWAP_EVENT.pack(
                    {
                        "amm": raw[VENUE_PROGRAMS[hop.pool.venue]],
                        "input_mint": raw[hop.mint_in],
                        "input_amount": hop.amount_in,
                        "output_mint": raw[hop.mint_out],
                        "output_amount": hop.amount_out,
                    }
                )
                tx.call(JUPITER, (JUPITER_EVENT_AUTHORITY,), cpi_event_data(event), UNITS_CPI_EVENT)
            if fail:
                code, message = ERRORS["jupiter"]
                tx.fail(code, UNITS_VENUE["jupiter"], message)
            else:
                tx.leave(UNITS_VENUE["jupiter"], (f"Program return: {JUPITER} {b64(_U64.pack(last.amount_out))}",))
        self.end(trade)
        name = VENUE_NAMES["jupiter"]
        if fail:
            return tx, Outcome("failed", user, name, None, None, 0)
        for hop in hops:
            self.settle_hop(hop)
        given = TokenAmount(first.mint_in, first.amount_in, first.decimals_in)
        got = TokenAmount(last.mint_out, last.amount_out, last.decimals_out)
        reserves = tuple(_amm_reserves(hop) for hop in hops)
        return tx, Outcome("swap", user, name, given, got, len(hops), reserves)

    # ----------------------------------------------------------------------------------- Pump.fun

    def pumpfun(self, usd: float, fail: bool) -> tuple[TxBuilder, Outcome]:
        """A Pump.fun bonding-curve `buy` or `sell` (`TradeEvent` as a log and a CPI event)."""
        market = self.market
        rng = self.rng
        keys = market.keys
        pool = market.pickers["pumpfun"].pick(rng, usd)
        token = pool.token
        assert token is not None and token.curve is not None
        curve = token.curve
        sol_usd = market.sol_usd()
        is_buy = rng.random() < BUY_SHARE
        sol = max(1, int(usd / sol_usd * LAMPORTS_PER_SOL))
        tokens = max(1, int(usd / market.usd(token.mint, token) * 10**token.decimals))
        if is_buy and curve.real_sol + sol > CURVE_MAX_REAL_SOL:
            is_buy = False
        if not is_buy and curve.sell(tokens) >= curve.real_sol:
            is_buy = True
        if is_buy:
            tokens, sol = curve.buy(sol)
        else:
            sol = curve.sell(tokens)
        fee = _ceil_bps(sol, PUMPFUN_FEE_BPS)
        creator_fee = _ceil_bps(sol, PUMPFUN_CREATOR_FEE_BPS)
        wallet = market.wallet(usd)
        self.fund(wallet, sol + fee + creator_fee if is_buy else 0)
        trade = self.begin(wallet, rng.choice(UNIT_LIMITS[:3]))
        tx = trade.tx
        user = wallet.address
        user_ata = trade.account(token.mint, token.decimals, give=0 if is_buy else tokens)
        fee_recipient = PUMPFUN_FEE_RECIPIENTS[int(rng.random() * len(PUMPFUN_FEE_RECIPIENTS))]
        creator_vault = curve.creator_vault
        self.hold(tx, curve.vault, token.mint, curve.address, decimals=token.decimals, amount=curve.real_tokens)
        tx.w(curve.address, fee_recipient, creator_vault)
        tx.r(PUMPFUN_GLOBAL, token.mint, SYSTEM_PROGRAM, TOKEN_PROGRAM, PUMPFUN_EVENT_AUTHORITY, PUMPFUN)
        tx.set_lamports(curve.address, CURVE_ACCOUNT_RENT + curve.real_sol)
        data = (BUY if is_buy else SELL) + _QQ.pack(
            tokens, sol + sol * SLIPPAGE_BPS // BPS if is_buy else sol - sol * SLIPPAGE_BPS // BPS
        )
        if is_buy:
            accounts: tuple[str, ...] = (
                PUMPFUN_GLOBAL,
                fee_recipient,
                token.mint,
                curve.address,
                curve.vault,
                user_ata,
                user,
                SYSTEM_PROGRAM,
                TOKEN_PROGRAM,
                creator_vault,
                PUMPFUN_EVENT_AUTHORITY,
                PUMPFUN,
            )
        else:
            accounts = (
                PUMPFUN_GLOBAL,
                fee_recipient,
                token.mint,
                curve.address,
                curve.vault,
                user_ata,
                user,
                SYSTEM_PROGRAM,
                creator_vault,
                TOKEN_PROGRAM,
                PUMPFUN_EVENT_AUTHORITY,
                PUMPFUN,
            )
        if fail:
            self._fail_at(
                trade,
                PUMPFUN,
                accounts,
                "pumpfun" if is_buy else "pumpfun_sell",
                data=data,
                instruction="Buy" if is_buy else "Sell",
            )
        elif tx.enter(PUMPFUN, accounts, data):
            tx.log("Instruction: Buy" if is_buy else "Instruction: Sell")
            if is_buy:
                tx.call(
                    TOKEN_PROGRAM,
                    (curve.vault, user_ata, curve.address),
                    token_transfer(tokens),
                    UNITS_TRANSFER,
                    TRANSFER_LOG,
                )
                for to, lamports in ((curve.address, sol), (fee_recipient, fee), (creator_vault, creator_fee)):
                    tx.call(SYSTEM_PROGRAM, (user, to), system_transfer(lamports), UNITS_NATIVE)
                curve.apply(sol, tokens)
                tx.move_lamports(user, -(sol + fee + creator_fee))
                tx.move_lamports(curve.address, sol)
            else:
                tx.call(
                    TOKEN_PROGRAM, (user_ata, curve.vault, user), token_transfer(tokens), UNITS_TRANSFER, TRANSFER_LOG
                )
                curve.apply(-sol, -tokens)
                tx.move_lamports(user, sol - fee - creator_fee)
                tx.move_lamports(curve.address, -sol)
            tx.move_lamports(fee_recipient, fee, self._fee_account(fee_recipient, fee))
            tx.move_lamports(creator_vault, creator_fee, self._fee_account(creator_vault, creator_fee))
            trade.shift(user_ata, tokens if is_buy else -tokens)
            trade.shift(curve.vault, -tokens if is_buy else tokens)
            event = PUMPFUN_TRADE_EVENT.pack(
                {
                    "mint": keys.raw[token.mint],
                    "sol_amount": sol,
                    "token_amount": tokens,
                    "is_buy": is_buy,
                    "user": keys.raw[user],
                    "timestamp": int(market.now_s),
                    "virtual_sol_reserves": curve.virtual_sol,
                    "virtual_token_reserves": curve.virtual_tokens,
                    "real_sol_reserves": curve.real_sol,
                    "real_token_reserves": curve.real_tokens,
                    "fee_recipient": keys.raw[fee_recipient],
                    "fee_basis_points": PUMPFUN_FEE_BPS,
                    "fee": fee,
                    "creator": keys.raw[token.creator],
                    "creator_fee_basis_points": PUMPFUN_CREATOR_FEE_BPS,
                    "creator_fee": creator_fee,
                    "track_volume": False,
                    "total_unclaimed_tokens": 0,
                    "total_claimed_tokens": 0,
                    "current_sol_volume": 0,
                    "last_update_timestamp": 0,
                }
            ) + _ix_name("buy" if is_buy else "sell")
            tx.data_log(event)
            tx.call(PUMPFUN, (PUMPFUN_EVENT_AUTHORITY,), cpi_event_data(event), UNITS_CPI_EVENT)
            tx.leave(UNITS_VENUE["pumpfun"])
        self.end(trade)
        name = VENUE_NAMES["pumpfun"]
        if fail:
            return tx, Outcome("failed", user, name, None, None, 0)
        sol_leg = TokenAmount(WSOL_MINT, sol + fee + creator_fee if is_buy else sol - fee - creator_fee, 9)
        token_leg = TokenAmount(token.mint, tokens, token.decimals)
        given, got = (sol_leg, token_leg) if is_buy else (token_leg, sol_leg)
        # The curve's virtual reserves after the trade, as its `TradeEvent` reports them.
        sol_side = TokenAmount(WSOL_MINT, curve.virtual_sol, 9)
        token_side = TokenAmount(token.mint, curve.virtual_tokens, token.decimals)
        reserves = (sol_side, token_side) if is_buy else (token_side, sol_side)
        return tx, Outcome("swap", user, name, given, got, 1, (reserves,))

    # ----------------------------------------------------------------------------------- PumpSwap

    def pumpswap(self, usd: float, fail: bool) -> tuple[TxBuilder, Outcome]:
        """A PumpSwap `buy` or `sell` (`BuyEvent`/`SellEvent` with reserves, as a log and a CPI event)."""
        market = self.market
        rng = self.rng
        keys = market.keys
        raw = keys.raw
        pool = market.pickers["pumpswap"].pick(rng, usd)
        token = pool.token
        assert token is not None
        market.anchor(pool)
        base_reserve, quote_reserve = pool.reserve_a, pool.reserve_b
        quote, quote_decimals = pool.mint_b, pool.decimals_b
        is_buy = rng.random() < BUY_SHARE
        if is_buy:
            budget = int(usd / market.usd(quote) * 10**quote_decimals)
            net = budget * BPS // (BPS + PUMPSWAP_LP_FEE_BPS + PUMPSWAP_PROTOCOL_FEE_BPS + PUMPSWAP_CREATOR_FEE_BPS)
            base = max(1, base_reserve * net // (quote_reserve + net))
            # A pool that long feeds have bought nearly empty of its token gets sellers instead, as
            # real ones do: a buy of half the pool or more would drain it to zero (or below).
            is_buy = base * 2 <= base_reserve
        if is_buy:
            quote_amount = -(-quote_reserve * base // (base_reserve - base))
        else:
            base = max(1, int(usd / market.usd(token.mint, token) * 10**token.decimals))
            quote_amount = quote_reserve * base // (base_reserve + base)
        lp_fee = _ceil_bps(quote_amount, PUMPSWAP_LP_FEE_BPS)
        protocol_fee = _ceil_bps(quote_amount, PUMPSWAP_PROTOCOL_FEE_BPS)
        creator_fee = _ceil_bps(quote_amount, PUMPSWAP_CREATOR_FEE_BPS)
        if is_buy:
            with_lp = quote_amount + lp_fee
            user_quote = with_lp + protocol_fee + creator_fee
            limit = user_quote + user_quote * SLIPPAGE_BPS // BPS
            pool.reserve_a, pool.reserve_b = base_reserve - base, quote_reserve + with_lp
        else:
            with_lp = quote_amount - lp_fee
            user_quote = with_lp - protocol_fee - creator_fee
            limit = user_quote - user_quote * SLIPPAGE_BPS // BPS
            pool.reserve_a, pool.reserve_b = base_reserve + base, quote_reserve - with_lp
        wallet = market.wallet(usd)
        user = wallet.address
        self.fund(wallet, limit if is_buy and quote == WSOL_MINT else 0)
        trade = self.begin(wallet, rng.choice(UNIT_LIMITS[:3]))
        tx = trade.tx
        user_base = trade.account(token.mint, token.decimals, give=0 if is_buy else base)
        user_quote_account = trade.account(quote, quote_decimals, give=limit if is_buy else 0)
        quote_held = tx.token_balances.get(user_quote_account)
        user_quote_before = limit if quote_held is None or quote_held.pre is None else quote_held.pre
        base_held = tx.token_balances.get(user_base)
        user_base_before = 0 if base_held is None or base_held.pre is None else base_held.pre
        protocol_account = keys.ata(PUMPSWAP_PROTOCOL_FEE_RECIPIENT, quote)
        creator_vault = pool.extra["creator_vault"]
        creator_authority = pool.extra["creator_vault_authority"]
        self.hold(tx, pool.vault_a, token.mint, pool.address, decimals=token.decimals, amount=base_reserve)
        self.hold(tx, pool.vault_b, quote, pool.address, decimals=quote_decimals, amount=quote_reserve)
        for account, owner, add in (
            (protocol_account, PUMPSWAP_PROTOCOL_FEE_RECIPIENT, protocol_fee),
            (creator_vault, creator_authority, creator_fee),
        ):
            before = self._fee_account(account, 0 if fail else add)
            self.hold(tx, account, quote, owner, decimals=quote_decimals, amount=before)
        tx.w(pool.address)
        tx.r(
            PUMPSWAP_GLOBAL_CONFIG,
            token.mint,
            quote,
            PUMPSWAP_PROTOCOL_FEE_RECIPIENT,
            TOKEN_PROGRAM,
            SYSTEM_PROGRAM,
            ATA_PROGRAM,
            PUMPSWAP_EVENT_AUTHORITY,
            PUMPSWAP,
            creator_authority,
        )
        accounts = (
            pool.address,
            user,
            PUMPSWAP_GLOBAL_CONFIG,
            token.mint,
            quote,
            user_base,
            user_quote_account,
            pool.vault_a,
            pool.vault_b,
            PUMPSWAP_PROTOCOL_FEE_RECIPIENT,
            protocol_account,
            TOKEN_PROGRAM,
            TOKEN_PROGRAM,
            SYSTEM_PROGRAM,
            ATA_PROGRAM,
            PUMPSWAP_EVENT_AUTHORITY,
            PUMPSWAP,
            creator_vault,
            creator_authority,
        )
        data = (BUY if is_buy else SELL) + _QQ.pack(base, limit)
        if fail:
            self._fail_at(trade, PUMPSWAP, accounts, "pumpswap", data=data, instruction="Buy" if is_buy else "Sell")
        elif tx.enter(PUMPSWAP, accounts, data):
            tx.log("Instruction: Buy" if is_buy else "Instruction: Sell")
            if is_buy:
                moves = (
                    (pool.vault_a, token.mint, user_base, pool.address, base, token.decimals),
                    (user_quote_account, quote, pool.vault_b, user, with_lp, quote_decimals),
                    (user_quote_account, quote, protocol_account, user, protocol_fee, quote_decimals),
                    (user_quote_account, quote, creator_vault, user, creator_fee, quote_decimals),
                )
            else:
                moves = (
                    (user_base, token.mint, pool.vault_a, user, base, token.decimals),
                    (pool.vault_b, quote, user_quote_account, pool.address, user_quote, quote_decimals),
                    (pool.vault_b, quote, protocol_account, pool.address, protocol_fee, quote_decimals),
                    (pool.vault_b, quote, creator_vault, pool.address, creator_fee, quote_decimals),
                )
            for source, mint, destination, authority, amount, decimals in moves:
                tx.call(
                    TOKEN_PROGRAM,
                    (source, mint, destination, authority),
                    token_transfer_checked(amount, decimals),
                    UNITS_TRANSFER_CHECKED,
                    TRANSFER_CHECKED_LOG,
                )
                trade.shift(source, -amount)
                trade.shift(destination, amount)
            common = {
                "timestamp": int(market.now_s),
                "user_base_token_reserves": user_base_before,
                "user_quote_token_reserves": user_quote_before,
                "pool_base_token_reserves": base_reserve,
                "pool_quote_token_reserves": quote_reserve,
                "lp_fee_basis_points": PUMPSWAP_LP_FEE_BPS,
                "lp_fee": lp_fee,
                "protocol_fee_basis_points": PUMPSWAP_PROTOCOL_FEE_BPS,
                "protocol_fee": protocol_fee,
                "pool": raw[pool.address],
                "user": raw[user],
                "user_base_token_account": raw[user_base],
                "user_quote_token_account": raw[user_quote_account],
                "protocol_fee_recipient": raw[PUMPSWAP_PROTOCOL_FEE_RECIPIENT],
                "protocol_fee_recipient_token_account": raw[protocol_account],
                "coin_creator": raw[token.creator],
                "coin_creator_fee_basis_points": PUMPSWAP_CREATOR_FEE_BPS,
                "coin_creator_fee": creator_fee,
            }
            if is_buy:
                event = PUMPSWAP_BUY_EVENT.pack(
                    {
                        **common,
                        "base_amount_out": base,
                        "max_quote_amount_in": limit,
                        "quote_amount_in": quote_amount,
                        "quote_amount_in_with_lp_fee": with_lp,
                        "user_quote_amount_in": user_quote,
                        "track_volume": False,
                        "total_unclaimed_tokens": 0,
                        "total_claimed_tokens": 0,
                        "current_sol_volume": 0,
                        "last_update_timestamp": 0,
                    }
                )
            else:
                event = PUMPSWAP_SELL_EVENT.pack(
                    {
                        **common,
                        "base_amount_in": base,
                        "min_quote_amount_out": limit,
                        "quote_amount_out": quote_amount,
                        "quote_amount_out_without_lp_fee": with_lp,
                        "user_quote_amount_out": user_quote,
                    }
                )
            tx.data_log(event)
            tx.call(PUMPSWAP, (PUMPSWAP_EVENT_AUTHORITY,), cpi_event_data(event), UNITS_CPI_EVENT)
            tx.leave(UNITS_VENUE["pumpswap"])
            market.settle(pool)
        self.end(trade)
        name = VENUE_NAMES["pumpswap"]
        if fail:
            return tx, Outcome("failed", user, name, None, None, 0)
        base_leg = TokenAmount(token.mint, base, token.decimals)
        quote_leg = TokenAmount(quote, user_quote, quote_decimals)
        given, got = (quote_leg, base_leg) if is_buy else (base_leg, quote_leg)
        # The pool's reserves after the trade (the event reports those before it).
        base_side = TokenAmount(token.mint, pool.reserve_a, token.decimals)
        quote_side = TokenAmount(quote, pool.reserve_b, quote_decimals)
        reserves = (quote_side, base_side) if is_buy else (base_side, quote_side)
        return tx, Outcome("swap", user, name, given, got, 1, (reserves,))

    # ---------------------------------------------------------------------------------- transfers

    def transfer(self, usd: float) -> tuple[TxBuilder, Outcome]:
        """A plain SOL transfer (sometimes with a memo) or an SPL token transfer."""
        market = self.market
        rng = self.rng
        wallet = market.wallet(usd)
        if rng.random() < NEW_RECIPIENT_SHARE:
            recipient, known = market.keys.new(), None
        else:
            known = market.other_wallet(wallet)
            recipient = known.address
        held = [(mint, amount) for mint, amount in wallet.tokens.items() if amount > 0 and mint != WSOL_MINT]
        if held and rng.random() < 0.4:  # two in five transfers move a token the sender holds
            return self._token_transfer(wallet, recipient, known, held)
        lamports = max(1, int(usd / market.sol_usd() * LAMPORTS_PER_SOL))
        self.fund(wallet, lamports)
        budgeted = rng.random() < BUDGETED_TRANSFER_SHARE
        trade = self.begin(wallet, UNIT_LIMITS[0]) if budgeted else _Trade(self, wallet, UNIT_LIMITS[0])
        tx = trade.tx
        tx.w(recipient)
        tx.r(SYSTEM_PROGRAM)
        tx.set_lamports(recipient, known.lamports if known is not None else 0)
        tx.call(SYSTEM_PROGRAM, (wallet.address, recipient), system_transfer(lamports), UNITS_NATIVE)
        tx.move_lamports(wallet.address, -lamports)
        tx.move_lamports(recipient, lamports)
        if known is not None:
            known.lamports += lamports
        if rng.random() < MEMO_SHARE:
            memo = f"{rng.choice(('invoice', 'payout', 'gm', 'ref', 'order'))} #{rng.randrange(1_000_000)}"
            tx.r(MEMO_PROGRAM)
            tx.call(MEMO_PROGRAM, (), memo.encode(), UNITS_MEMO, log_lines(f'Memo (len {len(memo)}): "{memo}"'))
        self.end(trade, tip=False)
        return tx, Outcome("transfer", wallet.address, "system", TokenAmount(WSOL_MINT, lamports, 9), None, 0)

    def _token_transfer(
        self, wallet: Wallet, recipient: str, known: Wallet | None, held: list[tuple[str, int]]
    ) -> tuple[TxBuilder, Outcome]:
        market = self.market
        rng = self.rng
        mint, amount_held = held[int(rng.random() * len(held))]
        decimals = market.decimals[mint]
        amount = max(1, int(amount_held * rng.uniform(0.05, 1.0)))  # from 5% to all of the balance
        self.fund(wallet, 0)
        trade = self.begin(wallet, UNIT_LIMITS[0])
        tx = trade.tx
        source = trade.account(mint, decimals, give=amount)
        destination = market.keys.ata(recipient, mint)
        if known is not None and mint in known.tokens:
            self.hold(tx, destination, mint, recipient, decimals=decimals, amount=known.tokens[mint])
        else:
            self.create_ata(tx, wallet.address, destination, mint, owner=recipient)
            tx.token(destination, mint, recipient, decimals=decimals, pre=None, post=0)
        tx.r(TOKEN_PROGRAM, mint)
        if rng.random() < CHECKED_SHARE:
            tx.call(
                TOKEN_PROGRAM,
                (source, mint, destination, wallet.address),
                token_transfer_checked(amount, decimals),
                UNITS_TRANSFER_CHECKED,
                TRANSFER_CHECKED_LOG,
            )
        else:
            tx.call(
                TOKEN_PROGRAM,
                (source, destination, wallet.address),
                token_transfer(amount),
                UNITS_TRANSFER,
                TRANSFER_LOG,
            )
        trade.shift(source, -amount)
        trade.shift(destination, amount)
        if known is not None:
            known.tokens[mint] = known.tokens.get(mint, 0) + amount
        self.end(trade, tip=False)
        return tx, Outcome("transfer", wallet.address, "spl_token", TokenAmount(mint, amount, decimals), None, 0)


def _ix_name(name: str) -> bytes:
    """A Borsh string (u32 length + UTF-8), as `TradeEvent` ends."""
    encoded = name.encode()
    return struct.pack("<I", len(encoded)) + encoded
