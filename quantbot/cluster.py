"""Where a flow runs: how many worker threads in this process, and which process of which cluster.

The meaning is Bytewax's (`python -m bytewax.run -w N -i I -a "h:p;h:p"`): every process of a cluster
runs the same flow with the same worker count and the same list of addresses, in the same order; the
process with id `I` listens on the `I`-th address. Items exchanged between workers of different
processes travel over those TCP connections.

Two facts of Bytewax 0.21's engine live here and nowhere else, because the replay places its readers
by them (`connectors.replay.ReplaySource`); `tests/test_scaleout.py` checks both against the engine:

- which worker holds a key's state: the key's bytes and a 0xFF byte (Rust's `Hash` of a `String`)
  hashed by SipHash-1-3 with zero keys (Rust's `DefaultHasher`), modulo the cluster's worker count;
- which worker is running: timely names its worker threads `timely:work-<index in the process>`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

WORKER_THREAD_PREFIX = "timely:work"
"""How timely names a worker thread: `timely:work-<index in the process>`."""
_MASK = (1 << 64) - 1
_SIP_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
"""SipHash's initial state ("somepseudorandomlygeneratedbytes"), xored with the keys (zero here)."""
ADDRESS_SEPARATOR = ";"
"""Bytewax's separator between the addresses of a cluster's processes."""
MAX_PORT = 65535


class ClusterSpecError(ValueError):
    """A worker count, process id or address list that cannot describe a cluster."""


def parse_addresses(text: str) -> tuple[str, ...]:
    """`"host:port;host:port"` as its addresses, in order.

    Raises:
        ClusterSpecError: an empty list, an address without a port, a port out of range, a duplicate.
    """
    addresses = tuple(part.strip() for part in text.split(ADDRESS_SEPARATOR) if part.strip())
    if not addresses:
        raise ClusterSpecError(f"no address in `{text}`: give host:port;host:port")
    for address in addresses:
        host, colon, port = address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) <= MAX_PORT:
            raise ClusterSpecError(f"address `{address}` is not host:port with a port of 1..{MAX_PORT}")
    if len(set(addresses)) != len(addresses):
        raise ClusterSpecError(f"addresses `{text}` name one process twice")
    return addresses


@dataclass(frozen=True)
class ClusterSpec:
    """This process's place in a Bytewax cluster.

    Attributes:
        workers: worker threads in this process (every process of the cluster runs as many).
        process_id: this process's index into `addresses`; None when the process is alone.
        addresses: every process's `host:port`, the same list in every process; empty when alone.
    """

    workers: int = 1
    process_id: int | None = None
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ClusterSpecError(f"workers must be at least 1, got {self.workers}")
        if self.process_id is None and self.addresses:
            raise ClusterSpecError("addresses given without a process id: give --process-id too")
        if self.process_id is not None:
            if not self.addresses:
                raise ClusterSpecError("a process id without the cluster's addresses: give --addresses too")
            if not 0 <= self.process_id < len(self.addresses):
                raise ClusterSpecError(
                    f"process id {self.process_id} is not an index into the {len(self.addresses)} addresses"
                )

    @property
    def processes(self) -> int:
        """How many processes the cluster has (1 when alone)."""
        return max(len(self.addresses), 1)

    @property
    def total_workers(self) -> int:
        """Worker threads over the whole cluster."""
        return self.workers * self.processes

    def worker_of_key(self, key: str) -> int:
        """The worker (0 to `total_workers` - 1, process by process) that holds the state of `key` in a keyed step."""
        return _siphash13(key.encode() + b"\xff") % self.total_workers

    def current_worker(self) -> int | None:
        """The calling worker thread's index in the cluster; None when not called on a named worker thread.

        A flow of one worker runs on the calling thread, whatever its name: that is worker 0.
        """
        if self.total_workers == 1:
            return 0
        try:
            name = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        except OSError:  # no procfs: the thread cannot be named
            return None
        prefix, _, local = name.rpartition("-")
        if prefix != WORKER_THREAD_PREFIX or not local.isdigit() or int(local) >= self.workers:
            return None
        return (self.process_id or 0) * self.workers + int(local)

    def describe(self) -> str:
        """`process 1 of 2, 2 workers each` or `2 workers`, for logs and events."""
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return workers if self.process_id is None else f"process {self.process_id} of {self.processes}, {workers} each"


SINGLE = ClusterSpec()
"""One process with one worker: what a flow runs as unless told otherwise."""


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def _siphash13(data: bytes) -> int:
    """SipHash-1-3 of `data` with zero keys: Rust's `DefaultHasher::new()` over the same bytes."""
    v0, v1, v2, v3 = _SIP_INIT
    whole = len(data) - len(data) % 8
    for at in range(0, whole, 8):
        word = int.from_bytes(data[at : at + 8], "little")
        v3 ^= word
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)  # one compression round: the "1" of 1-3
        v0 ^= word
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):  # three finalisation rounds: the "3"
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3
