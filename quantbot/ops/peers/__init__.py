"""Network peers of our own for tests, the demo and the benchmarks: a simulated Solana chain and the
servers that speak Solana's protocols over it on loopback.

- `chain`: `SimulatedChain`, a deterministic timeline of blocks and DEX transactions (`ChainSpec`).
"""

from quantbot.ops.peers.chain import (
    ENCODINGS,
    SLOT_MS,
    ChainBlock,
    ChainSpec,
    ChainTransaction,
    SimulatedChain,
    load_recorded,
)

__all__ = [
    "ENCODINGS",
    "SLOT_MS",
    "ChainBlock",
    "ChainSpec",
    "ChainTransaction",
    "SimulatedChain",
    "load_recorded",
]
