"""Live benchmark: `quantbot run`'s flow against a loopback Solana node, into the four real stores.

    .venv/bin/python bench/live.py                                  # mainnet's pace, then faster
    .venv/bin/python bench/live.py --rates 110 --duration 60 --faults

It starts its own embedded stores (as bench/replay.py does) and, for each rate, a Solana JSON-RPC +
websocket node (`quantbot.ops.peers.SolanaPeer`) in a process of its own (serving costs CPU: in the
benchmark's process it would be measured as the flow's), making DEX transactions at that rate. The live
flow (websocket source, getTransaction per notification, the one transform graph, the four sinks) runs in
this process for `--duration` seconds, and it prints per rate:

- lag from the node's notification of a transaction to the return of the Redis sink's write of the price
  derived from it (p50, p99, max), over the transactions that yield a price (most trades);
- successful transactions notified, processed, and the backlog at the end (notified, not processed);
- getTransaction calls per transaction processed (retries included; 1.0 is the ideal);
- the process's peak resident memory.

Mainnet carries ~1,100 non-vote transactions/s of which about a tenth are DEX trades: `--rates 110` is
mainnet's pace for the DEX-filtered feed; the further rates find the highest one the flow keeps up with
(backlog near zero, p99 under a second).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.replay import settings_for, start_stack, time_price_writes  # noqa: E402
from flows import graph, runtime  # noqa: E402
from flows.live import live_source  # noqa: E402
from quantbot import metrics  # noqa: E402
from quantbot.ops import stack  # noqa: E402
from quantbot.ops.demo import LIVE_FAULTS, with_node  # noqa: E402
from quantbot.settings import Settings  # noqa: E402

PERCENTILES = (50, 99)
CHAIN_SLACK_S = 15.0
"""The node's chain outlasts the run by this much (start-up included)."""
PEER_START_S = 120.0
"""Building a chain takes ~0.4 ms a transaction (plus rendering them up front): a minute at the highest rates."""
DRAIN_S = 5.0
"""After the run's duration, the flow keeps going this long (the node has stopped making transactions) so
that what is in flight is processed; the backlog is counted after."""


def serve_peer(args: argparse.Namespace) -> int:
    """The node's process: serve a chain at `--rate`, print its URLs, and on SIGTERM write what it notified."""
    from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
    from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer

    chain = SimulatedChain(ChainSpec(txs=int(args.rate * (args.duration + CHAIN_SLACK_S)), seed=5, tx_per_s=args.rate))
    chain.prerender(("base64",))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with SolanaPeer(chain, faults=LIVE_FAULTS if args.faults else Faults(), wall_clock=True) as peer:
        print(json.dumps({"http": peer.http_url, "ws": peer.ws_url}), flush=True)
        stopped.wait()
        counters = peer.counters()
    failed = [s for s in counters.notified if (tx := chain.by_signature(s)) is not None and tx.err is not None]
    report = {
        "notified": counters.notified,
        "failed": failed,
        "requests": dict(counters.requests),
        "drops": counters.drops,
    }
    Path(args.report).write_text(json.dumps(report))
    return 0


def start_peer(
    rate: float, duration: float, faults: bool, report: Path
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    command = [sys.executable, __file__, "--serve-peer", "--rate", str(rate), "--duration", str(duration)]
    command += ["--report", str(report), *(["--faults"] if faults else [])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert process.stdout is not None
    deadline = time.monotonic() + PEER_START_S
    line = ""
    while not line and time.monotonic() < deadline:
        line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit("the node did not start")
    urls: dict[str, str] = json.loads(line)
    return process, urls


def measure(settings: Settings, rate: float, duration: float, faults: bool, work: Path) -> None:
    report = work / f"peer-{rate:g}.json"
    peer, urls = start_peer(rate, duration, faults, report)
    written: dict[str, float] = {}
    live_settings = with_node(settings, urls["http"], urls["ws"])
    sinks = runtime.store_sinks(live_settings)
    time_price_writes(sinks, written, time.time)
    source = live_source(live_settings)
    flow = graph.build_flow(source, sinks, runtime.flow_config(live_settings, runtime.active_strategies(live_settings)))
    frames_before = metrics.total(metrics.FRAMES)
    timer = threading.Timer(duration + DRAIN_S, source.stop)
    timer.start()
    try:
        runtime.run(flow, live_settings, None, stop=source.stop)
    finally:
        timer.cancel()
        peer.send_signal(signal.SIGTERM)
        peer.wait(60)
    processed = int(metrics.total(metrics.FRAMES) - frames_before)
    node = json.loads(report.read_text())
    # Failed transactions are notified but not fetched (`[solana] include_failed` is off): not a backlog.
    failed = set(node["failed"])
    notified: dict[str, float] = {s: at for s, at in node["notified"].items() if s not in failed}
    lags = sorted((written[s] - at) * 1000 for s, at in notified.items() if s in written)
    calls = node["requests"].get("getTransaction", 0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if len(lags) < 2:
        print(f"rate {rate:g}/s: no lag measured ({len(lags)} priced transactions)")
        return
    cuts = statistics.quantiles(lags, n=100, method="inclusive")
    figures = ", ".join(f"p{p} {cuts[p - 1]:,.0f} ms" for p in PERCENTILES)
    print(
        f"rate {rate:g} DEX tx/s{' with faults' if faults else ''}: lag notification -> store {figures},"
        f" max {lags[-1]:,.0f} ms ({len(lags):,} priced); notified {len(notified):,}, processed {processed:,},"
        f" backlog {max(len(notified) - processed, 0):,}; getTransaction per transaction"
        f" {calls / max(processed, 1):.2f}; websocket drops {node['drops']}; peak RSS {peak} MiB",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[110.0, 300.0, 600.0, 1000.0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of chain per rate")
    parser.add_argument("--faults", action="store_true", help="the live demo's faults (drops, 429, 503, null)")
    parser.add_argument("--serve-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        return serve_peer(args)
    work = Path(tempfile.mkdtemp(prefix="quantbot-bench-live-"))
    os.environ.setdefault("QUANTBOT_LOGGING_LEVEL", "WARNING")
    try:
        settings = settings_for(start_stack(work))
        for rate in args.rates:
            measure(settings, rate, args.duration, args.faults, work)
    finally:
        stack.down(work / "stack")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
