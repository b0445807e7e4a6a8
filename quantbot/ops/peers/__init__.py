"""Network peers of our own for tests, the demo and the benchmarks: a simulated Solana chain and the
servers that speak Solana's protocols over it on loopback.

- `chain`: `SimulatedChain`, a deterministic timeline of blocks and DEX transactions (`ChainSpec`).
- `yellowstone`: `YellowstonePeer`, a Yellowstone gRPC (Geyser) server over a chain, with scripted faults;
  `yellowstone_convert`: a `getTransaction` result as the Geyser messages such a server sends.
- `solana_rpc`: `SolanaPeer`, Solana JSON-RPC over HTTP and PubSub over websocket on one loopback port,
  with scripted `Faults`.
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
from quantbot.ops.peers.solana_rpc import Faults, PeerCounters, SolanaPeer

__all__ = [
    "ENCODINGS",
    "SLOT_MS",
    "ChainBlock",
    "ChainSpec",
    "ChainTransaction",
    "Faults",
    "PeerCounters",
    "SimulatedChain",
    "SolanaPeer",
    "load_recorded",
]
