"""Recordings: frames as JSON lines in `.jsonl`, `.jsonl.gz` or `.jsonl.zst` files.

One frame per line: `{"received_ns": int, "source": str, "kind": str, "payload": str}`, the payload
being the message text exactly as it arrived. A frame's position is `<file name>@<byte offset>` of
its line in the decompressed stream: stable across replays, so it keys dead letters, and the offset
after a line is where a replay resumes.

A recording is identified by its fingerprint (`RecordingFingerprint`): its size and a hash of its
first bytes. A recorder appends, so a recording that grew is the same recording; one that shrank or
starts differently is another.

This module does file I/O only; the Bytewax source and sink that use it live in `connectors/` and `sinks/`.

Exceptions::

    ValueError
     ├── FrameFormatError        a line is not a frame
     └── RecordingReadError      a recording cannot be read past some offset (truncated, corrupted)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from quantbot.models import DeadLetter, Frame
from quantbot.units import SECONDS_PER_HOUR

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
# Reading a compressed stream forward to a resume offset, this many bytes at a time.
SKIP_CHUNK_BYTES = 1 << 20
# Compressed bytes read at a time from a zstd recording: large enough that the Python-level
# decompression loop runs a few times per MiB, small enough to keep a replay's memory flat.
READ_CHUNK_BYTES = 1 << 20
# A recording's fingerprint hashes at most its first 64 KiB: far more than any two recordings share by
# chance (a recording starts with its first frame's receive time), and one read however large the file.
FINGERPRINT_BYTES = 64 << 10
# zstd level 3 is the library default: most of the ratio at a small fraction of the CPU of higher levels.
ZSTD_LEVEL = 3
READ_ERRORS = (EOFError, zstandard.ZstdError, gzip.BadGzipFile, zlib.error)
"""What reading a damaged compressed stream raises: cut short (EOFError), or corrupted (the rest)."""


class FrameFormatError(ValueError):
    """A recording line is not a frame."""


class RecordingReadError(ValueError):
    """A recording cannot be read past `offset` (of its decompressed content): truncated or corrupted."""

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(f"recording `{path.name}` unreadable from offset {offset}: {problem}")


@dataclass(frozen=True, slots=True)
class RecordingFingerprint:
    """What identifies a recording file: its size (bytes on disk) and the SHA-256 of its first bytes.

    The hash covers the first `min(size, FINGERPRINT_BYTES)` bytes, so the fingerprint of a recording
    that grew since (a recorder still appending) still matches: see `differences`.
    """

    size: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> RecordingFingerprint:
        """The fingerprint of the file at `path` now."""
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(min(size, FINGERPRINT_BYTES))
        return cls(size, hashlib.sha256(head).hexdigest())

    def differences(self, path: Path) -> str | None:
        """How the file at `path` differs from the recording this fingerprint was taken of; None if it is that one."""
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < self.size:
                return f"it is {size:,} bytes, shorter than the {self.size:,} it had"
            head = fh.read(min(self.size, FINGERPRINT_BYTES))
        if hashlib.sha256(head).hexdigest() != self.head_sha256:
            return f"its first {len(head):,} bytes differ"
        return None


def encode_frame(frame: Frame) -> bytes:
    """The recording line of `frame`, newline included."""
    return (
        orjson.dumps(
            {"received_ns": frame.received_ns, "source": frame.source, "kind": frame.kind, "payload": frame.payload}
        )
        + b"\n"
    )


def decode_frame(line: bytes, position: str) -> Frame:
    """Parse one recording line.

    Raises:
        FrameFormatError: naming what is wrong with the line.
    """
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise FrameFormatError(f"line is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameFormatError(f"line is a JSON {type(data).__name__}, not an object")
    received_ns, source, kind, payload = (data.get(k) for k in ("received_ns", "source", "kind", "payload"))
    if not isinstance(received_ns, int) or isinstance(received_ns, bool):
        raise FrameFormatError("`received_ns` is missing or not an integer")
    if not isinstance(source, str) or not isinstance(kind, str):
        raise FrameFormatError("`source` or `kind` is missing or not a string")
    if not isinstance(payload, str):
        raise FrameFormatError("`payload` is missing or not a string")
    return Frame(received_ns=received_ns, source=source, kind=kind, payload=payload, position=position)


def dead_letter_for_line(line: bytes, position: str, reason: str) -> DeadLetter:
    """The dead letter of an unreadable recording line; the raw bytes are kept (undecodable ones escaped)."""
    return DeadLetter(
        position=position,
        source="recording",
        stage="frame",
        reason=reason,
        raw=line.decode("utf-8", errors="backslashreplace").rstrip("\n"),
        received_ns=0,
    )


def is_recording(path: Path) -> bool:
    """Whether `path` has one of the recording suffixes."""
    return path.name.endswith(SUFFIXES)


def is_compressed(path: Path) -> bool:
    """Whether `path` is a compressed recording (read forward to an offset rather than seeked)."""
    return not path.name.endswith(".jsonl")


def find_recordings(paths: list[Path]) -> list[Path]:
    """The recordings named by `paths` (files, or directories searched recursively), sorted, deduplicated.

    Raises:
        FileNotFoundError: for a path that does not exist, naming it.
        ValueError: for a file that is not a recording, or when nothing was found.
    """
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and is_recording(p))
        elif path.is_file():
            if not is_recording(path):
                raise ValueError(f"`{path}` is not a recording (expected {', '.join(SUFFIXES)})")
            found.add(path)
        else:
            raise FileNotFoundError(f"recording `{path}` does not exist")
    if not found:
        raise ValueError(f"no recordings ({', '.join(SUFFIXES)}) under {', '.join(map(str, paths))}")
    return sorted(found)


def open_for_reading(path: Path) -> IO[bytes]:
    """A binary stream of the decompressed content of a recording."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    if path.name.endswith(".zst"):
        return io.BufferedReader(_ZstdFrames(path.open("rb")), buffer_size=READ_CHUNK_BYTES)
    # A frame line is ~9 KB: with the default 8 KiB buffer each line is put together from several reads,
    # six times the cost of finding it in a large buffer (2.3 against 14.9 us a line).
    return path.open("rb", buffering=READ_CHUNK_BYTES)


