"""Normalise any `getTransaction`-like JSON into `Transaction` objects.

Accepted shapes, alone or in a list (a JSON array or JSON lines):

- a JSON-RPC envelope `{"jsonrpc", "id", "result"}` (an `error` member is reported as such), a bare
  `result`, or a websocket notification `{"params": {"result": ...}}`;
- the `json`, `jsonParsed` and `base64`/`base58` transaction encodings, legacy and v0 messages, with
  lookup-table addresses from `meta.loadedAddresses` (or, for `jsonParsed`, the keys' own list);
- Yellowstone/Geyser updates rendered as JSON: `{"transaction": {"transaction": {"signature",
  "transaction", "meta", "index"}, "slot"}}` or the inner info object, with keys and data either in
  base58 (as RPC renders them) or base64 (as protobuf's JSON mapping renders bytes), numbers either as
  JSON numbers or decimal strings, and `loadedWritableAddresses`/`loadedReadonlyAddresses`.

Everything wrong with the input raises `TransactionFormatError`, whose lower-case message names what is
wrong (`missing field \\`meta\\``, `account index 57 out of range (33 keys)`, ...). That includes values
no real transaction has: negative numbers, token amounts beyond u64 or not integers, more decimals than
a mint can use (`max_decimals`), lamport balances that are not one per account key.
"""

from __future__ import annotations

import array
import functools
import itertools
import operator
from collections.abc import Sequence
from typing import Any

import orjson
from solders.transaction import VersionedTransaction

from quantbot.bounds import MAX_DECIMALS, U64_MAX
from quantbot.solana.codec import CodecError, b58decode, b64decode, pubkey_str, signature_str
from quantbot.solana.transaction import Instruction, InstructionList, TokenBalance, Transaction

PUBKEY_LEN = 32
SIGNATURE_LEN = 64
_B64_PUBKEY_LEN = 44
"""Length of a 32-byte key in padded base64 (`ceil(32 / 3) * 4`); base58 keys never end in `=`."""
_B64_SIGNATURE_LEN = 88
"""Length of a 64-byte signature in padded base64; a base58 signature is at most 88 and has no `=`."""
_VERSION_PREFIX_BIT = 0x80
"""First message byte with this bit set marks a versioned message (its low bits are the version)."""
_COMPACT_U16_MORE = 0x80
_COMPACT_U16_VALUE = 0x7F
_COMPACT_U16_BITS = 7
"""compact-u16 (Solana's short vector length): 7 value bits per byte, high bit set when more follow."""


_ACCOUNTS = operator.itemgetter("accounts")
_new_tuple = tuple.__new__
"""`tuple.__new__`, to build named tuples without their Python-level constructor on the hot path."""
_MAX_KEYS = 256
"""A message names at most 256 keys (its account indexes are one byte)."""


@functools.lru_cache(maxsize=_MAX_KEYS + 1)
def _valid_indexes(count: int) -> frozenset[int]:
    """The account indexes valid among `count` keys (kept for the key counts seen: few, at most 256)."""
    return frozenset(range(count))


class TransactionFormatError(ValueError):
    """Input that is not a transaction this module can read; the message says what is wrong."""


def parse_transactions(raw: bytes | str, max_decimals: int = MAX_DECIMALS) -> list[Transaction]:
    """Parse raw JSON bytes (one document, a JSON array, or JSON lines) into transactions.

    Args:
        raw: the JSON text.
        max_decimals: token balances with more decimals are refused (see `quantbot.bounds`).

    Raises:
        TransactionFormatError: empty input, invalid JSON, or a document that is not a transaction.
    """
    # Only input that starts with whitespace can be blank: don't copy a 40 kB document to find out.
    if not raw or (raw[:1].isspace() and not raw.strip()):
        raise TransactionFormatError("empty input")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        documents = _json_lines(raw)
        if documents is None:
            raise TransactionFormatError(f"not valid json: {str(exc).lower()}") from None
        return normalise(documents, max_decimals)
    return normalise(document, max_decimals)


