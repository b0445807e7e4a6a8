"""Aggregator routes: one trade made of hops, from the aggregator's per-hop events or its pools' own.

Jupiter and DFlow publish one `SwapEvent` per hop (the AMM's program id, mints and amounts); each hop's
pool is read from the AMM instruction the event follows, and its `reserves` from that pool's own swap event
beneath the instruction, where the pool's program publishes them (`catalog.RESERVES_AFTER`). Routers
without such events (Raydium's router, OKX) are read from the events of the pools they call, and failing
those from the trader's transfers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from quantbot.models import Activity, ActivityKind, Hop
from quantbot.solana.borsh import Layout
from quantbot.solana.context import Context, Invocation, ReservesReader, hop_reserves, swap_from_hops
from quantbot.solana.events import Event, event_position
from quantbot.solana.programs import generic
from quantbot.solana.programs.catalog import NAMES, POOL_OF, RESERVES_AFTER
from quantbot.solana.transaction import Instruction

SWAP_EVENT: Layout = Layout(
    "SwapEvent",
    [
        ("amm", "pubkey"),
        ("input_mint", "pubkey"),
        ("input_amount", "u64"),
        ("output_mint", "pubkey"),
        ("output_amount", "u64"),
    ],
)
"""The per-hop event Jupiter v6 and DFlow share (same name, so the same discriminator)."""


def event_hops(inv: Invocation, ctx: Context, program_id: str) -> tuple[list[Hop], Event | None]:
    """Hops from an aggregator's own per-hop events inside one invocation, and the first such event."""
    legs: list[dict[str, Any]] = []
    first: Event | None = None
    for event in inv.events:
        if event.program_id != program_id:
            continue
        if event.name == "SwapEvent" and event.fields:
            legs.append(event.fields)
        elif event.name == "SwapsEvent" and event.fields:
            legs.extend(event.fields["swap_events"])
        else:
            continue
        if first is None:
            first = event
    if not legs:
        return [], None
    children = _pool_calls(inv, ctx)
    hops = []
    for leg in legs:
        amm = leg["amm"]
        pool = None
        mint_in, mint_out = leg["input_mint"], leg["output_mint"]
        reserves = None
        for position, child in enumerate(children):
            if child is not None and child.instruction.program_id == amm:
                pool_of = POOL_OF.get(amm)
                pool = pool_of(child.instruction) if pool_of is not None else None
                reader = RESERVES_AFTER.get(amm)
                if reader is not None:
                    reserves = hop_reserves(ctx, mint_in, mint_out, _pool_reserves(inv, child, reader))
                children[position] = None
                break
        hops.append(
            Hop(
                NAMES.get(amm, amm),
                amm,
                pool,
                ctx.amount(mint_in, leg["input_amount"]),
                ctx.amount(mint_out, leg["output_amount"]),
                None,
                reserves,
            )
        )
    return hops, first


class _PoolCall(NamedTuple):
    """A pool instruction an aggregator called for a hop, and the inner positions it covers (itself included)."""

    instruction: Instruction
    start: int
    end: int


def _pool_calls(inv: Invocation, ctx: Context) -> list[_PoolCall | None]:
    """The instructions of known pools an aggregator invocation called directly, in order (its hops).

    Calls of other programs (token transfers, unknown AMMs, whose pool no decoder can name) are left out.
    Each covers the instructions after it that ran deeper (without stack heights: up to the next pool call).
    """
    child_height = (inv.instruction.stack_height or 1) + 1
    inner = ctx.tx.inner[inv.outer]
    heights = ctx.heights(inv.outer)
    pids = ctx.inner_program_ids[inv.outer]
    starts = [
        index
        for index in range(inv.start + 1, inv.end + 1)
        if pids[index] in POOL_OF and (heights[index] is None or heights[index] == child_height)
    ]
    calls: list[_PoolCall | None] = []
    for number, start in enumerate(starts):
        end = starts[number + 1] - 1 if number + 1 < len(starts) else inv.end
        if heights[start] is not None:
            for index in range(start + 1, end + 1):
                height = heights[index]
                if height is not None and height <= child_height:
                    end = index - 1
                    break
        calls.append(_PoolCall(inner[start], start, end))
    return calls


def _pool_reserves(inv: Invocation, call: _PoolCall, reader: ReservesReader) -> tuple[int, int] | None:
    """What `reader` reads from the first of the pool program's events beneath its call that it reads."""
    program_id = call.instruction.program_id
    for event in inv.events:
        if event.program_id == program_id and call.start <= event_position(event) <= call.end:
            found = reader(event)
            if found is not None:
                return found
    return None


def route(inv: Invocation, ctx: Context, name: str, program_id: str | None = None) -> list[Activity] | None:
    """One route activity for an aggregator invocation.

    With `program_id`, hops come from that aggregator's own per-hop events; otherwise (or without such
    events) from the swaps of the pools it called; failing both, from the trader's transfers.
    """
    trader = ctx.trader()
    if program_id is not None:
        hops, first = event_hops(inv, ctx, program_id)
        if hops and first is not None:
            found = swap_from_hops(ctx, (inv.outer, first.inner), trader, name, hops)
            return [found] if found is not None else None
    nested = [a for a in ctx.nested(inv) if a.kind == ActivityKind.SWAP]
    if nested:
        hops = [hop for a in nested for hop in a.hops]
        found = swap_from_hops(ctx, (inv.outer, nested[0].index.inner), trader, name, hops)
        return [found] if found is not None else None
    swap = generic.swap_from_transfers(ctx, inv, name, None)
    return [swap] if swap is not None else None
