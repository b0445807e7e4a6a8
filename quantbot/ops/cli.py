"""The `quantbot` command.

Every subcommand reads one `Settings` (profile `local` unless `--profile`/`QUANTBOT_PROFILE` says
otherwise). A bad configuration exits with status 78 and one line naming the key; `--help` always
works, whatever the configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click
import orjson
from rich.console import Console
from rich.table import Table

from quantbot import __version__
from quantbot.cluster import ClusterSpec, ClusterSpecError, parse_addresses
from quantbot.errors import EX_CONFIG, EX_TEMPFAIL, ConfigError, QuantbotError, SchemaInUseError
from quantbot.health import SourceActivity
from quantbot.redaction import redact
from quantbot.settings import Settings, load_settings

log = logging.getLogger("quantbot")
F = TypeVar("F", bound=Callable[..., Any])

EX_UNAVAILABLE = 69
"""sysexits.h: a service the command needs is unavailable (a store is down)."""

# Piped output (logs, CI) has no terminal width to go by; tables of URLs need more than 80 columns.
PIPED_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)


class _Context:
    """Lazily built settings, so `--help` and `--version` never depend on the configuration."""

    def __init__(self, profile: str | None, config_dir: Path | None, log_level: str | None) -> None:
        self.profile = profile
        self.config_dir = config_dir
        self.log_level = log_level
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.profile, self.config_dir)
            configure_logging(self.log_level or self._settings.logging.level, self._settings.logging.format)
        return self._settings


pass_context = click.make_pass_decorator(_Context)


def configure_logging(level: str, fmt: str) -> None:
    """Module loggers everywhere; this is the one place that decides where their records go.

    Every record, from quantbot or from any library, is written through `redact`: a URL or DSN in a
    message, its arguments or its traceback loses its secrets.
    """
    formatter: logging.Formatter
    if fmt == "json":
        formatter = _JsonFormatter()
    else:
        formatter = _RedactingFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then masks every secret in the finished line (traceback included)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per record; message and traceback redacted before encoding (quotes get escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def _fail(message: str, status: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {redact(message)}", highlight=False, soft_wrap=True)
    sys.exit(status)


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if cell is None else redact(str(cell)) for cell in row))
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="quantbot")
@click.option(
    "--profile",
    envvar="QUANTBOT_PROFILE",
    help="Configuration profile: local (embedded stack, the default), production, or any config/<name>.toml.",
)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="QUANTBOT_CONFIG_DIR",
    help="Directory of the TOML profiles (default: ./config).",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Overrides logging.level.")
@click.pass_context
def cli(ctx: click.Context, profile: str | None, config_dir: Path | None, log_level: str | None) -> None:
    """quantbot: Solana DEX trades, prices, whales and signals into InfluxDB, MongoDB, Redis and PostgreSQL.

    \b
    First steps on a new machine:
      quantbot stack up        start the embedded stores this profile needs
      quantbot migrate up      create the schema in all four stores
      quantbot doctor          check every store is reachable and migrated

    Configuration: config/default.toml, then config/<profile>.toml, then the environment
    (QUANTBOT_<SECTION>_<KEY>, e.g. QUANTBOT_POSTGRES_URL). `quantbot config show` prints the result.
    """
    ctx.obj = _Context(profile, config_dir, log_level)


# ---------------------------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@pass_context
def config_show(ctx: _Context, fmt: str) -> None:
    """Print the effective configuration, secrets and URL passwords redacted.

    Each key can be overridden as QUANTBOT_<SECTION>_<KEY>; secrets (postgres.password,
    mongo.password, redis.password, influx.token) can only be set that way.
    """
    data = ctx.settings.redacted()
    if fmt == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f'profile = "{data.pop("profile")}"')
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"# {key} = (unset)" if value is None else f"{key} = {orjson.dumps(value).decode()}")


# ----------------------------------------------------------------------------------------------- stack


def _wanted(settings: Settings) -> list[Any]:
    from quantbot.ops.stack import StoreWanted
    from quantbot.stack_state import StoreName

    return [
        StoreWanted(StoreName(name), getattr(settings, name).url, getattr(settings, name).embedded)
        for name in ("postgres", "mongo", "redis", "influx")
    ]


def _print_stack(title: str, states: Sequence[Any]) -> None:
    rows = [(s.name, s.action, s.url, s.pid, s.detail) for s in states]
    console.print(_table(title, ["store", "state", "url", "pid", "detail"], rows))


@cli.group()
def stack() -> None:
    """The embedded local stack: real stores started on this machine (profile `local`).

    \b
    Each store the profile marks `embedded = true` and that is not already reachable is started
    from packages quantbot installs (PostgreSQL, Valkey, SecantusDB) or from victoria-metrics when
    installed, on free loopback ports, with data under `stack.dir` (default .quantbot/stack).
    Other commands find the ports there. Data survives `stack down`; delete the directory to wipe it.
    """


@stack.command("up")
@pass_context
def stack_up(ctx: _Context) -> None:
    """Start what is missing; reuse what runs. Exits 69 if a wanted store could not be started."""
    from quantbot.ops import stack as embedded

    states = embedded.up(_wanted(ctx.settings), Path(ctx.settings.stack.dir))
    _print_stack("stack up", states)
    if any(s.action in ("unavailable", "failed") for s in states):
        sys.exit(EX_UNAVAILABLE)


@stack.command("down")
@pass_context
def stack_down(ctx: _Context) -> None:
    """Stop the servers the stack started (their data is kept)."""
    from quantbot.ops import stack as embedded

    _print_stack("stack down", embedded.down(Path(ctx.settings.stack.dir)))


@stack.command("status")
@pass_context
def stack_status(ctx: _Context) -> None:
    """Say, for each store, whether it is running, stopped or external. Exits 69 if one is down."""
    from quantbot.ops import stack as embedded

    states = embedded.status(_wanted(ctx.settings), Path(ctx.settings.stack.dir))
    _print_stack("stack status", states)
    if any(s.action not in ("running", "external") for s in states):
        sys.exit(EX_UNAVAILABLE)


# --------------------------------------------------------------------------------------------- migrate


def _print_reports(title: str, reports: Sequence[Any]) -> None:
    rows = [
        (r.store, r.url, {True: "yes", False: "NO", None: "-"}[r.reachable], r.version, r.schema, r.detail)
        for r in reports
    ]
    console.print(_table(title, ["store", "url", "reachable", "server", "schema", "detail"], rows))


@cli.group()
def migrate() -> None:
    """Create, upgrade or remove the schema of all four stores.

    \b
    PostgreSQL: numbered migrations recorded in `schema_migrations` (safe from two processes at once).
    MongoDB: four collections with $jsonSchema validators and indexes, updated in place.
    InfluxDB: the bucket and its retention, where the server has a buckets API.
    Redis: key patterns only, built in code; nothing to create.
    """


@migrate.command("up")
@pass_context
def migrate_up(ctx: _Context) -> None:
    """Bring every store to the latest schema; running it again changes nothing."""
    from quantbot.ops import schema as operations

    reports = operations.migrate_up(ctx.settings)
    _print_reports("migrate up", reports)
    if not all(r.ok for r in reports):
        sys.exit(EX_UNAVAILABLE)


@migrate.command("down")
@click.option(
    "--to", "target", type=click.IntRange(min=0), required=True, help="PostgreSQL version to go down to; 0 = empty."
)
@click.option("--yes", is_flag=True, help="Do not ask before dropping data (needed without a terminal).")
@pass_context
def migrate_down(ctx: _Context, target: int, yes: bool) -> None:
    """Revert PostgreSQL migrations above N; at 0 also drop quantbot's MongoDB collections.

    This deletes the data in what it drops. It waits migrate.lock_wait_s (default 5 s) for running
    flows (replays, live) to end; if some still run, it changes nothing, names them, and exits 75
    (EX_TEMPFAIL): stop them or let them finish, then run it again.
    """
    from quantbot.ops import schema as operations

    if not yes:
        click.confirm(f"revert to schema version {target} and drop the data above it?", abort=True)
    reports = operations.migrate_down(ctx.settings, target)
    _print_reports(f"migrate down --to {target}", reports)
    if not all(r.ok for r in reports):
        sys.exit(EX_UNAVAILABLE)


@migrate.command("status")
@pass_context
def migrate_status(ctx: _Context) -> None:
    """List PostgreSQL migrations with when each was applied, and the other stores' schema state."""
    from quantbot.ops import schema as operations
    from quantbot.schema import postgres as pg_schema
    from sinks.clients import postgres_connect, resolve_endpoints

    with postgres_connect(ctx.settings, resolve_endpoints(ctx.settings).postgres, autocommit=True) as conn:
        rows = [
            (m.version, m.name, "applied" if m.applied else "pending", m.applied_at) for m in pg_schema.status(conn)
        ]
    console.print(_table("postgres migrations", ["version", "name", "state", "applied at"], rows))
    reports = operations.doctor(ctx.settings)
    _print_reports("stores", reports)
    if not all(r.ok for r in reports):
        sys.exit(EX_UNAVAILABLE)


