"""Recordings: the frame line format, compression, rotation and resuming by offset."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from quantbot.models import Frame
from quantbot.recordings import (
    FrameFormatError,
    RecordedLine,
    RecordingReadError,
    RecordingWriter,
    decode_frame,
    encode_frame,
    find_recordings,
    read_lines,
)


def frames(n: int) -> list[Frame]:
    return [Frame(received_ns=1_000 + i, source="test", kind="transaction", payload=f'{{"n": {i}}}') for i in range(n)]


def test_frame_line_round_trips_the_payload_exactly() -> None:
    """A payload with odd whitespace, unicode and quotes comes back byte for byte."""
    frame = Frame(received_ns=7, source="ws", kind="price", payload=' {"a" :\t"é\\"x"}\n')

    line = encode_frame(frame)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_frame(line, "f@0") == Frame(7, "ws", "price", frame.payload, "f@0")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"garbage\n", "not JSON"),
        (b"[1]\n", "not an object"),
        (b'{"source": "s", "kind": "k", "payload": "p"}\n', "received_ns"),
        (b'{"received_ns": 1, "source": "s", "kind": "k", "payload": {"a": 1}}\n', "payload"),
    ],
)
def test_bad_lines_say_what_is_wrong(line: bytes, fragment: str) -> None:
    """A line that is not a frame raises FrameFormatError naming the problem."""
    with pytest.raises(FrameFormatError, match=fragment):
        decode_frame(line, "f@0")


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_writer_rotates_and_reader_resumes_at_any_line(tmp_path: Path, compression: str) -> None:
    """Rotated files hold every frame once, in order; reading from any line's offset yields the rest."""
    writer = RecordingWriter(tmp_path, compression=compression, max_bytes=600)
    for i in range(0, 40, 4):
        writer.write(frames(40)[i : i + 4])
        writer.flush()
    writer.close()

    files = find_recordings([tmp_path])
    assert len(files) > 1
    lines = [line for f in files for line in read_lines(f)]
    assert [decode_frame(line.data, "").payload for line in lines] == [f.payload for f in frames(40)]

    first = files[0]
    all_lines = list(read_lines(first))
    for k, line in enumerate(all_lines):
        assert [x.data for x in read_lines(first, line.offset)] == [x.data for x in all_lines[k:]]
    assert list(read_lines(first, all_lines[-1].next_offset)) == []


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_compressed_recording_yields_its_whole_lines_then_says_where_it_stopped(
    tmp_path: Path, compression: str
) -> None:
    """A compressed recording cut short (a killed recorder) gives the lines before the cut, then an error at the cut."""
    writer = RecordingWriter(tmp_path, compression=compression)
    for i in range(0, 200, 50):  # flushed as a recorder flushes: whole blocks before the cut
        writer.write(frames(200)[i : i + 50])
        writer.flush()
    writer.close()
    (path,) = writer.files
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])

    lines: list[RecordedLine] = []
    with pytest.raises(RecordingReadError) as error:
        lines.extend(read_lines(path))

    assert 0 < len(lines) < 200
    assert all(decode_frame(line.data, "") == frames(200)[i] for i, line in enumerate(lines[:-1]))
    assert error.value.offset == lines[-1].next_offset
    assert path.name in str(error.value)


def test_find_recordings_rejects_what_is_not_one(tmp_path: Path) -> None:
    """Missing paths, non-recordings and empty directories are errors naming the path."""
    (tmp_path / "notes.txt").write_text("x")

    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        find_recordings([tmp_path / "missing.jsonl"])
    with pytest.raises(ValueError, match=r"notes\.txt"):
        find_recordings([tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match="no recordings"):
        find_recordings([tmp_path])


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_recorder_sink_writes_what_a_replay_reads_back(tmp_path: Path, compression: str) -> None:
    """Frames flowing into the recorder sink come back, byte for byte, through the replay source."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    from connectors.replay import ReplaySource
    from sinks.recorder import RecorderSink

    recorded = frames(300)
    flow = Dataflow("record")
    op.output(
        "recorder", op.input("in", flow, TestingSource(recorded)), RecorderSink(tmp_path, compression=compression)
    )
    run_main(flow)

    replayed: list[Frame] = []
    flow = Dataflow("replay")
    op.output("out", op.input("in", flow, ReplaySource(find_recordings([tmp_path]))), TestingSink(replayed))
    run_main(flow)

    assert [(f.received_ns, f.source, f.kind, f.payload) for f in replayed] == [
        (f.received_ns, f.source, f.kind, f.payload) for f in recorded
    ]


def test_paced_replay_releases_frames_no_earlier_than_recorded_pace(tmp_path: Path) -> None:
    """At speed 2, frames recorded 0.4 s apart are released at least 0.2 s apart; as fast as possible, not."""
    import time

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    from connectors.replay import ReplaySource

    spaced = [Frame(received_ns=i * 400_000_000, source="t", kind="price", payload="{}") for i in range(4)]
    writer = RecordingWriter(tmp_path)
    writer.write(spaced)
    writer.close()

    def released_at(speed: float | None) -> list[float]:
        times: list[float] = []
        flow = Dataflow("paced")
        stream = op.input("in", flow, ReplaySource(writer.files, speed=speed))
        op.inspect("clock", stream, lambda _step, _frame: times.append(time.monotonic()))
        op.output("out", stream, TestingSink([]))
        run_main(flow)
        return times

    paced = released_at(2.0)
    assert all(later - earlier >= 0.19 for earlier, later in itertools.pairwise(paced))
    fast = released_at(None)
    assert fast[-1] - fast[0] < 0.6  # the recorded 1.2 s is not waited for
