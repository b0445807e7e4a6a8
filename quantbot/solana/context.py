"""What program decoders share: the per-transaction `Context`, `Invocation`s, transfers and builders.

A program decoder receives one `Invocation` (an instruction of its program that no other known program
called, with the inner instructions it ran and the events they emitted) and the transaction's `Context`
(token accounts, balance deltas, decimals), and returns the activities it recognises, or None for "not
mine". Balance-derived facts (deltas, token-account owners, transfers) are computed lazily, once per
transaction, because most event-derived trades never need them.

A program that publishes events declares one handler per event name (`EventHandler`) and hands the
table to `event_activities`; `swap_handler` and `pool_create_handler` build the common ones.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from quantbot.models import WSOL_MINT, Activity, ActivityKind, Hop, InstructionIndex, TokenAmount
from quantbot.solana.codec import pubkey_str
from quantbot.solana.events import Event, LogTwins, inner_program_ids
from quantbot.solana.transaction import Instruction, TokenBalance, Transaction, program_ids_of, stack_heights_of

SYSTEM_PROGRAM = "11111111111111111111111111111111"
# Program ids, not secrets (bandit's S105 matches "token" in the names).
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # noqa: S105
ASSOCIATED_TOKEN_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # noqa: S105
TOKEN_PROGRAMS = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
WSOL_DECIMALS = 9

# System program instruction tags (u32 LE) and SPL Token instruction tags (u8), from the programs' sources.
_SYSTEM_TRANSFER = 2
_SYSTEM_TRANSFER_WITH_SEED = 11
_TOKEN_INITIALIZE_ACCOUNT = 1
_TOKEN_TRANSFER = 3
_TOKEN_TRANSFER_CHECKED = 12
_TOKEN_INITIALIZE_ACCOUNT2 = 16
_TOKEN_INITIALIZE_ACCOUNT3 = 18
# Accounts each instruction names at least: transfer [from, to]; transfer_with_seed [from, base, to];
# token transfer [source, destination, authority]; transfer_checked [source, mint, destination,
# authority]; initialize_account [account, mint, owner, rent]; initialize_account2/3 [account, mint, ...].
_SYSTEM_TRANSFER_ACCOUNTS = 2
_SYSTEM_TRANSFER_WITH_SEED_ACCOUNTS = 3
_TOKEN_TRANSFER_ACCOUNTS = 3
_TOKEN_TRANSFER_CHECKED_ACCOUNTS = 4
_TOKEN_INITIALIZE_ACCOUNT_ACCOUNTS = 3
_TOKEN_INIT_MIN_ACCOUNTS = 2
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U32_U64 = struct.Struct("<IQ")
_PUBKEY_SIZE = 32
_OWNER = TokenBalance._fields.index("owner")
"""Position of the owner in a `TokenBalance` (indexing a tuple is cheaper than a named field)."""
_MINT_AND_DECIMALS = operator.itemgetter(TokenBalance._fields.index("mint"), TokenBalance._fields.index("decimals"))
"""(mint, decimals) of a `TokenBalance`."""
_new_tuple = tuple.__new__
"""`tuple.__new__`, to build `TokenAccount`s without the named tuple's Python-level constructor."""


class TokenAccount(NamedTuple):
    """A token account's mint, decimals and owner, from balances or from its initialisation."""

    mint: str
    decimals: int | None
    owner: str | None


class Transfer(NamedTuple):
    """A lamport or token transfer: `mint` is WSOL_MINT for lamports, None when unknown."""

    program_id: str
    source: str
    destination: str
    authority: str
    amount: int
    mint: str | None
    outer: int
    inner: int | None


@dataclass(slots=True)
class Invocation:
    """An instruction of a known program and the inner instructions it ran (`inner + 1 .. end`).

    `inner` is None when the invocation is the outer instruction itself; `end` is the last inner index
    beneath it (-1 when it ran none).
    """

    program_id: str
    outer: int
    inner: int | None
    instruction: Instruction
    end: int
    events: list[Event] = field(default_factory=list)

    @property
    def start(self) -> int:
        """Inner position of the invocation itself (-1 for an outer instruction)."""
        return -1 if self.inner is None else self.inner

    def covers(self, position: int) -> bool:
        """Whether an inner position lies inside this invocation (itself included)."""
        return self.start <= position <= self.end