def _json_lines(raw: bytes | str) -> list[Any] | None:
    """Parse JSON lines when every non-empty line is a JSON document, else None."""
    lines = [line for line in (raw.splitlines() if raw else []) if line.strip()]
    if len(lines) < 2:
        return None
    documents = []
    for line in lines:
        try:
            documents.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            return None
    return documents


def normalise(document: Any, max_decimals: int = MAX_DECIMALS) -> list[Transaction]:
    """Normalise one parsed JSON document (any accepted shape, or a list of them) into transactions.

    `max_decimals` bounds token balances' decimals, as in `parse_transactions`.

    Raises:
        TransactionFormatError: when the document is not a transaction in an accepted shape.
    """
    if isinstance(document, list):
        if not document:
            raise TransactionFormatError("empty list: no transaction")
        out: list[Transaction] = []
        for item in document:
            out.extend(normalise(item, max_decimals))
        return out
    if not isinstance(document, dict):
        raise TransactionFormatError(f"expected a json object, got {type(document).__name__}")
    try:
        return [_normalise_object(document, max_decimals)]
    except TransactionFormatError:
        raise
    except KeyError as exc:
        raise TransactionFormatError(f"missing field `{exc.args[0]}`") from None
    except CodecError as exc:
        raise TransactionFormatError(str(exc)) from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise TransactionFormatError(f"malformed transaction: {str(exc).lower()}") from None


