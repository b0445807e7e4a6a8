"""Benchmark: quantbot's decoder against solana-dex-parser (npm, 2.6.x) on the recorded corpus.

One command, `python bench/decode.py [CORPUS_DIR]`: both sides start from the raw JSON bytes of each
recorded transaction (parse + normalise + decode per transaction), run single-threaded pinned to the
same one CPU, warm up, then make whole passes over the set for a fixed time. The peer is installed
by this script with npm into a scratch directory under the system temp dir (never into the repo) and
run with node. The ratio compares the two on the transactions both can read (solana-dex-parser
rejects base64-encoded and Geyser-shaped transactions); quantbot's rate on the whole corpus is
printed too. The rate depends on the install: with the decoder compiled (setup.py, the default where a
C compiler exists) or as plain Python; the run says which.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quantbot.solana import decode as decode_module  # noqa: E402
from quantbot.solana.decode import decode_transaction  # noqa: E402
from quantbot.solana.normalise import parse_transactions  # noqa: E402

DEFAULT_CORPUS = REPO / ".." / "shared" / "fixtures" / "mainnet"
PEER_PACKAGE = "solana-dex-parser@2.6.x"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer" / "peer.mjs"
SCRATCH = Path(tempfile.gettempdir()) / "quantbot-bench-peer"
NPM_TIMEOUT_S = 600


def corpus_files(corpus: Path) -> list[Path]:
    """The corpus's transaction files (every `*.json` but the index)."""
    return sorted(p for p in corpus.glob("*.json") if p.name != "index.json")


def pin_to_one_cpu() -> None:
    """Run on a single CPU (the first this process may use), so `per core` means one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def time_quantbot(raws: Sequence[bytes], seconds: float, warmup: float) -> tuple[int, float]:
    """Decode `raws` in whole passes for `seconds` after `warmup`; returns (transactions, elapsed)."""

    def one_pass() -> int:
        count = 0
        for raw in raws:
            for tx in parse_transactions(raw):
                decode_transaction(tx)
                count += 1
        return count

    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        one_pass()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        count += one_pass()
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def install_peer() -> Path:
    """Install solana-dex-parser into the scratch directory (once) and return its node_modules."""
    modules = SCRATCH / "node_modules"
    if (modules / "solana-dex-parser" / "package.json").exists():
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SystemExit("node and npm are needed for the peer benchmark")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not (SCRATCH / "package.json").exists():
        (SCRATCH / "package.json").write_text('{"name": "quantbot-bench-peer", "private": true}\n')
    print(f"installing {PEER_PACKAGE} into {SCRATCH} ...", file=sys.stderr)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", PEER_PACKAGE],
        cwd=SCRATCH,
        check=True,
        timeout=NPM_TIMEOUT_S,
        stdout=sys.stderr,
    )
    return modules


def time_peer(files: Sequence[Path], seconds: float, warmup: float) -> tuple[list[Path], int, float]:
    """Run the node side; returns (files it could parse, transactions, elapsed)."""
    modules = install_peer()
    result = subprocess.run(
        ["node", str(PEER_SCRIPT), str(modules), str(seconds), str(warmup), *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return [Path(f) for f in report["files"]], int(report["count"]), float(report["seconds"])


def decoder_build() -> str:
    """Whether this installation runs the decoder compiled (setup.py) or as plain Python."""
    compiled = str(decode_module.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled with mypyc" if compiled else "plain Python (not compiled)"


def rate_line(label: str, count: int, elapsed: float) -> str:
    """`label: N tx in S s = R tx/s/core`."""
    return f"{label}: {count} tx in {elapsed:.2f} s = {count / elapsed:,.0f} tx/s/core"


def main(argv: Sequence[str] | None = None) -> int:
    """Run both sides and print their rates and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per side")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up time per side")
    args = parser.parse_args(argv)

    files = corpus_files(args.corpus.resolve())
    if not files:
        raise SystemExit(f"no transactions in {args.corpus}")
    pin_to_one_cpu()

    peer_files, peer_count, peer_elapsed = time_peer(files, args.seconds, args.warmup)
    shared = [p.read_bytes() for p in peer_files]
    ours_count, ours_elapsed = time_quantbot(shared, args.seconds, args.warmup)
    all_count, all_elapsed = time_quantbot([p.read_bytes() for p in files], args.seconds, args.warmup)

    ours_rate = ours_count / ours_elapsed
    peer_rate = peer_count / peer_elapsed
    print(f"corpus: {len(files)} transactions, {len(peer_files)} readable by both")
    print(f"quantbot decoder build: {decoder_build()}")
    print(rate_line("quantbot", ours_count, ours_elapsed))
    print(rate_line("solana-dex-parser", peer_count, peer_elapsed))
    print(f"ratio: {ours_rate / peer_rate:.2f}")
    print(rate_line(f"quantbot, whole corpus ({len(files)} tx)", all_count, all_elapsed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