class Context:
    """Per-transaction facts shared by the decoders, computed on first use."""

    __slots__ = (
        "_accounts",
        "_beneath",
        "_decimals",
        "_deltas",
        "_init_accounts",
        "inner_program_ids",
        "log_events",
        "log_twins",
        "outer_program_ids",
        "tx",
    )

    def __init__(self, tx: Transaction, beneath: Callable[[Context, Invocation], list[Activity]] | None = None) -> None:
        self.tx = tx
        self.log_events: list[Event] | None = None
        """The transaction's log events, once some invocation needed them."""
        self.log_twins: LogTwins | None = None
        """Log copies of dual-published CPI events, once some invocation looked for one."""
        # Takes the context as an argument rather than closing over it: a closure stored here would be a
        # reference cycle, keeping every transaction's objects alive until the cyclic GC found them.
        self._beneath: Callable[[Context, Invocation], list[Activity]] = beneath or _no_nested
        self._accounts: dict[str, TokenAccount] | None = None
        self._decimals: dict[str, int | None] | None = None
        self._init_accounts: dict[str, TokenAccount] | None = None
        self._deltas: dict[str, dict[str, int]] = {}
        self.outer_program_ids: list[str] = program_ids_of(tx.instructions)
        """The program id of each outer instruction."""
        self.inner_program_ids: list[list[str]] = inner_program_ids(tx)
        """Per outer instruction, the program ids of its inner instructions: read once here, then scanned
        by every step (which programs ran, invocations, events, logs) as plain lists."""

    @property
    def token_accounts(self) -> dict[str, TokenAccount]:
        """Token accounts named in the pre/post token balances, by address."""
        accounts = self._accounts
        if accounts is None:
            tx = self.tx
            # Unpacking the balances and `tuple.__new__` skip the named tuples' Python-level accessors and
            # constructor (once per balance entry); a post balance overrides the pre one of its account.
            accounts = {
                account: _new_tuple(TokenAccount, (mint, decimals, owner))
                for balances in (tx.pre_token_balances, tx.post_token_balances)
                for _, account, mint, owner, _, decimals in balances
            }
            self._accounts = accounts
        return accounts

    def token_account(self, address: str) -> TokenAccount | None:
        """Mint and owner of a token account, from balances or, failing that, its initialisation here."""
        found = self.token_accounts.get(address)
        if found is None:
            if self._init_accounts is None:
                self._init_accounts = _initialised_accounts(self.tx)
            found = self._init_accounts.get(address)
        return found

    def mint_of(self, address: str) -> str | None:
        """The mint of a token account, if known."""
        account = self.token_account(address)
        return account.mint if account is not None else None

    def decimals(self, mint: str) -> int | None:
        """Decimals of a mint, as the token balances report them (9 for wSOL)."""
        table = self._decimals
        if table is None:
            tx = self.tx
            table = dict(map(_MINT_AND_DECIMALS, tx.pre_token_balances))
            table.update(map(_MINT_AND_DECIMALS, tx.post_token_balances))
            table[WSOL_MINT] = WSOL_DECIMALS
            self._decimals = table
        return table.get(mint)

    def amount(self, mint: str, raw: int) -> TokenAmount:
        """A `TokenAmount` with the mint's decimals filled in where known."""
        return TokenAmount(mint, raw, self.decimals(mint))

    def deltas(self, owner: str) -> dict[str, int]:
        """The owner's exact net raw balance change per mint over the whole transaction.

        Native SOL and wSOL are one entry under WSOL_MINT; the fee is added back for the fee payer;
        zero changes are omitted.
        """
        cached = self._deltas.get(owner)
        if cached is not None:
            return cached
        tx = self.tx
        out: dict[str, int] = {}
        # Most balances are other owners' (pools, fees): pick the owner's first, by tuple index (cheaper
        # than the named tuple's attribute access, once per balance).
        for _, _, mint, _, amount, _ in [b for b in tx.pre_token_balances if b[_OWNER] == owner]:
            out[mint] = out.get(mint, 0) - amount
        for _, _, mint, _, amount, _ in [b for b in tx.post_token_balances if b[_OWNER] == owner]:
            out[mint] = out.get(mint, 0) + amount
        try:
            index = tx.account_keys.index(owner)
        except ValueError:
            index = -1
        if 0 <= index < len(tx.pre_balances) and index < len(tx.post_balances):
            lamports = tx.post_balances[index] - tx.pre_balances[index]
            if index == 0:
                lamports += tx.fee
            out[WSOL_MINT] = out.get(WSOL_MINT, 0) + lamports
        result = {mint: delta for mint, delta in out.items() if delta}
        self._deltas[owner] = result
        return result

    def trader(self, user: str | None = None) -> str:
        """The trader: the event's user when it signed the transaction, else the fee payer."""
        if user is not None and user in self.tx.signers:
            return user
        return self.tx.fee_payer

    def heights(self, outer: int) -> list[int | None]:
        """The stack heights of outer instruction `outer`'s inner instructions."""
        return stack_heights_of(self.tx.inner[outer])

    def nested(self, inv: Invocation) -> list[Activity]:
        """Activities of the known programs an invocation called (what `beneath` decodes; none by default)."""
        return self._beneath(self, inv)

    def inner_instructions(self, inv: Invocation) -> Iterator[tuple[int, Instruction]]:
        """The inner instructions an invocation ran, with their inner indexes."""
        inner = self.tx.inner[inv.outer]
        for index in range(inv.start + 1, inv.end + 1):
            yield index, inner[index]

    def instruction_at(self, outer: int, inner: int | None) -> Instruction | None:
        """The instruction at a position (None: out of range)."""
        if inner is None or inner < 0:
            return self.tx.instructions[outer] if 0 <= outer < len(self.tx.instructions) else None
        inner_list = self.tx.inner[outer]
        return inner_list[inner] if inner < len(inner_list) else None

    def emitter_of(self, event: Event) -> Instruction | None:
        """The program instruction that emitted an event, if known."""
        if event.emitter is not None and event.emitter < -1:
            return None
        return self.instruction_at(event.outer, event.emitter)

    def transfers(self, inv: Invocation | None = None) -> list[Transfer]:
        """Lamport and token transfers inside an invocation (or, with None, the whole transaction)."""
        out: list[Transfer] = []
        tx = self.tx
        if inv is None:
            for outer, ix in enumerate(tx.instructions):
                _append_transfer(self, ix, outer, None, out)
                for index, inner_ix in enumerate(tx.inner[outer]):
                    _append_transfer(self, inner_ix, outer, index, out)
            return out
        if inv.inner is None:
            _append_transfer(self, inv.instruction, inv.outer, None, out)
        for index, ix in self.inner_instructions(inv):
            _append_transfer(self, ix, inv.outer, index, out)
        return out


