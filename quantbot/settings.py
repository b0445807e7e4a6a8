"""Configuration: TOML profiles plus environment overrides, into one frozen, validated `Settings`.

Resolution, lowest precedence first:

1. `config/default.toml`, the base every profile shares;
2. `config/<profile>.toml`, the profile chosen with `--profile` or `QUANTBOT_PROFILE` (default `local`,
   the embedded stack);
3. the environment: any key as `QUANTBOT_<SECTION>_<KEY>` (`QUANTBOT_POSTGRES_STATEMENT_TIMEOUT_MS=60000`), values
   read as TOML when they parse as TOML (numbers, booleans, arrays) and as plain strings otherwise.
   The conventional connection variables `QUANTBOT_POSTGRES_URL`, `QUANTBOT_MONGO_URL`,
   `QUANTBOT_MONGO_DB`, `QUANTBOT_REDIS_URL`, `QUANTBOT_INFLUX_URL`, `QUANTBOT_INFLUX_TOKEN`,
   `QUANTBOT_INFLUX_ORG` and `QUANTBOT_INFLUX_BUCKET` are instances of that rule.

Secrets (passwords, tokens, RPC keys) come from the environment only: a secret, or a URL carrying one
(user-info password, `password=`, `token=`, `api-key=` ... parameter), in a file is refused.
`Settings.redacted()` is what may be printed (see `quantbot.redaction`). Any problem raises one `ConfigError`
naming the key, where its value came from, and what is wrong; the CLI turns it into exit status 78.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from quantbot.errors import ConfigError
from quantbot.feeds import SOL_USD_FEED_ID
from quantbot.models import WSOL_MINT
from quantbot.redaction import REDACTED, redact, redact_url
from quantbot.units import SECONDS_PER_DAY

ENV_PREFIX = "QUANTBOT_"
DEFAULT_PROFILE = "local"
# Environment variables in our namespace that are not configuration keys.
RESERVED_ENV = frozenset({"QUANTBOT_PROFILE", "QUANTBOT_CONFIG_DIR"})
# Variables the test suite reads for itself (QUANTBOT_TEST_POSTGRES_URL, ...).
RESERVED_ENV_PREFIXES = ("QUANTBOT_TEST_",)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_url_scheme(url: str | None, schemes: tuple[str, ...]) -> str | None:
    if url is None or url == "":
        return None
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in schemes:
        raise ValueError(f"`{redact_url(url)}` is not a {' or '.join(schemes)} URL")
    return url


class PostgresSettings(_Section):
    """PostgreSQL: users, strategies, signals, trades, events (the relational store)."""

    url: str | None = Field(None, description="libpq URL; empty: the embedded stack's server")
    password: SecretStr | None = Field(None, description="secret; QUANTBOT_POSTGRES_PASSWORD")
    embedded: bool = Field(False, description="may `stack up` start a local server when none is reachable")
    connect_timeout_s: float = Field(5.0, gt=0)
    statement_timeout_ms: int = Field(30_000, ge=0, description="0 = no limit")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None

    _scheme = field_validator("url")(lambda v: _check_url_scheme(v, ("postgresql", "postgres")))


class MongoSettings(_Section):
    """MongoDB: token metadata, market snapshots, whale activity, strategy configurations."""

    url: str | None = Field(None, description="mongodb:// URL; empty: the embedded stack's server")
    db: str = Field("quantbot", min_length=1, description="database name")
    username: str | None = None
    password: SecretStr | None = Field(None, description="secret; QUANTBOT_MONGO_PASSWORD")
    embedded: bool = False
    timeout_ms: int = Field(5_000, gt=0, description="server selection and socket timeout")
    tls: bool = False
    tls_ca_file: str | None = None

    _scheme = field_validator("url")(lambda v: _check_url_scheme(v, ("mongodb", "mongodb+srv")))


class RedisSettings(_Section):
    """Redis: latest prices, active signals, sessions, API response cache."""

    url: str | None = Field(None, description="redis:// or rediss:// URL; empty: the embedded stack's server")
    password: SecretStr | None = Field(None, description="secret; QUANTBOT_REDIS_PASSWORD")
    embedded: bool = False
    socket_timeout_s: float = Field(5.0, gt=0)
    price_ttl_s: float = Field(30.0, gt=0, description="TTL of price:{token} hashes (the schema's 30 s)")

    _scheme = field_validator("url")(lambda v: _check_url_scheme(v, ("redis", "rediss", "unix")))


class InfluxSettings(_Section):
    """InfluxDB v2 write API: token prices, trading metrics, system performance, signal events."""

    url: str | None = Field(None, description="http(s) URL; empty: the embedded stack's server")
    token: SecretStr | None = Field(None, description="secret; QUANTBOT_INFLUX_TOKEN")
    org: str = Field("quantbot", min_length=1)
    bucket: str = Field("quantbot", min_length=1)
    retention_days: int = Field(
        90, ge=0, description="bucket retention where the server has a buckets API; 0 = forever"
    )
    embedded: bool = False
    timeout_ms: int = Field(10_000, gt=0)
    verify_ssl: bool = True

    _scheme = field_validator("url")(lambda v: _check_url_scheme(v, ("http", "https")))


class PipelineSettings(_Section):
    """The dataflow engine."""

    snapshot_interval_s: float = Field(
        5.0, gt=0, description="seconds between recovery snapshots: what a crash may make the flow redo"
    )
    replay_batch_size: int = Field(512, ge=1, description="frames a replay hands the flow per batch")
    gc_young_threshold: int = Field(
        10_000,
        ge=1,
        description="object allocations between the garbage collector's young passes while a flow runs "
        "(Python's own default is 700; see flows.runtime.collector_tuned)",
    )


class ParseSettings(_Section):
    """What the parse step accepts (see quantbot.bounds): implausible values become dead letters."""

    max_ahead_s: int = Field(
        300, ge=0, description="a block or price time further ahead of the frame's receive time is refused"
    )
    max_decimals: int = Field(19, ge=0, le=255, description="token balances with more decimals are refused")


class PricingSettings(_Section):
    """USD valuation (see quantbot.pricing: the precedence and freshness rule of prices)."""

    stable_mints: list[str] = Field(
        ["EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"],
        description="mints valued at face (USDC, USDT)",
    )
    min_learn_usd: float = Field(10.0, ge=0, description="trades worth less teach no price")
    feed_stale_s: int = Field(300, ge=0, description="a SOL/USD feed quote older than this gives way to trades")
    token_stale_s: int = Field(SECONDS_PER_DAY, ge=0, description="a learned token price older than this is not used")
    max_tokens: int = Field(200_000, ge=1, description="learned token prices kept at most")
    feed_precedence: list[str] = Field(
        ["pyth", "birdeye", "jupiter"], description="feeds in order of trust; the first fresh quote prices a token"
    )
    disagreement_share: float = Field(
        0.05, gt=0, description="a feed and the chain further apart than this share of the feed's price disagree"
    )
    disagreement_every_s: int = Field(
        60, ge=0, description="a token's disagreement is a system event at most once per this many seconds"
    )


class WhaleTier(_Section):
    """One whale category and the USD value from which a trade belongs to it."""

    name: str = Field(min_length=1)
    min_usd: float = Field(gt=0)


class WhaleSettings(_Section):
    """Whale detection (see quantbot.whales)."""

    tiers: list[WhaleTier] = Field(
        [
            WhaleTier(name="large", min_usd=50_000),
            WhaleTier(name="whale", min_usd=250_000),
            WhaleTier(name="mega", min_usd=1_000_000),
        ],
        min_length=1,
    )
    labels_file: str | None = Field(None, description="TOML of known wallets: [labels.<address>] name, type")
    impact_medium_pct: float = Field(0.5, ge=0)
    impact_high_pct: float = Field(2.0, gt=0)

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: list[WhaleTier]) -> list[WhaleTier]:
        minimums = [t.min_usd for t in tiers]
        if minimums != sorted(minimums):
            raise ValueError(f"tiers must be in ascending min_usd order, got {minimums}")
        return tiers


class SignalSettings(_Section):
    """Trading signals (see quantbot.signals)."""

    default_holding_hours: float = Field(
        24.0, gt=0, description="signal lifetime when a strategy has no time-based exit"
    )


class SinkSettings(_Section):
    """Store writes from the dataflow."""

    retry_budget_s: float = Field(60.0, ge=0, description="keep retrying a transient store failure this long")
    retry_base_s: float = Field(0.1, gt=0, description="first backoff step")
    retry_cap_s: float = Field(5.0, gt=0, description="longest wait between two attempts")


class MigrateSettings(_Section):
    """Schema changes under running flows (`quantbot migrate down`)."""

    lock_wait_s: float = Field(
        5.0,
        ge=0,
        description="how long a destructive migration waits for running flows to end before it refuses",
    )


class ObservabilitySettings(_Section):
    """The running flow's own operational data (`system_performance` points, `system_events` rows) and its
    health, readiness and metrics over HTTP (`--http-port`)."""

    interval_s: float = Field(10.0, gt=0, description="one system_performance point per this many seconds")
    service: str = Field("quantbot", min_length=1, description="the point's `service` tag")
    instance: str = Field("", description="the point's `instance` tag; empty: <hostname>-<pid>")
    region: str = Field("local", min_length=1, description="the point's `region` tag")
    dead_letter_burst: int = Field(
        100, ge=0, description="more dead letters than this in one interval is a `dead_letter_burst` event"
    )
    http_host: str = Field(
        "127.0.0.1", min_length=1, description="address the HTTP endpoint listens on; a container sets 0.0.0.0"
    )
    ready_cache_s: float = Field(
        2.0, ge=0, description="a readiness answer about the stores is reused this long: scrapers cannot hammer them"
    )
    probe_timeout_s: float = Field(2.0, gt=0, description="bound on each store's probe when readiness is asked")
    stale_after_s: float = Field(
        30.0, gt=0, description="a source still reading with no item for this long is stale: not ready"
    )


class SolanaSettings(_Section):
    """The live Solana sources (`quantbot run`, `record`) and the backfill (`quantbot backfill`).

    Connection settings come from the environment: `QUANTBOT_SOLANA_RPC_URL`, `QUANTBOT_SOLANA_WS_URL`,
    `QUANTBOT_SOLANA_GRPC_URL` and the secret `QUANTBOT_SOLANA_GRPC_TOKEN`. Providers put API keys in the
    URL (`?api-key=...`, or a path segment): those URLs are secrets too, masked wherever printed.
    """

    source: Literal["websocket", "grpc"] = Field(
        "websocket", description="websocket: logsSubscribe + getTransaction; grpc: Yellowstone Subscribe"
    )
    programs: list[str] = Field([], description="program ids to follow; empty: every program the decoder knows")
    program_groups: list[list[str]] = Field(
        [],
        description="programs per source partition (workers share partitions); empty: one partition for all",
    )
    commitment: Literal["processed", "confirmed", "finalized"] = "confirmed"
    encoding: Literal["base64", "json", "jsonParsed"] = Field("base64", description="getTransaction encoding")
    include_failed: bool = Field(False, description="fetch and record failed transactions too (they decode to nothing)")
    rpc_url: str | None = Field(None, description="HTTP JSON-RPC URL; QUANTBOT_SOLANA_RPC_URL")
    ws_url: str | None = Field(None, description="websocket PubSub URL; empty: rpc_url with ws(s)://")
    grpc_url: str | None = Field(None, description="Yellowstone gRPC URL; QUANTBOT_SOLANA_GRPC_URL")
    grpc_token: SecretStr | None = Field(None, description="secret x-token; QUANTBOT_SOLANA_GRPC_TOKEN")
    requests_per_s: float = Field(
        10.0, gt=0, description="RPC requests per second at most (a public RPC allows 10; paid plans more)"
    )
    max_in_flight: int = Field(16, ge=1, description="RPC requests awaiting an answer at most")
    request_timeout_s: float = Field(10.0, gt=0, description="an RPC answer slower than this is retried")
    retry_budget_s: float = Field(
        120.0, gt=0, description="an RPC request failing (429, 5xx, timeouts) this long is given up on"
    )
    null_retry_s: float = Field(
        30.0, gt=0, description="a getTransaction answered null is asked again this long, then a dead letter"
    )
    backoff_base_s: float = Field(0.25, gt=0, description="first wait before a retry or a reconnection")
    backoff_cap_s: float = Field(30.0, gt=0, description="longest wait before a retry or a reconnection")
    stale_after_s: float = Field(
        10.0, gt=0, description="a live stream silent this long is dead: reconnect (slots arrive every 0.4 s)"
    )
    ping_interval_s: float = Field(20.0, gt=0, description="websocket ping period")
    max_message_mib: float = Field(
        64.0, gt=0, description="largest websocket message accepted (notifications exceed websockets' 1 MiB)"
    )
    seen_max: int = Field(
        20_000,
        ge=1,
        description="signatures remembered (and snapshotted) to fetch each once: 3 min of mainnet's ~110 DEX tx/s",
    )
    backfill_batch_size: int = Field(
        20, ge=1, description="getTransaction calls per JSON-RPC batch; 1: no batches (some plans refuse them)"
    )

    _rpc_scheme = field_validator("rpc_url")(lambda v: _check_url_scheme(v, ("http", "https")))
    _ws_scheme = field_validator("ws_url")(lambda v: _check_url_scheme(v, ("ws", "wss")))
    _grpc_scheme = field_validator("grpc_url")(lambda v: _check_url_scheme(v, ("http", "https")))

    @field_validator("programs")
    @classmethod
    def _programs_are_keys(cls, programs: list[str]) -> list[str]:
        for program in programs:
            if not _is_pubkey(program):
                raise ValueError(f"`{program}` is not a base58 program id")
        return programs

    @field_validator("program_groups")
    @classmethod
    def _groups_are_keys(cls, groups: list[list[str]]) -> list[list[str]]:
        seen: set[str] = set()
        for group in groups:
            if not group:
                raise ValueError("a program group is empty")
            for program in group:
                if not _is_pubkey(program):
                    raise ValueError(f"`{program}` is not a base58 program id")
                if program in seen:
                    raise ValueError(f"program `{program}` is in two groups")
                seen.add(program)
        return groups


_BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_PUBKEY_CHARS = (32, 44)
"""A 32-byte key is 32 to 44 base58 characters."""


def _is_pubkey(text: str) -> bool:
    return _PUBKEY_CHARS[0] <= len(text) <= _PUBKEY_CHARS[1] and set(text) <= _BASE58


_FEED_NAMES = ("pyth", "birdeye", "jupiter")


class FeedSettings(_Section):
    """The price feeds that run inside `quantbot run`: Pyth Hermes (SSE), Birdeye (websocket), Jupiter (polled).

    Where to connect and the keys come from the environment: `QUANTBOT_PYTH_URL`, `QUANTBOT_BIRDEYE_WS_URL`,
    `QUANTBOT_BIRDEYE_API_KEY`, `QUANTBOT_JUPITER_URL`, `QUANTBOT_JUPITER_API_KEY` (aliases of
    `QUANTBOT_FEEDS_<KEY>`). Keys are secrets: masked wherever printed.
    """

    enabled: list[Literal["pyth", "birdeye", "jupiter"]] = Field(
        [], description="which feeds `quantbot run` starts; empty: none"
    )
    pyth_url: str = Field("https://hermes.pyth.network", description="Hermes base URL; QUANTBOT_PYTH_URL")
    pyth_ids: dict[str, str] = Field(
        {SOL_USD_FEED_ID: WSOL_MINT},
        description="Pyth price feed id (hex, no 0x) -> the mint it prices; default SOL/USD",
    )
    rate_limited_wait_s: float = Field(
        60.0, gt=0, description="wait after a 429 without Retry-After (Hermes' public instance: 60 s)"
    )
    birdeye_ws_url: str = Field(
        "wss://public-api.birdeye.so/socket/solana", description="Birdeye websocket URL; QUANTBOT_BIRDEYE_WS_URL"
    )
    birdeye_api_key: SecretStr | None = Field(None, description="secret; QUANTBOT_BIRDEYE_API_KEY")
    birdeye_tokens: list[str] = Field([], description="mints whose price Birdeye streams (100 per connection)")
    birdeye_chart: str = Field("1m", description="the candle of SUBSCRIBE_PRICE: its close is the price")
    large_trade_min_usd: float = Field(
        0.0, ge=0, description="SUBSCRIBE_LARGE_TRADE_TXS from this USD value (Birdeye's minimum is 1000); 0: not asked"
    )
    large_trade_delay_s: float = Field(
        30.0, gt=0, description="a large trade whose transaction the flow has not decoded this long after is missed"
    )
    jupiter_url: str = Field("https://lite-api.jup.ag", description="Jupiter API base; QUANTBOT_JUPITER_URL")
    jupiter_api_key: SecretStr | None = Field(None, description="secret x-api-key; QUANTBOT_JUPITER_API_KEY")
    jupiter_tokens: list[str] = Field([], description="mints polled when no live feed covers them")
    jupiter_whale_keep_s: float = Field(
        86_400.0,
        ge=0,
        description="a token a whale traded is polled this long after its last whale, as are tokens strategies "
        "hold; 0: only jupiter_tokens",
    )
    jupiter_max_tokens: int = Field(
        500, ge=1, description="tokens polled at most (10 requests a round: a round's length bounds a price's age)"
    )
    jupiter_requests_per_s: float = Field(
        1.0, gt=0, description="Jupiter requests per second at most (the keyless tier allows 60 a minute)"
    )
    stale_s: dict[str, int] = Field(
        {"pyth": 60, "birdeye": 120, "jupiter": 300},
        description="per feed, how old (block time) its quote may be and still price a trade; others: feed_stale_s",
    )
    silent_after_s: float = Field(20.0, gt=0, description="a stream with no message this long is dead: reconnect")
    birdeye_silent_after_s: float = Field(
        120.0, gt=0, description="the same for Birdeye, whose candles move only when a token trades"
    )
    request_timeout_s: float = Field(10.0, gt=0, description="connection and HTTP request timeout")
    backoff_base_s: float = Field(0.5, gt=0, description="first wait before a reconnection")
    backoff_cap_s: float = Field(30.0, gt=0, description="longest wait before a reconnection")

    _pyth_scheme = field_validator("pyth_url")(lambda v: _check_url_scheme(v, ("http", "https")))
    _jupiter_scheme = field_validator("jupiter_url")(lambda v: _check_url_scheme(v, ("http", "https")))
    _birdeye_scheme = field_validator("birdeye_ws_url")(lambda v: _check_url_scheme(v, ("ws", "wss")))

    @field_validator("pyth_ids")
    @classmethod
    def _ids_are_hex(cls, ids: dict[str, str]) -> dict[str, str]:
        normalised: dict[str, str] = {}
        for feed_id, mint in ids.items():
            bare = feed_id.lower().removeprefix("0x")
            if len(bare) != PYTH_ID_HEX_DIGITS or any(c not in "0123456789abcdef" for c in bare):
                raise ValueError(f"`{feed_id}` is not a Pyth price feed id (64 hex digits)")
            if not _is_pubkey(mint):
                raise ValueError(f"`{mint}` is not a base58 mint")
            normalised[bare] = mint
        return normalised

    @field_validator("birdeye_tokens", "jupiter_tokens")
    @classmethod
    def _tokens_are_keys(cls, tokens: list[str]) -> list[str]:
        for token in tokens:
            if not _is_pubkey(token):
                raise ValueError(f"`{token}` is not a base58 mint")
        return tokens

    @field_validator("stale_s")
    @classmethod
    def _stale_of_feeds(cls, stale: dict[str, int]) -> dict[str, int]:
        for name, seconds in stale.items():
            if seconds < 0:
                raise ValueError(f"stale_s of `{name}` is negative")
        return stale


PYTH_ID_HEX_DIGITS = 64
"""A Pyth price feed id is 32 bytes."""
ENV_ALIASES = {
    "QUANTBOT_PYTH_URL": ("feeds", "pyth_url"),
    "QUANTBOT_BIRDEYE_WS_URL": ("feeds", "birdeye_ws_url"),
    "QUANTBOT_BIRDEYE_API_KEY": ("feeds", "birdeye_api_key"),
    "QUANTBOT_JUPITER_URL": ("feeds", "jupiter_url"),
    "QUANTBOT_JUPITER_API_KEY": ("feeds", "jupiter_api_key"),
}
"""The feeds' conventional variables, which are not of the `QUANTBOT_<SECTION>_<KEY>` form."""


