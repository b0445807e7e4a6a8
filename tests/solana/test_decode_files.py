"""`decode_files`, what `quantbot decode PATH...` runs: JSON lines out, one clear error line per bad file."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from quantbot.solana import decode
from quantbot.solana.decode import decode_files
from quantbot.solana.programs import pumpfun
from tests.solana.conftest import CORPUS, corpus_files, file_of


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def test_directory_decodes_good_files_and_names_each_bad_one(tmp_path: Path) -> None:
    """Garbage, empty and truncated files each get an error line; the good files still decode; exit 1."""
    # Arrange
    good = (CORPUS / file_of("2F7KM7K1cZBm")).read_bytes()
    route = (CORPUS / file_of("1ZSq1Aa2i6ES")).read_bytes()
    _write(tmp_path, "a_good.json", good)
    _write(tmp_path, "b_route.json", route)
    garbage = _write(tmp_path, "c_garbage.json", b"\x89PNG\r\n\x1a\n not a transaction at all")
    empty = _write(tmp_path, "d_empty.json", b"")
    truncated = _write(tmp_path, "e_truncated.json", route[: len(route) // 3])
    out, err = io.StringIO(), io.StringIO()

    # Act
    status = decode_files([tmp_path], out, err)

    # Assert
    assert status == 1
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(doc["signature"][:12], doc["kind"], doc["venue"]) for doc in lines] == [
        ("2F7KM7K1cZBm", "swap", "pumpswap"),
        ("1ZSq1Aa2i6ES", "swap", "jupiter_v6"),
    ]
    errors = err.getvalue().splitlines()
    assert len(errors) == 3
    assert errors[0].startswith(f"error: {garbage}: not valid json")
    assert errors[1] == f"error: {empty}: empty input"
    assert errors[2].startswith(f"error: {truncated}: not valid json")
    assert "Traceback" not in err.getvalue()


def test_whole_corpus_decodes_with_exit_status_zero() -> None:
    """Every corpus file (given as files, not a directory) decodes; nothing is written to stderr."""
    # Arrange
    out, err = io.StringIO(), io.StringIO()

    # Act
    status = decode_files(corpus_files(), out, err)

    # Assert
    assert status == 0
    assert err.getvalue() == ""
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert {doc["kind"] for doc in docs} == {"swap", "liquidity_add", "pool_create", "transfer"}
    for doc in docs:
        for leg in (doc["input"], doc["output"]):
            assert leg is None or isinstance(leg["amount"], str)


def test_missing_file_is_reported_and_others_continue(tmp_path: Path) -> None:
    """A path that does not exist is one error line; the next file is still decoded."""
    # Arrange
    missing = tmp_path / "nope.json"
    good = _write(tmp_path, "good.json", (CORPUS / file_of("2cd7QQSByKy6")).read_bytes())
    out, err = io.StringIO(), io.StringIO()

    # Act
    status = decode_files([missing, good], out, err)

    # Assert
    assert status == 1
    assert err.getvalue().startswith(f"error: {missing}: cannot read")
    assert len(out.getvalue().splitlines()) == 1


def test_a_decoder_failure_is_an_error_line_and_the_other_files_still_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raising Pump.fun decoder: an error line naming file, signature, program and instruction, no
    balance-derived line for that transaction, the next file decoded, exit 1."""

    # Arrange
    def fail(inv: object, ctx: object) -> None:
        raise KeyError("forced")

    monkeypatch.setitem(decode.DECODERS, pumpfun.PROGRAM_ID, fail)
    name = file_of("3tJczs8y2bR8")
    failing = _write(tmp_path, "a_pumpfun.json", (CORPUS / name).read_bytes())
    _write(tmp_path, "b_good.json", (CORPUS / file_of("2cd7QQSByKy6")).read_bytes())
    out, err = io.StringIO(), io.StringIO()

    # Act
    status = decode_files([tmp_path], out, err)

    # Assert
    assert status == 1
    (line,) = err.getvalue().splitlines()
    assert line.startswith(f"error: {failing}: ")
    for fragment in (name.removesuffix(".json"), pumpfun.NAME, pumpfun.PROGRAM_ID, "instruction", "KeyError"):
        assert fragment in line, line
    docs = [orjson.loads(doc) for doc in out.getvalue().splitlines()]
    assert [doc["signature"][:12] for doc in docs] == ["2cd7QQSByKy6"]
