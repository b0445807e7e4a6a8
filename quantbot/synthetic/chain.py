"""Solana building blocks for synthetic transactions: program ids, instruction data, events, and `TxBuilder`.

`TxBuilder` records a transaction the way the runtime executes it: every `enter`/`call` appends the
instruction (outer, or inner with its stack height) *and* its `Program <id> invoke [n]` log line, every
`leave` its `consumed ... of ...` and `success` lines, so instructions, inner instructions and logs agree
by construction. Lamport and token-balance changes are declared beside them; `finish` renders the whole
thing as a `getTransaction` result in the `json`, `jsonParsed` or `base64` encoding, with the account keys
ordered as a real message orders them (signer, writable, read-only, then lookup-table addresses) and the
header counts to match. A failed transaction (`fail`) keeps what ran up to the failure, rolls every balance back but the
fee, and records nothing for the instructions after it, as the runtime does.

Event payloads are packed with `EventPacker`, whose field order and types come from the decoders' own
`Layout`s, so a synthetic event is what the decoder expects by construction.
"""

from __future__ import annotations

import base64
import operator
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from quantbot.solana.borsh import Layout
from quantbot.solana.codec import b58decode, b58encode, pubkey_str
from quantbot.solana.context import ASSOCIATED_TOKEN_PROGRAM, SYSTEM_PROGRAM, TOKEN_PROGRAM
from quantbot.solana.events import EVENT_IX_TAG, event_discriminator
from quantbot.solana.programs.generic import COMPUTE_BUDGET_PROGRAM

__all__ = ["COMPUTE_BUDGET_PROGRAM", "SYSTEM_PROGRAM", "TOKEN_PROGRAM"]

ATA_PROGRAM = ASSOCIATED_TOKEN_PROGRAM
MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
NATIVE_PROGRAMS = frozenset({SYSTEM_PROGRAM, COMPUTE_BUDGET_PROGRAM})
"""Programs whose invocations log no `consumed ... compute units` line."""

TOKEN_ACCOUNT_RENT = 2_039_280
"""Lamports that keep a 165-byte SPL token account rent-exempt."""
PROGRAM_ACCOUNT_LAMPORTS = 1_141_440
"""Lamports of an upgradeable BPF program account (its 36-byte pointer to the program data)."""
KNOWN_LAMPORTS = {
    SYSTEM_PROGRAM: 1,
    COMPUTE_BUDGET_PROGRAM: 1,
    TOKEN_PROGRAM: 934_087_680,
    ATA_PROGRAM: 731_913_600,
    MEMO_PROGRAM: 521_498_880,
}
"""Lamports of the native and SPL program accounts, as mainnet shows them."""
SIGNATURE_FEE = 5_000
"""Base fee per signature, in lamports."""
MICRO_LAMPORTS = 1_000_000
"""Compute-unit prices are in micro-lamports per unit."""

# SPL Token instruction tags (token program's `instruction.rs`).
_TOKEN_TRANSFER, _TOKEN_CLOSE_ACCOUNT, _TOKEN_TRANSFER_CHECKED = 3, 9, 12
_TOKEN_SYNC_NATIVE, _TOKEN_INITIALIZE_ACCOUNT3, _TOKEN_GET_ACCOUNT_DATA_SIZE, _TOKEN_IMMUTABLE_OWNER = 17, 18, 21, 22
_SYSTEM_TRANSFER = 2
_CB_UNIT_LIMIT, _CB_UNIT_PRICE = 2, 3
_TOKEN_ACCOUNT_SPACE = 165
_IMMUTABLE_OWNER_EXTENSION = 7
_U8_U64 = struct.Struct("<BQ")
_U8_U64_U8 = struct.Struct("<BQB")
_U32_U64 = struct.Struct("<IQ")
_U8_U32 = struct.Struct("<BI")

