"""Backfill: transactions fetched over JSON-RPC through the one transform graph into the four stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from connectors.backfill import BackfillProgress, BackfillRange, BackfillSource
from connectors.rpc import RpcError, RpcPolicy
from flows.graph import build_flow
from flows.runtime import (
    active_strategies,
    counter_values,
    counts_since,
    event_log,
    flow_config,
    refuse_resume,
    run,
    store_sinks,
)
from quantbot.errors import ConfigError
from quantbot.health import SourceActivity
from quantbot.settings import Settings

PROGRESS_REFRESH_S = 0.25
"""How often the progress bar is redrawn: smooth to the eye, negligible work."""


@dataclass(frozen=True)
class BackfillRequest:
    """What `quantbot backfill` was asked: the addresses (DEX programs and others) and the range."""

    addresses: tuple[str, ...]
    range: BackfillRange


@dataclass(frozen=True)
class BackfillSummary:
    """What one backfill run did, from the source's and the pipeline's counters."""

    addresses: int
    listed: int
    """Signatures listed in range (failed ones dropped unless `include_failed`)."""
    fetched: int
    fetch_failures: int
    """Signatures whose transaction could not be fetched: each one a dead letter of stage `fetch`."""
    duplicates: int
    """Signatures listed by two addresses' partitions and fetched once."""
    unavailable_slots: tuple[int, ...]
    """Slots without a block walked past to fix the upper bound (each one a system event)."""
    frames: int
    transactions: int
    activities: int
    valued: int
    whales: int
    signals: int
    dead_letters: int
    strategies: int
    elapsed_s: float
    warnings: tuple[str, ...] = ()
    stopped: bool = False
    """A signal stopped the backfill; the same command with the same --recovery-dir resumes it."""

    @property
    def frames_per_s(self) -> float:
        """Frames (dead letters included) per second of wall time."""
        return (self.frames + self.dead_letters) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def backfill(
    settings: Settings,
    request: BackfillRequest,
    *,
    recovery_dir: Path | None = None,
    console: Console | None = None,
    activity: SourceActivity | None = None,
) -> BackfillSummary:
    """Backfill `request` into the stores; resumes from `recovery_dir` when it holds a snapshot.

    Args:
        settings: the effective settings (`[solana]`: the RPC URL, policy, commitment, encoding).
        request: the addresses and the range.
        recovery_dir: where snapshots are kept; `None` runs without recovery.
        console: where to draw a progress bar; `None` draws none.
        activity: where the backfill notes its progress, for readiness checks.

    SIGTERM and SIGINT stop the backfill cleanly (as the replay's), and the summary says `stopped`.

    Raises:
        ConfigError: no RPC URL is configured (`QUANTBOT_SOLANA_RPC_URL`).
        ResumeRefusedError: `recovery_dir` holds a snapshot of another range; nothing was fetched.
        RpcError: the provider stayed unavailable past the retry budget (`RpcUnavailableError`), or
            refused the request (`RpcConfigurationError`, ...); what was fetched before is stored, and
            the same call with the same `recovery_dir` goes on from there.
    """
    solana = settings.solana
    if not solana.rpc_url:
        raise ConfigError("solana.rpc_url", "a backfill needs an RPC URL: set QUANTBOT_SOLANA_RPC_URL")
    events = event_log(settings)
    strategies = active_strategies(settings)
    source = BackfillSource(
        solana.rpc_url,
        RpcPolicy.from_settings(solana),
        list(request.addresses),
        request.range,
        commitment=solana.commitment,
        encoding=solana.encoding,
        seen_max=solana.seen_max,
        on_event=events.record,
        activity=activity,
    )
    flow = build_flow(source, store_sinks(settings), flow_config(settings, strategies), name="backfill")
    before = counter_values()
    start = time.monotonic()
    done = threading.Event()
    drawer = None
    if console is not None:
        drawer = threading.Thread(target=_draw_progress, args=(console, source.progress, done), daemon=True)
        drawer.start()
    try:
        stopped = run(flow, settings, recovery_dir, stop=source.stop)
    finally:
        done.set()
        if drawer is not None:
            drawer.join()
    if source.refusal is not None:
        refuse_resume(settings, flow.flow_id, source.refusal, recovery_dir)
    if source.failure is not None:
        failure: RpcError = source.failure
        raise failure
    elapsed = time.monotonic() - start
    after = counts_since(before)
    progress = source.progress
    return BackfillSummary(
        addresses=len(request.addresses),
        listed=progress.listed,
        fetched=progress.fetched,
        fetch_failures=progress.failed,
        duplicates=progress.duplicates,
        unavailable_slots=tuple(sorted(slot.slot for slot in source.unavailable_slots)),
        **after,
        strategies=len(strategies),
        elapsed_s=elapsed,
        stopped=stopped,
        warnings=_warnings(progress, source.unavailable_slots),
    )


def _warnings(progress: BackfillProgress, unavailable: Sequence[object]) -> tuple[str, ...]:
    warnings = []
    if progress.failed:
        warnings.append(
            f"{progress.failed} transaction(s) could not be fetched: dead letters of stage `fetch` in PostgreSQL's"
            " dead_letters name each signature and why"
        )
    if unavailable:
        warnings.append(
            f"{len(unavailable)} slot(s) after the range had no block (skipped or missing from long-term storage):"
            " system_events `backfill_slot_unavailable` lists them"
        )
    return tuple(warnings)


def _draw_progress(console: Console, progress: BackfillProgress, done: threading.Event) -> None:
    """Signatures listed and fetched, the fetch rate, and (for a slot range) slots covered with an ETA."""
    columns = (
        TextColumn("backfill"),
        BarColumn(),
        TextColumn("{task.fields[fetched]:,}/{task.fields[listed]:,} fetched"),
        TextColumn("{task.fields[rate]:>6.1f} tx/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    began = time.monotonic()
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=None, fetched=0, listed=0, rate=0.0)

        def update() -> None:
            fetched = progress.fetched + progress.failed + progress.duplicates
            rate = progress.fetched / max(time.monotonic() - began, 1e-9)
            # With a slot range, the slots paged past measure the way to the end; otherwise the
            # signatures listed so far do (the total is unknown until the last page).
            if progress.slots_total:
                bar.update(task, total=progress.slots_total, completed=progress.slots_done)
            else:
                bar.update(task, total=max(progress.listed, 1), completed=fetched)
            bar.update(task, fetched=progress.fetched, listed=progress.listed, rate=rate)

        while not done.wait(PROGRESS_REFRESH_S):
            update()
        update()
