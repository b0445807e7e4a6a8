"""Kill -9 a replay at random moments, restart it until it finishes, compare with an uninterrupted run.

    .venv/bin/python scripts/crash_replay.py --txs 50000 --kills 5 --seed 1
    .venv/bin/python scripts/crash_replay.py --txs 20000 --hours 26 --speed 20000 --kills 3 --paced
    .venv/bin/python scripts/crash_replay.py --txs 20000 --speed 2 --outage postgres --outage-s 10

It starts its own stores under a temporary directory (PostgreSQL, Valkey, SecantusDB and one
VictoriaMetrics per run), generates a synthetic recording (or takes --recording), replays it once
without interruption and as fast as possible into one set of databases (the reference), and once into
another set at --speed while SIGKILLing the `quantbot replay --recovery-dir` process --kills times at
random moments. With --paced, a third run replays it at --speed without interruption. The demo's three
strategies follow the whales, so signals open, close and are counted in each strategy's figures. Then it
reads back everything the flow wrote to each store (whale follow-ups, token documents, market snapshots,
signal lifecycles, strategy metrics included) and prints a table of counts and digests. Exit status 0
when every run's stores are identical to the reference's, 1 when one differs (with the first difference).

VictoriaMetrics keeps milliseconds, and a price point lies at its trade's hash-derived nanosecond (see
`sinks.influx.point_offset_ns`): two distinct trades of one series may share a millisecond there, and
which of the two samples it keeps depends on how the writes were cut into requests, which a crash
changes. Such samples (computed from the recording with the flow's own steps,
`quantbot.ops.readback.shared_milliseconds`) are compared as "one of the trades' values"; every other
sample must be equal.

With --outage STORE, the second run is not killed: STORE (PostgreSQL or Redis) is stopped a third of
the way into the replay and restarted on the same port --outage-s seconds later; the replay must wait
the outage out (its sinks retry) and end with the same stores as the uninterrupted run.

With --signal TERM (or INT), the stops are clean ones instead of crashes: each must exit 0 within 30 s,
and the resumes must end with the same stores as the uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from quantbot.ops import schema as operations
from quantbot.ops import stack
from quantbot.ops.demo import ensure_demo_strategy
from quantbot.ops.readback import counts, first_difference, settle_shared, shared_milliseconds, store_snapshot
from quantbot.settings import Settings, load_settings
from quantbot.stack_state import RunningServer
from quantbot.synthetic import FeedSpec, generate_feed
from quantbot.units import NS_PER_S, SECONDS_PER_DAY, SECONDS_PER_HOUR

# Snapshots every half second: a kill loses at most that much work, and each restart, which takes a
# couple of seconds to import and resume, still gets past a snapshot before the next kill.
SNAPSHOT_INTERVAL_S = "0.5"
# Prices must outlive the comparison: the schema's 30 s TTL would expire them between the two runs.
PRICE_TTL_S = "86400"
# A replay is killed no sooner than this after it starts: past start-up (about a second) and a snapshot.
EARLIEST_KILL_S = 1.5
RUN_DEADLINE_S = 1800
STOP_DEADLINE_S = 30.0
"""A replay sent SIGTERM exits within this (a process supervisor's usual grace period before SIGKILL)."""


@dataclass
class Stores:
    """The servers this script started, and how to stop them."""

    servers: list[RunningServer]

    def stop(self) -> None:
        for server in self.servers:
            stack.stop(server)


SHARED_SERVERS = 3
"""PostgreSQL, Valkey and SecantusDB hold a database per run; VictoriaMetrics, which has none, is one per run."""


def start_stores(work: Path, runs: list[str]) -> Stores:
    """PostgreSQL, Valkey, SecantusDB, and one VictoriaMetrics per run."""
    servers = [
        stack.start_postgres(work / "postgres" / "data", stack.free_port(), work / "postgres.log"),
        stack.start_valkey(work / "redis" / "data", stack.free_port(), work / "redis.log"),
        stack.start_mongo(work / "mongo" / "data", stack.free_port(), work / "mongo.log"),
    ]
    for run in runs:
        servers.append(
            stack.start_victoria_metrics(work / f"influx-{run}" / "data", stack.free_port(), work / f"influx-{run}.log")
        )
    return Stores(servers)


def run_environment(stores: Stores, run: str, redis_db: int) -> dict[str, str]:
    """The environment of one run's `quantbot` processes: its own database in each store (Redis: number
    `redis_db`, which is also the run's place among the VictoriaMetrics servers)."""
    postgres, valkey, mongo = stores.servers[:SHARED_SERVERS]
    influx = stores.servers[SHARED_SERVERS + redis_db]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{run}"')
    return {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": postgres.url.rsplit("/", 1)[0] + f"/{run}",
        "QUANTBOT_POSTGRES_SSLMODE": "disable",
        "QUANTBOT_REDIS_URL": valkey.url.rsplit("/", 1)[0] + f"/{redis_db}",
        "QUANTBOT_MONGO_URL": mongo.url,
        "QUANTBOT_MONGO_DB": run,
        "QUANTBOT_INFLUX_URL": influx.url,
        "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": SNAPSHOT_INTERVAL_S,
        "QUANTBOT_REDIS_PRICE_TTL_S": PRICE_TTL_S,
        "QUANTBOT_LOGGING_LEVEL": "WARNING",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(config_dir=REPO_ROOT / "config", environ=env)


def replay_command(recording: Path, recovery: Path | None, speed: float | None) -> list[str]:
    command = [sys.executable, "-m", "quantbot", "replay", str(recording), "--no-progress"]
    if speed is not None:
        command += ["--speed", str(speed)]
    return [*command, "--recovery-dir", str(recovery)] if recovery else command


def run_to_end(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            command, env={**os.environ, **env}, stdout=out, stderr=out, timeout=RUN_DEADLINE_S, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"replay failed with status {result.returncode}; see {log}")


def run_with_kills(  # noqa: PLR0917 - a script-local helper called once
    command: list[str],
    env: dict[str, str],
    log: Path,
    kills: int,
    latest_s: float,
    rng: random.Random,
    sig: signal.Signals = signal.SIGKILL,
) -> int:
    """Start the replay, send it `sig` `kills` times at random moments, then let it finish; signals sent.

    SIGTERM must stop it cleanly: exit status 0 within `STOP_DEADLINE_S`, else this exits with an error.
    """
    done = 0
    with log.open("ab") as out:
        while done < kills:
            process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
            # Each restart resumes where the last snapshot was; spreading the kills over the first
            # 2/(kills+1) of a whole run's time lets every kill land before the replay ends.
            delay = rng.uniform(EARLIEST_KILL_S, max(2 * latest_s / (kills + 1), EARLIEST_KILL_S + 1))
            try:
                process.wait(timeout=delay)
                break  # it finished before its kill: nothing left to interrupt
            except subprocess.TimeoutExpired:
                process.send_signal(sig)
                sent = time.monotonic()
                try:
                    status = process.wait(timeout=STOP_DEADLINE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    raise SystemExit(
                        f"{sig.name}: the replay did not stop within {STOP_DEADLINE_S:.0f} s; see {log}"
                    ) from None
                done += 1
                if sig is signal.SIGKILL:
                    print(f"  kill -9 #{done} after {delay:.1f} s", flush=True)
                    continue
                if status != 0:
                    raise SystemExit(f"{sig.name}: the replay exited with status {status}, not 0; see {log}") from None
                print(
                    f"  {sig.name} #{done} after {delay:.1f} s: exit 0 in {time.monotonic() - sent:.1f} s", flush=True
                )
    run_to_end(command, env, log)
    return done


def run_with_outage(  # noqa: PLR0917 - a script-local helper called once
    command: list[str], env: dict[str, str], log: Path, stores: Stores, store: str, outage_s: float, after_s: float
) -> None:
    """Start the replay, stop `store` after `after_s` for `outage_s`, restart it on its port, let the replay end."""
    index = {"postgres": 0, "redis": 1}[store]
    server = stores.servers[index]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
        time.sleep(after_s)  # the replay is running; how far it got does not matter, only that it is mid-way
        if process.poll() is not None:
            raise SystemExit(f"the replay ended before the outage began; use more --txs or a lower --speed ({log})")
        stack.stop(server)
        print(f"  {store} stopped after {after_s:.1f} s", flush=True)
        time.sleep(outage_s)  # the outage itself: the replay must wait it out, not lose or skip anything
        start = stack.start_postgres if store == "postgres" else stack.start_valkey
        stores.servers[index] = start(server.data_dir, server.port, server.log)
        print(f"  {store} restarted on port {server.port} after {outage_s:.0f} s down", flush=True)
        status = process.wait(timeout=RUN_DEADLINE_S)
    if status != 0:
        raise SystemExit(f"replay failed with status {status} after the outage; see {log}")


def _paced_s(recording: Path, speed: float) -> float:
    """How long a replay of `recording` at `speed` takes: its frames' receive-time span over the speed."""
    first = last = None
    with recording.open("rb") as lines:
        for line in lines:
            try:
                received_ns = orjson.loads(line)["received_ns"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # a malformed line of the recording: it has no time
            first = received_ns if first is None else first
            last = received_ns
    return 0.0 if first is None or last is None else (last - first) / NS_PER_S / speed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=50_000, help="transactions in the generated recording")
    parser.add_argument(
        "--hours", type=float, help="hours of feed time the recording spans, ending at midnight (default: 400 tx/s)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the recording and of the kill moments")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of the replay before it may finish")
    parser.add_argument(
        "--signal",
        choices=["KILL", "TERM", "INT"],
        default="KILL",
        help="what --kills sends: KILL (a crash) or TERM/INT (a clean stop: exit 0 within 30 s expected)",
    )
    parser.add_argument("--recording", type=Path, help="replay this recording instead of generating one")
    parser.add_argument("--workdir", type=Path, help="keep stores and logs here (default: a temporary directory)")
    parser.add_argument("--speed", type=float, help="replay at recorded pace times this (default: as fast as possible)")
    parser.add_argument(
        "--outage",
        choices=["postgres", "redis"],
        help="instead of killing the replay, stop this store mid-replay and restart it --outage-s later",
    )
    parser.add_argument("--outage-s", type=float, default=10.0, help="how long the store stays down")
    parser.add_argument(
        "--paced", action="store_true", help="also replay at --speed without interruption, and compare that too"
    )
    args = parser.parse_args()
    if args.paced and args.speed is None:
        parser.error("--paced needs --speed")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="quantbot-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    runs = ["reference", *(["paced"] if args.paced else []), "crashed"]
    stores = start_stores(work, runs)
    try:
        recording = args.recording
        if recording is None:
            recording = work / "feed.jsonl"
            # From today's midnight (UTC), or with --hours up to it: the same recording all day, and its
            # signals still active.
            midnight = int(time.time()) // SECONDS_PER_DAY * SECONDS_PER_DAY
            start = midnight if args.hours is None else midnight - round(args.hours * SECONDS_PER_HOUR)
            spec = FeedSpec(txs=args.txs, seed=args.seed, garbage_share=0.01, start_time=start, hours=args.hours)
            stats = generate_feed(spec, recording)
            print(f"recording {recording}: {stats.describe()}", flush=True)
        results = {}
        reference_s = 0.0
        for redis_db, run in enumerate(runs):
            env = run_environment(stores, run, redis_db)
            settings = settings_of(env)
            operations.migrate_up(settings)
            ensure_demo_strategy(settings, all_of_them=True)
            started = time.monotonic()
            if run == "reference":
                run_to_end(replay_command(recording, None, None), env, work / f"{run}.log")
                reference_s = time.monotonic() - started
                print(f"reference: uninterrupted replay as fast as possible in {reference_s:.1f} s", flush=True)
            elif run == "paced":
                run_to_end(replay_command(recording, None, args.speed), env, work / f"{run}.log")
                print(
                    f"paced: uninterrupted replay at {args.speed:g}x in {time.monotonic() - started:.1f} s", flush=True
                )
            elif args.outage:
                run_with_outage(
                    replay_command(recording, work / "recovery", args.speed),
                    env,
                    work / f"{run}.log",
                    stores,
                    args.outage,
                    args.outage_s,
                    after_s=max(EARLIEST_KILL_S, reference_s / 3),
                )
                print(
                    f"crashed: replay through a {args.outage} outage, in {time.monotonic() - started:.1f} s", flush=True
                )
            else:
                kills = run_with_kills(
                    replay_command(recording, work / "recovery", args.speed),
                    env,
                    work / f"{run}.log",
                    args.kills,
                    # The killed run's length uninterrupted: the reference's, or the recording's span at --speed.
                    max(reference_s, 0.0 if args.speed is None else _paced_s(recording, args.speed)),
                    rng,
                    signal.Signals[f"SIG{args.signal}"],
                )
                print(
                    f"crashed: {kills} SIG{args.signal}, then to the end, in {time.monotonic() - started:.1f} s",
                    flush=True,
                )
            results[run] = store_snapshot(settings)
        shared = shared_milliseconds(recording, settings)
        for run, snapshot in results.items():
            settled = settle_shared(snapshot["influx"], shared)
            print(f"{run}: {settled} influx samples where distinct trades share a VictoriaMetrics millisecond")
        tallies = {run: counts(results[run]) for run in runs}
        others = runs[1:]
        print(f"{'store':36} " + " ".join(f"{run:>12}" for run in runs) + "  identical")
        for name in tallies["reference"]:
            same = all(first_difference(results["reference"][name], results[run][name]) is None for run in others)
            figures = " ".join(f"{tallies[run][name]:>12}" for run in runs)
            print(f"{name:36} {figures}  {'yes' if same else 'NO'}")
        for run in others:
            difference = first_difference(results["reference"], results[run])
            if difference:
                print(f"DIFFERENT: {run} first differs at {difference}")
                return 1
        print("IDENTICAL: every store holds exactly what the uninterrupted run wrote")
        return 0
    finally:
        stores.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
