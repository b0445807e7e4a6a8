"""The InfluxDB v2 write API for the stack: a VictoriaMetrics server (the Debian `victoria-metrics` binary)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quantbot.ops.stack.probes import unreachable_reason
from quantbot.ops.stack.process import LOOPBACK, ServerUnavailableError, launch, start_ticks, wait_until_answering
from quantbot.stack_state import RunningServer, StoreName

VICTORIA_METRICS_RETENTION = "100y"
"""VictoriaMetrics drops samples older than its retention; replays and backfills write points from any
era, so the stack keeps the longest retention it accepts."""


def start_victoria_metrics(
    data_dir: Path, port: int, log_path: Path, retention: str = VICTORIA_METRICS_RETENTION
) -> RunningServer:
    """Start a detached VictoriaMetrics on `127.0.0.1:port` (InfluxDB v2 write API); wait for `/health`.

    Args:
        data_dir: its storage directory.
        port: the HTTP port.
        log_path: where its output goes.
        retention: `-retentionPeriod`; samples older than this are dropped on write.

    Raises:
        ServerUnavailableError: `victoria-metrics` is not installed (Debian package `victoria-metrics`).
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    found = shutil.which("victoria-metrics") or next(
        (p for p in ("/usr/bin/victoria-metrics", "/usr/local/bin/victoria-metrics") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise ServerUnavailableError("victoria-metrics is not installed: apt-get install victoria-metrics")
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        found,
        f"-httpListenAddr={LOOPBACK}:{port}",
        f"-storageDataPath={data_dir}",
        f"-retentionPeriod={retention}",
        # A development stack reads back what it just wrote: do not hide the newest 30 s from queries.
        "-search.latencyOffset=0s",
        # InfluxDB identifies a point by series and time, so a rewritten point replaces itself;
        # VictoriaMetrics keeps duplicates unless told to deduplicate samples closer than 1 ms.
        "-dedup.minScrapeInterval=1ms",
    ]
    url = f"http://{LOOPBACK}:{port}"
    program = "VictoriaMetrics"
    pid = launch(argv, log_path, cwd=data_dir.parent)
    wait_until_answering(pid, lambda: unreachable_reason(StoreName.INFLUX, url), log_path, program)
    return RunningServer(
        StoreName.INFLUX, pid, port, url, data_dir, log_path.absolute(), program, None, start_ticks(pid)
    )