@cli.command()
@pass_context
def doctor(ctx: _Context) -> None:
    """Check each store: URL (password masked), reachable, server version, schema version.

    Exits 69 (EX_UNAVAILABLE) when a store is unreachable or not configured.
    """
    from quantbot.ops import schema as operations

    reports = operations.doctor(ctx.settings)
    _print_reports(f"doctor (profile {ctx.settings.profile})", reports)
    if not all(r.ok for r in reports):
        sys.exit(EX_UNAVAILABLE)


EX_DIFFERENCES = 65
"""sysexits.h EX_DATAERR: `reconcile` found differences between the stores that remain."""


@cli.command()
@click.option("--fix", is_flag=True, help="Repair each difference from its source of truth (PostgreSQL for signals).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True, help="Sample keys shown per check.")
@pass_context
def reconcile(ctx: _Context, fix: bool, fmt: str, limit: int) -> None:
    """Check that the four stores agree; with --fix, repair what the source of truth allows.

    \b
    Checks: pending signals without their strategy (trading_strategies, strategy_configs) or their
    whale (whale_activity); Redis signal:{id} hashes vs pending, unexpired signals; trading_signals
    points vs signals (VictoriaMetrics; skipped on other servers); whale tokens without a tokens
    document. --fix marks orphaned signals `orphaned` (never deletes them), rewrites missing hashes
    and points through the sinks, deletes stray ones, and writes minimal token documents where a
    whale knows the decimals (others are reported only).

    \b
    Exit status: 0 the stores agree (after --fix: everything found was repaired); 65 differences
    remain; 69 a store is unreachable.
    """
    from quantbot.ops import reconcile as operations

    try:
        report = operations.reconcile(ctx.settings, fix=fix, limit=limit)
    except operations.StoreUnavailableError as exc:
        _fail(str(exc), EX_UNAVAILABLE)
    if fmt == "json":
        sys.stdout.write(operations.report_json(report).decode() + "\n")
    else:
        rows = [
            (c.check, c.store, c.found, "-" if c.fixed is None else c.fixed, c.remaining, ", ".join(c.sample), c.note)
            for c in report.checks
        ]
        title = f"reconcile{' --fix' if fix else ''}: {'consistent' if report.consistent else 'differences remain'}"
        console.print(_table(title, ["check", "store", "found", "fixed", "remaining", "sample", "note"], rows))
    if not report.consistent:
        sys.exit(EX_DIFFERENCES)


# ---------------------------------------------------------------------------------------------- decode


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def decode(paths: tuple[Path, ...]) -> None:
    """Decode recorded getTransaction results (files or directories) into DEX activities, as JSON lines.

    \b
    Accepts json, jsonParsed and base64 encodings, JSON-RPC envelopes, bare results, lists of them
    and Yellowstone/Geyser JSON. One line per swap, liquidity add/remove or transfer, with raw
    integer amounts as strings. Unreadable files, and transactions a decoder failed on (naming the
    signature, program and instruction), are reported on stderr; the others still decode; the exit
    status is then 1.
    """
    from quantbot.solana.decode import decode_files

    sys.exit(decode_files(list(paths), sys.stdout, sys.stderr))


# ---------------------------------------------------------------------------------------------- replay

http_port_option = click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    help="Serve /healthz, /readyz and Prometheus /metrics on [observability] http_host (127.0.0.1):PORT "
    "while the command runs; 0: a free port, logged.",
)


