"""Replay integrity: a resume checks what it resumes, settings are not state, damaged recordings are data."""

from __future__ import annotations

import gzip
import zlib
from datetime import timedelta
from functools import partial
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.replay import ReplayPosition, ReplaySource
from flows.graph import _value
from quantbot.analytics import AnalyticsConfig
from quantbot.errors import ResumeRefusedError
from quantbot.models import WSOL_MINT, Activity, ActivityKind, DeadLetter, Frame, InstructionIndex, TokenAmount
from quantbot.pricing import FeedQuote, PricingConfig
from quantbot.recordings import RecordingWriter, decode_frame, encode_frame, read_lines
from quantbot.steps import DecodedTransaction, ValuedTransaction

T0 = 1_750_000_000
TOKEN_X = "X1111111111111111111111111111111111111111111"
TOKEN_Y = "Y1111111111111111111111111111111111111111111"
TOKEN_Z = "Z1111111111111111111111111111111111111111111"


def frames(n: int, tag: str = "a") -> list[Frame]:
    return [Frame(received_ns=i, source=tag, kind="transaction", payload=f'{{"{tag}": {i}}}') for i in range(n)]


def record(directory: Path, frames_: list[Frame], compression: str = "none") -> Path:
    writer = RecordingWriter(directory, compression=compression)
    writer.write(frames_)
    writer.close()
    (path,) = writer.files
    return path


