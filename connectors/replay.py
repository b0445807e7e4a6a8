"""Replay of recorded feeds: frames from recording files, as fast as possible or at recorded pace."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from quantbot.models import DeadLetter, Frame
from quantbot.recordings import FrameFormatError, RecordedLine, dead_letter_for_line, decode_frame, read_lines

log = logging.getLogger(__name__)

PARTITION = "replay"
# Frames handed to the flow per call: large enough to amortise the engine's per-batch cost, small
# enough that a paced replay still releases frames close to their due time.
DEFAULT_BATCH_SIZE = 512
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ReplayPosition:
    """Where a replay resumes: the recording's name and the byte offset of the next line to read."""

    file: str
    offset: int


class ReplaySource(FixedPartitionedSource[Frame | DeadLetter, ReplayPosition | None]):
    """Frames from recordings, in file-name order and line order within each file.

    Delivery: at-least-once. The snapshot is the position after the last emitted line, so a resumed
    replay re-emits only what followed the last completed epoch; the stores' natural keys make that
    exactly-once in effect. A line that is not a frame is emitted as a `DeadLetter`, never skipped.

    Parallelism: one partition reads every file in turn. Replaying one stream in one order is what
    makes a replay deterministic (prices are learned in order), so a crashed replay can be compared
    with an uninterrupted one; the decode and store steps after it parallelise instead.

    Args:
        files: the recordings, in replay order (see `quantbot.recordings.find_recordings`).
        speed: `None` replays as fast as possible; otherwise frames are released at their recorded
            pace multiplied by `speed` (2.0 is twice as fast).
        batch_size: frames per batch at most.
    """

    def __init__(self, files: list[Path], speed: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not files:
            raise ValueError("a replay needs at least one recording")
        if speed is not None and speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self.files = list(files)
        self.speed = speed
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        """One partition: see the class docstring."""
        return [PARTITION]

    def build_part(self, step_id: str, for_part: str, resume_state: ReplayPosition | None) -> _ReplayPartition:
        """Open the replay where the last snapshot left it."""
        return _ReplayPartition(self.files, resume_state, self.speed, self.batch_size)


class _ReplayPartition(StatefulSourcePartition[Frame | DeadLetter, ReplayPosition | None]):
    def __init__(self, files: list[Path], resume: ReplayPosition | None, speed: float | None, batch_size: int) -> None:
        self._files = files
        self._speed = speed
        self._batch_size = batch_size
        start = 0
        offset = 0
        if resume is not None:
            names = [f.name for f in files]
            if resume.file in names:
                start, offset = names.index(resume.file), resume.offset
            else:
                # Recordings sort by name in recording order: resume with the first file after it.
                start = sum(1 for name in names if name < resume.file)
            log.info("replay resuming file=%s offset=%d", resume.file, resume.offset)
        self._position: ReplayPosition | None = resume
        self._lines = self._iterate(start, offset)
        self._pending: tuple[Path, RecordedLine] | None = None
        self._pace_origin: tuple[float, int] | None = None  # (monotonic s, received_ns) of the first frame
        self._awake: datetime | None = None

    def _iterate(self, start: int, offset: int) -> Iterator[tuple[Path, RecordedLine]]:
        for i in range(start, len(self._files)):
            path = self._files[i]
            for line in read_lines(path, offset if i == start else 0):
                yield path, line
            # A file read to its end: the position moves to the next file's start.
            if i + 1 < len(self._files):
                self._position = ReplayPosition(self._files[i + 1].name, 0)

    def _due(self, frame: Frame) -> float:
        """Seconds until `frame` is due at the configured pace (<= 0: now)."""
        if self._speed is None:
            return 0.0
        now = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = (now, frame.received_ns)
        origin_wall, origin_ns = self._pace_origin
        return origin_wall + (frame.received_ns - origin_ns) / NS_PER_S / self._speed - now

    def next_batch(self) -> list[Frame | DeadLetter]:
        batch: list[Frame | DeadLetter] = []
        self._awake = None
        while len(batch) < self._batch_size:
            if self._pending is None:
                try:
                    self._pending = next(self._lines)
                except StopIteration:
                    if batch:
                        return batch
                    raise
            path, line = self._pending
            position = f"{path.name}@{line.offset}"
            item: Frame | DeadLetter
            try:
                item = decode_frame(line.data, position)
            except FrameFormatError as exc:
                item = dead_letter_for_line(line.data, position, str(exc))
            if isinstance(item, Frame):
                wait = self._due(item)
                if wait > 0:
                    self._awake = datetime.now(UTC) + timedelta(seconds=wait)
                    break
            batch.append(item)
            self._position = ReplayPosition(path.name, line.next_offset)
            self._pending = None
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> ReplayPosition | None:
        return self._position