def _cluster_spec(workers: int, process_id: int | None, addresses: str | None) -> ClusterSpec:
    try:
        return ClusterSpec(workers, process_id, parse_addresses(addresses) if addresses is not None else ())
    except ClusterSpecError as exc:
        raise click.UsageError(str(exc)) from exc


def cluster_options(command: F) -> F:
    """`--workers`, `--process-id` and `--addresses` (Bytewax's `-w`, `-i`, `-a`), given to `command` as `cluster`."""

    @functools.wraps(command)
    def with_cluster(
        *args: Any, cluster_workers: int, cluster_process_id: int | None, cluster_addresses: str | None, **kwargs: Any
    ) -> Any:
        cluster = _cluster_spec(cluster_workers, cluster_process_id, cluster_addresses)
        return command(*args, cluster=cluster, **kwargs)

    # Their own parameter names: `backfill` already has an `addresses` (its --address).

    options = (
        click.option(
            "--workers",
            "cluster_workers",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Worker threads in this process (every process of a cluster runs as many).",
        ),
        click.option(
            "--process-id",
            "cluster_process_id",
            type=click.IntRange(min=0),
            help="This process's index into --addresses, when it is one process of a cluster.",
        ),
        click.option(
            "--addresses",
            "cluster_addresses",
            metavar='"HOST:PORT;HOST:PORT"',
            help="Every process of the cluster, the same list in each; process I listens on the I-th. "
            "Give every process the same --recovery-dir (a shared directory across machines).",
        ),
    )
    wrapped: Any = with_cluster
    for option in reversed(options):
        wrapped = option(wrapped)
    return cast(F, wrapped)


@contextlib.contextmanager
def _http_endpoint(settings: Settings, port: int | None, sources: list[SourceActivity]) -> Iterator[None]:
    """The health, readiness and metrics endpoint on `port` for the block's duration; nothing when None."""
    if port is None:
        yield
        return
    from quantbot.ops.observability import serve

    host = settings.observability.http_host
    try:
        endpoint = serve(settings, port, sources)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", param_hint="--http-port"
        ) from exc
    try:
        yield
    finally:
        endpoint.close()


def _pipeline_rows(summary: Any) -> list[tuple[str, object]]:
    """What every flow's summary counts (replay, backfill, live: `flows.runtime.PIPELINE_COUNTERS`)."""
    return [
        ("frames", summary.frames),
        ("transactions", summary.transactions),
        ("activities (trades, liquidity, transfers)", summary.activities),
        ("valued in USD", summary.valued),
        ("whales", summary.whales),
        ("signals", summary.signals),
        ("dead letters", summary.dead_letters),
    ]


def _print_summary(summary: Any, counts: Any, inputs: Sequence[tuple[str, object]] | None = None) -> None:
    """The run's counts, what the stores now hold, and the largest whales; `inputs` heads the run's table."""
    run_rows = [
        *(inputs if inputs is not None else [("recordings", summary.files)]),
        *_pipeline_rows(summary),
        ("strategies", summary.strategies),
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
        ("throughput", f"{summary.frames_per_s:,.0f} frames/s"),
    ]
    console.print(_table("this run", ["", "count"], run_rows))
    _print_store_counts(counts)
    for warning in summary.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if summary.stopped:
        console.print("stopped before the end: the same command with the same --recovery-dir resumes it")


