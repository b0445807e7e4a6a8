"""Scale-out benchmark: `quantbot replay` as 1×1, 1×2 and 2×2 (processes × workers) into the four real stores.

    .venv/bin/python bench/scale.py                       # 30,000 transactions, each topology once
    .venv/bin/python bench/scale.py --txs 100000 --topologies 1x1 2x2

It starts its own embedded stores (`quantbot stack up` in a temporary directory), generates one synthetic
recording, and replays it once per topology, each into databases of its own (a PostgreSQL database, a
MongoDB database, a Redis database; VictoriaMetrics is shared: the same points are written each time). The
processes of a cluster are started together, on loopback ports, exactly as the README's scale-out section
runs them. It prints, per topology: the replay's own elapsed time (the slowest process's `elapsed`: the
engine's run, from building the flow to its end), the wall time including interpreter start-up, and
transactions per second over each.

DESIGN.md §7's question for issue 12: do two processes beat one on a 2-core machine with the stores
beside them (aim: 1.4×)? Decoding is CPU-bound Python: worker threads share one interpreter lock, so
only processes add CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.replay import start_stack  # noqa: E402
from quantbot.ops import schema as operations  # noqa: E402
from quantbot.ops import stack  # noqa: E402
from quantbot.ops.demo import ensure_demo_strategy  # noqa: E402
from quantbot.settings import load_settings  # noqa: E402
from quantbot.stack_state import read_state  # noqa: E402
from quantbot.synthetic import FeedSpec, generate_feed  # noqa: E402
from quantbot.units import SECONDS_PER_DAY  # noqa: E402
from sinks.clients import resolve_endpoints  # noqa: E402

RUN_DEADLINE_S = 1800
TOPOLOGIES = ("1x1", "1x2", "2x2")
ELAPSED = re.compile(r"^\W*elapsed\W+([\d.]+) s", re.MULTILINE)


def _commands(recording: Path, processes: int, workers: int) -> list[list[str]]:
    base = [sys.executable, "-m", "quantbot", "replay", str(recording), "--no-progress", "--workers", str(workers)]
    if processes == 1:
        return [base]
    addresses = ";".join(f"127.0.0.1:{stack.free_port()}" for _ in range(processes))
    return [[*base, "--process-id", str(i), "--addresses", addresses] for i in range(processes)]


def _environment(base: dict[str, str], postgres_admin: str, redis_url: str, run: int) -> dict[str, str]:
    """`base` with a PostgreSQL database, a MongoDB database and a Redis database of this run's own."""
    name = f"scale_{run}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **base,
        "QUANTBOT_POSTGRES_URL": postgres_admin.rsplit("/", 1)[0] + f"/{name}",
        "QUANTBOT_MONGO_DB": name,
        "QUANTBOT_REDIS_URL": redis_url.rsplit("/", 1)[0] + f"/{run + 1}",
    }
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    operations.migrate_up(settings)
    ensure_demo_strategy(settings)
    return env


@dataclass(frozen=True)
class Measured:
    """One topology's run."""

    elapsed_s: float
    """The slowest process's replay elapsed time (the engine's run)."""
    wall_s: float
    """From starting the processes to the last one's exit, interpreter start-up included."""
    process_cpu_s: tuple[float, ...]
    """CPU seconds (user + system) of each quantbot process."""
    stores_cpu_s: float
    """CPU seconds of the four embedded stores' processes over the same wall time."""


def _stores_cpu_s(stack_dir: Path) -> float:
    """CPU seconds used so far by the embedded stores' processes and their children (PostgreSQL's backends)."""
    total = 0.0
    for server in read_state(stack_dir).values():
        try:
            leader = psutil.Process(server.pid)
            for process in (leader, *leader.children(recursive=True)):
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:  # a backend that ended between listing and reading: its time is lost
            continue
    return total


def measure(recording: Path, env: dict[str, str], topology: str, logs: Path, stack_dir: Path) -> Measured:
    """One replay of `recording` as `topology`, its processes' and the stores' CPU time beside it."""
    processes, workers = (int(n) for n in topology.split("x"))
    stores_before = _stores_cpu_s(stack_dir)
    started = time.monotonic()
    children = []
    for i, command in enumerate(_commands(recording, processes, workers)):
        with (logs / f"{topology}-{i}.log").open("wb") as out:
            children.append(subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out))
    statuses, cpu = [], []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        statuses.append(os.waitstatus_to_exitcode(status))
        cpu.append(usage.ru_utime + usage.ru_stime)
    wall = time.monotonic() - started
    stores = _stores_cpu_s(stack_dir) - stores_before
    if any(statuses):
        raise SystemExit(f"{topology}: exit statuses {statuses}; see {logs}")
    elapsed = []
    for i in range(processes):
        found = ELAPSED.search((logs / f"{topology}-{i}.log").read_text())
        if found is None:
            raise SystemExit(f"{topology}: process {i} printed no elapsed time; see {logs}")
        elapsed.append(float(found.group(1)))
    return Measured(max(elapsed), wall, tuple(cpu), stores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=30_000, help="transactions in the recording")
    parser.add_argument("--topologies", nargs="*", default=list(TOPOLOGIES), help="PROCESSESxWORKERS, e.g. 2x2")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quantbot-scale-"))
    try:
        base = start_stack(work)
        settings = load_settings(config_dir=REPO_ROOT / "config", environ=base)
        endpoints = resolve_endpoints(settings)
        assert endpoints.postgres is not None and endpoints.redis is not None
        recording = work / "feed.jsonl"
        midnight = int(time.time()) // SECONDS_PER_DAY * SECONDS_PER_DAY
        generate_feed(FeedSpec(txs=args.txs, seed=11, start_time=midnight), recording)
        print(f"scale: {args.txs:,} transactions, {os.cpu_count()} CPUs, stores embedded on this machine")
        logs = work / "logs"
        logs.mkdir()
        baseline: float | None = None
        for run, topology in enumerate(args.topologies):
            env = _environment(base, endpoints.postgres, endpoints.redis, run)
            run_of = measure(recording, env, topology, logs, work / "stack")
            rate = args.txs / run_of.elapsed_s
            baseline = baseline or rate
            per_process = " + ".join(f"{cpu:.1f}" for cpu in run_of.process_cpu_s)
            print(
                f"scale: {topology}: replay {run_of.elapsed_s:5.1f} s = {rate:7,.0f} tx/s ({rate / baseline:.2f}×),"
                f" wall {run_of.wall_s:5.1f} s = {args.txs / run_of.wall_s:7,.0f} tx/s;"
                f" CPU s: quantbot {per_process}, stores {run_of.stores_cpu_s:.1f}"
                f" ({(sum(run_of.process_cpu_s) + run_of.stores_cpu_s) / run_of.wall_s:.0%} of the wall time,"
                f" of {os.cpu_count()} CPUs)",
                flush=True,
            )
    finally:
        stack.down(work / "stack")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
