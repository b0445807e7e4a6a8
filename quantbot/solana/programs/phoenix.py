"""Phoenix (central limit order book): taker swaps, read from the token transfers they make.

Encoding: balances. Phoenix publishes fills through its own log instruction, not an Anchor event; a
swap's effect on the trader is fully described by the transfers between the trader's accounts and the
market's vaults, which this decoder reads. Instruction tags: the program's `PhoenixInstruction` enum.
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation, account
from quantbot.solana.programs import generic
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "PhoeNiXZ8ByJGLkxNfZRnkUfjvmuYqLR89jjFHGqdXY"
NAME = "phoenix"
MARKET_ACCOUNT = 2
"""Swap accounts: phoenix_program, log_authority, market, trader, base_account, quote_account, ..."""
SWAP, SWAP_WITH_FREE_FUNDS = 0, 1


def pool_of(ix: Instruction) -> str | None:
    """The market a swap instruction trades on."""
    return account(ix, MARKET_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The taker swap of one Phoenix invocation, if it is one."""
    data = inv.instruction.data
    if not data or data[0] not in (SWAP, SWAP_WITH_FREE_FUNDS):
        return None
    swap = generic.swap_from_transfers(ctx, inv, NAME, pool_of(inv.instruction))
    return [swap] if swap is not None else None