def _print_analytics(counts: Any) -> None:
    """The newest market snapshot, a few token documents, and the strategies from best to worst."""
    snapshot = counts.latest_snapshot
    if snapshot is not None:
        activity = snapshot.get("whaleActivity", {})
        movers = ", ".join(
            f"{m.get('symbol') or m.get('tokenAddress', '')[:8]} {m.get('priceChangePercent', 0):+.1f}%"
            for m in snapshot.get("topMovers", [])[:3]
        )
        rows = [
            ("time", snapshot.get("timestamp")),
            ("SOL price", f"${snapshot.get('globalMetrics', {}).get('solanaPrice', 0):,.2f}"),
            ("whales (24 h)", f"{activity.get('largeTransactionCount', 0):,}"),
            ("whale volume (24 h)", f"${activity.get('largeTransactionVolumeUsd', 0):,.0f}"),
            ("whale net flow (24 h)", f"${activity.get('netFlowUsd', 0):,.0f}"),
            ("top movers", movers or "-"),
        ]
        console.print(_table("latest market snapshot", ["", "value"], rows))
    if counts.token_samples:
        tokens = [
            (
                t.get("symbol", ""),
                t.get("name", ""),
                t.get("_id", "")[:12] + "...",
                t.get("contractAnalysis", {}).get("securityScore", ""),
                ", ".join(t.get("contractAnalysis", {}).get("riskFactors", [])) or "-",
                len(t.get("exchanges", [])),
            )
            for t in counts.token_samples
        ]
        console.print(_table("token documents", ["symbol", "name", "mint", "score", "risks", "pools"], tokens))
    if counts.strategies:
        ranked = counts.strategies if len(counts.strategies) <= 2 else [counts.strategies[0], counts.strategies[-1]]
        ranks: list[tuple[object, ...]] = [
            (
                s.get("name", s.get("_id")),
                (all_time := s["performance"].get("allTime", {})).get("tradesTotal", 0),
                f"{all_time.get('winRate', 0):.0%}",
                f"{all_time.get('profitPercent', 0):+.2f}%",
                f"{all_time['sharpeRatio']:.2f}" if "sharpeRatio" in all_time else "-",  # undefined: too few trades
            )
            for s in ranked
        ]
        console.print(_table("strategies: best and worst", ["strategy", "trades", "won", "profit", "sharpe"], ranks))


def _print_store_counts(counts: Any) -> None:
    store_rows = [
        ("postgres", "trading_signals rows", counts.signals),
        ("postgres", "dead_letters rows", counts.dead_letters),
        ("mongo", "whale_activity documents", counts.whales),
        ("redis", "price:* keys (30 s TTL)", counts.price_keys),
        ("redis", "signal:* keys (active signals)", counts.signal_keys),
        ("influx", "token_prices points", counts.price_points),
        ("influx", "trading_signals points", counts.signal_points),
        ("influx", "trading_metrics points", counts.metrics_points),
        ("mongo", "tokens documents", counts.tokens),
        ("mongo", "market_snapshots documents", counts.market_snapshots),
    ]
    if counts.signal_statuses:
        statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.signal_statuses.items()))
        store_rows.insert(1, ("postgres", "  of which", statuses))
    console.print(_table("the stores now hold", ["store", "what", "count"], store_rows))
    _print_analytics(counts)
    whales = [
        (
            w.get("_id", "")[:20] + "...",
            w.get("walletAddress"),
            w.get("walletProfile", {}).get("whaleCategory"),
            w.get("market", {}).get("venue"),
            f"${w.get('valueUsd', 0):,.0f}",
        )
        for w in counts.largest_whales
    ]
    console.print(_table("largest whales", ["signature", "wallet", "category", "venue", "value"], whales))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--recovery-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep snapshots here and resume from them after a crash (created on first use).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    help="Replay at recorded pace times this; default: as fast as possible.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stdout is a terminal).")
@http_port_option
@cluster_options
@pass_context
def replay(  # noqa: PLR0917 - click passes each option
    ctx: _Context,
    paths: tuple[Path, ...],
    recovery_dir: Path | None,
    speed: float | None,
    progress: bool | None,
    http_port: int | None,
    cluster: ClusterSpec,
) -> None:
    """Replay recordings (.jsonl, .jsonl.gz, .jsonl.zst; files or directories) into the four stores.

    \b
    The one dataflow of flows/graph.py: decode, value in USD, detect whales, derive signals, write
    prices to InfluxDB and Redis, whales to MongoDB, signals to PostgreSQL, Redis and InfluxDB, and
    unusable lines to PostgreSQL's dead_letters. Every write is keyed, so running a replay twice, or
    resuming one after `kill -9` with the same --recovery-dir, stores everything exactly once.

    \b
    SIGTERM or SIGINT stops it cleanly (exit 0): reading stops, the stores get what was read, a last
    snapshot is taken; the same command with the same --recovery-dir goes on from there.
    Exit 69 when a store is unreachable at start, 78 on a bad configuration or a schema older than this
    version's (run `quantbot migrate up`), 1 on a crash.

    \b
    Scale-out: --workers N parses on N threads; --process-id I --addresses "h:p;h:p" makes this process
    I of a cluster (start every process with the same arguments but its id). Every worker reads the
    recordings and parses its share of the frames, one values them in recorded order: the stores are the
    same as with one worker. Each process prints the counts of what it did.
    """
    from flows.replay import replay as run_replay
    from quantbot.ops.readback import store_counts

    settings = ctx.settings
    _check_start(settings)
    show = sys.stdout.isatty() if progress is None else progress
    source = SourceActivity("replay")
    with _http_endpoint(settings, http_port, [source]):
        summary = run_replay(
            settings,
            list(paths),
            recovery_dir=recovery_dir,
            speed=speed,
            console=console if show else None,
            activity=source,
            cluster=cluster,
        )
    _print_summary(summary, store_counts(settings))


