"""Obric v2 (proactive market maker): swaps, read from the token transfers they make.

Encoding: balances. Obric publishes no event; its swaps are read from the trader's transfers inside
the invocation. Its pool account's position is not part of a published layout, so hops name no pool.
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation
from quantbot.solana.programs import generic
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "obriQD1zbpyLz95G5n7nJe6a4DPjpFwa5XYPoNm113y"
NAME = "obric_v2"


def pool_of(ix: Instruction) -> str | None:
    """Unknown: Obric's account layout is unpublished."""
    return None


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The swap of one Obric v2 invocation, if its transfers show one."""
    swap = generic.swap_from_transfers(ctx, inv, NAME, None)
    return [swap] if swap is not None else None