SYNC_NATIVE = bytes([_TOKEN_SYNC_NATIVE])
CLOSE_ACCOUNT = bytes([_TOKEN_CLOSE_ACCOUNT])
IMMUTABLE_OWNER = bytes([_TOKEN_IMMUTABLE_OWNER])
GET_ACCOUNT_DATA_SIZE = bytes([_TOKEN_GET_ACCOUNT_DATA_SIZE]) + struct.pack("<H", _IMMUTABLE_OWNER_EXTENSION)
"""SPL Token `GetAccountDataSize` for an account with the immutable-owner extension."""
ATA_CREATE_IDEMPOTENT = b"\x01"
CREATE_TOKEN_ACCOUNT = struct.pack("<IQQ", 0, TOKEN_ACCOUNT_RENT, _TOKEN_ACCOUNT_SPACE) + b58decode(TOKEN_PROGRAM)
"""System `CreateAccount` of a rent-exempt token account owned by the token program."""
ACCOUNT_SIZE_RETURN_LOG = f"Program return: {TOKEN_PROGRAM} pQAAAAAAAAA="
"""The return-data log line of `GetAccountDataSize` (165 as a little-endian u64, in base64)."""


def log_lines(*texts: str) -> tuple[str, ...]:
    """`Program log:` lines, prepared once for the invocations that print them."""
    return tuple("Program log: " + text for text in texts)


def token_transfer(amount: int) -> bytes:
    """SPL Token `Transfer` data."""
    return _U8_U64.pack(_TOKEN_TRANSFER, amount)


def token_transfer_checked(amount: int, decimals: int) -> bytes:
    """SPL Token `TransferChecked` data."""
    return _U8_U64_U8.pack(_TOKEN_TRANSFER_CHECKED, amount, decimals)


def system_transfer(lamports: int) -> bytes:
    """System program `Transfer` data."""
    return _U32_U64.pack(_SYSTEM_TRANSFER, lamports)


def unit_limit(units: int) -> bytes:
    """Compute Budget `SetComputeUnitLimit` data."""
    return _U8_U32.pack(_CB_UNIT_LIMIT, units)


def unit_price(micro_lamports: int) -> bytes:
    """Compute Budget `SetComputeUnitPrice` data."""
    return _U8_U64.pack(_CB_UNIT_PRICE, micro_lamports)


def initialize_account3(owner_raw: bytes) -> bytes:
    """SPL Token `InitializeAccount3` data (the owner rides in the data)."""
    return bytes([_TOKEN_INITIALIZE_ACCOUNT3]) + owner_raw


class EventPacker:
    """Packs an Anchor event from the decoder's `Layout`: discriminator, then the first fields, in order.

    Only fixed-size fields are packed (the layouts' trailing string fields are appended by the caller);
    public keys are given as 32 raw bytes, u128 values as 16 little-endian bytes (see `u128`).
    """

    __slots__ = ("discriminator", "names", "pick", "struct")

    def __init__(self, layout: Layout, count: int | None = None) -> None:
        fields = layout.fields[: len(layout.fields) if count is None else count]
        codes = {"u8": "B", "bool": "?", "u16": "H", "i32": "i", "u64": "Q", "i64": "q", "pubkey": "32s", "u128": "16s"}
        fmt = "<"
        for name, kind in fields:
            if kind not in codes:
                raise ValueError(f"event field `{name}` of type `{kind}` is not packable")
            fmt += codes[kind]
        self.discriminator = event_discriminator(layout.name)
        self.names = tuple(name for name, _ in fields)
        self.pick = operator.itemgetter(*self.names)
        self.struct = struct.Struct(fmt)

    def pack(self, values: dict[str, Any]) -> bytes:
        """Discriminator and payload of the event with `values` (every packed field must be given)."""
        return self.discriminator + self.struct.pack(*self.pick(values))


def u128(value: int) -> bytes:
    """A u128 event field's 16 little-endian bytes."""
    return value.to_bytes(16, "little")


def cpi_event_data(event: bytes) -> bytes:
    """The data of an Anchor `emit_cpi!` self-invocation carrying `event` (discriminator + payload)."""
    return EVENT_IX_TAG + event


def b64(data: bytes) -> str:
    """Standard base64 text, as `Program data:` log lines carry events."""
    return base64.b64encode(data).decode("ascii")


