"""Normalisation of every accepted input shape, and the errors for input that is not a transaction."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from quantbot.solana.codec import b58decode
from quantbot.solana.decode import activity_to_json, decode_transaction
from quantbot.solana.normalise import TransactionFormatError, normalise, parse_transactions
from tests.solana.conftest import CORPUS, corpus_files, file_of


def _document(prefix: str) -> Any:
    return orjson.loads((CORPUS / file_of(prefix)).read_bytes())


def _bare(prefix: str) -> dict[str, Any]:
    doc: dict[str, Any] = _document(prefix)
    bare: dict[str, Any] = doc.get("result", doc)
    return bare


def _decoded(raw: bytes) -> list[list[dict[str, Any]]]:
    return [[activity_to_json(a) for a in decode_transaction(tx)] for tx in parse_transactions(raw)]


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_keys_cover_static_and_loaded_addresses(path: Any) -> None:
    """Every encoding resolves all account keys (lookup-table ones included): one per lamport balance."""
    # Arrange
    raw = path.read_bytes()

    # Act
    (tx,) = parse_transactions(raw)

    # Assert
    assert len(tx.account_keys) == len(tx.pre_balances) == len(tx.post_balances)
    assert tx.signers and tx.signers[0] == tx.fee_payer
    assert len(tx.inner) == len(tx.instructions)


def test_envelope_bare_result_list_and_json_lines_decode_alike() -> None:
    """An RPC envelope, its bare result, a list of results and JSON lines all give the same activities."""
    # Arrange
    envelope = _document("2cd7QQSByKy6")
    bare = envelope["result"]
    other = _bare("2F7KM7K1cZBm")

    # Act
    from_envelope = _decoded(orjson.dumps(envelope))
    from_bare = _decoded(orjson.dumps(bare))
    from_list = _decoded(orjson.dumps([bare, other]))
    from_lines = _decoded(orjson.dumps(envelope) + b"\n" + orjson.dumps(other) + b"\n")

    # Assert
    assert from_envelope == from_bare
    assert from_list == from_lines == from_bare + _decoded(orjson.dumps(other))


def test_websocket_notification_shape_is_unwrapped() -> None:
    """A `{"params": {"result": ...}}` notification decodes like the result it wraps."""
    # Arrange
    bare = _bare("2cd7QQSByKy6")

    # Act
    wrapped = _decoded(
        orjson.dumps({"jsonrpc": "2.0", "method": "transactionNotification", "params": {"result": bare}})
    )

    # Assert
    assert wrapped == _decoded(orjson.dumps(bare))


def _to_protobuf_json(geyser: dict[str, Any]) -> dict[str, Any]:
    """Render a base58 Geyser update the way protobuf's JSON mapping does: bytes in base64, u64 as strings."""
    doc = copy.deepcopy(geyser)
    info = doc["transaction"]["transaction"]

    def b64(text: str) -> str:
        raw = b58decode(text)
        return base64.b64encode(raw[-32:] if len(raw) > 32 and not any(raw[:-32]) else raw).decode()

    info["signature"] = b64(info["signature"])
    wire = info["transaction"]
    wire["signatures"] = [b64(s) for s in wire["signatures"]]
    message = wire["message"]
    message["accountKeys"] = [b64(k) for k in message["accountKeys"]]
    message["recentBlockhash"] = b64(message["recentBlockhash"])
    for ix in message["instructions"]:
        ix["data"] = b64(ix["data"])
        ix["accounts"] = base64.b64encode(bytes(ix.get("accounts", []))).decode()
    meta = info["meta"]
    meta["fee"] = str(meta["fee"])
    meta["preBalances"] = [str(v) for v in meta["preBalances"]]
    meta["postBalances"] = [str(v) for v in meta["postBalances"]]
    meta["loadedWritableAddresses"] = [b64(k) for k in meta["loadedWritableAddresses"]]
    meta["loadedReadonlyAddresses"] = [b64(k) for k in meta["loadedReadonlyAddresses"]]
    for group in meta["innerInstructions"]:
        for ix in group["instructions"]:
            ix["data"] = b64(ix["data"])
            ix["accounts"] = base64.b64encode(bytes(ix.get("accounts", []))).decode()
    doc["transaction"]["slot"] = str(doc["transaction"]["slot"])
    return doc


def test_geyser_protobuf_json_with_base64_bytes_decodes_like_base58() -> None:
    """Geyser JSON with base64 keys and data and string integers decodes like its base58 rendering."""
    # Arrange
    (geyser_path,) = [p for p in corpus_files() if ".geyser." in p.name]
    geyser = orjson.loads(geyser_path.read_bytes())

    # Act
    from_base64 = _decoded(orjson.dumps(_to_protobuf_json(geyser)))
    from_base58 = _decoded(geyser_path.read_bytes())

    # Assert
    assert from_base64 == from_base58
    assert from_base64[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty input"),
        (b"  \n ", "empty input"),
        (b"\x00\xffgarbage{", "not valid json"),
        (b'{"result": {"slot": 1, "transaction": {"message"', "not valid json"),
        (b"[]", "empty list"),
        (b'"a string"', "expected a json object"),
        (b'{"jsonrpc": "2.0", "id": 1, "result": null}', "transaction not found"),
        (b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Invalid param"}}', "rpc error"),
        (b'{"foo": 1}', "no `transaction` field"),
        (b'{"transaction": {"message": {"accountKeys": ["a"]}}}', "missing field `meta`"),
        (b'{"transaction": ["AAAA", "base64"], "meta": {}}', "truncated"),
        (b'{"transaction": ["not base64!", "base64"], "meta": {}}', "base64"),
        (b'{"transaction": ["AAAA", "zip"], "meta": {}}', "unknown transaction encoding"),
    ],
)
def test_unreadable_input_raises_a_clear_format_error(raw: bytes, message: str) -> None:
    """Input that is not a transaction raises `TransactionFormatError` naming what is wrong."""
    # Act / Assert
    with pytest.raises(TransactionFormatError, match=message):
        parse_transactions(raw)


def test_account_index_out_of_range_is_a_format_error() -> None:
    """An instruction naming an account beyond the key list is reported, not resolved to garbage."""
    # Arrange
    doc = _bare("2cd7QQSByKy6")
    doc["transaction"]["message"]["instructions"][0]["accounts"] = [0, 999]

    # Act / Assert
    with pytest.raises(TransactionFormatError, match="out of range"):
        normalise(doc)


def test_truncated_base64_transaction_is_a_format_error() -> None:
    """A base64 message cut short is reported as truncated."""
    # Arrange
    doc = _bare("27f6P1sV4sDJ")
    blob = base64.b64decode(doc["transaction"][0])
    doc["transaction"][0] = base64.b64encode(blob[: len(blob) // 2]).decode()

    # Act / Assert
    with pytest.raises(TransactionFormatError, match="truncated"):
        normalise(doc)