def _no_nested(ctx: Context, inv: Invocation) -> list[Activity]:
    """Default for `Context.nested`: decode nothing beneath an invocation."""
    return []


def _append_transfer(ctx: Context, ix: Instruction, outer: int, inner: int | None, out: list[Transfer]) -> None:
    transfer = parse_transfer(ctx, ix, outer, inner)
    if transfer is not None:
        out.append(transfer)


def parse_transfer(ctx: Context, ix: Instruction, outer: int, inner: int | None) -> Transfer | None:
    """A System or SPL Token transfer instruction as a `Transfer` (raw or `jsonParsed`), else None."""
    pid = ix.program_id
    if pid == SYSTEM_PROGRAM:
        return _system_transfer(ix, outer, inner)
    if pid in TOKEN_PROGRAMS:
        return _token_transfer(ctx, ix, outer, inner)
    return None


def _system_transfer(ix: Instruction, outer: int, inner: int | None) -> Transfer | None:
    parsed = ix.parsed
    if parsed is not None:
        info = parsed.get("info")
        if parsed.get("type") not in ("transfer", "transferWithSeed") or not isinstance(info, dict):
            return None
        try:
            source, destination = info["source"], info["destination"]
            amount = int(info["lamports"])
        except (KeyError, TypeError, ValueError):
            return None
        return Transfer(SYSTEM_PROGRAM, source, destination, source, amount, WSOL_MINT, outer, inner)
    data = ix.data
    if len(data) < _U32_U64.size:
        return None
    tag, lamports = _U32_U64.unpack_from(data)
    accounts = ix.accounts
    if tag == _SYSTEM_TRANSFER and len(accounts) >= _SYSTEM_TRANSFER_ACCOUNTS:
        return Transfer(SYSTEM_PROGRAM, accounts[0], accounts[1], accounts[0], lamports, WSOL_MINT, outer, inner)
    if tag == _SYSTEM_TRANSFER_WITH_SEED and len(accounts) >= _SYSTEM_TRANSFER_WITH_SEED_ACCOUNTS:
        return Transfer(SYSTEM_PROGRAM, accounts[0], accounts[2], accounts[1], lamports, WSOL_MINT, outer, inner)
    return None