Instruction = tuple[str, Sequence[str], bytes, "str | None", "int | None"]
"""A recorded instruction: program, account keys, data, its base58 text if known, stack height (inner only)."""


_B58_CONSTANTS: dict[bytes, str] = {}


def b58_constant(data: bytes) -> str:
    """Base58 text of instruction data that recurs (cached: a bounded set of constants)."""
    text = _B58_CONSTANTS.get(data)
    if text is None:
        text = _B58_CONSTANTS[data] = b58encode(data)
    return text


class TokenBalance:
    """A token account's balance before and after (None: the account does not exist at that point)."""

    __slots__ = ("decimals", "mint", "owner", "post", "pre")

    def __init__(self, mint: str, owner: str, decimals: int, pre: int | None, post: int | None) -> None:
        self.mint = mint
        self.owner = owner
        self.decimals = decimals
        self.pre = pre
        self.post = post


def ui_amount_string(amount: int, decimals: int) -> str:
    """The RPC's `uiAmountString`: the amount in whole tokens, without trailing zeros."""
    text = str(amount)
    if not decimals:
        return text
    if len(text) <= decimals:
        text = "0" * (decimals - len(text) + 1) + text
    whole, fraction = text[:-decimals], text[-decimals:].rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _compact_u16(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_U64_AT = struct.Struct("<Q")
_SYSTEM_CREATE_ACCOUNT = struct.Struct("<IQQ32s")


def _ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": amount / 10**decimals if amount else None,
        "uiAmountString": ui_amount_string(amount, decimals),
    }


def _parsed_info(program: str, accounts: Sequence[str], data: bytes) -> tuple[str, str, Any] | None:
    """(program name, instruction type, info) as `jsonParsed` renders the instruction; None: left raw."""
    if program == SYSTEM_PROGRAM:
        tag = int.from_bytes(data[:4], "little")
        if tag == _SYSTEM_TRANSFER:
            lamports = _U64_AT.unpack_from(data, 4)[0]
            return "system", "transfer", {"destination": accounts[1], "lamports": lamports, "source": accounts[0]}
        if tag == 0:
            _, lamports, space, owner = _SYSTEM_CREATE_ACCOUNT.unpack(data)
            info = {"lamports": lamports, "newAccount": accounts[1], "owner": pubkey_str(owner), "source": accounts[0]}
            return "system", "createAccount", {**info, "space": space}
        return None
    if program == TOKEN_PROGRAM:
        tag = data[0]
        if tag == _TOKEN_TRANSFER:
            amount = str(_U64_AT.unpack_from(data, 1)[0])
            info = {"amount": amount, "authority": accounts[2], "destination": accounts[1], "source": accounts[0]}
            return "spl-token", "transfer", info
        if tag == _TOKEN_TRANSFER_CHECKED:
            source, mint, destination, authority = accounts[:4]
            amount, decimals = _U64_AT.unpack_from(data, 1)[0], data[9]
            info = {"authority": authority, "destination": destination, "mint": mint, "source": source}
            return "spl-token", "transferChecked", {**info, "tokenAmount": _ui_token_amount(amount, decimals)}
        if tag == _TOKEN_SYNC_NATIVE:
            return "spl-token", "syncNative", {"account": accounts[0]}
        if tag == _TOKEN_CLOSE_ACCOUNT:
            info = {"account": accounts[0], "destination": accounts[1], "owner": accounts[2]}
            return "spl-token", "closeAccount", info
        if tag == _TOKEN_GET_ACCOUNT_DATA_SIZE:
            return "spl-token", "getAccountDataSize", {"extensionTypes": ["immutableOwner"], "mint": accounts[0]}
        if tag == _TOKEN_IMMUTABLE_OWNER:
            return "spl-token", "initializeImmutableOwner", {"account": accounts[0]}
        if tag == _TOKEN_INITIALIZE_ACCOUNT3:
            info = {"account": accounts[0], "mint": accounts[1], "owner": pubkey_str(data[1:33])}
            return "spl-token", "initializeAccount3", info
        return None
    if program == ASSOCIATED_TOKEN_PROGRAM:
        payer, account, wallet, mint, system, token = accounts[:6]
        info = {"account": account, "mint": mint, "source": payer, "systemProgram": system, "tokenProgram": token}
        return "spl-associated-token-account", "createIdempotent" if data else "create", {**info, "wallet": wallet}
    if program == MEMO_PROGRAM:
        return "spl-memo", "", data.decode()
    return None