# ------------------------------------------------------------------------------------------------ live

recovery_dir_option = click.option(
    "--recovery-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep snapshots here and resume from them after a crash (created on first use).",
)
duration_option = click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds, as SIGTERM would; default: run until SIGTERM or SIGINT.",
)


def _print_live_summary(summary: Any, counts: Any | None) -> None:
    rows = [
        *_pipeline_rows(summary),
        ("reconnects", summary.reconnects),
        ("gaps", summary.gaps),
        ("signatures backfilled into gaps", summary.backfilled),
        ("strategies", summary.strategies),
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
        ("throughput", f"{summary.frames_per_s:,.1f} frames/s"),
        ("stopped by", summary.stopped_by),
    ]
    console.print(_table("this run", ["", "count"], rows))
    if counts is not None:
        _print_store_counts(counts)


@cli.command()
@recovery_dir_option
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write every frame received to rotating recordings in this directory (`quantbot replay` reads them).",
)
@duration_option
@click.option("--view/--no-view", default=None, help="Live figures (default: when stdout is a terminal).")
@http_port_option
@cluster_options
@pass_context
def run(  # noqa: PLR0917 - click passes each option
    ctx: _Context,
    recovery_dir: Path | None,
    record_dir: Path | None,
    duration: float | None,
    view: bool | None,
    http_port: int | None,
    cluster: ClusterSpec,
) -> None:
    """Run the live dataflow against Solana into the four stores, until SIGTERM or SIGINT.

    \b
    Where: QUANTBOT_SOLANA_RPC_URL (HTTP JSON-RPC, e.g. https://mainnet.helius-rpc.com/?api-key=KEY),
    QUANTBOT_SOLANA_WS_URL (default: the RPC URL with wss://), or with [solana] source = "grpc"
    QUANTBOT_SOLANA_GRPC_URL and QUANTBOT_SOLANA_GRPC_TOKEN. What: [solana] programs (default: every DEX
    program the decoder knows), commitment, rate limits (see `quantbot config show`).

    \b
    Websocket source: logsSubscribe per program, getTransaction per new signature (rate-limited, retried
    on 429/5xx/null), every reconnection's gap listed with getSignaturesForAddress and fetched; each gap is
    a system_events row. The same transform graph as `quantbot replay` then values, detects whales and
    derives signals.

    \b
    SIGTERM or SIGINT stops it cleanly (exit 0 within seconds): reading stops, the stores get what was
    fetched, a last snapshot is taken. Restarted with the same --recovery-dir (also after kill -9), it
    fetches what it had pending and backfills what the chain made meanwhile: nothing lost, nothing twice.
    Exit 69 when a store is unreachable at start; 78 on a bad configuration (a missing URL, an old schema,
    a key or subscription the node refuses); 75 when the node stayed down past [solana] retry_budget_s (a
    restart with the same --recovery-dir goes on); 1 on a crash.
    """
    from flows.live import check_endpoints, run_live
    from quantbot.ops.readback import store_counts

    settings = ctx.settings
    check_endpoints(settings)
    _check_start(settings)
    show = sys.stdout.isatty() if view is None else view
    source = SourceActivity(settings.solana.source)
    sources = [source]  # the price feeds add theirs once built: /readyz reads the list on every question
    with _http_endpoint(settings, http_port, sources), _live_failures():
        summary = run_live(
            settings,
            recovery_dir=recovery_dir,
            record_dir=record_dir,
            duration_s=duration,
            activity=source,
            console=console if show else None,
            cluster=cluster,
            feed_activities=sources,
        )
    _print_live_summary(summary, store_counts(settings))


@contextlib.contextmanager
def _live_failures() -> Iterator[None]:
    """A live source's end as an exit status: 78 when the node refuses the configuration or the subscription
    (restarting will not help), 75 when it stayed down past the retry budget (a restart resumes)."""
    from connectors.rpc import RpcConfigurationError, RpcUnavailableError
    from connectors.solana_ws import SubscriptionRefusedError
    from connectors.yellowstone import YellowstoneError

    try:
        yield
    except (RpcConfigurationError, SubscriptionRefusedError, YellowstoneError) as exc:
        _fail(f"the node refused: {redact(str(exc))}", EX_CONFIG)
    except RpcUnavailableError as exc:
        _fail(
            f"the node stayed unavailable: {redact(str(exc))}; what was pending is in the last snapshot: the same"
            " command with the same --recovery-dir goes on",
            EX_TEMPFAIL,
        )


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory of the rotating recordings (zstd, rotated hourly or at 256 MiB).",
)
@recovery_dir_option
@duration_option
@http_port_option
@pass_context
def record(ctx: _Context, out: Path, recovery_dir: Path | None, duration: float | None, http_port: int | None) -> None:
    """Record the live source's frames without processing them, until SIGTERM or SIGINT.

    \b
    The same source and settings as `quantbot run`; the recordings replay with `quantbot replay DIR`.
    Transactions that could not be fetched are written to DIR/dead-letters-w<worker>.ndjson. PostgreSQL is
    still needed: the run's and the gaps' system_events rows go there.
    """
    from flows.live import check_endpoints, record_live

    settings = ctx.settings
    check_endpoints(settings)
    _check_start(settings)
    source = SourceActivity(settings.solana.source)
    sources = [source]
    with _http_endpoint(settings, http_port, sources), _live_failures():
        summary = record_live(
            settings, out, recovery_dir=recovery_dir, duration_s=duration, activity=source, feed_activities=sources
        )
    _print_live_summary(summary, None)
    console.print(f"recordings in {out}: `quantbot replay {out}` processes them", soft_wrap=True, highlight=False)


