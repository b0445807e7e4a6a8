"""Where a flow runs: how many worker threads in this process, and which process of which cluster.

The meaning is Bytewax's (`python -m bytewax.run -w N -i I -a "h:p;h:p"`): every process of a cluster
runs the same flow with the same worker count and the same list of addresses, in the same order; the
process with id `I` listens on the `I`-th address. Items exchanged between workers of different
processes travel over those TCP connections.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def describe(self) -> str:
        """`process 1 of 2, 2 workers each` or `2 workers`, for logs and events."""
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return workers if self.process_id is None else f"process {self.process_id} of {self.processes}, {workers} each"


SINGLE = ClusterSpec()
"""One process with one worker: what a flow runs as unless told otherwise."""
