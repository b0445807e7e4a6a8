"""What the parse step accepts as plausible: times within Solana's lifetime, decimals a mint can have.

A value outside these bounds is not data but a fault (a clock in milliseconds, a corrupted recording, a
buggy bridge): the parse step makes its frame a dead letter naming the value, so that it can neither
stop the flow in a sink (`datetime.fromtimestamp` of a millisecond time is year 58,000) nor be stored
as a wrong price.

The facts are constants; what a user may tune is `ParseConfig` (`[parse]` in the configuration).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from quantbot.units import NS_PER_S

SOLANA_GENESIS_S = 1_584_368_940
"""Creation time of mainnet-beta's genesis block, 2020-03-16T14:29:00Z: what `getBlockTime(0)` returns, and
Firedancer's `FD_RUNTIME_GENESIS_CREATION_TIME_MAINNET` (firedancer-io/firedancer,
src/flamenco/runtime/fd_runtime_const.h). No block, and no price of a Solana trade, is older."""
MILLISECONDS_FROM = SOLANA_GENESIS_S * 1_000
"""Times from here on are milliseconds: genesis in milliseconds, while in seconds it is the year 52,000."""
U64_MAX = 2**64 - 1
"""Token amounts and lamports are u64 on chain."""
MAX_DECIMALS = 19
"""Default bound on a mint's decimals. SPL stores them in a u8, but a balance is a u64 (at most 1.8e19 raw
units), so a mint with more decimals cannot hold a single whole token (common mints use 6 or 9: USDC,
wSOL)."""
MAX_AHEAD_S = 300
"""Default of how far a time may be ahead of its frame's receive time. Block times follow the
validators' clocks (a stake-weighted median), a few seconds from true time; five minutes leaves room
for a receiving machine whose clock is somewhat behind, and none for a time in the wrong unit or year."""


@dataclass(frozen=True, slots=True)
class ParseConfig:
    """The parse step's tunable bounds; each is a `[parse]` configuration key."""

    max_ahead_s: int = MAX_AHEAD_S
    """A block time or price time more than this ahead of the frame's receive time is refused."""
    max_decimals: int = MAX_DECIMALS
    """Token balances with more decimals than this are refused."""


def known_receive_second(received_ns: int) -> int | None:
    """A frame's receive time in Unix seconds, or None when it is unknown (before genesis: 0, or synthetic)."""
    received_s = received_ns // NS_PER_S
    return received_s if received_s >= SOLANA_GENESIS_S else None


def time_problem(value: int, name: str, received_ns: int, config: ParseConfig) -> str | None:
    """What is implausible about a Unix-seconds time of a frame, or None when it is plausible.

    Plausible: not in milliseconds, not before Solana's genesis, and at most `config.max_ahead_s`
    after the frame's receive time. A receive time before genesis (0 in recordings made without a
    clock, or a synthetic one) is unknown: then the bound is the present.

    Args:
        value: the time, in Unix seconds.
        name: the field it came from, for the message (`blockTime`, `ts`).
        received_ns: the frame's receive time in Unix nanoseconds (0: unknown).
        config: the bounds.
    """
    if value >= MILLISECONDS_FROM:
        return f"`{name}` {value} looks like milliseconds: expected Unix seconds"
    if value < SOLANA_GENESIS_S:
        return f"`{name}` {value} is before Solana's genesis ({SOLANA_GENESIS_S}, 2020-03-16T14:29:00Z)"
    known = known_receive_second(received_ns)
    if known is None:
        received_s, against = int(time.time()), "the present"
    else:
        received_s, against = known, f"the frame's receive time {known}"
    ahead = value - received_s
    if ahead > config.max_ahead_s:
        return f"`{name}` {value} is {ahead} s ahead of {against} (at most {config.max_ahead_s} s allowed)"
    return None
