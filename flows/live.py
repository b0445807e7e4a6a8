"""The live flow: the chain (websocket + RPC, or Yellowstone gRPC) through the one transform graph.

`run_live` is `quantbot run` (and the demo's live part); `record_live` is `quantbot record`, the same
source into recordings only.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from prometheus_client import Counter
from rich.console import Console
from rich.live import Live
from rich.table import Table

from connectors.rpc import RpcPolicy
from connectors.solana_ws import LiveConfig, SolanaLogsSource
from connectors.token_facts import TokenFactsSource
from connectors.yellowstone import YellowstoneSource
from flows.feeds import feed_sources, stop_feeds, token_interest
from flows.graph import build_flow
from flows.runtime import (
    PIPELINE_COUNTERS,
    active_strategies,
    counter_values,
    counts_since,
    event_log,
    flow_config,
    refuse_resume,
    run,
    store_sinks,
)
from quantbot import metrics
from quantbot.backoff import Backoff
from quantbot.cluster import SINGLE, ClusterSpec
from quantbot.errors import ConfigError
from quantbot.health import SourceActivity
from quantbot.live import program_groups
from quantbot.models import DeadLetter, Frame
from quantbot.settings import Settings
from quantbot.solana.decode import KNOWN_PROGRAMS
from sinks.recorder import DeadLetterFileSink, RecorderSink

BYTES_PER_MIB = 1 << 20
VIEW_REFRESH_S = 1.0
"""The live view's figures are redrawn this often (its rates are per this interval)."""


def followed_programs(settings: Settings) -> list[str]:
    """`[solana] programs`, or every program the decoder knows (sorted: the partitions' order is stable)."""
    return list(settings.solana.programs) or sorted(KNOWN_PROGRAMS)


def ws_url_of(settings: Settings) -> str:
    """`[solana] ws_url`, else the RPC URL with `ws://`/`wss://` (what providers serve on the same host)."""
    solana = settings.solana
    if solana.ws_url:
        return solana.ws_url
    rpc = rpc_url_of(settings)
    return "ws" + rpc.removeprefix("http")


def rpc_url_of(settings: Settings) -> str:
    """`[solana] rpc_url`, or a configuration error naming the variable to set."""
    if not settings.solana.rpc_url:
        raise ConfigError(
            "solana.rpc_url",
            "is not set: export QUANTBOT_SOLANA_RPC_URL (e.g. https://api.mainnet-beta.solana.com, or your "
            "provider's URL with its key)",
            "environment",
        )
    return settings.solana.rpc_url


def live_config(settings: Settings) -> LiveConfig:
    """The websocket source's configuration from `[solana]`.

    Raises:
        ConfigError: no RPC URL, or program groups naming programs not followed.
    """
    solana = settings.solana
    programs = followed_programs(settings)
    try:
        groups = program_groups(programs, solana.program_groups)
    except ValueError as exc:
        raise ConfigError("solana.program_groups", str(exc), "configuration") from None
    return LiveConfig(
        ws_url=ws_url_of(settings),
        rpc_url=rpc_url_of(settings),
        groups=tuple(groups),
        commitment=solana.commitment,
        encoding=solana.encoding,
        include_failed=solana.include_failed,
        policy=RpcPolicy.from_settings(solana),
        stale_after_s=solana.stale_after_s,
        ping_interval_s=solana.ping_interval_s,
        max_message_bytes=int(solana.max_message_mib * BYTES_PER_MIB),
        seen_max=solana.seen_max,
        backoff=Backoff(base_s=solana.backoff_base_s, cap_s=solana.backoff_cap_s),
    )


LiveSource = SolanaLogsSource | YellowstoneSource


def check_endpoints(settings: Settings) -> None:
    """Refuse at once (before anything connects) a configuration that names no node for `[solana] source`.

    Raises:
        ConfigError: naming the variable to set.
    """
    if settings.solana.source == "grpc":
        if not settings.solana.grpc_url:
            raise ConfigError(
                "solana.grpc_url",
                "is not set: export QUANTBOT_SOLANA_GRPC_URL (your Yellowstone endpoint, e.g. https://name.rpcpool.com)"
                ' and QUANTBOT_SOLANA_GRPC_TOKEN, or use [solana] source = "websocket"',
                "environment",
            )
        return
    live_config(settings)


