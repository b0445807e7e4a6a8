"""A `getTransaction` result (`json` encoding) as the Yellowstone gRPC messages a Geyser node sends.

The loopback Yellowstone peer (`quantbot.ops.peers.yellowstone`) serves its chain's transactions with it,
and the tests prove with it that a Geyser update, rendered by protobuf's JSON mapping, normalises and
decodes exactly as its RPC twin. What a Geyser node sends and RPC renders differently:

- keys, signatures, the blockhash and instruction data are bytes (RPC: base58 text); instruction account
  lists are bytes of indexes;
- lookup-table addresses are `loaded_writable_addresses`/`loaded_readonly_addresses` of the meta (RPC:
  `meta.loadedAddresses`); absent logs or inner instructions are flagged `*_none`;
- the error is the runtime's `TransactionError` serialised with bincode (RPC: its JSON form), and there
  is no block time (a Geyser update has none).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.yellowstone import geyser_pb2 as geyser
from connectors.yellowstone import solana_storage_pb2 as storage
from quantbot.solana.codec import b58decode, b64decode

_INSTRUCTION_ERROR = 8
"""`TransactionError::InstructionError(u8, InstructionError)`: the variant's index in the runtime's enum."""
_CUSTOM = 25
"""`InstructionError::Custom(u32)`: the variant's index in the runtime's enum."""


class ConversionError(ValueError):
    """A result this converter cannot render as Geyser messages; the message names what."""


def subscribe_update_of(
    result: Mapping[str, Any],
    filters: Sequence[str] = (),
    index: int = 0,
    created_at: datetime | None = None,
) -> geyser.SubscribeUpdate:
    """The `SubscribeUpdate` carrying `result` (a `getTransaction` result in the `json` encoding).

    Args:
        result: `{"slot", "transaction": {"signatures", "message"}, "meta", ...}`.
        filters: the names of the subscription's filters the transaction matched.
        index: the transaction's position in its block.
        created_at: when the update was made (timezone-aware); unset when None.

    Raises:
        ConversionError: a field this converter does not know how to render (an error other than an
            instruction's custom error, a `jsonParsed` message).
    """
    update = geyser.SubscribeUpdate(filters=list(filters))
    update.transaction.CopyFrom(transaction_update_of(result, index))
    if created_at is not None:
        update.created_at.FromDatetime(created_at)
    return update


def transaction_update_of(result: Mapping[str, Any], index: int = 0) -> geyser.SubscribeUpdateTransaction:
    """The `SubscribeUpdateTransaction` of `result` (see `subscribe_update_of`)."""
    wire = result["transaction"]
    if not isinstance(wire, Mapping):
        raise ConversionError("the transaction is encoded: pass the `json` encoding's result")
    meta = result["meta"]
    signatures = [b58decode(s) for s in wire["signatures"]]
    info = geyser.SubscribeUpdateTransactionInfo(
        signature=signatures[0],
        is_vote=False,
        transaction=storage.Transaction(signatures=signatures, message=_message(wire["message"], result)),
        meta=_meta(meta),
        index=index,
    )
    return geyser.SubscribeUpdateTransaction(transaction=info, slot=int(result["slot"]))


def _message(msg: Mapping[str, Any], result: Mapping[str, Any]) -> storage.Message:
    keys = msg["accountKeys"]
    if keys and not isinstance(keys[0], str):
        raise ConversionError("the message is `jsonParsed`: pass the `json` encoding's result")
    header = msg.get("header") or {}
    lookups = msg.get("addressTableLookups") or []
    return storage.Message(
        header=storage.MessageHeader(
            num_required_signatures=header.get("numRequiredSignatures", 0),
            num_readonly_signed_accounts=header.get("numReadonlySignedAccounts", 0),
            num_readonly_unsigned_accounts=header.get("numReadonlyUnsignedAccounts", 0),
        ),
        account_keys=[b58decode(k) for k in keys],
        recent_blockhash=b58decode(msg["recentBlockhash"]),
        instructions=[
            storage.CompiledInstruction(
                program_id_index=ix["programIdIndex"],
                accounts=bytes(ix.get("accounts") or []),
                data=b58decode(ix["data"]),
            )
            for ix in msg["instructions"]
        ],
        versioned=result.get("version", "legacy") != "legacy",
        address_table_lookups=[
            storage.MessageAddressTableLookup(
                account_key=b58decode(lookup["accountKey"]),
                writable_indexes=bytes(lookup.get("writableIndexes") or []),
                readonly_indexes=bytes(lookup.get("readonlyIndexes") or []),
            )
            for lookup in lookups
        ],
    )


def _meta(meta: Mapping[str, Any]) -> storage.TransactionStatusMeta:
    loaded = meta.get("loadedAddresses") or {}
    logs = meta.get("logMessages")
    inner = meta.get("innerInstructions")
    out = storage.TransactionStatusMeta(
        fee=int(meta.get("fee", 0)),
        pre_balances=[int(b) for b in meta["preBalances"]],
        post_balances=[int(b) for b in meta["postBalances"]],
        inner_instructions=[_inner_group(group) for group in inner or []],
        inner_instructions_none=inner is None,
        log_messages=list(logs or []),
        log_messages_none=logs is None,
        pre_token_balances=[_token_balance(b) for b in meta.get("preTokenBalances") or []],
        post_token_balances=[_token_balance(b) for b in meta.get("postTokenBalances") or []],
        rewards=[_reward(r) for r in meta.get("rewards") or []],
        loaded_writable_addresses=[b58decode(k) for k in loaded.get("writable") or []],
        loaded_readonly_addresses=[b58decode(k) for k in loaded.get("readonly") or []],
        return_data_none=meta.get("returnData") is None,
    )
    if meta.get("err") is not None:
        out.err.err = transaction_error_bytes(meta["err"])
    if (units := meta.get("computeUnitsConsumed")) is not None:
        out.compute_units_consumed = int(units)
    if (returned := meta.get("returnData")) is not None:
        data, _encoding = returned["data"]
        out.return_data.program_id = b58decode(returned["programId"])
        out.return_data.data = b64decode(data)
    return out


def _inner_group(group: Mapping[str, Any]) -> storage.InnerInstructions:
    instructions = []
    for ix in group["instructions"]:
        inner = storage.InnerInstruction(
            program_id_index=ix["programIdIndex"], accounts=bytes(ix.get("accounts") or []), data=b58decode(ix["data"])
        )
        if ix.get("stackHeight") is not None:
            inner.stack_height = ix["stackHeight"]
        instructions.append(inner)
    return storage.InnerInstructions(index=group["index"], instructions=instructions)


def _token_balance(balance: Mapping[str, Any]) -> storage.TokenBalance:
    amount = balance["uiTokenAmount"]
    return storage.TokenBalance(
        account_index=balance["accountIndex"],
        mint=balance["mint"],
        ui_token_amount=storage.UiTokenAmount(
            ui_amount=amount.get("uiAmount") or 0.0,
            decimals=amount["decimals"],
            amount=amount["amount"],
            ui_amount_string=amount.get("uiAmountString") or "",
        ),
        owner=balance.get("owner") or "",
        program_id=balance.get("programId") or "",
    )


def _reward(reward: Mapping[str, Any]) -> storage.Reward:
    kind = reward.get("rewardType")
    return storage.Reward(
        pubkey=reward["pubkey"],
        lamports=int(reward["lamports"]),
        post_balance=int(reward["postBalance"]),
        reward_type=kind or "Unspecified",  # RPC renders the enum's name (`Fee`, `Rent`, ...), as protobuf takes it
        commission="" if reward.get("commission") is None else str(reward["commission"]),
    )


def transaction_error_bytes(err: Any) -> bytes:
    """The runtime's bincode serialisation of an RPC-rendered error, for the shape this project meets.

    Supports `{"InstructionError": [index, {"Custom": code}]}` (a program's own error: what failed swaps
    carry); bincode writes an enum's variant index as a little-endian u32, a u8 as one byte.

    Raises:
        ConversionError: any other error shape.
    """
    if isinstance(err, Mapping) and set(err) == {"InstructionError"}:
        position, inner = err["InstructionError"]
        if isinstance(inner, Mapping) and set(inner) == {"Custom"}:
            return struct.pack("<IBII", _INSTRUCTION_ERROR, position, _CUSTOM, inner["Custom"])
    raise ConversionError(f"cannot serialise the transaction error {err!r}: only an instruction's custom error")
