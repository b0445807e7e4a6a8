"""Replay: recordings through the one transform graph into the four stores."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.replay import ReplaySource
from flows.graph import FIRST_INPUT, ONE_BOOK, build_flow
from flows.runtime import (
    active_strategies,
    counter_values,
    counts_since,
    flow_config,
    recovered_keys,
    refuse_resume,
    run,
    store_sinks,
)
from quantbot import metrics
from quantbot.cluster import SINGLE, ClusterSpec
from quantbot.health import SourceActivity
from quantbot.recordings import RecordingReadError, find_recordings, read_lines
from quantbot.settings import Settings

REPLAY_FLOW = "replay"
"""The replay's flow id: its recovery snapshots' step ids start with it."""
PROGRESS_REFRESH_S = 0.25


@dataclass(frozen=True)
class ReplaySummary:
    """What one replay run did, from the pipeline's counters."""

    files: int
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
    """What the user should look at: recordings that could not be read to their end."""
    stopped: bool = False
    """A signal stopped the replay before its end; the same command with the same --recovery-dir resumes it."""

    @property
    def frames_per_s(self) -> float:
        """Frames (bad lines included) per second of wall time."""
        return (self.frames + self.dead_letters) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _lines_in(files: list[Path]) -> int:
    count = 0
    for path in files:
        try:
            for _ in read_lines(path):
                count += 1
        except RecordingReadError:
            count += 1  # the dead letter the replay emits in its place
    return count


def _processed() -> int:
    return int(metrics.total(metrics.INPUTS))


def replay(
    settings: Settings,
    paths: list[Path],
    *,
    recovery_dir: Path | None = None,
    speed: float | None = None,
    console: Console | None = None,
    activity: SourceActivity | None = None,
    cluster: ClusterSpec = SINGLE,
) -> ReplaySummary:
    """Replay recordings into the stores; resumes from `recovery_dir` when it holds a snapshot.

    A recording that cannot be read to its end is a dead letter and a warning of the summary; the
    other recordings are replayed.

    Args:
        settings: the effective settings (stores, thresholds).
        paths: recordings or directories of recordings.
        recovery_dir: where snapshots are kept; `None` runs without recovery.
        speed: `None` as fast as possible, else the recorded pace times `speed`.
        console: where to draw a progress bar; `None` draws none.
        activity: where the replay source notes its progress, for readiness checks.
        cluster: this process's workers and place in a cluster. One worker values the parsed frames in
            recorded order; each of the others reads the recordings and parses its share of their frames
            (`ReplaySource`'s `readers` and `idle_worker`); alone, the one worker does both. The stores are
            the same for any cluster. The summary counts what this process did.

    SIGTERM and SIGINT stop the replay cleanly: reading stops, the sinks finish what was read, a last
    snapshot is taken, and the summary says `stopped`; the same call with the same `recovery_dir` goes on
    from there.

    Raises:
        ResumeRefusedError: `recovery_dir` holds a snapshot of other recordings; nothing was replayed.
    """
    files = find_recordings(paths)
    strategies = active_strategies(settings)
    source = ReplaySource(
        files,
        speed=speed,
        batch_size=settings.pipeline.replay_batch_size,
        activity=activity,
        numbered=True,
        readers=max(cluster.total_workers - 1, 1),
        recovered=recovered_keys(recovery_dir, f"{REPLAY_FLOW}.{FIRST_INPUT}"),
        idle_worker=cluster.worker_of_key(ONE_BOOK) if cluster.total_workers > 1 else None,
        cluster=cluster,
    )
    flow = build_flow(source, store_sinks(settings), flow_config(settings, strategies), name=REPLAY_FLOW, in_order=True)
    before = counter_values()
    start = time.monotonic()
    done = threading.Event()
    drawer = None
    if console is not None:
        total = _lines_in(files)
        drawer = threading.Thread(target=_draw_progress, args=(console, total, done), daemon=True)
        drawer.start()
    try:
        stopped = run(flow, settings, recovery_dir, stop=source.stop, cluster=cluster)
    finally:
        done.set()
        if drawer is not None:
            drawer.join()
    if source.refusal is not None:
        refuse_resume(settings, flow.flow_id, source.refusal, recovery_dir)
    elapsed = time.monotonic() - start
    after = counts_since(before)
    return ReplaySummary(
        files=len(files),
        **after,
        strategies=len(strategies),
        elapsed_s=elapsed,
        stopped=stopped,
        warnings=tuple(
            f"recording {letter.position} could not be read further ({letter.reason}): the lines before are"
            f" replayed, a dead letter of stage `{letter.stage}` marks the place"
            for letter in source.damaged
        ),
    )


def _draw_progress(console: Console, total: int, done: threading.Event) -> None:
    start = _processed()
    columns = (
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} frames/s"),
        TimeElapsedColumn(),
    )
    began = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=total, rate=0.0)
        while not done.wait(PROGRESS_REFRESH_S):
            completed = _processed() - start
            rate = completed / max(time.monotonic() - began, 1e-9)
            progress.update(task, completed=completed, rate=rate)
        progress.update(task, completed=_processed() - start)