def live_source(settings: Settings, activity: SourceActivity | None = None) -> LiveSource:
    """The live source `[solana] source` names, reporting gaps to `system_events`.

    Raises:
        ConfigError: `[solana]` lacks the source's URL, or its program groups are wrong.
    """
    events = event_log(settings)
    solana = settings.solana
    if solana.source == "websocket":
        return SolanaLogsSource(live_config(settings), on_event=events.record, activity=activity)
    if not solana.grpc_url:
        raise ConfigError(
            "solana.grpc_url",
            "is not set: export QUANTBOT_SOLANA_GRPC_URL (your Yellowstone endpoint, e.g. https://name.rpcpool.com)"
            ' and QUANTBOT_SOLANA_GRPC_TOKEN, or use [solana] source = "websocket"',
            "environment",
        )
    try:
        groups = program_groups(followed_programs(settings), solana.program_groups)
    except ValueError as exc:
        raise ConfigError("solana.program_groups", str(exc), "configuration") from None
    return YellowstoneSource(
        solana.grpc_url,
        solana.grpc_token.get_secret_value() if solana.grpc_token else None,
        groups,
        commitment=solana.commitment,
        include_failed=solana.include_failed,
        reconnect_base_s=solana.backoff_base_s,
        reconnect_cap_s=solana.backoff_cap_s,
        stale_after_s=solana.stale_after_s,
        seen_max=solana.seen_max,
        activity=activity,
        on_event=events.record,
    )


def token_facts_source(settings: Settings, source: LiveSource) -> TokenFactsSource | None:
    """The source answering the analytics' token requests over JSON-RPC, for a chain source that cannot:
    a Yellowstone stream, when `solana.rpc_url` is set (None otherwise: no token facts, the documents wait)."""
    solana = settings.solana
    if isinstance(source, SolanaLogsSource) or not solana.rpc_url:
        return None
    return TokenFactsSource(solana.rpc_url, RpcPolicy.from_settings(solana))


@dataclass(frozen=True)
class LiveSummary:
    """What one live run did, from the pipeline's counters."""

    frames: int
    transactions: int
    activities: int
    valued: int
    whales: int
    signals: int
    dead_letters: int
    reconnects: int
    gaps: int
    backfilled: int
    strategies: int
    elapsed_s: float
    stopped_by: str
    """What ended the run: a signal's name, or `duration`."""

    @property
    def frames_per_s(self) -> float:
        """Frames per second of wall time."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


COUNTERS: dict[str, Counter] = {
    **PIPELINE_COUNTERS,
    "reconnects": metrics.RECONNECTS,
    "gaps": metrics.GAPS,
    "backfilled": metrics.BACKFILLED_SIGNATURES,
}
"""The counters a live run's summary and live view show."""


