"""Recovery: a replay killed with SIGKILL and restarted leaves the stores exactly as an uninterrupted run."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # kills and restarts replays in child processes

# 6,000 transactions over 26 h of feed time, so that 24 h windows slide, whales are followed up 3 h later and
# signals open and close; paced at 20,000x, a replay lasts about 5 s after a second of start-up, so the kills
# land in the middle of it.
TXS, HOURS, SPEED, KILLS = "6000", "26", "20000", "3"
CRASH_SCRIPT_TIMEOUT_S = 600
"""Two replays of a few thousand transactions, stores started and compared: about a minute; ten is a hang."""


def crash_replay(*args: str) -> str:
    """Run scripts/crash_replay.py with `args`; its output (stdout and stderr), once it exited 0."""
    result = subprocess.run(
        [sys.executable, "scripts/crash_replay.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CRASH_SCRIPT_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_full_speed_paced_and_killed_replays_leave_identical_stores() -> None:
    """scripts/crash_replay.py replays a 26 h feed as fast as possible, paced, and paced while killed three times:
    every store is identical, follow-ups, token documents, snapshots, lifecycles and strategy figures included."""
    output = crash_replay("--txs", TXS, "--hours", HOURS, "--kills", KILLS, "--speed", SPEED, "--seed", "3", "--paced")

    kills = re.findall(r"kill -9 #(\d+)", output)
    assert kills, f"the replay finished before any kill, so nothing was tested:\n{output}"
    assert "IDENTICAL" in output
    assert re.search(r"postgres\.dead_letters\s+(\d+)\s+\1\s+\1\s+yes", output), output
    for part in ("mongo.whale_activity", "mongo.tokens", "mongo.market_snapshots", "postgres.trading_signals"):
        assert re.search(rf"{re.escape(part)}\s+([1-9]\d*)\s+\1\s+\1\s+yes", output), (part, output)


@pytest.mark.soak  # 50 s each: `./dev test -m soak` runs them (the README's test command leaves them out)
@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_a_store_down_for_ten_seconds_mid_replay_loses_nothing(store: str) -> None:
    """PostgreSQL or Redis stopped for 10 s mid-replay: the sinks wait it out, the stores end identical."""
    # 5,000 transactions at recorded pace (400/s) last about 12 s: the outage starts a third of the
    # way in and lasts 10 s, so the replay is certainly writing when the store goes away.
    output = crash_replay("--txs", "5000", "--speed", "1", "--seed", "4", "--outage", store, "--outage-s", "10")

    assert f"{store} stopped after" in output and f"{store} restarted" in output
    assert "IDENTICAL" in output
    assert re.search(r"postgres\.trading_signals\s+([1-9]\d*)\s+\1\s+yes", output), output
