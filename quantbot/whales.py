"""Whale detection: valued activities large enough to matter, as whale-activity documents.

The document follows the schema's whale activity collection. Each field is computed from the trade
itself and the configuration; fields the data cannot support are absent, never invented:

- `walletProfile.knownEntity` and `.type`: from the labels file (`whales.labels_file`, TOML:
  `[labels.<wallet>] name = "...", type = "exchange"`); an unlabelled wallet has `type = "unknown"`
  and no `knownEntity`. `.whaleCategory` is the size tier. `.historicalInfluence` needs a wallet's
  history of price moves after its trades: `quantbot.analytics` adds it once such a history exists.
- `market.priceImpact`: percent, the largest move of a pool's price among the trade's hops, from the event's
  own figure (Pump.fun, PumpSwap) or from the pool's reserves the event carries (`Hop.reserves`: Raydium
  AMM v4, CPMM, Launchpad, and those two); absent otherwise (concentrated-liquidity pools). `market.route`:
  the programs of the hops, when the trade went through an aggregator.
- `significance.relativeSize`: the value over the lowest tier's threshold: below 2x `large`, below 10x
  `very_large`, else `extreme`. `.marketImpact`: from the price impact (below `impact_medium_pct`
  `low`, below `impact_high_pct` `medium`, else `high`); absent with the impact. `.signalStrength`
  (0-10): up to 7 points for size (log-scaled: the threshold scores 0, 100x the threshold scores 7)
  and up to 3 for price impact (`impact_high_pct` and above scores 3). `.priceMoveAfter3h` needs the
  price three hours later: absent here; `quantbot.analytics` sets it by a follow-up in feed time.
- `relatedTransactions`: absent here; `quantbot.analytics` adds it from the wallet's recent whales.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from quantbot.models import Activity, Hop, TokenAmount, ValuedActivity, WhaleTransaction
from quantbot.pricing import KNOWN_SYMBOLS, ui_amount

# Size scores reach their maximum at this multiple of the lowest tier's threshold.
FULL_SIZE_SCORE_MULTIPLE = 100.0
SIZE_POINTS = 7.0
IMPACT_POINTS = 3.0
VERY_LARGE_MULTIPLE = 2.0
EXTREME_MULTIPLE = 10.0


@dataclass(frozen=True, slots=True)
class WalletLabel:
    """A known wallet: who it is and what kind of actor."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class WhaleConfig:
    """Whale thresholds; each is a `[whales]` configuration key."""

    tiers: tuple[tuple[str, float], ...] = (("large", 50_000.0), ("whale", 250_000.0), ("mega", 1_000_000.0))
    """(category, minimum USD value), ascending; a trade below the first is no whale."""
    impact_medium_pct: float = 0.5
    impact_high_pct: float = 2.0
    labels: dict[str, WalletLabel] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("whale tiers must not be empty")
        minimums = [m for _, m in self.tiers]
        if minimums != sorted(minimums) or minimums[0] <= 0:
            raise ValueError(f"whale tiers must have positive, ascending minimums, got {minimums}")


