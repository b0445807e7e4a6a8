"""Write-behind: a store sink's writes overlapped with the flow's own work, all acknowledged before each epoch ends.

A `DynamicSink`'s partition writes in the worker's thread: while the store answers, the worker waits. In a
replay of the synthetic feed into the embedded stores, those waits were 8% of the time for MongoDB (whose
stand-in takes about a millisecond a document) and 4% for PostgreSQL. `WriteBehind` hands each batch to a
thread of its own and returns, so the worker parses and values the next items while the store works (the
interpreter lock is released while a client waits on its socket).

What stays true:

- order: one batch at a time, in the order given: a batch is handed over only once the one before it is
  stored, so the sink's ordering promises (a whale's document before its follow-ups) hold;
- nothing lost: Bytewax calls a partitioned sink's `snapshot` at the end of every epoch in which it wrote,
  before that epoch counts as done (Bytewax 0.21, `src/outputs.rs`, `partitioned_output`), and `snapshot`
  waits for the batch in flight; a crash before then resumes at or before that epoch, whose writes are
  idempotent (each sink says why);
- errors: a write that failed (its store refused past the retry budget) raises in the worker at the next
  `write_batch`, `snapshot` or `close`, and stops the flow as it did in line.

A partitioned sink takes `(key, item)` pairs: the flow keys what it writes with `WriteBehind.key`. There is
one partition, so one worker writes, in the order its items arrived.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

X = TypeVar("X")


class WriteBehind(FixedPartitionedSink[X, None], Generic[X]):
    """`sink`'s writes on a thread of their own, one batch at a time; each epoch's acknowledged before it ends.

    Args:
        sink: the sink whose partition does the writing (built once, as worker 0 of 1).
        name: the one partition's name (and the key the flow gives every item: `key`).
    """

    def __init__(self, sink: DynamicSink[X], name: str) -> None:
        self.sink = sink
        self.key = name

    def list_parts(self) -> list[str]:
        """The one partition, on every worker: Bytewax makes one of them its writer."""
        return [self.key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BehindPartition[X]:
        """The wrapped sink's partition, with its writer thread."""
        return _BehindPartition(self.sink.build(step_id, 0, 1), f"{step_id}-behind")


class _BehindPartition(StatefulSinkPartition[X, None], Generic[X]):
    def __init__(self, partition: StatelessSinkPartition[X], thread_name: str) -> None:
        self._partition = partition
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._in_flight: Future[None] | None = None

    def _wait(self) -> None:
        """Until the batch in flight is stored; raises what its write raised."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def write_batch(self, values: list[X]) -> None:
        self._wait()
        self._in_flight = self._writer.submit(self._partition.write_batch, values)

    def snapshot(self) -> None:
        """Called as the epoch ends: its writes are stored before it counts as done."""
        self._wait()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._writer.shutdown(wait=True)
            self._partition.close()
