"""The market snapshot document (`market_snapshots`): what the flow itself knows of the market at a moment.

Written at every multiple of `snapshot_interval_s` of feed time (the boundary is its `_id`, ISO, and its
`timestamp`), from the state as of that moment (every item up to it, none after):

- `globalMetrics.solanaPrice`: SOL/USD as the valuation last used it (a fresh feed's, else trades').
- `topMovers`: the `top_movers` tokens of largest absolute 24 h change among those with at least
  `mover_min_volume_usd` of 24 h volume (ties by mint); `priceChangePercent`, `volume24h`, and `symbol` where known.
- `whaleActivity` over the window: `largeTransactionCount` (whale transactions), `largeTransactionVolumeUsd`
  (their USD value), `netFlowUsd` (whale buys minus whale sells of tokens that are not quote assets; a trade
  between two quote assets counts in neither).
- `liquidityMetrics.topDexVolume`: per DEX program, the USD value of the hops through its pools over the
  window (an aggregator's route counts at each DEX it touched, not under the aggregator), largest first.
- `liquidityMetrics.totalValueLockedUsd`: **the sum of the known pool reserves**, valued at the snapshot's
  prices, of the pools whose reserves the flow saw within the window: a lower bound of what those DEXes hold,
  not the market's TVL. Absent while no pool reported reserves.

Absent because the chain and the feeds cannot support them: `globalMetrics.totalMarketCapUsd`,
`solanaMarketCapUsd` and `solanaDominance` (need every asset's supply and price, on every chain),
`totalVolume24h` (the whole market's, not this flow's sample), `marketMood` (fear/greed, sentiment and
volatility indexes are third-party opinions) and `sectorPerformance` (no sector taxonomy of tokens).
"""

from __future__ import annotations

from datetime import UTC, datetime

PRICE_DIGITS = 10
PERCENT_DIGITS = 4
USD_DIGITS = 2


def moment(at: int) -> datetime:
    """Feed time `at` (Unix seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(at, tz=UTC)


def mover(mint: str, symbol: str | None, change_pct: float, volume_usd: float) -> dict[str, object]:
    """One `topMovers` entry."""
    entry: dict[str, object] = {"tokenAddress": mint}
    if symbol:
        entry["symbol"] = symbol
    entry["priceChangePercent"] = round(change_pct, PERCENT_DIGITS)
    entry["volume24h"] = round(volume_usd, USD_DIGITS)
    return entry


def snapshot_document(
    at: int,
    *,
    sol_usd: float | None,
    movers: list[dict[str, object]],
    whales: tuple[float, ...],
    dex_volume: dict[str, float],
    reserves_usd: float | None,
) -> dict[str, object]:
    """The `market_snapshots` document at boundary `at` (see the module docstring for each field).

    Args:
        at: the boundary, feed time.
        sol_usd: SOL/USD, None when not known yet.
        movers: the `topMovers` entries, in rank order.
        whales: (count, USD volume, net flow USD) of the window's whale transactions.
        dex_volume: per DEX program, its window volume in USD.
        reserves_usd: the sum of the known pool reserves in USD, None when there are none.
    """
    when = moment(at)
    document: dict[str, object] = {"_id": when.isoformat(), "timestamp": when}
    if sol_usd is not None:
        document["globalMetrics"] = {"solanaPrice": round(sol_usd, PRICE_DIGITS)}
    document["topMovers"] = movers
    count, volume, net = whales
    document["whaleActivity"] = {
        "largeTransactionCount": round(count),
        "largeTransactionVolumeUsd": round(volume, USD_DIGITS),
        "netFlowUsd": round(net, USD_DIGITS),
    }
    ranked = sorted(dex_volume.items(), key=lambda item: (-item[1], item[0]))
    liquidity: dict[str, object] = {"topDexVolume": {venue: round(usd, USD_DIGITS) for venue, usd in ranked if usd > 0}}
    if reserves_usd is not None:
        liquidity["totalValueLockedUsd"] = round(reserves_usd, USD_DIGITS)
    document["liquidityMetrics"] = liquidity
    return document