@contextmanager
def _stop_after(duration_s: float | None, stop: Callable[[], None]) -> Iterator[list[str]]:
    """Calls `stop` after `duration_s` (None: never); yields a list that says `duration` once it did."""
    fired: list[str] = []
    if duration_s is None:
        yield fired
        return

    def fire() -> None:
        fired.append("duration")
        stop()

    timer = threading.Timer(duration_s, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


@contextmanager
def live_view(console: Console | None) -> Iterator[None]:
    """While inside, redraw the run's figures on `console` every `VIEW_REFRESH_S` (nothing when None)."""
    if console is None:
        yield
        return
    done = threading.Event()
    drawer = threading.Thread(target=_draw, args=(console, done), name="live-view", daemon=True)
    drawer.start()
    try:
        yield
    finally:
        done.set()
        drawer.join()


def _draw(console: Console, done: threading.Event) -> None:
    before = counter_values(COUNTERS)
    lag_before = metrics.bucket_counts(metrics.CHAIN_LAG_SECONDS)
    began = last_at = time.monotonic()
    last = before
    with Live(console=console, auto_refresh=False, transient=False) as view:
        while not done.wait(VIEW_REFRESH_S):
            now, at = counter_values(COUNTERS), time.monotonic()
            rate = (now["frames"] - last["frames"]) / max(at - last_at, 1e-9)
            last, last_at = now, at
            p50 = metrics.quantile(metrics.CHAIN_LAG_SECONDS, 0.5, lag_before)
            p99 = metrics.quantile(metrics.CHAIN_LAG_SECONDS, 0.99, lag_before)
            table = Table(title=f"live for {at - began:,.0f} s", show_header=True)
            for column in (
                "frames/s",
                "lag p50/p99 s",
                "frames",
                "trades",
                "whales",
                "signals",
                "dead letters",
                "reconnects",
                "gaps",
                "backfilled",
            ):
                table.add_column(column, justify="right")
            since = {name: int(now[name] - before[name]) for name in now}
            table.add_row(
                f"{rate:,.0f}",
                f"{_bound(p50)} / {_bound(p99)}",
                *(
                    f"{since[name]:,}"
                    for name in (
                        "frames",
                        "activities",
                        "whales",
                        "signals",
                        "dead_letters",
                        "reconnects",
                        "gaps",
                        "backfilled",
                    )
                ),
            )
            view.update(table, refresh=True)


def _bound(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 1 week" if seconds == float("inf") else f"<= {seconds:g}"


def run_live(
    settings: Settings,
    *,
    recovery_dir: Path | None = None,
    record_dir: Path | None = None,
    duration_s: float | None = None,
    activity: SourceActivity | None = None,
    console: Console | None = None,
    cluster: ClusterSpec = SINGLE,
    feed_activities: list[SourceActivity] | None = None,
) -> LiveSummary:
    """Run the live flow into the stores until SIGTERM/SIGINT (or `duration_s`), then stop cleanly.

    Stopping: the source stops reading and emits what it has fetched, the sinks write it, a last snapshot is
    taken; the same call with the same `recovery_dir` resumes, backfilling what the chain made meanwhile.

    Args:
        settings: the effective settings (`[solana]`, the stores).
        recovery_dir: where snapshots are kept; `None` runs without recovery.
        record_dir: also write every frame read to rotating recordings there (`quantbot replay` reads them).
        duration_s: stop after this long, as SIGTERM would; None: run until a signal.
        activity: where the source notes its progress, for readiness.
        console: where to draw the live view (frames/s, lag, trades, whales, signals, reconnects, gaps);
            None draws nothing.
        cluster: this process's workers and place in a cluster: the source's partitions (one per address or
            program group) spread over every worker; values follow arrival order, as with one worker.

    Raises:
        ConfigError: `[solana]` lacks what the source needs.
        ResumeRefusedError: `recovery_dir` holds a snapshot of other programs.
        connectors.rpc.RpcConfigurationError: the node refuses the configuration (its key, an encoding).
        connectors.rpc.RpcUnavailableError: the node failed for longer than the retry budget; what was
            pending is in the last snapshot, so a restart with the same `recovery_dir` goes on.
        connectors.solana_ws.SubscriptionRefusedError, connectors.yellowstone.YellowstoneError: the node
            refused the subscription.
    """
    strategies = active_strategies(settings)
    source = live_source(settings, activity)
    interest = token_interest(settings)
    feeds = feed_sources(
        settings, event_log(settings).record, feed_activities if feed_activities is not None else [], interest
    )
    record = RecorderSink(record_dir) if record_dir is not None else None
    config = flow_config(settings, strategies)
    tokens = token_facts_source(settings, source)
    if isinstance(source, SolanaLogsSource):
        # A large trade a feed reported and the chain source missed; a token whose facts the analytics lacks.
        config = dataclasses.replace(config, on_missed_trade=source.fetch, on_token_request=source.request_token)
    elif tokens is not None:
        config = dataclasses.replace(config, on_token_request=tokens.request_token)
    if interest is not None:  # whales and strategies' positions decide what Jupiter polls
        config = dataclasses.replace(config, on_output=interest.observe)
    sources = [source, *feeds, *([tokens] if tokens is not None else [])]
    flow = build_flow(sources, store_sinks(settings), config, name="live", record=record)

    def stop() -> None:
        source.stop()
        stop_feeds(feeds)
        if tokens is not None:
            tokens.stop()

    before = counter_values(COUNTERS)
    started = time.monotonic()
    with _stop_after(duration_s, stop) as fired, live_view(console):
        stopped = run(flow, settings, recovery_dir, stop=stop, cluster=cluster)
    _raise_failure(settings, flow, source, recovery_dir)
    if tokens is not None and tokens.refusal is not None:
        refuse_resume(settings, flow.flow_id, tokens.refusal, recovery_dir)
    counts = counts_since(before, COUNTERS)
    return LiveSummary(
        **counts,
        strategies=len(strategies),
        elapsed_s=time.monotonic() - started,
        stopped_by="duration" if fired else ("signal" if stopped else "end"),
    )


def _raise_failure(settings: Settings, flow: Dataflow, source: LiveSource, recovery_dir: Path | None) -> None:
    """Raise what the source could not do inside the engine (where an exception becomes a Rust panic)."""
    if source.failure is not None:
        raise source.failure
    if source.refusal is not None:
        refuse_resume(settings, flow.flow_id, source.refusal, recovery_dir)


def record_live(
    settings: Settings,
    out: Path,
    *,
    recovery_dir: Path | None = None,
    duration_s: float | None = None,
    activity: SourceActivity | None = None,
    console: Console | None = None,
    feed_activities: list[SourceActivity] | None = None,
) -> LiveSummary:
    """Record the live source's frames, and the enabled price feeds', into `out` without processing them
    (`quantbot record`).

    A transaction that could not be fetched is a dead letter, written beside the recordings as
    `dead-letters-w<worker>.ndjson` (not a recording: a replay of `out` does not read it).
    """
    source = live_source(settings, activity)
    activities = feed_activities if feed_activities is not None else []
    # Nothing is derived while recording: Jupiter polls the configured tokens (none: it idles).
    feeds = feed_sources(settings, event_log(settings).record, activities, token_interest(settings))
    flow = Dataflow("record")
    inputs: list[Stream[Frame | DeadLetter]] = [
        op.input("frames", flow, cast("Source[Frame | DeadLetter]", source)),
        *(op.input(f"feed_{getattr(feed, 'name', number)}", flow, feed) for number, feed in enumerate(feeds, 1)),
    ]
    items = inputs[0] if len(inputs) == 1 else op.merge("sources", *inputs)
    # Frame(kind="transaction", payload='{"jsonrpc": ...}') | Frame(kind="price") | DeadLetter(stage="fetch")
    op.inspect("count_frames", items, lambda _step, item: _count_recorded(item))
    split = op.branch("is_frame", items, _is_frame)
    recorder: Sink[Frame] = RecorderSink(out)
    letters: Sink[DeadLetter] = DeadLetterFileSink(out)
    op.output("record", split.trues, recorder)
    # What is not a frame is a dead letter: the branch's predicate says so, its type does not.
    op.output("dead_letters", cast("Stream[DeadLetter]", split.falses), letters)

    def stop() -> None:
        source.stop()
        stop_feeds(feeds)

    before = counter_values(COUNTERS)
    started = time.monotonic()
    with _stop_after(duration_s, stop) as fired, live_view(console):
        stopped = run(flow, settings, recovery_dir, stop=stop)
    _raise_failure(settings, flow, source, recovery_dir)
    return LiveSummary(
        **counts_since(before, COUNTERS),
        strategies=0,
        elapsed_s=time.monotonic() - started,
        stopped_by="duration" if fired else ("signal" if stopped else "end"),
    )


def _is_frame(item: Frame | DeadLetter) -> TypeGuard[Frame]:
    return isinstance(item, Frame)


def _count_recorded(item: Frame | DeadLetter) -> None:
    metrics.INPUTS.inc()
    if isinstance(item, Frame):
        metrics.FRAMES.labels(item.source, item.kind).inc()
    else:
        metrics.DEAD_LETTERS.labels(item.stage).inc()