class _ZstdFrames(io.RawIOBase):
    """The decompressed content of zstd frames one after the other, and EOFError if the file ends inside one.

    zstandard's own `stream_reader` ends quietly where a cut-short file ends, so a truncated recording
    could not be told from a whole one; a decompression object says whether its frame was complete.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._in_frame = False
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            data = self._raw.read(READ_CHUNK_BYTES)
            if not data:
                if self._in_frame:
                    raise EOFError("the zstd stream ends inside a frame (the file was cut short)")
                return 0
            self._out = memoryview(self._decompress(data))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._frame.decompress(data))
            self._in_frame = not self._frame.eof
            if self._in_frame:
                break
            data = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True, slots=True)
class RecordedLine:
    """One line of a recording with where it starts and where the next one starts."""

    offset: int
    next_offset: int
    data: bytes


def read_lines(path: Path, start_offset: int = 0) -> Iterator[RecordedLine]:
    """Lines of a recording from `start_offset` (a line start) on.

    A last line without its newline is still yielded, as it was written whole or is garbage that the
    flow dead-letters.

    Raises:
        RecordingReadError: after the last whole line, when a compressed file is cut short (a recorder
            killed mid-write) or corrupted, or ends before `start_offset`; it names the offset where
            reading stopped.
    """
    with open_for_reading(path) as stream:
        offset = 0
        if start_offset:
            if not is_compressed(path):
                stream.seek(start_offset)
                offset = start_offset
            else:
                try:
                    while offset < start_offset:
                        chunk = stream.read(min(SKIP_CHUNK_BYTES, start_offset - offset))
                        if not chunk:
                            break
                        offset += len(chunk)
                except READ_ERRORS as exc:
                    raise RecordingReadError(path, offset, _problem(exc)) from None
                if offset < start_offset:
                    raise RecordingReadError(path, offset, f"its content ends before offset {start_offset}")
        try:
            for line in stream:
                next_offset = offset + len(line)
                if not line.isspace():  # a blank line is skipped; `isspace` stops at the first other byte, uncopied
                    yield RecordedLine(offset, next_offset, line)
                offset = next_offset
        except READ_ERRORS as exc:
            raise RecordingReadError(path, offset, _problem(exc)) from None


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class RecordingWriter:
    """Appends frames to rotating recording files in a directory.

    A file is closed and a new one begun when it reaches `max_bytes` (uncompressed) or `max_age_s`.
    File names sort in recording order: `<prefix>-<UTC start>-<sequence>.jsonl[.gz|.zst]`.
    `flush()` makes what was written durable for plain files; compressed files become readable up to
    their last flushed block.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str = "frames",
        compression: str = "none",
        max_bytes: int = 256 << 20,
        max_age_s: float = SECONDS_PER_HOUR,
    ) -> None:
        if compression not in ("none", "gzip", "zstd"):
            raise ValueError(f"unknown compression `{compression}`; use none, gzip or zstd")
        self.directory = directory
        self.prefix = prefix
        self.compression = compression
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._stream: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._written = 0
        self._opened_at = 0.0
        self._sequence = 0
        self.files: list[Path] = []

    def _open(self) -> IO[bytes]:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        suffix = {"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}[self.compression]
        self._sequence += 1
        path = self.directory / f"{self.prefix}-{stamp}-{os.getpid()}-{self._sequence:05d}{suffix}"
        raw: Any = path.open("ab")
        stream: IO[bytes]
        if self.compression == "gzip":
            stream = gzip.GzipFile(fileobj=raw, mode="ab")  # type: ignore[assignment]  # a binary IO
        elif self.compression == "zstd":
            stream = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(raw, closefd=False)
        else:
            stream = raw
        self._raw, self._stream = raw, stream
        self._written = 0
        self._opened_at = time.monotonic()
        self.files.append(path)
        log.info("recording=%s opened", path)
        return stream

    def write(self, frames: list[Frame]) -> None:
        """Append `frames`, rotating first when the current file is full or old."""
        stream = self._stream
        if stream is None or self._written >= self.max_bytes or time.monotonic() - self._opened_at >= self.max_age_s:
            self.close()
            stream = self._open()
        data = b"".join(encode_frame(f) for f in frames)
        stream.write(data)
        self._written += len(data)

    def flush(self) -> None:
        """Push buffered frames to the operating system and the disk."""
        if self._stream is None or self._raw is None:
            return
        if isinstance(self._stream, zstandard.ZstdCompressionWriter):
            self._stream.flush(zstandard.FLUSH_BLOCK)
        else:
            self._stream.flush()
        self._raw.flush()
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        """Finish the current file (if any)."""
        if self._stream is None or self._raw is None:
            return
        self.flush()
        self._stream.close()
        if self._raw is not self._stream:
            self._raw.close()
        self._stream = self._raw = None