def _token_transfer(ctx: Context, ix: Instruction, outer: int, inner: int | None) -> Transfer | None:
    pid = ix.program_id
    parsed = ix.parsed
    if parsed is not None:
        info = parsed.get("info")
        kind = parsed.get("type")
        if kind not in ("transfer", "transferChecked") or not isinstance(info, dict):
            return None
        try:
            source, destination = info["source"], info["destination"]
            authority = info.get("authority") or info.get("multisigAuthority") or ""
            if kind == "transfer":
                amount = int(info["amount"])
                mint = ctx.mint_of(source) or ctx.mint_of(destination)
            else:
                amount = int(info["tokenAmount"]["amount"])
                mint = info.get("mint")
        except (KeyError, TypeError, ValueError):
            return None
        return Transfer(pid, source, destination, authority, amount, mint, outer, inner)
    data = ix.data
    accounts = ix.accounts
    if len(data) < 1 + _U64.size:
        return None
    tag = data[0]
    if tag == _TOKEN_TRANSFER and len(accounts) >= _TOKEN_TRANSFER_ACCOUNTS:
        (amount,) = _U64.unpack_from(data, 1)
        mint = ctx.mint_of(accounts[0]) or ctx.mint_of(accounts[1])
        return Transfer(pid, accounts[0], accounts[1], accounts[2], amount, mint, outer, inner)
    if tag == _TOKEN_TRANSFER_CHECKED and len(accounts) >= _TOKEN_TRANSFER_CHECKED_ACCOUNTS:
        (amount,) = _U64.unpack_from(data, 1)
        return Transfer(pid, accounts[0], accounts[2], accounts[3], amount, accounts[1], outer, inner)
    return None


def _initialised_accounts(tx: Transaction) -> dict[str, TokenAccount]:
    """Token accounts created in this transaction (and maybe closed again), from their initialisation."""
    found: dict[str, TokenAccount] = {}
    for outer, ix in enumerate(tx.instructions):
        for candidate in [ix, *tx.inner[outer]]:
            pid = candidate.program_id
            if pid in TOKEN_PROGRAMS:
                _token_init(candidate, found)
            elif pid == ASSOCIATED_TOKEN_PROGRAM:
                _ata_create(candidate, found)
    return found


def _token_init(ix: Instruction, found: dict[str, TokenAccount]) -> None:
    parsed = ix.parsed
    if parsed is not None:
        info = parsed.get("info")
        kind = parsed.get("type")
        if isinstance(info, dict) and isinstance(kind, str) and kind.startswith("initializeAccount"):
            account, mint, owner = info.get("account"), info.get("mint"), info.get("owner")
            if isinstance(account, str) and isinstance(mint, str):
                found[account] = TokenAccount(mint, None, owner if isinstance(owner, str) else None)
        return
    data = ix.data
    accounts = ix.accounts
    if not data or len(accounts) < _TOKEN_INIT_MIN_ACCOUNTS:
        return
    tag = data[0]
    if tag == _TOKEN_INITIALIZE_ACCOUNT and len(accounts) >= _TOKEN_INITIALIZE_ACCOUNT_ACCOUNTS:
        found[accounts[0]] = TokenAccount(accounts[1], None, accounts[2])
    elif tag in (_TOKEN_INITIALIZE_ACCOUNT2, _TOKEN_INITIALIZE_ACCOUNT3) and len(data) >= 1 + _PUBKEY_SIZE:
        found[accounts[0]] = TokenAccount(accounts[1], None, pubkey_str(data[1 : 1 + _PUBKEY_SIZE]))


# Associated Token Account `Create`/`CreateIdempotent` accounts: payer, ata, wallet, mint, ...
_ATA_ACCOUNT, _ATA_WALLET, _ATA_MINT = 1, 2, 3


def _ata_create(ix: Instruction, found: dict[str, TokenAccount]) -> None:
    parsed = ix.parsed
    if parsed is not None:
        info = parsed.get("info")
        if isinstance(info, dict):
            account, mint, wallet = info.get("account"), info.get("mint"), info.get("wallet")
            if isinstance(account, str) and isinstance(mint, str):
                found.setdefault(account, TokenAccount(mint, None, wallet if isinstance(wallet, str) else None))
        return
    accounts = ix.accounts
    if len(accounts) > _ATA_MINT:
        found.setdefault(accounts[_ATA_ACCOUNT], TokenAccount(accounts[_ATA_MINT], None, accounts[_ATA_WALLET]))


def account(ix: Instruction | None, position: int) -> str | None:
    """The instruction's account at `position`, or None when absent."""
    return None if ix is None else ix.account(position)


Position = tuple[int, int | None]
"""(outer instruction, inner index or None): where an activity's event or instruction sits."""


def activity(
    ctx: Context,
    kind: ActivityKind,
    at: Position,
    trader: str,
    venue: str,
    *,
    given: TokenAmount | None = None,
    got: TokenAmount | None = None,
    hops: tuple[Hop, ...] = (),
) -> Activity:
    """Build an `Activity` of this transaction at `at`, with the trader's deltas filled in.

    `given` is what left the trader, `got` what came back (see `Activity`). Activities of one trader
    share one (never mutated) deltas mapping.
    """
    tx = ctx.tx
    # Positional, in `Activity`'s field order: this runs once per activity on the hot path.
    return Activity(
        tx.signature,
        tx.slot,
        tx.block_time,
        kind,
        InstructionIndex(at[0], at[1]),
        trader,
        venue,
        given,
        got,
        hops,
        ctx.deltas(trader),
    )