def _normalise_object(obj: dict[str, Any], max_decimals: int) -> Transaction:
    if "transaction" not in obj:
        if "error" in obj:
            error = obj["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise TransactionFormatError(f"rpc error response: {message}")
        if "result" in obj:
            return _unwrap(obj["result"], "result", max_decimals)
        if "params" in obj:
            params = obj["params"]
            if not isinstance(params, dict) or "result" not in params:
                raise TransactionFormatError("notification without `params.result`")
            return _unwrap(params["result"], "params.result", max_decimals)
        if "value" in obj:
            return _unwrap(obj["value"], "value", max_decimals)
        raise TransactionFormatError("no `transaction` field: not a transaction")
    inner = obj["transaction"]
    if "meta" in obj:
        return _from_result(obj, obj.get("slot"), obj.get("blockTime"), obj.get("signature"), max_decimals)
    if isinstance(inner, dict):
        if "meta" in inner and "transaction" in inner:
            # Geyser SubscribeUpdateTransactionInfo inside a SubscribeUpdateTransaction.
            return _from_result(
                inner, obj.get("slot"), obj.get("blockTime"), inner.get("signature"), max_decimals, geyser=True
            )
        if isinstance(inner.get("transaction"), dict):
            # Geyser SubscribeUpdate: {"filters", "transaction": {"transaction": info, "slot"}}.
            return _normalise_object(inner, max_decimals)
    raise TransactionFormatError("missing field `meta`: a transaction needs its status metadata")


_ZERO_KEY = "1" * 32
"""The all-zero key (the System program) in canonical base58: one `1` per leading zero byte."""


def _canonical_zero_keys(keys: list[str]) -> None:
    """Repair the all-zero key where a bridge spelled it with too many `1`s (seen in Geyser recordings)."""
    for position, text in enumerate(keys):
        if text[:2] == "11" and len(text) != len(_ZERO_KEY) and not text.strip("1"):
            keys[position] = _ZERO_KEY


def _unwrap(value: Any, where: str, max_decimals: int) -> Transaction:
    if value is None:
        raise TransactionFormatError(f"`{where}` is null: transaction not found")
    if isinstance(value, list):
        raise TransactionFormatError(f"`{where}` is a list; pass the list itself instead")
    if not isinstance(value, dict):
        raise TransactionFormatError(f"`{where}` is not an object")
    return _normalise_object(value, max_decimals)


def _int(value: Any, what: str) -> int:
    """A non-negative integer, given as a JSON number or a decimal string (every count, index, slot,
    time and amount of a transaction is one)."""
    if type(value) is int:
        if value < 0:
            raise TransactionFormatError(f"`{what}` is negative: {value}")
        return value
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    raise TransactionFormatError(f"`{what}` is not a non-negative integer: {value!r}")


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _from_result(
    result: dict[str, Any], slot: Any, block_time: Any, signature: Any, max_decimals: int, *, geyser: bool = False
) -> Transaction:
    meta = result["meta"]
    if not isinstance(meta, dict):
        raise TransactionFormatError("`meta` is null: the transaction carries no status metadata")
    wire = result["transaction"]
    if isinstance(wire, list):
        message, signatures = _decode_wire(wire)
        keys = message.keys
        signers = keys[: message.num_signers]
        compiled = message.instructions
        bytes_in_base64 = False
    elif isinstance(wire, dict):
        msg = wire["message"]
        if not isinstance(msg, dict):
            raise TransactionFormatError("`transaction.message` is not an object")
        raw_sigs = wire.get("signatures") or []
        bytes_in_base64 = _keys_in_base64(msg)
        signatures = [_signature_text(s, bytes_in_base64) for s in raw_sigs]
        keys, signers = _json_keys(msg, bytes_in_base64)
        compiled = []
    else:
        raise TransactionFormatError("`transaction` is neither a message object nor an encoded blob")

    loaded = meta.get("loadedAddresses")
    if isinstance(loaded, dict):
        writable = loaded.get("writable") or []
        readonly = loaded.get("readonly") or []
    else:
        writable = meta.get("loadedWritableAddresses") or []
        readonly = meta.get("loadedReadonlyAddresses") or []
    # jsonParsed already lists loaded keys among `accountKeys`; the other shapes append them (unless a
    # recorder already merged them into `accountKeys`, as some SDKs do).
    parsed_keys = isinstance(wire, dict) and isinstance(msg["accountKeys"][0], dict)
    if (writable or readonly) and not parsed_keys:
        loaded = _key_texts([*writable, *readonly], bytes_in_base64)
        if keys[-len(loaded) :] != loaded or len(keys) + len(loaded) == len(meta.get("preBalances") or ()):
            keys = keys + loaded
    if geyser:
        keys = list(keys)
        _canonical_zero_keys(keys)

    instructions: Sequence[Instruction]
    if isinstance(wire, dict):
        instructions = _instructions(msg["instructions"], keys, bytes_in_base64, outer=True)
    else:
        instructions = [_resolve_compiled(ix, keys) for ix in compiled]

    inner: list[Sequence[Instruction]] = [[] for _ in range(len(instructions))]
    groups = meta.get("innerInstructions") or []
    if type(groups) is not list:
        raise TransactionFormatError("`meta.innerInstructions` is not a list")
    for group in groups:
        index = group.get("index", 0)
        if type(index) is not int:
            index = _int(index, "innerInstructions.index")
        if index >= len(inner):
            raise TransactionFormatError(
                f"inner instructions for outer instruction {index}, but there are {len(inner)}"
            )
        inner[index] = _instructions(group["instructions"], keys, bytes_in_base64, outer=False)

    if not signatures:
        if signature is None:
            raise TransactionFormatError("no signature: `transaction.signatures` is empty")
        signatures = [_signature_text(signature, bytes_in_base64)]

    err = meta.get("err")
    if isinstance(err, dict) and set(err) == {"err"} and not err["err"]:
        err = None  # Geyser renders success as an empty error wrapper in some bridges.
    logs = meta.get("logMessages")
    if meta.get("logMessagesNone"):
        logs = None
    fee = _int(meta.get("fee", 0), "meta.fee")
    pre = _lamports(meta.get("preBalances"), "meta.preBalances")
    post = _lamports(meta.get("postBalances"), "meta.postBalances")
    if len(pre) != len(keys) or len(post) != len(keys):
        raise TransactionFormatError(
            f"`meta.preBalances` has {len(pre)} entries and `meta.postBalances` {len(post)}, "
            f"but there are {len(keys)} account keys: one balance per key expected"
        )
    # Positional, in the fields' order (signature, slot, block_time, err, fee, account_keys, signers,
    # instructions, inner, logs, pre/post lamports, pre/post token balances): keywords cost twice as much.
    return Transaction(
        signatures[0],
        _opt_int(slot, "slot"),
        _opt_int(block_time, "blockTime"),
        err,
        fee,
        keys,
        signers,
        instructions,
        inner,
        logs if isinstance(logs, list) else None,
        pre,
        post,
        _token_balances(meta.get("preTokenBalances"), keys, max_decimals),
        _token_balances(meta.get("postTokenBalances"), keys, max_decimals),
    )


def _keys_in_base64(msg: dict[str, Any]) -> bool:
    """Whether a message renders keys (and so all bytes) in base64, as protobuf's JSON mapping does."""
    keys = msg.get("accountKeys")
    if not isinstance(keys, list) or not keys:
        raise TransactionFormatError("`transaction.message.accountKeys` is missing or empty")
    first = keys[0]
    return isinstance(first, str) and len(first) == _B64_PUBKEY_LEN and first.endswith("=")


def _key_text(key: Any, in_base64: bool) -> str:
    if not isinstance(key, str):
        raise TransactionFormatError(f"account key is not a string: {key!r}")
    if in_base64:
        raw = b64decode(key)
        if len(raw) != PUBKEY_LEN:
            raise TransactionFormatError(f"account key of {len(raw)} bytes, expected 32")
        return pubkey_str(raw)
    return key


def _key_texts(keys: list[Any], in_base64: bool) -> list[str]:
    """`_key_text` of each key; base58 keys (the usual case) are only checked to be strings, at once."""
    if not in_base64:
        try:
            "".join(keys)  # checks, in C, that every key is a string
            return keys
        except TypeError:
            pass  # `_key_text` names the first that is not
    return [_key_text(k, in_base64) for k in keys]


def _signature_text(sig: Any, in_base64: bool) -> str:
    if not isinstance(sig, str) or not sig:
        raise TransactionFormatError(f"signature is not a string: {sig!r}")
    if in_base64 or (len(sig) == _B64_SIGNATURE_LEN and sig.endswith("==")):
        raw = b64decode(sig)
        if len(raw) != SIGNATURE_LEN:
            raise TransactionFormatError(f"signature of {len(raw)} bytes, expected 64")
        return signature_str(raw)
    return sig


def _json_keys(msg: dict[str, Any], in_base64: bool) -> tuple[list[str], list[str]]:
    raw_keys = msg["accountKeys"]
    if isinstance(raw_keys[0], dict):  # jsonParsed: {"pubkey", "signer", "writable", "source"}
        keys = [k["pubkey"] for k in raw_keys]
        signers = [k["pubkey"] for k in raw_keys if k.get("signer")]
        return keys, signers
    keys = [_key_text(k, in_base64) for k in raw_keys] if in_base64 else list(raw_keys)
    try:
        "".join(keys)  # checks, in C, that every key is a string
    except TypeError:
        raise TransactionFormatError("an account key is not a string") from None
    header = msg.get("header") or {}
    num_signers = _int(header.get("numRequiredSignatures", 1), "header.numRequiredSignatures")
    return keys, keys[:num_signers]


def _instructions(entries: Any, keys: list[str], in_base64: bool, outer: bool) -> Sequence[Instruction]:
    """Normalise a list of JSON instructions (the outer ones, or those under one outer instruction).

    In the usual `json` and `jsonParsed` shapes every entry is checked now and the instructions come as
    an `InstructionList`, built one by one as the decoder reads them; other shapes are read entry by
    entry, each checked field by field.
    """
    what, default_height = ("instruction", 1) if outer else ("inner instruction", None)
    if type(entries) is not list:
        raise TransactionFormatError(f"{what} list is not a list")
    if in_base64:
        return [_json_instruction(ix, keys, in_base64, default_height, what) for ix in entries]
    if _json_indexes_valid(entries, len(keys)):
        try:
            # Only entries with data (a missing one is read by the slow path, which checks it).
            program_ids = [keys[ix["programIdIndex"]] for ix in entries if "data" in ix]
            if len(program_ids) == len(entries):
                build = functools.partial(_indexed_instruction, keys, default_height)
                return InstructionList(entries, program_ids, build, default_height)
        except (KeyError, TypeError, IndexError):
            pass
    program_ids = []
    for ix in entries:  # `jsonParsed`: resolved program ids; as `_any_instruction` checks them
        if type(ix) is not dict or "programIdIndex" in ix:
            break
        program_id = ix.get("programId")
        data, accounts = ix.get("data", ""), ix.get("accounts") or []
        if type(program_id) is not str or type(data) is not str or type(accounts) is not list:
            break
        program_ids.append(program_id)
    else:
        build = functools.partial(_resolved_instruction, default_height)
        return InstructionList(entries, program_ids, build, default_height)
    return [_any_instruction(ix, keys, default_height, what) for ix in entries]


def _indexed_instruction(
    keys: list[str], default_height: int | None, ix: dict[str, Any], program_id: str
) -> Instruction:
    """A checked `json`-shaped instruction (see `_instructions`)."""
    height = ix.get("stackHeight") or default_height
    return Instruction(program_id, None, ix["data"], None, height, None, ix["accounts"], keys)


def _resolved_instruction(default_height: int | None, ix: dict[str, Any], program_id: str) -> Instruction:
    """A checked `jsonParsed`-shaped instruction: the RPC's parsed rendering or raw data."""
    height = ix.get("stackHeight") or default_height
    parsed = ix.get("parsed")
    if parsed is not None:
        return Instruction(program_id, [], "", None, height, parsed if type(parsed) is dict else {"value": parsed})
    return Instruction(program_id, ix.get("accounts") or [], ix.get("data", ""), None, height)


def _any_instruction(ix: Any, keys: list[str], default_height: int | None, what: str) -> Instruction:
    """One instruction of any JSON shape, checked field by field."""
    if type(ix) is not dict:
        raise TransactionFormatError(f"{what} is not an object")
    if "programIdIndex" in ix:
        return _json_instruction(ix, keys, False, default_height, what)
    # jsonParsed: resolved program id, then either the RPC's parsed rendering or raw data.
    height = ix.get("stackHeight") or default_height
    program_id = ix.get("programId")
    parsed = ix.get("parsed")
    data = ix.get("data", "")
    accounts = ix.get("accounts") or []
    if type(program_id) is not str or type(data) is not str or type(accounts) is not list:
        return _json_instruction(ix, keys, False, default_height, what)
    if parsed is not None:
        return Instruction(program_id, [], "", None, height, parsed if type(parsed) is dict else {"value": parsed})
    return Instruction(program_id, accounts, data, None, height)


def _json_indexes_valid(entries: list[Any], nkeys: int) -> bool:
    """Whether `json`-shaped instructions name only valid account indexes, all checked at once in C.

    False for anything else (a bad index, another shape): the instruction-by-instruction path then says
    what is wrong, or reads the shape.
    """
    try:
        return _valid_indexes(nkeys).issuperset(itertools.chain.from_iterable(filter(None, map(_ACCOUNTS, entries))))
    except (KeyError, TypeError):
        return False


def _json_instruction(ix: Any, keys: list[str], in_base64: bool, default_height: int | None, what: str) -> Instruction:
    if type(ix) is not dict:
        raise TransactionFormatError(f"{what} is not an object")
    height = ix.get("stackHeight")
    if height is None:
        height = default_height
    elif type(height) is not int:
        height = _int(height, "stackHeight")
    pid_index = ix.get("programIdIndex")
    if pid_index is not None:
        if type(pid_index) is not int:
            pid_index = _int(pid_index, "programIdIndex")
        indexes = ix.get("accounts") or []
        if type(indexes) is str:  # protobuf JSON: a bytes field, in base64
            indexes = b64decode(indexes)
        nkeys = len(keys)
        if not 0 <= pid_index < nkeys or (indexes and not 0 <= min(indexes) <= max(indexes) < nkeys):
            raise TransactionFormatError(f"{what} refers to an account index out of range ({nkeys} keys)")
        data = ix.get("data", "")
        if type(data) is not str:
            raise TransactionFormatError(f"{what} data is not a string")
        if in_base64:
            return Instruction(keys[pid_index], None, None, b64decode(data), height, None, indexes, keys)
        return Instruction(keys[pid_index], None, data, None, height, None, indexes, keys)
    program_id = ix["programId"]
    if type(program_id) is not str:
        raise TransactionFormatError(f"{what} program id is not a string")
    parsed = ix.get("parsed")
    if parsed is not None:
        if type(parsed) is not dict:
            parsed = {"value": parsed}
        return Instruction(program_id, [], "", None, height, parsed)
    accounts = ix.get("accounts") or []
    data = ix.get("data", "")
    if type(data) is not str or type(accounts) is not list:
        raise TransactionFormatError(f"{what} data or accounts malformed")
    return Instruction(program_id, accounts, data, None, height)


def _token_balances(entries: Any, keys: list[str], max_decimals: int) -> list[TokenBalance]:
    if not entries:
        return []
    out = []
    nkeys = len(keys)
    for entry in entries:
        index = entry.get("accountIndex", 0)
        if type(index) is not int:
            index = _int(index, "accountIndex")
        if not 0 <= index < nkeys:
            raise TransactionFormatError(f"token balance for account index {index} out of range ({nkeys} keys)")
        ui = entry["uiTokenAmount"]
        decimals = ui.get("decimals", 0)
        mint = entry["mint"]
        if type(mint) is not str:
            raise TransactionFormatError("token balance mint is not a string")
        text = ui["amount"]
        # -1 (refused below) for anything but a decimal string or an integer: a float, a bool, ...
        if type(text) is str:
            try:
                amount = int(text)
            except ValueError:
                amount = -1
        elif type(text) is int:
            amount = text
        else:
            amount = -1
        if not 0 <= amount <= U64_MAX:
            raise TransactionFormatError(f"token amount {text!r} of account index {index} is not a u64 integer")
        if type(decimals) is not int:
            decimals = _opt_int(decimals, "decimals")
        if decimals is not None and not 0 <= decimals <= max_decimals:
            raise TransactionFormatError(
                f"token decimals {decimals} of account index {index} out of range (0 to {max_decimals})"
            )
        # tuple.__new__ skips the named tuple's Python-level constructor (this runs per balance entry).
        out.append(_new_tuple(TokenBalance, (index, keys[index], mint, entry.get("owner") or None, amount, decimals)))
    return out


def _lamports(values: Any, what: str) -> list[int]:
    if not values:
        return []
    if type(values) is not list:
        raise TransactionFormatError(f"`{what}` is not a list")
    try:
        # Lamports are u64: building an unsigned 64-bit array checks, in C, that every value is one.
        array.array("Q", values)
        return values
    except (TypeError, ValueError, OverflowError):
        pass  # not all of them (or decimal strings): convert one by one, saying what is wrong
    out = [_int(value, what) for value in values]
    if max(out) > U64_MAX:
        raise TransactionFormatError(f"`{what}` holds a balance beyond u64: {max(out)}")
    return out


class _WireMessage:
    __slots__ = ("instructions", "keys", "num_signers")

    def __init__(self, keys: list[str], num_signers: int, instructions: list[tuple[int, bytes, bytes]]):
        self.keys = keys
        self.num_signers = num_signers
        self.instructions = instructions


def _decode_wire(wire: list[Any]) -> tuple[_WireMessage, list[str]]:
    if len(wire) != 2 or not isinstance(wire[0], str):
        raise TransactionFormatError("encoded transaction is not [data, encoding]")
    text, encoding = wire
    if encoding == "base64":
        raw = b64decode(text)
    elif encoding in ("base58", "binary"):
        raw = b58decode(text)
    else:
        raise TransactionFormatError(f"unknown transaction encoding `{encoding}`")
    parsed = _parse_wire_natively(raw)
    if parsed is not None:
        return parsed
    try:
        return _parse_wire(raw)
    except IndexError:
        raise TransactionFormatError("encoded transaction is truncated") from None


def _parse_wire_natively(raw: bytes) -> tuple[_WireMessage, list[str]] | None:
    """`_parse_wire` done by solders' (Rust) deserializer, three times faster; None when solders refuses
    the bytes, which `_parse_wire` then reads (or says what is wrong with)."""
    try:
        transaction = VersionedTransaction.from_bytes(raw)
    except ValueError:
        return None
    message = transaction.message
    instructions = [(ix.program_id_index, ix.accounts, ix.data) for ix in message.instructions]
    keys = list(map(str, message.account_keys))
    wire = _WireMessage(keys, message.header.num_required_signatures, instructions)
    return wire, list(map(str, transaction.signatures))


def _compact_u16(raw: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & _COMPACT_U16_VALUE) << shift
        if not byte & _COMPACT_U16_MORE:
            return value, pos
        shift += _COMPACT_U16_BITS
        if shift > 2 * _COMPACT_U16_BITS:
            raise TransactionFormatError("compact-u16 length overflows")


def _take(raw: bytes, pos: int, size: int) -> bytes:
    end = pos + size
    if end > len(raw):
        raise TransactionFormatError("encoded transaction is truncated")
    return raw[pos:end]


def _parse_wire(raw: bytes) -> tuple[_WireMessage, list[str]]:
    """Parse a serialized transaction (signatures, then a legacy or v0 message)."""
    count, pos = _compact_u16(raw, 0)
    signatures = [signature_str(_take(raw, pos + i * SIGNATURE_LEN, SIGNATURE_LEN)) for i in range(count)]
    pos += count * SIGNATURE_LEN
    if raw[pos] & _VERSION_PREFIX_BIT:
        version = raw[pos] & ~_VERSION_PREFIX_BIT
        if version != 0:
            raise TransactionFormatError(f"unsupported message version {version}")
        pos += 1
    num_signers = raw[pos]
    pos += 3  # header: required signatures, readonly signed, readonly unsigned
    num_keys, pos = _compact_u16(raw, pos)
    keys = [pubkey_str(_take(raw, pos + i * PUBKEY_LEN, PUBKEY_LEN)) for i in range(num_keys)]
    pos += num_keys * PUBKEY_LEN + PUBKEY_LEN  # keys, then the recent blockhash
    num_ix, pos = _compact_u16(raw, pos)
    instructions = []
    for _ in range(num_ix):
        program_index = raw[pos]
        n_accounts, pos = _compact_u16(raw, pos + 1)
        accounts = _take(raw, pos, n_accounts)
        pos += n_accounts
        n_data, pos = _compact_u16(raw, pos)
        data = _take(raw, pos, n_data)
        pos += n_data
        instructions.append((program_index, accounts, data))
    return _WireMessage(keys, num_signers, instructions), signatures


def _resolve_compiled(ix: tuple[int, bytes, bytes], keys: list[str]) -> Instruction:
    program_index, accounts, data = ix
    nkeys = len(keys)
    if program_index >= nkeys or (accounts and max(accounts) >= nkeys):
        raise TransactionFormatError(f"instruction refers to an account index out of range ({nkeys} keys)")
    return Instruction(keys[program_index], None, None, data, 1, None, accounts, keys)