class StackSettings(_Section):
    """The embedded local stack (`quantbot stack`)."""

    dir: str = Field(".quantbot/stack", description="data, logs and the state file of embedded servers")


class LoggingSettings(_Section):
    """Log output of every command."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class AnalyticsSettings(_Section):
    """What the flow derives over feed time (see quantbot.analytics): windows, snapshots, follow-ups, outcomes."""

    snapshot_interval_s: int = Field(
        300, gt=0, description="feed seconds between market snapshots, strategy metrics and token documents"
    )
    window_s: int = Field(86_400, gt=0, description="the rolling window of the 24 h change, high, low and volume")
    bucket_s: int = Field(300, gt=0, description="the window's resolution: one bucket per token per this many seconds")
    max_tokens: int = Field(20_000, ge=1, description="tokens with a window at most (least recently traded forgotten)")
    max_pools: int = Field(
        50_000, ge=1, description="pools whose reserves are kept at most (least recently traded forgotten)"
    )
    follow_up_s: int = Field(10_800, gt=0, description="a whale's follow-up: its token's move this long after it")
    related_window_s: int = Field(
        86_400, ge=0, description="a whale's related transactions: the same wallet's whales within this long"
    )
    influence_full_move_pct: float = Field(
        10.0, gt=0, description="historicalInfluence is 10 when a wallet's whales were followed by this move on average"
    )
    max_wallets: int = Field(100_000, ge=1, description="wallets whose whale history is kept at most")
    max_pending: int = Field(
        100_000, ge=1, description="pending follow-ups and open signals at most (the oldest is settled early)"
    )
    top_movers: int = Field(10, ge=0, description="tokens listed as a snapshot's top movers")
    mover_min_volume_usd: float = Field(10_000.0, ge=0, description="24 h volume a token needs to be a top mover")
    token_refresh_s: int = Field(86_400, gt=0, description="feed seconds after which a token's facts are asked again")
    performance_window_days: int = Field(30, gt=0, description="the strategy document's performance.last30Days")
    token_document_every_s: int = Field(
        3_600, gt=0, description="traded tokens' documents are rewritten at boundaries that are multiples of this"
    )
    repeats_max: int = Field(
        10_000, ge=1, description="transactions remembered so that a repeat (a duplicated line) is not counted twice"
    )

    @model_validator(mode="after")
    def _whole_intervals(self) -> AnalyticsSettings:
        if self.window_s % self.bucket_s:
            raise ValueError(f"window_s ({self.window_s}) must be a multiple of bucket_s ({self.bucket_s})")
        if self.token_document_every_s % self.snapshot_interval_s:
            raise ValueError(
                f"token_document_every_s ({self.token_document_every_s}) must be a multiple of "
                f"snapshot_interval_s ({self.snapshot_interval_s})"
            )
        return self


class Settings(_Section):
    """The whole effective configuration: one frozen object built once at start."""

    profile: str = DEFAULT_PROFILE
    logging: LoggingSettings = LoggingSettings()
    postgres: PostgresSettings = PostgresSettings()
    mongo: MongoSettings = MongoSettings()
    redis: RedisSettings = RedisSettings()
    influx: InfluxSettings = InfluxSettings()
    stack: StackSettings = StackSettings()
    pipeline: PipelineSettings = PipelineSettings()
    parse: ParseSettings = ParseSettings()
    pricing: PricingSettings = PricingSettings()
    whales: WhaleSettings = WhaleSettings()
    signals: SignalSettings = SignalSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    sinks: SinkSettings = SinkSettings()
    migrate: MigrateSettings = MigrateSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    solana: SolanaSettings = SolanaSettings()
    feeds: FeedSettings = FeedSettings()

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data with every secret, and every secret a URL carries, replaced by `***`."""
        redacted: dict[str, Any] = _redact(self.model_dump(mode="python"))
        return redacted


