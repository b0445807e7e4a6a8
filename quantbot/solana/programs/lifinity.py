"""Lifinity v2 (oracle-based AMM): swaps, read from the token transfers they make.

Encoding: balances. Lifinity publishes no event; a swap moves the trader's input to the pool's vault and
the pool's output vault to the trader, which this decoder reads. Discriminator and account order: the
program's Anchor IDL (`lifinity_amm_v2.json`).
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation, account
from quantbot.solana.events import instruction_discriminator
from quantbot.solana.programs import generic
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "2wT8Yq49kHgDzXuPxZSaeLaH1qbmGXtEyPy64bL7aD3c"
NAME = "lifinity_v2"
AMM_ACCOUNT = 1
"""Swap accounts: authority, amm, user_transfer_authority, source_info, destination_info, ..."""
SWAP = instruction_discriminator("swap")


def pool_of(ix: Instruction) -> str | None:
    """The AMM a swap instruction trades against."""
    return account(ix, AMM_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The swap of one Lifinity v2 invocation, if it is one."""
    if inv.instruction.data[: len(SWAP)] != SWAP:
        return None
    swap = generic.swap_from_transfers(ctx, inv, NAME, pool_of(inv.instruction))
    return [swap] if swap is not None else None
