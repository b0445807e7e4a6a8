"""DFlow aggregator (v4): a route is one trade, with one hop per `SwapEvent`.

Encoding: `SwapEvent` (same layout and name as Jupiter's, one per hop) and `FeeEvent`, as CPI-event
instructions. Layouts: the program's IDL (`dflow_aggregator_v4`).
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.borsh import Layout
from quantbot.solana.context import Context, Invocation
from quantbot.solana.events import ProgramEvents, anchor_event
from quantbot.solana.programs import routes

PROGRAM_ID = "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH"
NAME = "dflow"

FEE_EVENT = Layout("FeeEvent", [("account", "pubkey"), ("mint", "pubkey"), ("amount", "u64")])
EVENTS = ProgramEvents(PROGRAM_ID, NAME, (anchor_event(routes.SWAP_EVENT), anchor_event(FEE_EVENT)))


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The route of one DFlow invocation, as one trade."""
    return routes.route(inv, ctx, NAME, PROGRAM_ID)