def _parsed_instruction(
    program: str, accounts: Sequence[str], data: bytes, text: str | None, height: int | None
) -> dict[str, Any]:
    """An instruction as the `jsonParsed` encoding renders it: parsed where the RPC can, else raw with keys."""
    found = _parsed_info(program, accounts, data)
    if found is None:
        return {
            "accounts": list(accounts),
            "data": b58encode(data) if text is None else text,
            "programId": program,
            "stackHeight": height,
        }
    name, kind, info = found
    parsed = info if not kind else {"info": info, "type": kind}
    return {"parsed": parsed, "program": name, "programId": program, "stackHeight": height}


class TxBuilder:
    """Records one transaction as executed; `finish` renders it as a `getTransaction` result.

    Args:
        fee_payer: the signer who pays the fee (account key 0).
        unit_limit: the compute-unit budget the logs count down from.
    """

    __slots__ = (
        "_depth_stack",
        "failed_at",
        "fee",
        "fee_payer",
        "inner",
        "lamports",
        "loaded",
        "logs",
        "outer",
        "readonly",
        "remaining",
        "token_balances",
        "units_used",
        "writable",
    )

    def __init__(self, fee_payer: str, unit_limit: int) -> None:
        self.fee_payer = fee_payer
        self.writable: dict[str, None] = {}
        self.readonly: dict[str, None] = {}
        self.loaded: dict[str, tuple[str, int, bool]] = {}
        self.outer: list[Instruction] = []
        self.inner: list[list[Instruction]] = []
        self.logs: list[str] = []
        self.lamports: dict[str, list[int]] = {}
        self.token_balances: dict[str, TokenBalance] = {}
        self.remaining = unit_limit
        self.units_used = 0
        self._depth_stack: list[tuple[str, int]] = []
        self.failed_at: tuple[int, int] | None = None
        self.fee = SIGNATURE_FEE

    # ------------------------------------------------------------------------------------------- keys

    def w(self, *keys: str) -> None:
        """Declare writable accounts."""
        readonly = self.readonly
        for key in keys:
            if key in readonly:
                del readonly[key]
            self.writable[key] = None

    def r(self, *keys: str) -> None:
        """Declare read-only accounts (a key declared writable too stays writable)."""
        writable = self.writable
        for key in keys:
            if key not in writable:
                self.readonly[key] = None

    def lookup(self, table: str, index: int, key: str, writable: bool) -> None:
        """Load `key` from address lookup table `table` at `index` instead of listing it in the message."""
        self.loaded[key] = (table, index, writable)

    # ---------------------------------------------------------------------------------------- balances

    def set_lamports(self, key: str, pre: int, post: int | None = None) -> None:
        """Lamports of an account before and after (after defaults to before)."""
        self.lamports[key] = [pre, pre if post is None else post]

    def move_lamports(self, key: str, delta: int, default_pre: int = 0) -> None:
        """Add `delta` to an account's lamports after the transaction (declaring it if new)."""
        entry = self.lamports.get(key)
        if entry is None:
            self.lamports[key] = [default_pre, default_pre + delta]
        else:
            entry[1] += delta

    def token(self, account: str, mint: str, owner: str, *, decimals: int, pre: int | None, post: int | None) -> None:
        """A token account's balance before and after (None: created, or closed, in this transaction)."""
        self.token_balances[account] = TokenBalance(mint, owner, decimals, pre, post)

    # ------------------------------------------------------------------------------------ instructions

    def enter(self, program: str, accounts: Sequence[str], data: bytes, text: str | None = None) -> bool:
        """Invoke `program`: record the instruction and its `invoke` line; returns False once failed.

        After a failure, outer instructions are still recorded (they are in the message) but nothing
        runs: no logs, no inner instructions.
        """
        depth = self._record(program, accounts, data, text)
        if self.failed_at is not None:
            return False
        self.logs.append(f"Program {program} invoke [{depth + 1}]")
        self._depth_stack.append((program, self.remaining))
        return True

    def _record(self, program: str, accounts: Sequence[str], data: bytes, text: str | None) -> int:
        """Record an instruction of `program` at the current depth (outer at 0); returns that depth."""
        depth = len(self._depth_stack)
        if program not in self.writable:
            self.readonly[program] = None
        if depth:
            self.inner[-1].append((program, accounts, data, text, depth + 1))
        else:
            self.outer.append((program, accounts, data, text, None))
            self.inner.append([])
        return depth

    def leave(self, units: int, before_success: Iterable[str] = ()) -> None:
        """Return from the innermost invocation, which used `units` itself (its callees' are counted)."""
        if self.failed_at is not None:
            return
        program, start = self._depth_stack.pop()
        remaining = self.remaining = self.remaining - units
        self.units_used += units
        logs = self.logs
        if program not in NATIVE_PROGRAMS:
            logs.append(f"Program {program} consumed {start - remaining} of {start} compute units")
        logs.extend(before_success)
        logs.append(f"Program {program} success")

    def call(
        self,
        program: str,
        accounts: Sequence[str],
        data: bytes,
        units: int,
        logs: Sequence[str] = (),
        *,
        text: str | None = None,
        before_success: Sequence[str] = (),
    ) -> None:
        """A leaf invocation: `enter`, its log lines (whole lines, see `log_lines`), `leave` (written out
        here rather than calling them: most instructions of a generated feed are leaves)."""
        depth = self._record(program, accounts, data, text)
        if self.failed_at is not None:
            return
        out = self.logs
        out.append(f"Program {program} invoke [{depth + 1}]")
        if logs:
            out.extend(logs)
        start = self.remaining
        self.remaining = start - units
        self.units_used += units
        if program not in NATIVE_PROGRAMS:
            out.append(f"Program {program} consumed {units} of {start} compute units")
        if before_success:
            out.extend(before_success)
        out.append(f"Program {program} success")

    def log(self, text: str) -> None:
        """A `Program log:` line in the current invocation."""
        if self.failed_at is None:
            self.logs.append("Program log: " + text)

    def data_log(self, event: bytes) -> None:
        """A `Program data:` line (an `emit!` event) in the current invocation."""
        if self.failed_at is None:
            self.logs.append("Program data: " + b64(event))

    def fail(self, code: int, units: int, message: str | None = None) -> None:
        """The innermost invocation fails with custom error `code`; the transaction stops there."""
        if self.failed_at is not None:
            return
        program, start = self._depth_stack[-1]
        if message is not None:
            self.logs.append("Program log: " + message)
        self.remaining -= units
        self.units_used += units
        self.logs.append(f"Program {program} consumed {start - self.remaining} of {start} compute units")
        self.logs.append(f"Program {program} failed: custom program error: {code:#x}")
        self.failed_at = (len(self.outer) - 1, code)
        self._depth_stack.clear()

    # ------------------------------------------------------------------------------------------ render

    def _ordered_keys(self) -> tuple[list[str], list[str], list[str], int]:
        """Static keys (signer, writable, read-only), loaded writable, loaded read-only, read-only count."""
        payer = self.fee_payer
        loaded = self.loaded
        if loaded:
            writable = [k for k in self.writable if k != payer and k not in loaded]
            readonly = [k for k in self.readonly if k not in loaded]
            loaded_w = [k for k, (_, _, wr) in loaded.items() if wr]
            loaded_r = [k for k, (_, _, wr) in loaded.items() if not wr]
        else:
            writable = [k for k in self.writable if k != payer]
            readonly = list(self.readonly)
            loaded_w, loaded_r = [], []
        return [payer, *writable, *readonly], loaded_w, loaded_r, len(readonly)

    def finish(
        self,
        signature: str,
        *,
        slot: int,
        block_time: int,
        blockhash: str,
        request_id: int,
        encoding: str = "json",
        version: int | str = 0,
        signature_raw: bytes = b"",
        blockhash_raw: bytes = b"",
        key_bytes: dict[str, bytes] | None = None,
        default_lamports: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """The JSON-RPC `getTransaction` response of the recorded transaction.

        Args:
            signature: the transaction's signature (base58).
            slot: its slot.
            block_time: its block time (Unix seconds).
            blockhash: the message's recent blockhash (base58).
            request_id: the JSON-RPC request id.
            encoding: `json`, `jsonParsed` (System, SPL Token, associated-token and memo instructions
                rendered as the RPC parses them, account keys as objects) or `base64` (the message
                serialized in the wire format).
            version: 0 for a v0 message, `"legacy"` for a legacy one (which cannot load lookup tables).
            signature_raw: the 64 signature bytes (needed for `base64`).
            blockhash_raw: the 32 blockhash bytes (needed for `base64`).
            key_bytes: raw bytes of account keys, where known (`base64` decodes the others).
            default_lamports: lamports of accounts the transaction does not move (default: programs').
        """
        static, loaded_w, loaded_r, readonly_count = self._ordered_keys()
        keys = static + loaded_w + loaded_r
        index = {k: i for i, k in enumerate(keys)}
        failed = self.failed_at is not None

        lamports = self.lamports
        known = default_lamports or KNOWN_LAMPORTS
        pre_balances = []
        post_balances = []
        for key in keys:
            entry = lamports.get(key)
            if entry is None:
                value = known.get(key, PROGRAM_ACCOUNT_LAMPORTS)
                pre_balances.append(value)
                post_balances.append(value)
            else:
                pre_balances.append(entry[0])
                post_balances.append(entry[1])
        if failed:
            post_balances = pre_balances.copy()
        post_balances[0] -= self.fee

        pre_tokens = []
        post_tokens = []
        for account, balance in self.token_balances.items():
            i = index[account]
            mint, owner, decimals, pre, post = balance.mint, balance.owner, balance.decimals, balance.pre, balance.post
            scale = 10**decimals
            if pre is not None:
                pre_tokens.append(
                    {
                        "accountIndex": i,
                        "mint": mint,
                        "owner": owner,
                        "programId": TOKEN_PROGRAM,
                        "uiTokenAmount": {
                            "amount": str(pre),
                            "decimals": decimals,
                            "uiAmount": pre / scale if pre else None,
                            "uiAmountString": ui_amount_string(pre, decimals),
                        },
                    }
                )
            if failed:
                post = pre
            if post is not None:
                post_tokens.append(
                    {
                        "accountIndex": i,
                        "mint": mint,
                        "owner": owner,
                        "programId": TOKEN_PROGRAM,
                        "uiTokenAmount": {
                            "amount": str(post),
                            "decimals": decimals,
                            "uiAmount": post / scale if post else None,
                            "uiAmountString": ui_amount_string(post, decimals),
                        },
                    }
                )

        get = index.__getitem__
        parsed = encoding == "jsonParsed"
        inner_json = []
        for position, group in enumerate(self.inner):
            if group:
                inner_json.append(
                    {
                        "index": position,
                        "instructions": [
                            _parsed_instruction(program, accounts, data, text, height)
                            if parsed
                            else {
                                "accounts": list(map(get, accounts)),
                                "data": b58encode(data) if text is None else text,
                                "programIdIndex": get(program),
                                "stackHeight": height,
                            }
                            for program, accounts, data, text, height in group
                        ],
                    }
                )

        err: dict[str, Any] | None = None
        if self.failed_at is not None:
            outer, code = self.failed_at
            err = {"InstructionError": [outer, {"Custom": code}]}
        meta: dict[str, Any] = {
            "computeUnitsConsumed": self.units_used,
            "err": err,
            "fee": self.fee,
            "innerInstructions": inner_json,
            "loadedAddresses": {"readonly": loaded_r, "writable": loaded_w},
            "logMessages": self.logs,
            "postBalances": post_balances,
            "postTokenBalances": post_tokens,
            "preBalances": pre_balances,
            "preTokenBalances": pre_tokens,
            "rewards": [],
            "status": {"Ok": None} if err is None else {"Err": err},
        }
        lookups = self._lookups(loaded_w, loaded_r)
        header = {
            "numReadonlySignedAccounts": 0,
            "numReadonlyUnsignedAccounts": readonly_count,
            "numRequiredSignatures": 1,
        }
        transaction: Any
        message: dict[str, Any]
        if encoding == "base64":
            wire = self._wire(
                static,
                index=index,
                header=header,
                lookups=lookups,
                version=version,
                signature_raw=signature_raw,
                blockhash_raw=blockhash_raw,
                key_bytes=key_bytes or {},
            )
            transaction = [base64.b64encode(wire).decode("ascii"), "base64"]
        elif parsed:
            writable = self.writable
            loaded = self.loaded
            message = {
                "accountKeys": [
                    {
                        "pubkey": key,
                        "signer": position == 0,
                        "source": "lookupTable" if key in loaded else "transaction",
                        "writable": key in writable,
                    }
                    for position, key in enumerate(keys)
                ],
                "instructions": [
                    _parsed_instruction(program, accounts, data, text, None)
                    for program, accounts, data, text, _ in self.outer
                ],
                "recentBlockhash": blockhash,
            }
            if version != "legacy":
                message["addressTableLookups"] = lookups
            transaction = {"message": message, "signatures": [signature]}
        else:
            message = {
                "accountKeys": static,
                "header": header,
                "instructions": [
                    {
                        "accounts": list(map(get, accounts)),
                        "data": b58encode(data) if text is None else text,
                        "programIdIndex": get(program),
                        "stackHeight": None,
                    }
                    for program, accounts, data, text, _ in self.outer
                ],
                "recentBlockhash": blockhash,
            }
            if version != "legacy":
                message["addressTableLookups"] = lookups
            transaction = {"message": message, "signatures": [signature]}
        if version == "legacy":
            del meta["loadedAddresses"]
        result = {"blockTime": block_time, "meta": meta, "slot": slot, "transaction": transaction, "version": version}
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _lookups(self, loaded_w: list[str], loaded_r: list[str]) -> list[dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        for key in loaded_w + loaded_r:
            table, position, writable = self.loaded[key]
            entry = tables.get(table)
            if entry is None:
                entry = tables[table] = {"accountKey": table, "readonlyIndexes": [], "writableIndexes": []}
            entry["writableIndexes" if writable else "readonlyIndexes"].append(position)
        return list(tables.values())

    def _wire(
        self,
        static: list[str],
        *,
        index: dict[str, int],
        header: dict[str, int],
        lookups: list[dict[str, Any]],
        version: int | str,
        signature_raw: bytes,
        blockhash_raw: bytes,
        key_bytes: dict[str, bytes],
    ) -> bytes:
        """The serialized transaction: signatures, then the legacy or v0 message."""
        out = bytearray(_compact_u16(1))
        out += signature_raw
        if version != "legacy":
            out.append(0x80)  # versioned message, version 0
        out += bytes((header["numRequiredSignatures"], 0, header["numReadonlyUnsignedAccounts"]))
        out += _compact_u16(len(static))
        for key in static:
            raw = key_bytes.get(key)
            out += raw if raw is not None else b58decode(key)
        out += blockhash_raw
        out += _compact_u16(len(self.outer))
        for program, accounts, data, _, _ in self.outer:
            out.append(index[program])
            out += _compact_u16(len(accounts))
            out += bytes(index[a] for a in accounts)
            out += _compact_u16(len(data))
            out += data
        if version != "legacy":
            out += _compact_u16(len(lookups))
            for table in lookups:
                table_key = table["accountKey"]
                raw = key_bytes.get(table_key)
                out += raw if raw is not None else b58decode(table_key)
                out += _compact_u16(len(table["writableIndexes"]))
                out += bytes(table["writableIndexes"])
                out += _compact_u16(len(table["readonlyIndexes"]))
                out += bytes(table["readonlyIndexes"])
        return bytes(out)
