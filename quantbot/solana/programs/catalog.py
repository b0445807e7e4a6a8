"""The DEX programs (pools, curves, order books) by program id: names, pool accounts and decoders.

Aggregators consult it to name the pool behind each hop; `quantbot.solana.decode` adds the aggregators
themselves on top.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from quantbot.models import Activity
from quantbot.solana.context import Context, Invocation, ReservesReader
from quantbot.solana.events import ProgramEvents
from quantbot.solana.programs import (
    lifinity,
    meteora_damm,
    meteora_dbc,
    meteora_dlmm,
    meteora_pools,
    obric,
    orca,
    phoenix,
    pumpfun,
    pumpswap,
    raydium_amm,
    raydium_clmm,
    raydium_cpmm,
    raydium_launchpad,
)
from quantbot.solana.transaction import Instruction

Decoder = Callable[[Invocation, Context], list[Activity] | None]
PoolOf = Callable[[Instruction], str | None]

DEX_MODULES: tuple[ModuleType, ...] = (
    pumpfun,
    pumpswap,
    raydium_amm,
    raydium_cpmm,
    raydium_clmm,
    raydium_launchpad,
    orca,
    meteora_dlmm,
    meteora_pools,
    meteora_damm,
    meteora_dbc,
    phoenix,
    lifinity,
    obric,
)

NAMES: dict[str, str] = {m.PROGRAM_ID: m.NAME for m in DEX_MODULES}
"""Program id -> short name (`raydium_amm_v4`, `pumpfun`, ...)."""
POOL_OF: dict[str, PoolOf] = {m.PROGRAM_ID: m.pool_of for m in DEX_MODULES}
"""Program id -> the pool account of one of its swap instructions."""
DEX_DECODERS: dict[str, Decoder] = {m.PROGRAM_ID: m.decode for m in DEX_MODULES}
DEX_EVENTS: tuple[ProgramEvents, ...] = tuple(m.EVENTS for m in DEX_MODULES if hasattr(m, "EVENTS"))
RESERVES_AFTER: dict[str, ReservesReader] = {
    m.PROGRAM_ID: m.reserves_after for m in DEX_MODULES if hasattr(m, "reserves_after")
}
"""Program id -> its `reserves_after`: the programs whose swap events carry the pool's reserves."""