def load_labels(path: Path) -> dict[str, WalletLabel]:
    """Read a labels file: `[labels.<wallet address>]` tables with `name` and `type`.

    Raises:
        ValueError: naming the file and the entry that is malformed.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"labels file `{path}`: {exc}") from None
    labels: dict[str, WalletLabel] = {}
    for wallet, entry in data.get("labels", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"labels file `{path}`: entry `{wallet}` needs a string `name`")
        labels[wallet] = WalletLabel(name=entry["name"], type=str(entry.get("type", "unknown")))
    return labels


def tier_of(usd: float, config: WhaleConfig) -> str | None:
    """The highest tier whose minimum `usd` reaches, or None below the first."""
    found = None
    for name, minimum in config.tiers:
        if usd >= minimum:
            found = name
    return found


def hop_impact(hop: Hop) -> float | None:
    """How far the hop moved its pool's price, in percent: the event's own figure (Pump.fun, PumpSwap), else from
    the pool's reserves after the hop (`Hop.reserves`: constant-product pools) and the hop's amounts, which give
    the reserves before it; None where neither is known."""
    if hop.price_impact_pct is not None:
        return abs(hop.price_impact_pct)
    if hop.reserves is None:
        return None
    after_in, after_out = hop.reserves[0].amount, hop.reserves[1].amount
    before_in, before_out = after_in - hop.input.amount, after_out + hop.output.amount
    if before_in <= 0 or after_in <= 0 or after_out <= 0:
        return None  # reserves that cannot have priced this hop: no impact claimed
    spot_before, spot_after = before_out / before_in, after_out / after_in
    return abs(1.0 - spot_after / spot_before) * 100.0


def _max_impact(activity: Activity) -> float | None:
    impacts = [impact for h in activity.hops if (impact := hop_impact(h)) is not None]
    return max(impacts) if impacts else None


def _leg(amount: TokenAmount, direction: str, usd: float, symbols: dict[str, str]) -> dict[str, object]:
    leg: dict[str, object] = {"address": amount.mint, "direction": direction, "valueUsd": round(usd, 2)}
    whole = ui_amount(amount)
    leg["amount"] = whole if whole is not None else amount.amount
    leg["rawAmount"] = str(amount.amount)
    if amount.decimals is not None:
        leg["decimals"] = amount.decimals
    symbol = symbols.get(amount.mint) or KNOWN_SYMBOLS.get(amount.mint)
    if symbol:
        leg["symbol"] = symbol
    return leg


def signal_strength(usd: float, impact_pct: float | None, config: WhaleConfig) -> float:
    """0-10: log-scaled size (up to 7 points) plus price impact (up to 3 points), one decimal."""
    floor = config.tiers[0][1]
    size = SIZE_POINTS * min(1.0, max(0.0, math.log10(usd / floor) / math.log10(FULL_SIZE_SCORE_MULTIPLE)))
    impact = 0.0 if impact_pct is None else IMPACT_POINTS * min(1.0, impact_pct / config.impact_high_pct)
    return round(size + impact, 1)


def detect(
    valued: ValuedActivity, config: WhaleConfig, symbols: dict[str, str] | None = None
) -> WhaleTransaction | None:
    """The whale transaction of `valued`, or None when it is unvalued or below the first tier."""
    usd = valued.usd_value
    if usd is None:
        return None
    tier = tier_of(usd, config)
    if tier is None:
        return None
    activity = valued.activity
    symbols = symbols or {}
    impact = _max_impact(activity)
    label = config.labels.get(activity.trader)

    profile: dict[str, object] = {"type": label.type if label else "unknown", "whaleCategory": tier}
    if label:
        profile["knownEntity"] = label.name

    tokens: list[dict[str, object]] = []
    if activity.input is not None:
        tokens.append(_leg(activity.input, "sell", usd, symbols))
    if activity.output is not None:
        tokens.append(_leg(activity.output, "buy", usd, symbols))

    market: dict[str, object] = {"venue": activity.venue}
    hop_programs = [h.program for h in activity.hops]
    if hop_programs and any(p != activity.venue for p in hop_programs):
        market["route"] = ",".join(dict.fromkeys(hop_programs))
    if impact is not None:
        market["priceImpact"] = round(impact, 4)

    multiple = usd / config.tiers[0][1]
    relative = "large" if multiple < VERY_LARGE_MULTIPLE else "very_large" if multiple < EXTREME_MULTIPLE else "extreme"
    significance: dict[str, object] = {
        "relativeSize": relative,
        "signalStrength": signal_strength(usd, impact, config),
    }
    if impact is not None:
        significance["marketImpact"] = (
            "low" if impact < config.impact_medium_pct else "medium" if impact < config.impact_high_pct else "high"
        )

    block_time = activity.block_time or 0
    document: dict[str, object] = {
        "_id": activity.signature,
        "signature": activity.signature,
        "blockTime": block_time,
        "timestamp": datetime.fromtimestamp(block_time, tz=UTC),
        "slot": activity.slot,
        "walletAddress": activity.trader,
        "walletProfile": profile,
        "transactionType": str(activity.kind),
        "tokens": tokens,
        "market": market,
        "significance": significance,
        "valueUsd": round(usd, 2),
        "instruction": {"outer": activity.index.outer, "inner": activity.index.inner},
    }
    if activity.slot is None:
        del document["slot"]
    return WhaleTransaction(valued=valued, tier=tier, document=document)


def largest_per_transaction(whales: list[WhaleTransaction]) -> list[WhaleTransaction]:
    """One whale per signature (the document is keyed by it): the largest activity of the transaction."""
    best: dict[str, WhaleTransaction] = {}
    for whale in whales:
        signature = whale.valued.activity.signature
        current = best.get(signature)
        if current is None or (whale.valued.usd_value or 0) > (current.valued.usd_value or 0):
            best[signature] = whale
    return list(best.values())