# -------------------------------------------------------------------------------------------- backfill


def _base58_key(kind: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[str, ...]]:
    """A click callback checking that each value is a base58 32-byte key (an address, a program id)."""

    def check(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
        from quantbot.solana.codec import b58decode

        for value in values:
            try:
                ok = len(b58decode(value)) == PUBKEY_BYTES
            except ValueError:
                ok = False
            if not ok:
                raise click.BadParameter(f"`{value}` is not a base58 {kind} (32 bytes)", param=param)
        return values

    return check


def _utc_seconds(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """An ISO 8601 time with its zone (`2026-11-30T12:00Z`) as Unix seconds."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"`{value}` is not an ISO 8601 time such as 2026-11-30T12:00Z", param=param) from exc
    if when.tzinfo is None:
        raise click.BadParameter(
            f"`{value}` has no time zone: add one, e.g. `{value}Z` for UTC or `{value}+01:00`", param=param
        )
    return int(when.timestamp())


PUBKEY_BYTES = 32
"""A Solana address (public key, program id) is 32 bytes."""


@cli.command()
@click.option(
    "--program",
    "programs",
    multiple=True,
    callback=_base58_key("program id"),
    metavar="ID",
    help="A DEX program whose transactions to backfill (repeatable); e.g. JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4.",
)
@click.option(
    "--address",
    "addresses",
    multiple=True,
    callback=_base58_key("address"),
    metavar="ADDR",
    help="Any other address (a pool, a wallet) whose transactions to backfill (repeatable).",
)
@click.option("--from-slot", type=click.IntRange(min=0), metavar="N", help="Oldest slot, inclusive.")
@click.option(
    "--to-slot", type=click.IntRange(min=0), metavar="M", help="Newest slot, inclusive (default: the newest)."
)
@click.option(
    "--since", callback=_utc_seconds, metavar="ISO", help="Oldest block time, inclusive, e.g. 2026-11-30T00:00Z."
)
@click.option("--until", callback=_utc_seconds, metavar="ISO", help="Newest block time, inclusive (default: now).")
@click.option(
    "--until-signature",
    metavar="SIG",
    help="Backfill what came after this transaction, up to the newest (the RPC's `until`): a live feed's gap.",
)
@click.option(
    "--recovery-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep snapshots here; after a crash or a stop, the same command with the same directory resumes.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stdout is a terminal).")
@http_port_option
@cluster_options
@pass_context
def backfill(  # noqa: PLR0917 - click passes each option
    ctx: _Context,
    programs: tuple[str, ...],
    addresses: tuple[str, ...],
    from_slot: int | None,
    to_slot: int | None,
    since: int | None,
    until: int | None,
    until_signature: str | None,
    recovery_dir: Path | None,
    progress: bool | None,
    http_port: int | None,
    cluster: ClusterSpec,
) -> None:
    """Fetch past transactions over JSON-RPC and push them through the dataflow into the four stores.

    \b
    Give the addresses (--program, --address: at least one; one partition each) and one kind of range:
      --from-slot N [--to-slot M]      slots N..M, inclusive (M: default the newest)
      --since ISO [--until ISO]        block times, inclusive, with a zone (2026-11-30T00:00Z)
      --until-signature SIG            everything newer than SIG, up to the newest
    A lower bound is required: a program's whole history is rarely what was meant.

    \b
    The provider is QUANTBOT_SOLANA_RPC_URL (an archive RPC: getSignaturesForAddress, getTransaction,
    getBlock; its key stays out of every log). [solana] sets the pace: requests_per_s, max_in_flight,
    backfill_batch_size (getTransaction calls per JSON-RPC batch; 1 where the plan refuses batches),
    retry_budget_s, null_retry_s, commitment, encoding, include_failed.

    \b
    Signatures are listed newest page first; each page's transactions are stored oldest first. The
    upper bound is fixed when the backfill starts, so a resume (the same command with the same
    --recovery-dir, after kill -9 or SIGTERM) backfills exactly the same range; every write is keyed,
    so nothing is stored twice. A transaction that cannot be fetched is a dead letter (stage `fetch`);
    slots without a block past --to-slot are counted and recorded as `backfill_slot_unavailable` events.

    \b
    Exit 0 when done or stopped by SIGTERM/SIGINT; 69 when a store is unreachable at start; 75 when the
    provider stayed unavailable past retry_budget_s (run the same command again later); 78 on a bad
    configuration (no QUANTBOT_SOLANA_RPC_URL, a provider refusing the key) or an outdated schema; 1 on a crash.
    """
    from connectors.backfill import BackfillRange
    from connectors.rpc import RpcConfigurationError, RpcUnavailableError
    from flows.backfill import BackfillRequest
    from flows.backfill import backfill as run_backfill
    from quantbot.ops.readback import store_counts

    targets = tuple(dict.fromkeys((*programs, *addresses)))
    if not targets:
        raise click.UsageError("give at least one --program or --address to backfill")
    try:
        request = BackfillRange(
            from_slot=from_slot, to_slot=to_slot, since_s=since, until_s=until, until_signature=until_signature
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = ctx.settings
    request = dataclasses.replace(request, include_failed=settings.solana.include_failed)
    _check_start(settings)
    if not settings.solana.rpc_url:
        _fail(
            "cannot backfill: no RPC provider: set QUANTBOT_SOLANA_RPC_URL (configuration key `solana.rpc_url`)"
            " to an archive JSON-RPC URL",
            EX_CONFIG,
        )
    show = sys.stdout.isatty() if progress is None else progress
    source = SourceActivity("backfill")
    try:
        with _http_endpoint(settings, http_port, [source]):
            summary = run_backfill(
                settings,
                BackfillRequest(targets, request),
                recovery_dir=recovery_dir,
                console=console if show else None,
                activity=source,
                cluster=cluster,
            )
    except RpcConfigurationError as exc:
        _fail(f"backfill: {exc}", EX_CONFIG)
    except RpcUnavailableError as exc:
        _fail(f"backfill: {exc}; what was fetched is stored: run the same command again later", EX_TEMPFAIL)
    inputs: list[tuple[str, object]] = [
        ("addresses", summary.addresses),
        ("signatures listed in range", summary.listed),
        ("transactions fetched", summary.fetched),
        ("fetch failures (dead letters)", summary.fetch_failures),
        ("duplicates between addresses", summary.duplicates),
        ("slots without a block walked past", len(summary.unavailable_slots)),
    ]
    _print_summary(summary, store_counts(settings), inputs)


def _check_start(settings: Settings) -> None:
    """Refuse to start a flow on stores that do not answer (exit 69) or lack this version's schema (exit 78).

    A flow never migrates: an older schema is the operator's to upgrade, and restarting will not cure it.
    """
    from quantbot.ops import schema as operations

    check = operations.start_check(settings)
    if check.unreachable:
        reasons = "; ".join(f"{r.store} ({r.url}): {r.detail}" for r in check.unreachable)
        _fail(f"cannot start: unreachable at start: {reasons}", EX_UNAVAILABLE)
    if check.outdated:
        schemas = ", ".join(f"{r.store} schema {r.schema}" for r in check.outdated)
        _fail(
            f"cannot start: the stores' schema is older than this version's ({schemas}): {operations.TO_MIGRATE}",
            EX_CONFIG,
        )


# ------------------------------------------------------------------------------------------------ feed


@cli.group()
def synthetic() -> None:
    """Synthetic chain activity: realistic recordings for demos, tests and benchmarks."""


@synthetic.command("generate")
@click.option("--txs", type=click.IntRange(min=1), required=True, help="Transactions to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Recording to write: .jsonl, .jsonl.gz or .jsonl.zst.",
)
@click.option(
    "--garbage", type=click.FloatRange(0, 1), default=0.01, show_default=True, help="Share of malformed lines."
)
@click.option("--start-time", type=int, help="Unix seconds of the first block (default: so that the feed ends now).")
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True),
    help="Spread the transactions over this many hours of feed time (default: 400 per second).",
)
def synthetic_generate(  # noqa: PLR0917 - click passes each option
    txs: int, seed: int, out: Path, garbage: float, start_time: int | None, hours: float | None
) -> None:
    """Write a recording of Jupiter routes, Pump.fun, PumpSwap, Raydium, Orca and Meteora swaps.

    \b
    SOL/USD moves over time (price frames every few seconds, every minute with --hours), token prices
    walk, trend and follow the whales (over hours: 24 h changes of tens of percent), sizes are
    heavy-tailed so whales are rare, and some transactions fail, some are plain transfers, and
    --garbage of the lines are malformed (each must end up in the dead-letter store when replayed).
    """
    from quantbot.recordings import SUFFIXES
    from quantbot.synthetic import FeedSpec, generate_feed

    if not out.name.endswith(SUFFIXES):
        raise click.BadParameter(f"`{out}` must end in {', '.join(SUFFIXES)}", param_hint="--out")
    spec = FeedSpec(txs=txs, seed=seed, garbage_share=garbage, start_time=start_time, hours=hours)
    stats = generate_feed(spec, out)
    console.print(f"{out}: {stats.describe()}")


# ------------------------------------------------------------------------------------------------ demo

DEMO_DIR = Path(".quantbot/demo")
DEMO_HOURS = 26.0
"""Feed time the demo's feed spans by default: the 24 h windows fill and then slide for two hours (the last
snapshots carry 24 h changes), and the whales of the first 23 h get their 3 h follow-ups."""
DEMO_TXS = 20_000
"""Transactions of the demo's feed by default, as when the feed spanned 50 s: generated in ~6 s, with ~35
whales and ~35 signals of the three strategies over the 26 h. Its replay takes ~25 s on a 2-core machine,
two thirds of it the analytics' MongoDB writes at the 312 snapshot boundaries (token documents, snapshots,
strategy performance); halving the transactions saves only a few seconds of it."""


@cli.command()
@click.option(
    "--txs", type=click.IntRange(min=1), default=DEMO_TXS, show_default=True, help="Transactions in the feed."
)
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True),
    default=DEMO_HOURS,
    show_default=True,
    help="Hours of feed time the feed spans (it ends at today's midnight, UTC).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic feed.")
@click.option(
    "--garbage",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share of malformed lines (they must end in dead_letters).",
)
@click.option("--live", is_flag=True, help="Run `quantbot run` against a simulated chain instead of a replay.")
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="With --live: seconds the live run lasts.",
)
@click.option(
    "--tps",
    type=click.FloatRange(min=1),
    default=110.0,
    show_default=True,
    help="With --live: DEX transactions per second the chain makes (mainnet: about 110).",
)
@click.option(
    "--faults/--no-faults",
    default=True,
    show_default=True,
    help="With --live: the node drops its websocket, answers 429, 503 and null now and then.",
)
@http_port_option
@pass_context
def demo(  # noqa: PLR0917 - click passes each option
    ctx: _Context,
    txs: int,
    hours: float,
    seed: int,
    garbage: float,
    live: bool,
    duration: float,
    tps: float,
    faults: bool,
    http_port: int | None,
) -> None:
    """The main job on this machine, end to end: stack, schema, a strategy, a feed, a replay, a summary.

    \b
    1. starts the embedded stores (`stack up`) and creates their schema (`migrate up`);
    2. creates a demo user and three whale-follower strategies (PostgreSQL + MongoDB);
    3. generates a synthetic mainnet-like feed (`synthetic generate`) of --txs over --hours of feed time
       (ending at today's midnight, UTC) under .quantbot/demo/;
    4. replays it through the dataflow into all four stores, with a progress bar;
    5. prints what the run did and what the stores now hold.

    \b
    With --live, steps 3 and 4 are the live path instead: a simulated chain on loopback (a Solana JSON-RPC
    and websocket node serving generated DEX transactions at --tps, with --faults), and `quantbot run`
    against it for --duration seconds with a live view; then the same summary. No provider key needed.
    """
    from flows.replay import replay as run_replay
    from quantbot.ops import schema as operations
    from quantbot.ops import stack as embedded
    from quantbot.ops.demo import demo_feed_spec, ensure_demo_strategy
    from quantbot.ops.readback import store_counts
    from quantbot.synthetic import generate_feed

    settings = ctx.settings
    states = embedded.up(_wanted(settings), Path(settings.stack.dir))
    _print_stack("1. stack up", states)
    if any(s.action in ("unavailable", "failed") for s in states):
        _fail("a store could not be started; see the table above", EX_UNAVAILABLE)
    reports = operations.migrate_up(settings)
    _print_reports("1. migrate up", reports)
    if not all(r.ok for r in reports):
        _fail("a store could not be migrated; see the table above", EX_UNAVAILABLE)
    ensure_demo_strategy(settings, all_of_them=True)
    console.print("2. demo strategies: three whale followers (swaps of $50k, $100k and $250k and more)")
    if live:
        _live_demo(settings, seed=seed, duration=duration, tps=tps, faults=faults, http_port=http_port)
        return

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    feed = DEMO_DIR / f"feed-seed{seed}.jsonl"
    spec = demo_feed_spec(txs=txs, hours=hours, seed=seed, garbage_share=garbage, now=time.time())
    stats = generate_feed(spec, feed)
    console.print(f"3. feed {feed}: {stats.describe()}")

    recovery = DEMO_DIR / "recovery"
    shutil.rmtree(recovery, ignore_errors=True)  # a fresh replay of the fresh feed, not a resume
    console.print("4. replay")
    source = SourceActivity("replay")
    with _http_endpoint(settings, http_port, [source]):
        summary = run_replay(settings, [feed], recovery_dir=recovery, console=console, activity=source)
    console.print("5. summary")
    _print_summary(summary, store_counts(settings))


LIVE_CHAIN_SLACK_S = 10.0
"""The simulated chain outlasts the live demo by this much (start-up included): it never runs dry mid-run."""


def _live_demo(
    settings: Settings, *, seed: int, duration: float, tps: float, faults: bool, http_port: int | None
) -> None:
    from flows.live import run_live
    from quantbot.ops.demo import LIVE_FAULTS, describe_faults, with_node
    from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
    from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
    from quantbot.ops.readback import store_counts

    chain = SimulatedChain(ChainSpec(txs=int(tps * (duration + LIVE_CHAIN_SLACK_S)), seed=seed, tx_per_s=tps))
    node_faults = LIVE_FAULTS if faults else Faults()
    recovery = DEMO_DIR / "live-recovery"
    shutil.rmtree(recovery, ignore_errors=True)  # a fresh chain: nothing to resume
    with SolanaPeer(chain, faults=node_faults, wall_clock=True) as peer:
        console.print(f"3. a simulated chain on {peer.http_url}: {tps:g} DEX transactions/s")
        console.print(f"   faults: {describe_faults(node_faults)}")
        console.print(f"4. quantbot run for {duration:g} s")
        source = SourceActivity("websocket")
        with _http_endpoint(settings, http_port, [source]), _live_failures():
            summary = run_live(
                with_node(settings, peer.http_url, peer.ws_url),
                recovery_dir=recovery,
                duration_s=duration,
                activity=source,
                console=console,
            )
    console.print("5. summary")
    _print_live_summary(summary, store_counts(settings))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script: maps the error tree onto exit statuses."""
    try:
        cli.main(args=argv, prog_name="quantbot", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        _fail(str(exc), EX_CONFIG)
    except SchemaInUseError as exc:
        _fail(str(exc), EX_TEMPFAIL)
    except QuantbotError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(0)
