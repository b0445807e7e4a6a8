"""Benchmark: synthetic feed generation rate, one core.

One command, `python bench/synthetic.py [--txs N] [--hours H] [--seed S] [--out PATH]`: pins the process to
one CPU, writes a feed of N transactions (default 100,000; spread over H hours of feed time if given, else
at 400 per second) with `quantbot.synthetic.generate_feed` to PATH (default a
`.jsonl` file under the system temp dir, removed afterwards), and prints the rate in transactions per
second, the lines written and the file size. A `.jsonl.gz` or `.jsonl.zst` PATH measures compression too.
The rate is given per wall-clock second and per second of this process's CPU time: on a shared machine
the second is the one that says what one core does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quantbot.synthetic import FeedSpec, generate_feed  # noqa: E402

DEFAULT_TXS = 100_000
START_TIME = 1_750_000_000
"""A fixed first block time, so repeated runs write the same bytes."""
BYTES_PER_MB = 1_000_000


def pin_to_one_cpu() -> None:
    """Run on a single CPU (the first this process may use), so the rate is per core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def main(argv: Sequence[str] | None = None) -> int:
    """Generate one feed and print its rate and size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=DEFAULT_TXS, help="transactions to generate")
    parser.add_argument("--hours", type=float, help="hours of feed time the feed spans (default: 400 tx/s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the feed")
    parser.add_argument("--out", type=Path, help="recording to write (default: a temporary .jsonl, removed)")
    args = parser.parse_args(argv)
    pin_to_one_cpu()
    with tempfile.TemporaryDirectory(prefix="quantbot-bench-feed-") as scratch:
        out = args.out or Path(scratch) / "feed.jsonl"
        cpu_began = time.process_time()
        stats = generate_feed(FeedSpec(txs=args.txs, seed=args.seed, start_time=START_TIME, hours=args.hours), out)
        cpu_s = time.process_time() - cpu_began
    print(f"feed: {stats.describe()}")
    print(
        f"rate: {stats.transactions / stats.elapsed_s:,.0f} tx/s wall-clock, {stats.transactions / cpu_s:,.0f} tx/s "
        f"of CPU time on one core ({stats.bytes / BYTES_PER_MB / cpu_s:,.1f} MB/s)"
    )
    print(f"size: {stats.bytes / BYTES_PER_MB:,.1f} MB, {stats.bytes / max(stats.transactions, 1):,.0f} bytes/tx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
