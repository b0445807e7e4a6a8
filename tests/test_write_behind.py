"""sinks.behind: writes overlapped with the flow, in order, all stored by the end of each epoch, errors raised."""

from __future__ import annotations

import threading
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from sinks.behind import WriteBehind

GATE_OPENS_AFTER_S = 0.05
"""How long a gated write is held: long enough that the caller has moved on, if it does not wait."""
GATE_TIMEOUT_S = 10.0
"""A gated write gives up after this, so that a test that never opens its gate fails instead of hanging."""


class Recorded(DynamicSink[int]):
    """Stores each batch in `stored`, in the writer's thread; with `gate`, each write waits for it first."""

    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None) -> None:
        self.gate = gate
        self.fail_on = fail_on
        self.stored: list[list[int]] = []
        self.threads: set[str] = set()
        self.closed = False

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[int]:
        return _Recording(self)


class _Recording(StatelessSinkPartition[int]):
    def __init__(self, sink: Recorded) -> None:
        self.sink = sink

    def write_batch(self, items: list[int]) -> None:
        sink = self.sink
        if sink.gate is not None and not sink.gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        sink.threads.add(threading.current_thread().name)
        if sink.fail_on is not None and sink.fail_on in items:
            raise ConnectionError(f"store gone while writing {sink.fail_on}")
        sink.stored.append(list(items))

    def close(self) -> None:
        self.sink.closed = True


def opened_soon(gate: threading.Event) -> threading.Timer:
    timer = threading.Timer(GATE_OPENS_AFTER_S, gate.set)
    timer.start()
    return timer


def test_a_write_is_handed_over_and_the_epochs_end_waits_until_it_is_stored() -> None:
    gate = threading.Event()
    recorded = Recorded(gate)
    part = WriteBehind(recorded, "store").build_part("store", "store", None)

    part.write_batch([1, 2])
    assert recorded.stored == []  # returned while the store still holds the write

    opened_soon(gate).join()
    part.snapshot()
    assert recorded.stored == [[1, 2]]
    assert recorded.threads == {"store-behind_0"}
    part.close()
    assert recorded.closed


def test_a_batch_is_handed_over_once_the_one_before_it_is_stored() -> None:
    """At most one batch in flight: a store slower than the flow holds the flow back, not its memory."""
    gate = threading.Event()
    recorded = Recorded(gate)
    part = WriteBehind(recorded, "store").build_part("store", "store", None)
    part.write_batch([1])

    opened_soon(gate)
    part.write_batch([2])
    assert recorded.stored[:1] == [[1]]
    part.close()
    assert recorded.stored == [[1], [2]]


def test_batches_are_stored_one_at_a_time_in_the_order_given() -> None:
    recorded = Recorded()
    part = WriteBehind(recorded, "store").build_part("store", "store", None)

    for n in range(200):
        part.write_batch([n])
    part.close()

    assert recorded.stored == [[n] for n in range(200)]


def test_a_failed_write_raises_at_the_next_call_and_close_still_closes() -> None:
    recorded = Recorded(fail_on=2)
    part = WriteBehind(recorded, "store").build_part("store", "store", None)
    part.write_batch([1])
    part.write_batch([2])

    with pytest.raises(ConnectionError, match="store gone while writing 2"):
        part.snapshot()
    part.write_batch([3])
    recorded.fail_on = 4
    part.write_batch([4])
    with pytest.raises(ConnectionError, match="store gone while writing 4"):
        part.close()
    assert recorded.stored == [[1], [3]]
    assert recorded.closed


def test_a_flow_writes_everything_in_order_through_its_one_writer(tmp_path: Path) -> None:
    recorded = Recorded()
    behind = WriteBehind(recorded, "store")
    flow = Dataflow("behind")
    items = op.input("numbers", flow, TestingSource(range(1000), batch_size=7))
    op.output("store", op.key_on("key", items, lambda _n: behind.key), behind)
    init_db_dir(tmp_path, 1)

    run_main(flow, recovery_config=RecoveryConfig(str(tmp_path)))

    assert [n for batch in recorded.stored for n in batch] == list(range(1000))
    assert recorded.closed


def test_a_flow_stops_on_a_write_that_failed() -> None:
    recorded = Recorded(fail_on=500)
    behind = WriteBehind(recorded, "store")
    flow = Dataflow("behind")
    items = op.input("numbers", flow, TestingSource(range(1000), batch_size=7))
    op.output("store", op.key_on("key", items, lambda _n: behind.key), behind)

    with pytest.raises(Exception, match="store gone while writing 500"):
        run_main(flow)

    assert 500 not in [n for batch in recorded.stored for n in batch]
