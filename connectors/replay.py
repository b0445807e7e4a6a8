"""Replay of recorded feeds: frames from recording files, as fast as possible or at recorded pace."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.refused import RefusedPartition
from quantbot.cluster import SINGLE, ClusterSpec
from quantbot.errors import ResumeRefusedError
from quantbot.health import SourceActivity
from quantbot.models import DeadLetter, Frame
from quantbot.recordings import (
    FrameFormatError,
    RecordedLine,
    RecordingFingerprint,
    RecordingReadError,
    dead_letter_for_line,
    decode_frame,
    is_compressed,
    read_lines,
)
from quantbot.steps import Sequenced
from quantbot.units import NS_PER_S

log = logging.getLogger(__name__)

PARTITION = "replay"
# Frames handed to the flow per call: large enough to amortise the engine's per-batch cost, small
# enough that a paced replay still releases frames close to their due time.
DEFAULT_BATCH_SIZE = 512
DAMAGED_STAGE = "recording"
"""The dead-letter stage of a recording that cannot be read to its end."""
STOP_CHECK_S = 0.5
"""A paced replay waiting for its next frame looks at least this often whether it was asked to stop."""


@dataclass(frozen=True, slots=True)
class ReplayPosition:
    """Where a replay resumes, and what it resumes.

    Attributes:
        file: the name of the recording being read (or to be read next, at offset 0).
        offset: the byte offset (in the decompressed content) of the next line to read in `file`.
        fingerprint: `file`'s fingerprint when it was opened; None before it is opened.
        replayed: the recordings read to their end, by name, with their fingerprints.
        seq: how many items (frames and dead letters) were emitted before this position: the sequence
            number of the next one, when the source numbers what it emits.
    """

    file: str
    offset: int
    fingerprint: RecordingFingerprint | None = None
    replayed: tuple[tuple[str, RecordingFingerprint], ...] = ()
    seq: int = 0


ReplayItem = Frame | DeadLetter
"""What a replay emits: a frame, or the dead letter of a line (or a recording) that is not one."""


START_FRESH = "to start fresh, delete the recovery directory or use another one"


class ReplaySource(FixedPartitionedSource[ReplayItem | Sequenced[ReplayItem], ReplayPosition | None]):
    """Frames from recordings, in the order given and line order within each file.

    Delivery: at-least-once. The snapshot is the position after the last emitted line, so a resumed
    replay re-emits only what followed the last completed epoch; the stores' natural keys make that
    exactly-once in effect. A line that is not a frame is emitted as a `DeadLetter`, never skipped; so
    is a recording that cannot be read to its end (truncated, corrupted): a dead letter at
    `<file>@<offset where reading stopped>`, and the replay goes on with the next recording.

    Resuming checks what it resumes (see `resume_plan`): the recording being read must be the same
    file (its fingerprint: size and first bytes; grown since is fine, as a recorder appends), the
    recordings already replayed that are still given must be unchanged, and no new recording may sort
    before the resume point (it would be skipped). Recordings already replayed may be left out, and
    new ones after the resume point are replayed. A refused resume emits nothing, keeps the snapshot
    as it was, and leaves the reason in `refusal` for the caller to raise once the engine has stopped
    (an exception raised inside the engine reaches the user as a Rust panic, not as one clear line).
    Likewise the dead letters of damaged recordings are also kept in `damaged`, for the run's summary.
    Its progress is noted in `activity` (opened, each batch, finished) for readiness checks.

    Stopping early: after `stop()`, the partition emits nothing more and ends, its snapshot the position
    after the last line it emitted. Bytewax 0.21 records an ended partition's last snapshot like any
    other (nothing marks it finished): a resume from the same recovery directory rebuilds the partition
    from that position and reads on, as `tests/test_shutdown.py` pins.

    Parallelism: the recordings are one stream, every file in turn, line order within each; replaying
    one stream in one order is what makes a replay deterministic (prices are learned in order), so a
    crashed replay can be compared with an uninterrupted one. With `numbered`, each item is emitted as
    `Sequenced(seq, item)`, `seq` its place in that stream, the count being part of the snapshot (a
    resume numbers on exactly): the flow may then parse items on every worker of a cluster and put them
    back in order before valuing them (`flows/graph.py`). A numbered replay refuses a mid-stream snapshot
    of a version that did not count (its prices were kept by another step, which the in-order flow does
    not read).

    With `readers` R > 1 (numbered only), the stream is read by R partitions, `replay-<k>-of-<R>`: each
    reads every line but decodes and emits only the items whose `seq` is `k` modulo R, so each worker
    parses its share where it reads it and no frame crosses workers or processes; only the parse results
    travel, to the one valuing worker. Bytewax spreads partitions evenly over the workers that list them;
    with `idle_worker`, the worker of that index in `cluster` (the valuing one) lists none, so that R, one
    fewer than the cluster's workers, gives every other worker one reader and leaves the valuing worker,
    the flow's one serial step, to its valuing. Reading a line is a small part of its cost (the
    recording's bytes are read R times, decoded once). How far one reader gets ahead of another, whose
    items then wait to be valued in order, is bounded by Bytewax's own backpressure: a partition starts a
    new epoch (`pipeline.snapshot_interval_s`) only when every output has finished the previous one. Each
    reader's snapshot is its own position. A resume with another R reads the stream again from the start
    under the new partitions, and the in-order valuation ignores what it already valued (the stores are the
    same, the reading is redone); the former readers' partitions, named in `recovered`, are still listed
    (Bytewax routes every snapshot to its partition's worker) but retired: they emit nothing and keep their
    snapshot.

    Args:
        files: the recordings, in replay order (see `quantbot.recordings.find_recordings`).
        speed: `None` replays as fast as possible; otherwise frames are released at their recorded
            pace multiplied by `speed` (2.0 is twice as fast).
        batch_size: frames per batch at most.
        activity: where the replay notes its progress; a new one named `replay` when not given.
        numbered: emit `Sequenced(seq, item)` rather than bare items.
        readers: partitions reading the stream, each emitting every R-th item (numbered only).
        recovered: the partitions the recovery store holds snapshots of (`flows.runtime.recovered_keys`):
            those of another reader count are listed, retired.
        idle_worker: the index of a worker of `cluster` that lists no reader (None: every worker lists them all).
        cluster: where the flow runs, to know which worker lists the partitions (`ClusterSpec.current_worker`).
    """

    def __init__(
        self,
        files: list[Path],
        speed: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        activity: SourceActivity | None = None,
        *,
        numbered: bool = False,
        readers: int = 1,
        recovered: Collection[str] = (),
        idle_worker: int | None = None,
        cluster: ClusterSpec = SINGLE,
    ) -> None:
        if not files:
            raise ValueError("a replay needs at least one recording")
        if readers < 1 or (readers > 1 and not numbered):
            raise ValueError(f"a replay has one reader, or several when it numbers what it emits; got {readers}")
        if speed is not None and speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self.files = list(files)
        self.speed = speed
        self.batch_size = batch_size
        self.numbered = numbered
        self.readers = readers
        self.idle_worker = idle_worker
        self.cluster = cluster
        lanes = self._lanes()
        self.retired = sorted(name for name in recovered if name not in lanes and _lane_of(name) is not None)
        self.refusal: ResumeRefusedError | None = None
        self.damaged: list[DeadLetter] = []
        self._stopping = threading.Event()
        self.activity = activity if activity is not None else SourceActivity(PARTITION)

    def stop(self) -> None:
        """End the replay early, at the position after the last emitted line (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopping.is_set()

    def list_parts(self) -> list[str]:
        """`replay`, or one partition per reader, and the retired ones: see the class docstring.

        Called by Bytewax on each worker's own thread, which is how the idle worker knows itself.
        """
        if self.idle_worker is not None and self.cluster.current_worker() == self.idle_worker:
            return list(self.retired)
        return [*self._lanes(), *self.retired]

    def _lanes(self) -> list[str]:
        if self.readers == 1:
            return [PARTITION]
        return [f"{PARTITION}-{lane}-of-{self.readers}" for lane in range(self.readers)]

    def _lane(self, for_part: str) -> int:
        """Which reader `for_part` is (0 for the single reader)."""
        lane = _lane_of(for_part)
        if lane is None or lane[1] != self.readers or for_part not in self._lanes():
            raise ValueError(f"`{for_part}` is not a partition of a replay read by {self.readers}")
        return lane[0]

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayPosition | None
    ) -> StatefulSourcePartition[ReplayItem | Sequenced[ReplayItem], ReplayPosition | None]:
        """Open the replay where the last snapshot left it, or refuse to (see the class docstring)."""
        if for_part in self.retired:
            log.info("replay partition=%s retired: read by %d readers now", for_part, self.readers)
            return RefusedPartition[ReplayItem | Sequenced[ReplayItem], ReplayPosition](resume_state)
        try:
            if self.numbered and _uncounted(resume_state):
                _refuse(
                    "the snapshot was taken by a version that valued frames as they came, without numbering them;"
                    " this one values them in recorded order and cannot take its prices up mid-stream"
                )
            plan = resume_plan(self.files, resume_state)
        except ResumeRefusedError as exc:
            self.refusal = exc
            return RefusedPartition[ReplayItem | Sequenced[ReplayItem], ReplayPosition](resume_state)
        partition = _ReplayPartition(
            self.files,
            plan,
            self.speed,
            self.batch_size,
            self.damaged,
            stopping=self._stopping,
            activity=self.activity,
            lane=self._lane(for_part),
            lanes=self.readers,
        )
        if self.numbered:
            return _NumberedPartition(partition)
        return cast(StatefulSourcePartition[ReplayItem | Sequenced[ReplayItem], ReplayPosition | None], partition)


def _lane_of(name: str) -> tuple[int, int] | None:
    """(k, R) of the replay partition `replay-<k>-of-<R>`, (0, 1) of `replay`; None for any other name."""
    if name == PARTITION:
        return 0, 1
    lane, of, readers = name.removeprefix(f"{PARTITION}-").partition("-of-")
    if not (name.startswith(f"{PARTITION}-") and of and lane.isdigit() and readers.isdigit()):
        return None
    return int(lane), int(readers)


def _uncounted(resume: ReplayPosition | None) -> bool:
    """Whether `resume` is a mid-stream snapshot of a version that did not count what it emitted."""
    return resume is not None and not hasattr(resume, "seq") and bool(resume.offset or resume.replayed)


def _refuse(problem: str) -> NoReturn:
    raise ResumeRefusedError(f"cannot resume the replay: {problem}; {START_FRESH}")


def resume_plan(files: list[Path], resume: ReplayPosition | None) -> ReplayPosition:
    """Where a replay of `files` starts: the first recording not yet replayed, at the snapshot's offset if it is that.

    Raises:
        ResumeRefusedError: `resume` is of other recordings (see `ReplaySource`), saying what differs.
    """
    if resume is None:
        return ReplayPosition(files[0].name, 0)
    if not isinstance(resume, ReplayPosition) or not hasattr(resume, "replayed"):
        _refuse("the snapshot was taken by an older version, which did not record what it replayed")
    done = dict(resume.replayed)
    for path in files:
        known = done.get(path.name)
        if known is not None and (difference := known.differences(path)) is not None:
            _refuse(f"recording `{path.name}` is not the one already replayed under that name: {difference}")
    first = next((i for i, path in enumerate(files) if path.name not in done), len(files))
    replayed_later = [path.name for path in files[first:] if path.name in done]
    if replayed_later:
        _refuse(
            f"recording `{files[first].name}` sorts before `{replayed_later[0]}`, which was already replayed,"
            " but was not part of that replay"
        )
    if resume.offset == 0:  # nothing of `resume.file` was read: whatever comes next starts at its beginning
        name = files[first].name if first < len(files) else resume.file
        return ReplayPosition(name, 0, None, resume.replayed, getattr(resume, "seq", 0))
    names = [path.name for path in files]
    if first == len(files) or files[first].name != resume.file:
        if resume.file in names[first:]:
            _refuse(
                f"recording `{files[first].name}` sorts before `{resume.file}`, where the replay stopped,"
                " but was not part of that replay"
            )
        _refuse(
            f"recording `{resume.file}`, replayed up to offset {resume.offset:,}, is not among the recordings given"
        )
    if resume.fingerprint is not None and (difference := resume.fingerprint.differences(files[first])) is not None:
        _refuse(f"recording `{resume.file}` is not the one the snapshot was taken of: {difference}")
    if not is_compressed(files[first]) and (size := files[first].stat().st_size) < resume.offset:
        _refuse(f"recording `{resume.file}` is {size:,} bytes, shorter than the offset {resume.offset:,} replayed")
    # A snapshot of a version that did not count what it emitted numbers on from 0.
    return ReplayPosition(resume.file, resume.offset, resume.fingerprint, resume.replayed, getattr(resume, "seq", 0))


class _ReplayPartition(StatefulSourcePartition[Frame | DeadLetter, ReplayPosition | None]):
    def __init__(
        self,
        files: list[Path],
        start: ReplayPosition,
        speed: float | None,
        batch_size: int,
        damaged: list[DeadLetter],
        *,
        stopping: threading.Event,
        activity: SourceActivity | None = None,
        lane: int = 0,
        lanes: int = 1,
    ) -> None:
        self._files = files
        self._lane, self._lanes = lane, lanes
        self._stopping = stopping
        self._activity = activity
        if activity is not None:
            activity.opened()
        self._damaged = damaged
        self._speed = speed
        self._batch_size = batch_size
        if start.offset or start.replayed:
            log.info("replay resuming file=%s offset=%d replayed=%d", start.file, start.offset, len(start.replayed))
        # The position is kept in parts and assembled by `snapshot()`: the offset changes with every line.
        self._file = start.file
        self._offset = start.offset
        self._fingerprint = start.fingerprint
        self._replayed = start.replayed
        self._seq = start.seq
        done = {name for name, _ in start.replayed}
        first = next((i for i, path in enumerate(files) if path.name not in done), len(files))
        self._lines = self._iterate(first, start.offset, start.fingerprint)
        self._pending: tuple[Path, RecordedLine | DeadLetter] | None = None
        self._pace_origin: tuple[float, int] | None = None  # (monotonic s, received_ns) of the first frame
        self._awake: datetime | None = None

    def _iterate(
        self, start: int, offset: int, fingerprint: RecordingFingerprint | None
    ) -> Iterator[tuple[Path, RecordedLine | DeadLetter]]:
        for i in range(start, len(self._files)):
            path = self._files[i]
            if i != start or fingerprint is None:
                # The fingerprint of a resumed recording stays the one taken when it was first opened: the
                # file only grows, so that one matches it as long as it is the same recording.
                fingerprint = RecordingFingerprint.of(path)
            self._file, self._fingerprint = path.name, fingerprint
            try:
                for line in read_lines(path, offset if i == start else 0):
                    yield path, line
            except RecordingReadError as exc:
                log.warning("recording=%s offset=%d unreadable: %s", path, exc.offset, exc.problem)
                yield path, _damaged(path, exc)
            # A file read to its end: the position moves to the next file's start.
            if i + 1 < len(self._files):
                self._replayed = (*self._replayed, (path.name, fingerprint))
                self._file, self._offset, self._fingerprint = self._files[i + 1].name, 0, None

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
        """Up to `batch_size` frames (and dead letters), fewer when the next frame is not due yet."""
        return [item for _, item in self.next_numbered()]

    def next_numbered(self) -> list[tuple[int, Frame | DeadLetter]]:
        """`next_batch`'s items with their sequence numbers: this reader's lane of the stream (every line, alone)."""
        batch: list[tuple[int, Frame | DeadLetter]] = []
        self._awake = None
        if self._stopping.is_set():
            log.info("replay stopped file=%s offset=%d", self._file, self._offset)
            raise StopIteration
        lane, lanes = self._lane, self._lanes
        # Another reader's lines are skipped undecoded; a batch's worth of lines read ends the call either way.
        for _ in range(self._batch_size * lanes):
            if len(batch) >= self._batch_size:
                break
            if self._pending is None:
                try:
                    self._pending = next(self._lines)
                except StopIteration:
                    if batch:
                        break
                    if self._activity is not None:
                        self._activity.finished()
                    raise
            path, line = self._pending
            seq = self._seq
            if seq % lanes != lane:
                if isinstance(line, RecordedLine):
                    self._offset = line.next_offset
                self._seq = seq + 1
                self._pending = None
                continue
            item: Frame | DeadLetter
            if isinstance(line, DeadLetter):
                item = line
                self._damaged.append(line)
            else:
                position = f"{path.name}@{line.offset}"
                try:
                    item = decode_frame(line.data, position)
                except FrameFormatError as exc:
                    item = dead_letter_for_line(line.data, position, str(exc))
                if isinstance(item, Frame):
                    wait = self._due(item)
                    if wait > 0:
                        self._awake = datetime.now(UTC) + timedelta(seconds=min(wait, STOP_CHECK_S))
                        break
                self._offset = line.next_offset
            batch.append((seq, item))
            self._seq = seq + 1
            self._pending = None
        if batch and self._activity is not None:
            self._activity.progressed()
        return batch

    def next_awake(self) -> datetime | None:
        """When the next frame is due, at a paced replay's pace; None: now."""
        return self._awake

    def snapshot(self) -> ReplayPosition:
        """The position after the last emitted line."""
        return ReplayPosition(self._file, self._offset, self._fingerprint, self._replayed, self._seq)

    @property
    def seq(self) -> int:
        """How many items of the stream were read, by every reader (this run and before the snapshot it resumed)."""
        return self._seq


class _NumberedPartition(StatefulSourcePartition[ReplayItem | Sequenced[ReplayItem], ReplayPosition | None]):
    """A replay partition whose items are numbered, 0 on from the first line of the first recording."""

    def __init__(self, inner: _ReplayPartition) -> None:
        self._inner = inner

    def next_batch(self) -> list[ReplayItem | Sequenced[ReplayItem]]:
        """The inner partition's batch, each item wrapped with its sequence number."""
        return [Sequenced(seq, item) for seq, item in self._inner.next_numbered()]

    def next_awake(self) -> datetime | None:
        """As the inner partition: when the next frame is due."""
        return self._inner.next_awake()

    def snapshot(self) -> ReplayPosition:
        """The inner partition's position, which counts what was emitted."""
        return self._inner.snapshot()

    def close(self) -> None:
        """Nothing of its own to release."""
        self._inner.close()


def _damaged(path: Path, exc: RecordingReadError) -> DeadLetter:
    """The dead letter of a recording that cannot be read past `exc.offset`."""
    return DeadLetter(
        position=f"{path.name}@{exc.offset}",
        source="recording",
        stage=DAMAGED_STAGE,
        reason=f"recording unreadable from here on: {exc.problem}",
        raw="",
        received_ns=0,
    )
