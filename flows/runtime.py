"""Running a flow against the real stores: sinks and strategies from the settings, recovery, the engine."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows.graph import FlowConfig, FlowSinks
from quantbot.bounds import ParseConfig
from quantbot.pricing import PricingConfig
from quantbot.schema.mongo import STRATEGY_CONFIGS
from quantbot.settings import Settings
from quantbot.signals import WhaleFollower, load_strategies
from quantbot.whales import WhaleConfig, load_labels
from sinks.clients import influx_client, mongo_client, postgres_connect, redis_client, resolve_endpoints
from sinks.influx import InfluxSink
from sinks.mongo import MongoSink
from sinks.postgres import PostgresSink
from sinks.redis import RedisPolicy, RedisSink
from sinks.retry import Backoff, Retry

log = logging.getLogger(__name__)

RECOVERY_PARTITIONS = 1
"""Recovery partitions of a new recovery directory: one suffices for one process's workers."""
SECONDS_PER_HOUR = 3600


def retry_policy(settings: Settings) -> Retry:
    """The sinks' retry policy from `[sinks]`."""
    sinks = settings.sinks
    return Retry(budget_s=sinks.retry_budget_s, backoff=Backoff(base_s=sinks.retry_base_s, cap_s=sinks.retry_cap_s))


def store_sinks(settings: Settings) -> FlowSinks:
    """Sinks for the four stores, connecting lazily on each worker."""
    endpoints = resolve_endpoints(settings)
    retry = retry_policy(settings)
    return FlowSinks(
        influx=InfluxSink(
            lambda: influx_client(settings, endpoints.influx), settings.influx.bucket, settings.influx.org, retry
        ),
        redis=RedisSink(
            lambda: redis_client(settings, endpoints.redis), retry, RedisPolicy(price_ttl_s=settings.redis.price_ttl_s)
        ),
        mongo=MongoSink(lambda: mongo_client(settings, endpoints.mongo), settings.mongo.db, retry),
        postgres=PostgresSink(lambda: postgres_connect(settings, endpoints.postgres), retry),
    )


def active_strategies(settings: Settings) -> list[WhaleFollower]:
    """Active whale-follower strategies: configured in MongoDB and registered in PostgreSQL.

    A configuration without its `trading_strategies` row is skipped with a warning: its signals
    could not be stored (the row is their foreign key).
    """
    endpoints = resolve_endpoints(settings)
    with mongo_client(settings, endpoints.mongo) as client:
        documents: list[dict[str, Any]] = list(client[settings.mongo.db][STRATEGY_CONFIGS.name].find({}))
    holding = int(settings.signals.default_holding_hours * SECONDS_PER_HOUR)
    strategies = load_strategies(documents, holding)
    if not strategies:
        return []
    with postgres_connect(settings, endpoints.postgres) as conn:
        rows = conn.execute(
            "SELECT strategy_id::text FROM trading_strategies WHERE strategy_id::text = ANY(%s) AND status = 'active'",
            ([s.strategy_id for s in strategies],),
        ).fetchall()
    registered = {row[0] for row in rows}
    for strategy in strategies:
        if strategy.strategy_id not in registered:
            log.warning("strategy=%s skipped: no active trading_strategies row", strategy.strategy_id)
    return [s for s in strategies if s.strategy_id in registered]


def flow_config(settings: Settings, strategies: list[WhaleFollower]) -> FlowConfig:
    """Thresholds from the settings, labels from the labels file, and the strategies."""
    whales = settings.whales
    labels = load_labels(Path(whales.labels_file)) if whales.labels_file else {}
    return FlowConfig(
        pricing=PricingConfig(
            stable_mints=frozenset(settings.pricing.stable_mints),
            min_learn_usd=settings.pricing.min_learn_usd,
            feed_stale_s=settings.pricing.feed_stale_s,
            token_stale_s=settings.pricing.token_stale_s,
            max_tokens=settings.pricing.max_tokens,
        ),
        whales=WhaleConfig(
            tiers=tuple((t.name, t.min_usd) for t in whales.tiers),
            impact_medium_pct=whales.impact_medium_pct,
            impact_high_pct=whales.impact_high_pct,
            labels=labels,
        ),
        strategies=strategies,
        parse=ParseConfig(max_ahead_s=settings.parse.max_ahead_s, max_decimals=settings.parse.max_decimals),
    )


def recovery_config(directory: Path | None) -> RecoveryConfig | None:
    """A recovery configuration for `directory`, initialising it on first use."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, RECOVERY_PARTITIONS)
        log.info("recovery_dir=%s initialised partitions=%d", directory, RECOVERY_PARTITIONS)
    else:
        log.info("recovery_dir=%s resuming", directory)
    return RecoveryConfig(directory)


def run(flow: Dataflow, settings: Settings, recovery_dir: Path | None) -> None:
    """Execute `flow` in this process until its sources end; snapshots every `pipeline.snapshot_interval_s`."""
    cli_main(
        flow,
        workers_per_process=1,
        epoch_interval=timedelta(seconds=settings.pipeline.snapshot_interval_s),
        recovery_config=recovery_config(recovery_dir),
    )
