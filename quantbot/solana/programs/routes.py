"""Aggregator routes: one trade made of hops, from the aggregator's per-hop events or its pools' own.

Jupiter and DFlow publish one `SwapEvent` per hop (the AMM's program id, mints and amounts); each hop's
pool is read from the AMM instruction the event follows, and its `reserves` from that pool's own swap event
beneath the instruction, where the pool's program publishes them (`catalog.RESERVES_AFTER`). Routers
without such events (Raydium's router, OKX) are read from the events of the pools they call, and failing
those from the trader's transfers.
"""

from __future__ import annotations

from typing import Any

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
    calls = _pool_calls(inv, ctx)
    used = [False] * len(calls)
    hops = []
    for leg in legs:
        amm = leg["amm"]
        given = ctx.amount(leg["input_mint"], leg["input_amount"])
        got = ctx.amount(leg["output_mint"], leg["output_amount"])
        pool = None
        reserves = None
        for number, (start, child) in enumerate(calls):
            if not used[number] and child.program_id == amm:
                used[number] = True
                pool_of = POOL_OF.get(amm)
                pool = pool_of(child) if pool_of is not None else None
                reader = RESERVES_AFTER.get(amm)
                if reader is not None:
                    end = calls[number + 1][0] - 1 if number + 1 < len(calls) else inv.end
                    reserves = hop_reserves(given, got, _pool_reserves(inv, ctx, start, end, reader))
                break
        hops.append(Hop(NAMES.get(amm, amm), amm, pool, given, got, None, reserves))
    return hops, first


def _pool_calls(inv: Invocation, ctx: Context) -> list[tuple[int, Instruction]]:
    """The instructions of known pools an aggregator invocation called directly, in order (its hops), with
    their inner positions.

    Calls of other programs (token transfers, unknown AMMs, whose pool no decoder can name) are left out.
    """
    child_height = (inv.instruction.stack_height or 1) + 1
    inner = ctx.tx.inner[inv.outer]
    heights = ctx.heights(inv.outer)
    pids = ctx.inner_program_ids[inv.outer]
    return [
        (index, inner[index])
        for index in range(inv.start + 1, inv.end + 1)
        if pids[index] in POOL_OF and (heights[index] is None or heights[index] == child_height)
    ]


def _pool_reserves(
    inv: Invocation, ctx: Context, start: int, end: int, reader: ReservesReader
) -> tuple[int, int] | None:
    """What `reader` reads from the first event it reads of the pool call at inner position `start`: an event of
    the call's program emitted inside it (the instructions after it that ran deeper, up to `end`, the next
    pool call; without stack heights, all of those)."""
    heights = ctx.heights(inv.outer)
    height = heights[start]
    if height is not None:
        for index in range(start + 1, end + 1):
            below = heights[index]
            if below is not None and below <= height:
                end = index - 1
                break
    program_id = ctx.inner_program_ids[inv.outer][start]
    for event in inv.events:
        if event.program_id == program_id and start <= event_position(event) <= end:
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
