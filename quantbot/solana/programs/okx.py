"""OKX DEX aggregation router: a route is one trade, with one hop per pool it calls.

Encoding: events of the pools it calls (its own logs are free text); without pool events, the trader's
transfers give the trade.
"""

from __future__ import annotations

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation
from quantbot.solana.programs import routes

PROGRAM_ID = "6m2CDdhRgxpH4WjvdzxAYbGxwdGUz5MziiL5jek2kBma"
NAME = "okx_dex"


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """The route of one OKX router invocation, as one trade."""
    return routes.route(inv, ctx, NAME)
