"""Raydium's router: multi-pool routes across AMM v4, CPMM and CLMM, as one trade.

Encoding: events of the pools it calls (the router publishes none of its own): each pool's swap is one
hop; without pool events, the trader's transfers give the trade.
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation
from quantbot.solana.programs import routes

PROGRAM_ID = "routeUGWgWzqBWFcrCfv8tritsqukccJPu3q5GPP3xS"
NAME = "raydium_route"


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The route of one Raydium router invocation, as one trade."""
    return routes.route(inv, ctx, NAME)
