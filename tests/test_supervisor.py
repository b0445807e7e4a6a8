"""Under supervisord, a replay killed with SIGKILL is restarted and ends with the stores of an uninterrupted run.

supervisord (PyPI `supervisor`) runs as a daemon with the program section of deploy/supervisord/quantbot.conf,
its paths moved under the test's directory: the same command through deploy/run-with-env and the same
restart, stop and log options. The settings reach the replay from the environment file, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from supervisor.xmlrpc import SupervisorTransport

from quantbot.ops import readback, stack
from quantbot.ops import schema as operations
from quantbot.ops.demo import ensure_demo_strategy
from quantbot.settings import Settings, load_settings
from quantbot.synthetic import FeedSpec, generate_feed
from quantbot.units import SECONDS_PER_DAY
from tests.conftest import REPO_ROOT, RUN_SNAPSHOT_INTERVAL_S, flow_environment

pytestmark = pytest.mark.slow  # runs supervisord, replays in child processes and their stores

CONF = REPO_ROOT / "deploy" / "supervisord" / "quantbot.conf"
RUN_WITH_ENV = REPO_ROOT / "deploy" / "run-with-env"
PROGRAM = "quantbot-replay"
# 4,000 transactions recorded at 400/s last 10 s; at twice that pace the replay lasts about 5 s after a
# couple of seconds of start-up: long enough to be killed mid-stream, short enough for the suite.
TXS, SPEED = 4000, "2"
REPLAY_TIMEOUT_S = 300
RESTART_TIMEOUT_S = 30
"""supervisord restarts an unexpected exit at once; this bounds its reaction and the wrapper's exec."""
POLL_S = 0.1
CLI_TIMEOUT_S = 300


def _prepared(env: dict[str, str]) -> Settings:
    """The settings of `env`, with the schema of every store created and the demo strategy in place."""
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    reports = operations.migrate_up(settings)
    assert all(report.ok for report in reports), reports
    ensure_demo_strategy(settings)
    return settings


def _supervisord_conf(  # noqa: PLR0917 - the paths a deployment moves
    tmp_path: Path, env_file: Path, state: Path, logs: Path, socket: Path, name: str = PROGRAM
) -> Path:
    """supervisord's configuration: a daemon on a unix socket, and the deployed program `name` with its paths
    moved (started at once, as `supervisorctl start` would)."""
    deployed = CONF.read_text()
    program = deployed[deployed.index(f"[program:{name}]") :]
    if "\n[program:" in program:
        program = program[: program.index("\n[program:")]
    program = program.replace("autostart=false", "autostart=true")
    for installed, here in (
        ("/opt/quantbot/bin/run-with-env", str(RUN_WITH_ENV)),
        ("/etc/quantbot/quantbot.env", str(env_file)),
        # This checkout's code, run by this interpreter (PYTHONPATH below), rather than an installed quantbot.
        ("/opt/quantbot/bin/quantbot", f"{sys.executable} -m quantbot"),
        ("/var/lib/quantbot", str(state)),
        ("/var/log/quantbot", str(logs)),
    ):
        assert installed in program, f"{installed} is no longer in {CONF}: update this test's substitutions"
        program = program.replace(installed, here)
    lines = program.splitlines()
    # The test runs as whoever runs it, not as the `quantbot` user; recorded pace so the kill lands mid-run.
    lines = [line for line in lines if not line.startswith("user=")]
    if name == PROGRAM:
        lines = [f"{line} --speed {SPEED}" if line.startswith("command=") else line for line in lines]
    else:  # the deployed port is the test machine's to give: any free one
        lines = [line.replace("--http-port 9108", f"--http-port {stack.free_port()}") for line in lines]
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"""[unix_http_server]
file={socket}

[supervisord]
logfile={tmp_path / "supervisord.log"}
pidfile={tmp_path / "supervisord.pid"}
childlogdir={logs}
directory={tmp_path}
nodaemon=false

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}

"""
        + "\n".join(lines)
        + "\n"
    )
    return conf


