"""Jupiter v6 aggregator: a route is one trade, with one hop per `SwapEvent`.

Encoding: `SwapEvent` (one per hop) and, in 2025 versions, `SwapsEvent` (all hops in one vector), as
CPI-event instructions; routes from before CPI events emitted `SwapEvent` as `Program data:` logs.
`FeeEvent` records the platform fee. Each hop's pool is read from the AMM instruction Jupiter called
for it. Layouts: the program's IDL (`jupiter.json`).
"""

from __future__ import annotations

import struct
from typing import Any

from quantbot.models import Activity
from quantbot.solana.borsh import Layout
from quantbot.solana.codec import pubkey_str
from quantbot.solana.context import Context, Invocation
from quantbot.solana.events import EventSpec, ProgramEvents, anchor_event, event_discriminator
from quantbot.solana.programs import routes

PROGRAM_ID = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
NAME = "jupiter_v6"

FEE_EVENT = Layout("FeeEvent", [("account", "pubkey"), ("mint", "pubkey"), ("amount", "u64")])
_SWAP_EVENT_V2 = struct.Struct("<32sQ32sQ32s")
"""`SwapEventV2`: input_mint, input_amount, output_mint, output_amount, amm."""
_U32 = struct.Struct("<I")
_MAX_HOPS = 64
"""More hops than any route can hold in one transaction: a longer vector is corrupt input."""


def decode_swaps_event(data: bytes, offset: int) -> dict[str, Any] | None:
    """Decode `SwapsEvent { swap_events: Vec<SwapEventV2> }`."""
    if offset + _U32.size > len(data):
        return None
    (count,) = _U32.unpack_from(data, offset)
    pos = offset + _U32.size
    if count > _MAX_HOPS or pos + count * _SWAP_EVENT_V2.size > len(data):
        return None
    legs = []
    for _ in range(count):
        input_mint, input_amount, output_mint, output_amount, amm = _SWAP_EVENT_V2.unpack_from(data, pos)
        pos += _SWAP_EVENT_V2.size
        legs.append(
            {
                "input_mint": pubkey_str(input_mint),
                "input_amount": input_amount,
                "output_mint": pubkey_str(output_mint),
                "output_amount": output_amount,
                "amm": pubkey_str(amm),
            }
        )
    return {"swap_events": legs}


EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (
        anchor_event(routes.SWAP_EVENT),
        EventSpec("SwapsEvent", event_discriminator("SwapsEvent"), decode_swaps_event),
        anchor_event(FEE_EVENT),
    ),
)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The route of one Jupiter invocation, as one trade."""
    return routes.route(inv, ctx, NAME, PROGRAM_ID)