SECRET_KEYS = frozenset(
    f"{section}.{name}"
    for section, model in Settings.model_fields.items()
    if isinstance(model.default, BaseModel)
    for name, field in type(model.default).model_fields.items()
    if field.annotation is not None and "SecretStr" in str(field.annotation)
)


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str) and _is_url_key(key):
        return redact_url(value)
    if isinstance(value, str):
        return redact(value)
    return value


def _is_url_key(key: str) -> bool:
    return key == "url" or key.endswith("_url")


def default_config_dir() -> Path:
    """Where the TOML profiles are: `QUANTBOT_CONFIG_DIR`, else `./config`, else the source tree's."""
    if env := os.environ.get("QUANTBOT_CONFIG_DIR"):
        return Path(env)
    local = Path.cwd() / "config"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[1] / "config"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("profile", f"file `{path}` does not exist", source=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("profile", f"`{path}` is not valid TOML: {exc}", source=str(path)) from exc


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _refuse_file_secrets(data: Mapping[str, Any], source: str) -> None:
    for section, values in data.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if dotted in SECRET_KEYS and value not in (None, ""):
                aliases = [name for name, path in ENV_ALIASES.items() if path == (section, key)]
                env = aliases[0] if aliases else f"{ENV_PREFIX}{section}_{key}".upper()
                raise ConfigError(dotted, f"secrets come from the environment only: set {env}", source)
            if _is_url_key(key) and isinstance(value, str) and (shown := redact_url(value)) != value:
                if shown == REDACTED:
                    raise ConfigError(dotted, "is not a URL that can be parsed", source)
                raise ConfigError(
                    dotted,
                    f"a URL in a file must not carry a secret (password, token or API key): "
                    f"set {ENV_PREFIX}{section.upper()}_PASSWORD or put the whole URL in the environment",
                    source,
                )


def _env_key_path(name: str) -> tuple[str, ...] | None:
    """Map `QUANTBOT_REDIS_PRICE_TTL_S` to ("redis", "price_ttl_s") by the model's own field names."""
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    rest = name[len(ENV_PREFIX) :].lower()
    if rest in Settings.model_fields:
        return (rest,)
    for section, info in Settings.model_fields.items():
        if rest.startswith(section + "_") and isinstance(info.default, BaseModel):
            field = rest[len(section) + 1 :]
            if field in type(info.default).model_fields:
                return (section, field)
    return None


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    overrides: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            continue
        path = _env_key_path(name)
        if path is None:
            problem = "is not a configuration key (see `quantbot config show` for the keys)"
            raise ConfigError(name, problem, "environment")
        verbatim = path[-1] in {"url", "password", "token", "db", "org", "bucket"} or path[-1].endswith(
            ("_url", "_token", "_key")
        )
        value: Any = raw if verbatim else _parse_env_value(raw)
        target = overrides
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        sources[path] = f"environment {name}"
    return overrides, sources


def load_settings(
    profile: str | None = None,
    config_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings.

    Args:
        profile: the profile name; default `QUANTBOT_PROFILE`, else `local`.
        config_dir: where the TOML profiles are; default `default_config_dir()`.
        environ: the environment to read; default `os.environ`.

    Raises:
        ConfigError: naming the first offending key, its source and the problem.
    """
    env = os.environ if environ is None else environ
    profile = profile or env.get("QUANTBOT_PROFILE") or DEFAULT_PROFILE
    directory = config_dir or default_config_dir()
    base_path = directory / "default.toml"
    data = _read_toml(base_path)
    _refuse_file_secrets(data, str(base_path))
    file_sources = {(s, k): str(base_path) for s, v in data.items() if isinstance(v, dict) for k in v}
    if profile != "default":
        profile_path = directory / f"{profile}.toml"
        if not profile_path.exists():
            known = sorted(p.stem for p in directory.glob("*.toml"))
            raise ConfigError("profile", f"unknown profile `{profile}`; known: {', '.join(known)}", str(directory))
        layer = _read_toml(profile_path)
        _refuse_file_secrets(layer, str(profile_path))
        data = _merge(data, layer)
        file_sources.update({(s, k): str(profile_path) for s, v in layer.items() if isinstance(v, dict) for k in v})
    overrides, env_sources = _env_overrides(env)
    data = _merge(data, overrides)
    data["profile"] = profile
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = tuple(str(p) for p in error["loc"])
        source = env_sources.get(path) or file_sources.get((path[0], path[-1])) or "defaults"
        message = redact(error["msg"].removeprefix("Value error, "))
        if error["type"] == "extra_forbidden":
            message = "is not a known key"
        raise ConfigError(".".join(path), message, source) from None