def _wait_for(what: str, check: Any, timeout_s: float = REPLAY_TIMEOUT_S) -> Any:
    """Poll `check()` until it returns something true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _read(path: Path) -> str:
    """The text of `path`, or "" while it does not exist (yet)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _start_supervisord(
    tmp_path: Path, env: dict[str, str], state: Path, logs: Path, program: str
) -> tuple[int, xmlrpc.client.ServerProxy]:
    """supervisord running `program` as deployed, its settings in an environment file: its pid and its RPC."""
    env_file = tmp_path / "quantbot.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    socket = tmp_path / "supervisor.sock"
    conf = _supervisord_conf(tmp_path, env_file, state, logs, socket, program)
    supervisord = Path(sys.executable).parent / "supervisord"
    started = subprocess.run(
        [str(supervisord), "-c", str(conf)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    daemon = int(_wait_for("supervisord's pid file", lambda: _read(tmp_path / "supervisord.pid")))
    rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport("", "", f"unix://{socket}"))
    return daemon, rpc


def _dead_letters(postgres_url: str) -> int:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return int(row[0]) if row else 0


def test_sigkill_under_supervisord_is_restarted_and_ends_with_the_stores_of_an_uninterrupted_run(  # noqa: PLR0917 - fixtures
    tmp_path: Path,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    reference_influx: str,
    run_influx: str,
) -> None:
    """SIGKILL of the replay mid-stream: supervisord restarts it, it resumes, exits 0, the stores match a clean run."""
    state, logs = tmp_path / "state", tmp_path / "log"
    logs.mkdir()
    recording = state / "recordings" / "feed.jsonl"
    # From today's midnight (UTC): the same recording all day, and its signals still active.
    midnight = int(time.time()) // SECONDS_PER_DAY * SECONDS_PER_DAY
    generate_feed(FeedSpec(txs=TXS, seed=7, garbage_share=0.01, start_time=midnight), recording)
    suffix = f"{os.getpid()}_{time.monotonic_ns()}"

    # The uninterrupted run, into its own stores; Redis is the test's one database, read and then emptied.
    reference_env = flow_environment(reference_pg_url, redis_url, mongo_url, f"reference_{suffix}", reference_influx)
    reference_settings = _prepared(reference_env)
    result = subprocess.run(
        [sys.executable, "-m", "quantbot", "replay", str(recording), "--no-progress"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **reference_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reference = readback.store_snapshot(reference_settings)
    redis.Redis.from_url(redis_url).flushdb()

    # The supervised run: settings only in the environment file, as deployed.
    env = flow_environment(pg_url, redis_url, mongo_url, f"supervised_{suffix}", run_influx)
    settings = _prepared(env)
    daemon, rpc = _start_supervisord(tmp_path, env, state, logs, PROGRAM)
    try:
        first = _wait_for(
            "the replay to run under supervisord",
            lambda: (info := rpc.supervisor.getProcessInfo(PROGRAM))["statename"] == "RUNNING" and info,
        )
        # Mid-stream: it has written to the stores, and a snapshot interval has passed since.
        _wait_for("the replay's first writes", lambda: _dead_letters(pg_url) > 0)
        written_at = time.monotonic()
        _wait_for("a snapshot interval", lambda: time.monotonic() - written_at > float(RUN_SNAPSHOT_INTERVAL_S))
        assert rpc.supervisor.getProcessInfo(PROGRAM)["pid"] == first["pid"], "the replay ended before its kill"
        os.kill(first["pid"], signal.SIGKILL)

        restarted = _wait_for(
            "supervisord to restart the replay",
            lambda: (info := rpc.supervisor.getProcessInfo(PROGRAM))["pid"] not in (0, first["pid"]) and info,
            timeout_s=RESTART_TIMEOUT_S,
        )
        final = _wait_for(
            "the restarted replay to end",
            lambda: (info := rpc.supervisor.getProcessInfo(PROGRAM))["statename"] in ("EXITED", "FATAL") and info,
        )
        daemon_log = (tmp_path / "supervisord.log").read_text()
        replay_log = (logs / "replay.log").read_text() + (logs / "replay.err.log").read_text()
        assert final["statename"] == "EXITED" and final["exitstatus"] == 0, daemon_log + replay_log
        assert restarted["pid"] != first["pid"]
        assert "terminated by SIGKILL; not expected" in daemon_log, daemon_log
        assert daemon_log.count(f"spawned: '{PROGRAM}'") == 2, daemon_log
        assert "exit status 0; expected" in daemon_log, daemon_log
        assert replay_log.count("this run") == 1, "the killed replay printed no summary, the resumed one did"
    finally:
        rpc.supervisor.shutdown()
        _wait_for("supervisord to stop", lambda: not Path(f"/proc/{daemon}").exists(), timeout_s=60)

    supervised = readback.store_snapshot(settings)
    shared = readback.shared_milliseconds(recording, settings)
    for snapshot in (reference, supervised):
        readback.settle_shared(snapshot["influx"], shared)
    counts = readback.counts(supervised)
    assert counts == readback.counts(reference)
    assert all(counts[part] > 0 for part in counts), counts
    assert readback.first_difference(reference, supervised) is None


LIVE_PROGRAM = "quantbot-run"


def test_live_flow_killed_under_supervisord_is_restarted_and_loses_nothing(  # noqa: PLR0917 - fixtures
    tmp_path: Path,
    pg_url: str,
    reference_pg_url: str,
    redis_url: str,
    mongo_url: str,
    reference_influx: str,
    run_influx: str,
) -> None:
    """`quantbot run` under supervisord against a loopback node that drops its websocket: SIGKILL mid-stream,
    supervisord restarts it, it backfills what it missed; a clean stop exits 0; every transaction of the
    window is stored with the keys a replay of what it received gives."""
    from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
    from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
    from tests.test_run import deduplicate, keys, node_environment, recorded, window

    state, logs = tmp_path / "state", tmp_path / "log"
    logs.mkdir()
    state.mkdir()  # the program's working directory, as the deployment's /var/lib/quantbot
    records = state / "live-recordings"
    suffix = f"{os.getpid()}_{time.monotonic_ns()}"
    chain = SimulatedChain(ChainSpec(txs=3000, seed=31, tx_per_s=150.0))
    env = flow_environment(pg_url, redis_url, mongo_url, f"supervised_live_{suffix}", run_influx)
    settings = _prepared(env)
    with SolanaPeer(chain, faults=Faults(drop_every_s=3.0, http_429_share=0.02, null_first_fetch_share=0.05)) as peer:
        daemon, rpc = _start_supervisord(tmp_path, {**env, **node_environment(peer)}, state, logs, LIVE_PROGRAM)
        try:
            first = _wait_for(
                "the live flow to run under supervisord",
                lambda: (
                    (info := rpc.supervisor.getProcessInfo(LIVE_PROGRAM))["statename"] in ("RUNNING", "FATAL") and info
                ),
            )
            assert first["statename"] == "RUNNING", (tmp_path / "supervisord.log").read_text()
            _wait_for("the first notification", lambda: bool(peer.notified))
            start_s = min(chain.by_signature(s).due_s for s in peer.notified) + 1.0  # type: ignore[union-attr]
            expected = window(chain, start_s)
            _wait_for("the first recorded transactions", lambda: len(recorded(records)) > len(expected) // 4)
            written_at = time.monotonic()
            _wait_for("a snapshot interval", lambda: time.monotonic() - written_at > float(RUN_SNAPSHOT_INTERVAL_S))
            os.kill(first["pid"], signal.SIGKILL)
            _wait_for(
                "supervisord to restart the live flow",
                lambda: (info := rpc.supervisor.getProcessInfo(LIVE_PROGRAM))["pid"] not in (0, first["pid"]) and info,
                timeout_s=RESTART_TIMEOUT_S,
            )
            _wait_for("every transaction of the window", lambda: set(recorded(records)) >= expected)
            rpc.supervisor.stopProcess(LIVE_PROGRAM)
            final = rpc.supervisor.getProcessInfo(LIVE_PROGRAM)
            daemon_log = (tmp_path / "supervisord.log").read_text()
            run_log = (logs / "run.log").read_text() + (logs / "run.err.log").read_text()
            assert final["statename"] == "STOPPED", daemon_log + run_log
            assert "terminated by SIGKILL; not expected" in daemon_log, daemon_log
            assert daemon_log.count(f"spawned: '{LIVE_PROGRAM}'") == 2, daemon_log
            assert "stopped: quantbot-run (exit status 0)" in daemon_log, daemon_log + run_log
        finally:
            rpc.supervisor.shutdown()
            _wait_for("supervisord to stop", lambda: not Path(f"/proc/{daemon}").exists(), timeout_s=60)

    assert expected <= set(recorded(records))
    supervised = readback.store_snapshot(settings)
    assert supervised["postgres.dead_letters"] == []
    redis.Redis.from_url(redis_url).flushdb()
    first_seen = tmp_path / "deduplicated"
    deduplicate(records, first_seen / "frames.jsonl")
    reference_env = flow_environment(
        reference_pg_url, redis_url, mongo_url, f"reference_live_{suffix}", reference_influx
    )
    reference_settings = _prepared(reference_env)
    result = subprocess.run(
        [sys.executable, "-m", "quantbot", "replay", str(first_seen), "--no-progress"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **reference_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert keys(supervised) == keys(readback.store_snapshot(reference_settings))
