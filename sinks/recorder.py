"""Recorder sinks: raw frames to rotating recording files, so that any feed can be replayed later
(`quantbot run --record DIR`, `quantbot record --out DIR`), and the dead letters of a recording run beside
them (`quantbot record` has no dead-letter store).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot.models import DeadLetter, Frame
from quantbot.recordings import RecordingWriter
from quantbot.units import SECONDS_PER_HOUR

log = logging.getLogger(__name__)


class RecorderSink(DynamicSink[Frame]):
    """Appends frames, exactly as received, to recording files in `directory`.

    Delivery: each batch is written and fsynced before `write_batch` returns. A flow resumed after a
    crash re-emits the frames since its last snapshot, so a recording may hold those frames twice;
    replaying it stays exactly-once in the stores, whose writes are keyed.

    Parallelism: one file sequence per worker (`<prefix>-w<worker>-...`), rotated by size and age.

    Args:
        directory: where recordings are written.
        prefix: the file name prefix.
        compression: `none`, `gzip` or `zstd`.
        max_bytes: rotate a file once it holds this many (uncompressed) bytes.
        max_age_s: rotate a file once it is this old.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str = "frames",
        compression: str = "zstd",
        max_bytes: int = 256 << 20,
        max_age_s: float = SECONDS_PER_HOUR,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.compression = compression
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RecorderPartition:
        """A writer of this worker's own file sequence."""
        writer = RecordingWriter(
            self.directory,
            prefix=f"{self.prefix}-w{worker_index}",
            compression=self.compression,
            max_bytes=self.max_bytes,
            max_age_s=self.max_age_s,
        )
        return _RecorderPartition(writer)


class _RecorderPartition(StatelessSinkPartition[Frame]):
    def __init__(self, writer: RecordingWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[Frame]) -> None:
        if not items:
            return
        start = time.perf_counter()
        self._writer.write(items)
        self._writer.flush()
        log.debug("sink=recorder frames=%d elapsed_s=%.3f", len(items), time.perf_counter() - start)

    def close(self) -> None:
        self._writer.close()


class DeadLetterFileSink(DynamicSink[DeadLetter]):
    """Appends dead letters as JSON lines to `<directory>/dead-letters-w<worker>.ndjson` (not a recording's
    suffix: a replay of the directory does not read them).

    Delivery: each batch is written and fsynced before `write_batch` returns; a resumed flow may write a
    dead letter twice (at-least-once).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterFilePartition:
        """This worker's file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return _DeadLetterFilePartition(self.directory / f"dead-letters-w{worker_index}.ndjson")


class _DeadLetterFilePartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")

    def write_batch(self, items: list[DeadLetter]) -> None:
        if not items:
            return
        for letter in items:
            self._file.write(
                orjson.dumps(
                    {
                        "position": letter.position,
                        "source": letter.source,
                        "stage": letter.stage,
                        "reason": letter.reason,
                        "raw": letter.raw,
                        "received_ns": letter.received_ns,
                    }
                )
                + b"\n"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        log.warning("sink=dead_letter_file letters=%d path=%s", len(items), self._file.name)

    def close(self) -> None:
        self._file.close()
