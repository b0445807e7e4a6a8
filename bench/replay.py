"""End-to-end benchmark: a synthetic recording through the whole dataflow into the four real stores.

    .venv/bin/python bench/replay.py                      # defaults below
    .venv/bin/python bench/replay.py --txs 100000 --paced-txs 20000 --rate 1000 --long-txs 1000000

It starts its own embedded stores (`quantbot stack up` in a temporary directory) and prints:

1. throughput: transactions/s replaying `--txs` transactions as fast as possible;
2. latency: frame-to-store percentiles at a paced `--rate` transactions/s, from the moment the source
   releases a frame to the moment the sink's write of a price derived from it has returned;
3. memory: resident set size sampled along a `--long-txs` replay (start, middle, end, peak).

Targets (DESIGN.md §7): 5,000 swap transactions/s on a 2-core machine, p99 under 250 ms at
1,000/s, memory flat over 1,000,000 transactions.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bytewax.inputs import StatefulSourcePartition

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from connectors.replay import ReplaySource, _ReplayPartition, resume_plan  # noqa: E402
from flows import graph, runtime  # noqa: E402
from flows.replay import replay  # noqa: E402
from quantbot.models import Frame, PriceTick  # noqa: E402
from quantbot.ops import schema as operations  # noqa: E402
from quantbot.ops import stack  # noqa: E402
from quantbot.ops.demo import ensure_demo_strategy  # noqa: E402
from quantbot.recordings import decode_frame, read_lines  # noqa: E402
from quantbot.settings import Settings, load_settings  # noqa: E402
from quantbot.solana.normalise import parse_transactions  # noqa: E402
from quantbot.stack_state import StoreName  # noqa: E402
from quantbot.synthetic import FeedSpec, generate_feed  # noqa: E402
from quantbot.synthetic.spec import DEFAULT_TX_PER_S  # noqa: E402

# RSS is sampled this often during the long replay.
MEMORY_SAMPLE_S = 1.0
PERCENTILES = (50, 90, 99)


def start_stack(work: Path) -> dict[str, str]:
    """All four stores embedded, under `work`; returns their URLs as environment overrides."""
    wanted = [stack.StoreWanted(name, None, True) for name in StoreName]
    states = stack.up(wanted, work / "stack")
    failed = [s for s in states if s.action not in ("started", "reused")]
    if failed:
        raise SystemExit(f"could not start the stores: {failed}")
    return {
        "QUANTBOT_PROFILE": "local",
        "QUANTBOT_STACK_DIR": str(work / "stack"),
        "QUANTBOT_LOGGING_LEVEL": "WARNING",
    }


def settings_for(env: dict[str, str]) -> Settings:
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    operations.migrate_up(settings)
    ensure_demo_strategy(settings)
    return settings


def throughput(settings: Settings, work: Path, txs: int) -> None:
    feed = work / "throughput.jsonl"
    stats = generate_feed(FeedSpec(txs=txs, seed=11), feed)
    summary = replay(settings, [feed])
    print(f"throughput: {stats.describe()}")
    print(
        f"throughput: {summary.transactions:,} transactions in {summary.elapsed_s:.1f} s"
        f" = {summary.transactions / summary.elapsed_s:,.0f} tx/s end to end"
        f" ({summary.activities:,} activities, {summary.whales} whales, {summary.signals} signals,"
        f" {summary.dead_letters} dead letters)"
    )


class _TimedPartition(_ReplayPartition):
    """The replay partition, noting when each frame is released to the flow (benchmark only)."""

    released: ClassVar[dict[str, float]] = {}

    def next_batch(self) -> list[Any]:
        batch = super().next_batch()
        now = time.monotonic()
        for item in batch:
            if isinstance(item, Frame):
                self.released[item.position] = now
        return batch


class _TimedSource(ReplaySource):
    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[Any, Any]:
        plan = resume_plan(self.files, resume_state)
        return _TimedPartition(self.files, plan, self.speed, self.batch_size, self.damaged, stopping=self._stopping)


def time_price_writes(sinks: graph.FlowSinks, written: dict[str, float], clock: Callable[[], float]) -> None:
    """Note in `written` when the Redis sink's write of each transaction's first price returned (`clock()`)."""
    original_build = sinks.redis.build

    def timed_build(step_id: str, worker_index: int, worker_count: int) -> Any:
        partition = original_build(step_id, worker_index, worker_count)
        write = partition.write_batch

        def write_batch(items: list[Any]) -> None:
            write(items)
            now = clock()
            for item in items:
                if isinstance(item, PriceTick) and item.signature and item.signature not in written:
                    written[item.signature] = now

        partition.write_batch = write_batch  # type: ignore[method-assign]
        return partition

    sinks.redis.build = timed_build  # type: ignore[method-assign]


def latency(settings: Settings, work: Path, txs: int, rate: float) -> None:
    """Frame release -> Redis price write returned, at a paced rate."""
    feed = work / "paced.jsonl"
    spec = FeedSpec(txs=txs, seed=12, garbage_share=0.0, tx_per_s=DEFAULT_TX_PER_S)
    generate_feed(spec, feed)
    position_of: dict[str, str] = {}
    for line in read_lines(feed):
        frame = decode_frame(line.data, f"{feed.name}@{line.offset}")
        if frame.kind == "transaction":
            for tx in parse_transactions(frame.payload):
                position_of[tx.signature] = frame.position
    written: dict[str, float] = {}
    sinks = runtime.store_sinks(settings)
    time_price_writes(sinks, written, time.monotonic)
    speed = rate / spec.pace_per_s  # the replay's speed-up of the recorded pace
    flow = graph.build_flow(
        _TimedSource([feed], speed=speed, batch_size=settings.pipeline.replay_batch_size),
        sinks,
        runtime.flow_config(settings, runtime.active_strategies(settings)),
    )
    started = time.monotonic()
    runtime.run(flow, settings, None)
    elapsed = time.monotonic() - started
    released = _TimedPartition.released
    samples = sorted(
        (written[sig] - released[pos]) * 1000 for sig, pos in position_of.items() if sig in written and pos in released
    )
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    figures = ", ".join(f"p{p} {cuts[p - 1]:.1f} ms" for p in PERCENTILES)
    print(
        f"latency: {len(samples):,} priced transactions at {len(position_of) / elapsed:,.0f} tx/s paced"
        f" (target {rate:,.0f}/s): {figures}, max {samples[-1]:.1f} ms"
    )


def memory(settings: Settings, work: Path, txs: int) -> None:
    feed = work / "long.jsonl.zst"
    generate_feed(FeedSpec(txs=txs, seed=13), feed)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        status = Path("/proc/self/status")
        while not done.wait(MEMORY_SAMPLE_S):
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    samples.append((time.monotonic(), int(line.split()[1]) // 1024))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    summary = replay(settings, [feed])
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if samples:
        first, middle, last = samples[0][1], samples[len(samples) // 2][1], samples[-1][1]
        print(
            f"memory: {summary.transactions:,} transactions in {summary.elapsed_s:.0f} s;"
            f" RSS start {first} MiB, middle {middle} MiB, end {last} MiB, process peak {peak} MiB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=100_000, help="transactions for the throughput run")
    parser.add_argument("--paced-txs", type=int, default=20_000, help="transactions for the latency run")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced rate of the latency run, tx/s")
    parser.add_argument("--long-txs", type=int, default=300_000, help="transactions for the memory run")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "latency", "memory"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quantbot-bench-"))
    try:
        settings = settings_for(start_stack(work))
        if "throughput" not in args.skip:
            throughput(settings, work, args.txs)
        if "latency" not in args.skip:
            latency(settings, work, args.paced_txs, args.rate)
        if "memory" not in args.skip:
            memory(settings, work, args.long_txs)
    finally:
        stack.down(work / "stack")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
