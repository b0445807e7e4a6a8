"""The price feeds' sources, from `[feeds]`: what `quantbot run` adds beside the chain's source.

`feed_sources(settings, on_event, activities)` returns the enabled feeds' Bytewax sources; the live flow
hands them to `flows.graph.build_flow` after its chain source (step ids `feed_pyth`, ...), so they run through
the same graph, are recorded by `--record` and replayed like any frame.
"""

from __future__ import annotations

from collections.abc import Callable

from bytewax.inputs import Source

from connectors.birdeye import BirdeyeConfig, BirdeyeSource
from connectors.jupiter import JupiterConfig, JupiterSource
from connectors.pyth import PythConfig, PythSource
from quantbot.backoff import Backoff
from quantbot.errors import ConfigError
from quantbot.events import SystemEvent
from quantbot.feeds import BIRDEYE, JUPITER, PYTH
from quantbot.health import SourceActivity
from quantbot.interest import TokenInterest
from quantbot.models import DeadLetter, Frame
from quantbot.settings import Settings


def _backoff(settings: Settings) -> Backoff:
    return Backoff(base_s=settings.feeds.backoff_base_s, cap_s=settings.feeds.backoff_cap_s)


def pyth_config(settings: Settings) -> PythConfig:
    """The Pyth source's configuration: `[feeds] pyth_url`, `pyth_ids` and the stream limits."""
    feeds = settings.feeds
    if not feeds.pyth_ids:
        raise ConfigError("feeds.pyth_ids", "is empty: the pyth feed needs at least one price feed id", "configuration")
    return PythConfig(
        url=feeds.pyth_url,
        ids=tuple(feeds.pyth_ids),
        rate_limited_wait_s=feeds.rate_limited_wait_s,
        silent_after_s=feeds.silent_after_s,
        request_timeout_s=feeds.request_timeout_s,
        backoff=_backoff(settings),
    )


def birdeye_config(settings: Settings) -> BirdeyeConfig:
    """The Birdeye source's configuration: URL and key (environment), tokens and the large-trade minimum."""
    feeds = settings.feeds
    if not feeds.birdeye_tokens and feeds.large_trade_min_usd <= 0:
        raise ConfigError(
            "feeds.birdeye_tokens",
            "is empty and feeds.large_trade_min_usd is 0: the birdeye feed has nothing to subscribe",
            "configuration",
        )
    return BirdeyeConfig(
        ws_url=feeds.birdeye_ws_url,
        api_key=feeds.birdeye_api_key.get_secret_value() if feeds.birdeye_api_key else None,
        tokens=tuple(feeds.birdeye_tokens),
        chart=feeds.birdeye_chart,
        large_trade_min_usd=feeds.large_trade_min_usd,
        silent_after_s=feeds.birdeye_silent_after_s,
        rate_limited_wait_s=feeds.rate_limited_wait_s,
        backoff=_backoff(settings),
    )


def jupiter_config(settings: Settings, interest: TokenInterest | None = None) -> JupiterConfig:
    """The Jupiter poller's configuration: its tokens are `[feeds] jupiter_tokens` less those a live feed covers,
    and, with `interest` (`token_interest`), those that matter as the flow runs.

    Raises:
        ConfigError: no token to poll and no interest to find some.
    """
    feeds = settings.feeds
    covered = covered_tokens(settings)
    tokens = tuple(token for token in dict.fromkeys(feeds.jupiter_tokens) if token not in covered)
    if not tokens and interest is None:
        raise ConfigError(
            "feeds.jupiter_tokens",
            "has no token that Pyth or Birdeye does not already cover, and `feeds.jupiter_whale_keep_s` is 0: "
            "the jupiter feed has nothing to poll",
            "configuration",
        )
    return JupiterConfig(
        url=feeds.jupiter_url,
        api_key=feeds.jupiter_api_key.get_secret_value() if feeds.jupiter_api_key else None,
        tokens=tokens,
        requests_per_s=feeds.jupiter_requests_per_s,
        request_timeout_s=feeds.request_timeout_s,
        backoff=_backoff(settings),
        interest=interest,
    )


def covered_tokens(settings: Settings) -> set[str]:
    """The tokens an enabled live feed (Pyth, Birdeye) prices: Jupiter need not poll them."""
    feeds = settings.feeds
    covered: set[str] = set()
    if PYTH in feeds.enabled:
        covered |= set(feeds.pyth_ids.values())
    if BIRDEYE in feeds.enabled:
        covered |= set(feeds.birdeye_tokens)
    return covered


def token_interest(settings: Settings) -> TokenInterest | None:
    """The tokens Jupiter polls as the flow runs (`quantbot.interest`), when the jupiter feed is enabled and
    follows whales and strategies (`[feeds] jupiter_whale_keep_s` above 0); None otherwise."""
    feeds = settings.feeds
    if JUPITER not in feeds.enabled or feeds.jupiter_whale_keep_s <= 0:
        return None
    return TokenInterest(
        feeds.jupiter_tokens, covered_tokens(settings), feeds.jupiter_whale_keep_s, feeds.jupiter_max_tokens
    )


FeedSource = PythSource | BirdeyeSource | JupiterSource


def feed_sources(
    settings: Settings,
    on_event: Callable[[SystemEvent], object] | None,
    activities: list[SourceActivity],
    interest: TokenInterest | None = None,
) -> list[Source[Frame | DeadLetter]]:
    """The enabled feeds' sources (`[feeds] enabled`), in the order pyth, birdeye, jupiter.

    Args:
        settings: the effective settings.
        on_event: where the feeds report the time they were down (`system_events`).
        activities: each feed's `SourceActivity` is appended here, for readiness.
        interest: where Jupiter reads the tokens to poll each round (`token_interest`); None: the configured ones.

    Raises:
        ConfigError: an enabled feed has nothing to follow.
    """
    enabled = set(settings.feeds.enabled)
    sources: list[Source[Frame | DeadLetter]] = []
    if PYTH in enabled:
        activity = SourceActivity(PYTH)
        activities.append(activity)
        sources.append(PythSource(pyth_config(settings), activity, on_event))
    if BIRDEYE in enabled:
        activity = SourceActivity(BIRDEYE)
        activities.append(activity)
        sources.append(BirdeyeSource(birdeye_config(settings), activity, on_event))
    if JUPITER in enabled:
        activity = SourceActivity(JUPITER)
        activities.append(activity)
        sources.append(JupiterSource(jupiter_config(settings, interest), activity, on_event))
    return sources


def stop_feeds(sources: list[Source[Frame | DeadLetter]]) -> None:
    """Ask each feed source to stop (what SIGTERM does to a live run)."""
    for source in sources:
        if isinstance(source, PythSource | BirdeyeSource | JupiterSource):
            source.stop()