def hop_swap(ctx: Context, at: Position, trader: str, venue: str, hop: Hop) -> Activity:
    """A swap through one pool, which gives and gets what the hop does."""
    return activity(ctx, ActivityKind.SWAP, at, trader, venue, given=hop.input, got=hop.output, hops=(hop,))


ReservesReader = Callable[[Event], tuple[int, int] | None]
"""Reads a pool's swap event into the pool's raw reserves after that swap, (input side, output side); None for
another event, or one whose numbers cannot be a pool's (each program's `reserves_after`)."""


def hop_reserves(
    given: TokenAmount, got: TokenAmount, raw: tuple[int, int] | None
) -> tuple[TokenAmount, TokenAmount] | None:
    """`Hop.reserves` of a hop from `given` to `got` (its legs: their mints and decimals), from the raw amounts
    a `ReservesReader` read."""
    if raw is None:
        return None
    return TokenAmount(given.mint, raw[0], given.decimals), TokenAmount(got.mint, raw[1], got.decimals)


EventHandler = Callable[[Event, Context], Activity | None]
"""Reads one named event of a program into an activity; None when the event's instruction lacks what it
needs (an account the mints are read from, say)."""

HopReader = Callable[[Event, Instruction | None, Context], Hop | None]
"""Reads a pool's swap event, and the instruction that emitted it, into the hop it describes."""


def event_activities(
    inv: Invocation, ctx: Context, program_id: str, handlers: Mapping[str, EventHandler]
) -> list[Activity] | None:
    """What an event-publishing program's decoder returns: its events beneath the invocation that have a
    handler, each read by the handler of its name, in order; None when none gave an activity.

    A known event name means its layout decoded, so handlers can read every field it declares.
    """
    out: list[Activity] = []
    for event in inv.events:
        if event.program_id == program_id:
            handle = handlers.get(event.name)
            if handle is not None:
                found = handle(event, ctx)
                if found is not None:
                    out.append(found)
    return out or None


def event_activity(
    ctx: Context,
    kind: ActivityKind,
    event: Event,
    trader: str,
    venue: str,
    *,
    given: TokenAmount | None = None,
    got: TokenAmount | None = None,
) -> Activity:
    """An activity at the event's own position (its natural key)."""
    return activity(ctx, kind, (event.outer, event.inner), trader, venue, given=given, got=got)


def lp_activity(
    ctx: Context, event: Event, trader: str, venue: str, *, added: bool, token: TokenAmount, lp: TokenAmount
) -> Activity:
    """A deposit (`token` given, the pool's LP tokens `lp` got) or a withdrawal (`lp` given, `token` got)."""
    if added:
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, trader, venue, given=token, got=lp)
    return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, trader, venue, given=lp, got=token)


def swap_handler(venue: str, hop_of: HopReader, trader_field: str | None = None) -> EventHandler:
    """The handler of a pool's swap event: the hop `hop_of` reads, as a swap through that one pool.

    The trader is the event's `trader_field` account when it signed the transaction, else the fee payer.
    """

    def handle(event: Event, ctx: Context) -> Activity | None:
        hop = hop_of(event, ctx.emitter_of(event), ctx)
        if hop is None:
            return None
        trader = ctx.trader(event.fields.get(trader_field) if trader_field is not None else None)
        return hop_swap(ctx, (event.outer, event.inner), trader, venue, hop)

    return handle


def pool_create_handler(venue: str, creator_field: str | None = None) -> EventHandler:
    """The handler of a pool-creation event (recognised by name, no legs): created by the event's
    `creator_field` account when it signed the transaction, else by the fee payer."""

    def handle(event: Event, ctx: Context) -> Activity:
        trader = ctx.trader(event.fields.get(creator_field) if creator_field is not None else None)
        return event_activity(ctx, ActivityKind.POOL_CREATE, event, trader, venue)

    return handle


def swap_from_hops(ctx: Context, at: Position, trader: str, venue: str, hops: list[Hop]) -> Activity | None:
    """A swap activity for a route of hops: the first hop's input to the last hop's output."""
    if not hops:
        return None
    return activity(
        ctx, ActivityKind.SWAP, at, trader, venue, given=hops[0].input, got=hops[-1].output, hops=tuple(hops)
    )