def corrupt_gzip(data: bytes) -> bytes:
    """`data` with 16 bytes of its deflate stream overwritten so that zlib itself fails (not only the CRC check)."""
    for at in range(len(data) // 3, len(data) * 2 // 3):
        damaged = data[:at] + b"\xff" * 16 + data[at + 16 :]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            return damaged
        except (gzip.BadGzipFile, EOFError):
            continue
    raise AssertionError("no corruption found that zlib rejects")


def drain(
    source: ReplaySource, resume: ReplayPosition | None = None, stop_after: int | None = None
) -> tuple[list[Frame | DeadLetter], ReplayPosition | None]:
    """What the source's partition emits (up to `stop_after` items, batch by batch) and its snapshot then."""
    partition = source.build_part("frames", "replay", resume)
    items: list[Frame | DeadLetter] = []
    try:
        while stop_after is None or len(items) < stop_after:
            items.extend(partition.next_batch())
    except StopIteration:
        pass
    return items, partition.snapshot()


def payloads(items: list[Frame | DeadLetter]) -> list[str]:
    return [i.payload for i in items if isinstance(i, Frame)]


def test_resume_with_another_recording_is_refused(tmp_path: Path) -> None:
    """A snapshot of one recording, resumed with another: refused, naming both, nothing replayed."""
    first = record(tmp_path / "one", frames(50, "a"))
    _, position = drain(ReplaySource([first], batch_size=10), stop_after=20)
    other = record(tmp_path / "two", frames(50, "b"))
    other = other.rename(other.with_name("frames-0-other.jsonl"))  # sorts before the first one's name

    source = ReplaySource([other], batch_size=10)
    items, after = drain(source, position)

    assert items == []
    assert after == position  # the snapshot still resumes the first replay, should it be given back
    assert isinstance(source.refusal, ResumeRefusedError)
    message = str(source.refusal)
    assert first.name in message and "not among the recordings given" in message
    assert "recovery" in message and "start fresh" in message


def test_resume_with_a_same_named_different_file_is_refused(tmp_path: Path) -> None:
    """A different recording under the resumed one's name is refused instead of being read from the middle."""
    path = record(tmp_path, frames(50, "a"))
    _, position = drain(ReplaySource([path], batch_size=10), stop_after=20)
    path.write_bytes(b"".join(line.data for line in read_lines(record(tmp_path / "b", frames(60, "b")))))

    source = ReplaySource([path], batch_size=10)
    items, _ = drain(source, position)

    assert items == []
    assert isinstance(source.refusal, ResumeRefusedError)
    assert path.name in str(source.refusal) and "differ" in str(source.refusal)


def test_resume_of_a_recording_cut_shorter_is_refused(tmp_path: Path) -> None:
    """The resumed recording, now shorter than when it was read: refused, saying so."""
    path = record(tmp_path, frames(50, "a"))
    _, position = drain(ReplaySource([path], batch_size=10), stop_after=20)
    path.write_bytes(path.read_bytes()[:100])

    source = ReplaySource([path], batch_size=10)
    drain(source, position)

    assert isinstance(source.refusal, ResumeRefusedError)
    assert "shorter" in str(source.refusal)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_resume_after_the_recording_grew_continues(tmp_path: Path, compression: str) -> None:
    """A recording appended to since the snapshot (a recorder still writing) is the same one: resumed."""
    writer = RecordingWriter(tmp_path, compression=compression)
    writer.write(frames(60, "a")[:40])
    writer.flush()
    (path,) = writer.files
    while_recording = path.read_bytes()
    writer.write(frames(60, "a")[40:])
    writer.close()
    grown = path.read_bytes()
    path.write_bytes(while_recording)
    first, position = drain(ReplaySource([path], batch_size=10), stop_after=20)
    path.write_bytes(grown)

    source = ReplaySource([path], batch_size=10)
    rest, _ = drain(source, position)

    assert source.refusal is None
    assert payloads(first) + payloads(rest) == [f.payload for f in frames(60, "a")]


def test_a_recording_added_before_the_resume_point_is_refused(tmp_path: Path) -> None:
    """A new recording sorting before the one being resumed would be skipped silently: refused, naming it."""
    later = record(tmp_path, frames(50, "a")).rename(tmp_path / "frames-2.jsonl")
    _, position = drain(ReplaySource([later], batch_size=10), stop_after=20)
    earlier = record(tmp_path / "x", frames(5, "b")).rename(tmp_path / "frames-1.jsonl")

    source = ReplaySource([earlier, later], batch_size=10)
    drain(source, position)

    assert isinstance(source.refusal, ResumeRefusedError)
    assert "frames-1.jsonl" in str(source.refusal)


def test_replayed_recordings_may_be_removed_and_new_ones_appended(tmp_path: Path) -> None:
    """Recordings already replayed may go away and new ones after the resume point are replayed."""
    one = record(tmp_path, frames(10, "a")).rename(tmp_path / "frames-1.jsonl")
    two = record(tmp_path, frames(30, "b")).rename(tmp_path / "frames-2.jsonl")
    seen, position = drain(ReplaySource([one, two], batch_size=5), stop_after=20)
    three = record(tmp_path, frames(5, "c")).rename(tmp_path / "frames-3.jsonl")

    source = ReplaySource([two, three], batch_size=5)
    rest, _ = drain(source, position)

    assert source.refusal is None
    assert payloads(seen) + payloads(rest) == [f.payload for f in frames(10, "a") + frames(30, "b") + frames(5, "c")]


def test_damaged_recordings_become_dead_letters_and_the_others_replay(tmp_path: Path) -> None:
    """A .gz with a corrupted member and a truncated .zst each end in a dead letter at file@offset; the rest replays."""
    gz = record(tmp_path / "gz", frames(400, "g"), "gzip").rename(tmp_path / "frames-1.jsonl.gz")
    gz.write_bytes(corrupt_gzip(gz.read_bytes()))
    writer = RecordingWriter(tmp_path / "zst", compression="zstd")
    for i in range(0, 400, 100):  # a recorder flushes as it goes: blocks a cut file still holds whole
        writer.write(frames(400, "z")[i : i + 100])
        writer.flush()
    writer.close()
    zst = writer.files[0].rename(tmp_path / "frames-2.jsonl.zst")
    zst.write_bytes(zst.read_bytes()[: zst.stat().st_size * 2 // 3])
    plain = record(tmp_path / "plain", frames(30, "p")).rename(tmp_path / "frames-3.jsonl")

    items, _ = drain(ReplaySource([gz, zst, plain], batch_size=64))

    letters = [i for i in items if isinstance(i, DeadLetter)]
    assert [(letter.stage, letter.position.split("@")[0]) for letter in letters] == [
        ("recording", gz.name),
        ("recording", zst.name),
    ]
    for letter, path in zip(letters, (gz, zst), strict=True):
        whole = [i for i in items if isinstance(i, Frame) and i.position.startswith(path.name)]
        assert 0 < len(whole) < 400
        last = int(whole[-1].position.split("@")[1])
        stopped = int(letter.position.split("@")[1])
        assert stopped > last  # where reading stopped: after the last whole line
        assert letter.reason
    assert payloads(items)[-30:] == [f.payload for f in frames(30, "p")]
    assert all(decode_frame(line.data, "") for line in read_lines(plain))


# -------------------------------------------------------------------------- settings are not state


def _swap(signature: str, give: TokenAmount, get: TokenAmount) -> DecodedTransaction:
    activity = Activity(
        signature=signature,
        slot=1,
        block_time=T0,
        kind=ActivityKind.SWAP,
        index=InstructionIndex(0),
        trader="W",
        venue="v",
        input=give,
        output=get,
    )
    return DecodedTransaction(f"f@{signature}", signature, (activity,))


def _valuation_flow(inputs: list[object], config: PricingConfig, out: list[object], recovery: Path) -> None:
    flow = Dataflow("valuation")
    keyed = op.key_on("one_book", op.input("frames", flow, TestingSource(inputs)), lambda _item: "book")
    booked = op.key_rm(
        "unkey", op.stateful_map("value", keyed, partial(_value, config=config, analytics=AnalyticsConfig()))
    )
    op.output("out", op.flat_map("valued", booked, lambda run: run), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(recovery))


def test_a_changed_pricing_setting_takes_effect_after_a_resume(tmp_path: Path) -> None:
    """`pricing.min_learn_usd` raised between an aborted run and its resume: the resumed run applies the new value."""
    init_db_dir(tmp_path, 1)
    sol = TokenAmount(WSOL_MINT, 10**9, 9)  # $100 at the quote below
    inputs: list[object] = [
        FeedQuote(WSOL_MINT, 100.0, T0, "feed"),
        _swap("x", sol, TokenAmount(TOKEN_X, 10**6, 6)),
        TestingSource.ABORT(),
        _swap("y", sol, TokenAmount(TOKEN_Y, 10**6, 6)),  # $100: teaches Y only if min_learn_usd <= 100
        _swap("z", TokenAmount(TOKEN_Y, 10**6, 6), TokenAmount(TOKEN_Z, 10**6, 6)),  # valued only if Y was learned
    ]
    before: list[object] = []
    _valuation_flow(inputs, PricingConfig(min_learn_usd=10.0), before, tmp_path)
    after: list[object] = []
    _valuation_flow(inputs, PricingConfig(min_learn_usd=1_000.0), after, tmp_path)

    resumed = {v.signature: v for v in after if isinstance(v, ValuedTransaction)}
    assert "x" in {v.signature for v in before if isinstance(v, ValuedTransaction)}
    assert resumed["y"].valued[0].usd_value == pytest.approx(100.0)  # the SOL price came from the snapshot
    assert resumed["z"].valued[0].usd_value is None


def test_resume_of_a_plain_recording_cut_before_the_offset_is_refused(tmp_path: Path) -> None:
    """A plain recording that grew while read, then was cut below the replayed offset: refused, not read past it."""
    path = record(tmp_path, frames(100, "a"))
    partition = ReplaySource([path], batch_size=10).build_part("frames", "replay", None)
    seen = partition.next_batch()
    with path.open("ab") as fh:  # a recorder appends while the replay reads
        fh.write(b"".join(encode_frame(f) for f in frames(200, "b")))
    while len(seen) < 250:
        seen += partition.next_batch()
    position = partition.snapshot()
    opened_at = position.fingerprint.size if position and position.fingerprint else 0
    assert position is not None and opened_at < position.offset - 10
    path.write_bytes(path.read_bytes()[: position.offset - 10])

    source = ReplaySource([path], batch_size=10)
    drain(source, position)

    assert isinstance(source.refusal, ResumeRefusedError)
    assert "shorter than the offset" in str(source.refusal)
