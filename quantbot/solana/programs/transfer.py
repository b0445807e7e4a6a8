"""Plain SOL and token transfers a signer made at the top level of a transaction.

Encoding: the System program's `Transfer`/`TransferWithSeed` and SPL Token's `Transfer`/
`TransferChecked` instructions, raw or as the RPC's `jsonParsed` rendering (instruction data, no event).
Wrapping SOL (a lamport transfer into the signer's own wSOL account) is plumbing, not a transfer.
"""

from __future__ import annotations

from quantbot.models import Activity, ActivityKind
from quantbot.solana.context import SYSTEM_PROGRAM, TOKEN_2022_PROGRAM, Context, activity, parse_transfer

VENUES = {SYSTEM_PROGRAM: "system", TOKEN_2022_PROGRAM: "spl_token_2022"}
TOKEN_VENUE = "spl_token"  # noqa: S105 - a venue name, not a secret


def decode(ctx: Context) -> list[Activity]:
    """Every top-level transfer whose authority signed the transaction, as a transfer activity."""
    tx = ctx.tx
    signers = set(tx.signers)
    out: list[Activity] = []
    for outer, ix in enumerate(tx.instructions):
        transfer = parse_transfer(ctx, ix, outer, None)
        if transfer is None or transfer.authority not in signers or transfer.mint is None:
            continue
        if transfer.program_id == SYSTEM_PROGRAM:
            destination = ctx.token_account(transfer.destination)
            if destination is not None and destination.owner == transfer.authority:
                continue  # wrapping SOL into the signer's own wSOL account
        out.append(
            activity(
                ctx,
                ActivityKind.TRANSFER,
                (outer, None),
                transfer.authority,
                VENUES.get(transfer.program_id, TOKEN_VENUE),
                given=ctx.amount(transfer.mint, transfer.amount),
            )
        )
    return out
