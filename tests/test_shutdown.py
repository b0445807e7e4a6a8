"""Clean stop: SIGTERM makes `quantbot replay` exit 0 within 30 s, and a resume goes on exactly where it stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantbot.recordings import read_lines
from quantbot.synthetic import FeedSpec, generate_feed
from tests.conftest import REPO_ROOT, run_cli
from tests.test_cli import env  # noqa: F401 - `env` is a fixture
from tests.test_operations import FEED_START, events
from tests.test_recovery import crash_replay

STOP_DEADLINE_S = 30.0
"""What a process supervisor usually grants between SIGTERM and SIGKILL."""
START_DEADLINE_S = 60.0
"""Start-up of a child replay (imports, start checks, the flow lock) on a loaded 2-core machine."""
POLL_S = 0.1


def wait_for_event(pg_url: str, kind: str, process: subprocess.Popen[str]) -> None:
    """Wait until `kind` is in `system_events` (the replay is running), failing past `START_DEADLINE_S`."""
    deadline = time.monotonic() + START_DEADLINE_S
    while not any(row[0] == kind for row in events(pg_url)):
        assert process.poll() is None, f"the replay ended before `{kind}`: {process.communicate()}"
        assert time.monotonic() < deadline, f"no `{kind}` event within {START_DEADLINE_S:.0f} s"
        time.sleep(POLL_S)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_replay_cleanly_and_a_resume_reads_on_exactly(
    sig: signal.Signals,
    env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """SIGTERM/SIGINT mid-replay: exit 0 within 30 s, a run_stopped row; the resume reads each remaining line once."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=4000, seed=9, garbage_share=0.01, start_time=FEED_START), feed)
    lines = sum(1 for _ in read_lines(feed))
    assert run_cli("migrate", "up", env=env).returncode == 0
    command = [sys.executable, "-m", "quantbot", "replay", str(feed), "--no-progress", "--recovery-dir"]
    command += [str(tmp_path / "recovery"), "--speed", "1"]  # about 10 s at the recorded 400 transactions/s
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin", **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_event(env["QUANTBOT_POSTGRES_URL"], "run_started", process)
        time.sleep(1.0)  # mid-stream: some lines read, most not
        process.send_signal(sig)
        sent = time.monotonic()
        stdout, stderr = process.communicate(timeout=STOP_DEADLINE_S)
    finally:
        process.kill()

    assert process.returncode == 0, stdout + stderr
    assert time.monotonic() - sent < STOP_DEADLINE_S
    assert "stopped before the end" in stdout and "Traceback" not in stderr
    stopped = [(kind, details) for kind, _, _, details in events(env["QUANTBOT_POSTGRES_URL"])]
    assert [kind for kind, _ in stopped] == ["run_started", "run_stopped"]
    read_first = stopped[1][1]["inputs"]
    assert 0 < read_first < lines

    resumed = run_cli("replay", str(feed), "--no-progress", "--recovery-dir", str(tmp_path / "recovery"), env=env)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "stopped before the end" not in resumed.stdout
    rows = events(env["QUANTBOT_POSTGRES_URL"])
    assert [row[0] for row in rows] == ["run_started", "run_stopped", "run_started", "run_finished"]
    assert read_first + rows[3][3]["inputs"] == lines  # not one line read twice, none skipped
    assert re.search(r"replay resuming file=feed\.jsonl offset=[1-9]", resumed.stderr), resumed.stderr


@pytest.mark.slow  # starts its own stores and replays in child processes
@pytest.mark.soak  # 35 s: `./dev test -m soak`; the clean stop and exact resume are pinned above in seconds
def test_sigterm_twice_mid_replay_leaves_the_stores_of_an_uninterrupted_run() -> None:
    """scripts/crash_replay.py --signal TERM: each stop exits 0 within 30 s, the resumed stores equal a whole run's."""
    output = crash_replay("--txs", "6000", "--kills", "2", "--speed", "4", "--seed", "3", "--signal", "TERM")

    assert re.findall(r"SIGTERM #\d+ after [\d.]+ s: exit 0", output), f"no stop landed mid-replay:\n{output}"
    assert "IDENTICAL" in output
    assert re.search(r"mongo\.whale_activity\s+([1-9]\d*)\s+\1\s+yes", output), output
