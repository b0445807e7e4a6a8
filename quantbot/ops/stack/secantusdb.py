"""MongoDB for the stack: a SecantusDB server (MongoDB wire protocol on WiredTiger), run by this interpreter."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from quantbot.ops.stack.probes import unreachable_reason
from quantbot.ops.stack.process import LOOPBACK, ServerUnavailableError, launch, start_ticks, wait_until_answering
from quantbot.stack_state import RunningServer, StoreName


def start_mongo(data_dir: Path, port: int, log_path: Path) -> RunningServer:
    """Start a detached SecantusDB server (MongoDB wire protocol) on `127.0.0.1:port`; wait for `hello`.

    It runs as `python -m secantus` with this interpreter, configured by flags only: an empty config
    file is passed so that no `secantusd.toml` of the user's or the machine's changes its behaviour.

    Raises:
        ServerUnavailableError: the `SecantusDB` package is not installed in this interpreter.
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    if importlib.util.find_spec("secantus") is None:
        raise ServerUnavailableError("SecantusDB is not installed: install the Python package SecantusDB")
    try:
        program = f"SecantusDB {importlib.metadata.version('SecantusDB')}"
    except importlib.metadata.PackageNotFoundError:
        program = "SecantusDB"
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.parent / "secantusd.toml"
    config.write_text("# Written by quantbot stack: every setting comes from the command line.\n")
    argv = [
        sys.executable, "-m", "secantus",
        "--config", str(config),
        "--host", LOOPBACK,
        "--port", str(port),
        "--storage-path", str(data_dir),
    ]  # fmt: skip
    url = f"mongodb://{LOOPBACK}:{port}/"
    pid = launch(argv, log_path, cwd=data_dir.parent)
    wait_until_answering(pid, lambda: unreachable_reason(StoreName.MONGO, url), log_path, program)
    return RunningServer(
        StoreName.MONGO, pid, port, url, data_dir, log_path.absolute(), program, None, start_ticks(pid)
    )
