"""The normalised transaction: one shape for every RPC encoding and for Yellowstone/Geyser updates.

`normalise.py` builds it from `json`, `jsonParsed`, `base64` and Geyser-shaped input; decoders read only
this. Account indexes are resolved to base58 keys (loaded lookup-table addresses included), instruction
data is kept in its wire text and decoded to bytes only when a decoder asks (most instructions are never
looked at), inner instructions carry their stack height and, in the usual JSON shapes, are checked at
once but built one by one as they are read (`InstructionList`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast, overload

from quantbot.solana.codec import b58decode

_PROGRAM_ID = operator.attrgetter("program_id")
_STACK_HEIGHT = operator.attrgetter("stack_height")


class Instruction:
    """One instruction, outer or inner, with accounts resolved to base58 keys on first use.

    `data` is decoded on first access from `data_b58` (JSON encodings) unless the encoding carried raw
    bytes (base64 messages). `parsed` holds the RPC's `jsonParsed` rendering when it replaced the raw
    data (System, SPL Token and similar programs); `data` is then empty. Normalisation checks account
    indexes (a list, or `bytes` from binary encodings) against the key list, so resolving them later
    cannot fail; `account(position)` resolves a single one.
    """

    __slots__ = ("_accounts", "_indexes", "_keys", "data_b58", "parsed", "program_id", "raw", "stack_height")

    def __init__(  # noqa: PLR0917 - positional on purpose: normalisation builds millions of these
        self,
        program_id: str,
        accounts: list[str] | None = None,
        data_b58: str | None = None,
        raw: bytes | None = None,
        stack_height: int | None = None,
        parsed: dict[str, Any] | None = None,
        indexes: list[int] | bytes | None = None,
        keys: list[str] | None = None,
    ) -> None:
        self.program_id = program_id
        self._accounts = accounts
        self._indexes = indexes
        self._keys = keys
        self.data_b58 = data_b58
        self.raw = raw
        # Anything but an int (hostile input) is an unknown height.
        self.stack_height = stack_height if type(stack_height) is int else None
        self.parsed = parsed

    @property
    def accounts(self) -> list[str]:
        """The instruction's accounts, as base58 keys."""
        accounts = self._accounts
        if accounts is None:
            keys = self._keys or []
            try:
                accounts = [keys[i] for i in self._indexes or ()]
            except (IndexError, TypeError):
                accounts = []  # an index outside the key list: a malformed instruction names no account
            self._accounts = accounts
        return accounts

    @property
    def num_accounts(self) -> int:
        """How many accounts the instruction names (without resolving them)."""
        if self._accounts is not None:
            return len(self._accounts)
        indexes = self._indexes
        return len(indexes) if type(indexes) is bytes or type(indexes) is list else len(self.accounts)

    def account(self, position: int) -> str | None:
        """The account at `position`, or None when the instruction names fewer.

        Decoders read two or three accounts of instructions that name twenty: this resolves only the one
        asked for (the whole list is resolved, and kept, only when it already was or an index is bad).
        """
        accounts = self._accounts
        if accounts is None:
            indexes, keys = self._indexes, self._keys
            if indexes is not None and keys is not None and 0 <= position < len(indexes):
                try:
                    return keys[indexes[position]]
                except (IndexError, TypeError):
                    pass  # malformed: let `accounts` decide, as it does for the whole list
            accounts = self.accounts
        return accounts[position] if 0 <= position < len(accounts) else None

    @property
    def data(self) -> bytes:
        """The instruction data as bytes (empty when undecodable or replaced by `parsed`)."""
        raw = self.raw
        if raw is None:
            text = self.data_b58
            try:
                raw = b58decode(text) if text else b""
            except (ValueError, AttributeError, TypeError):
                raw = b""  # not base58 text: a malformed instruction carries no data
            self.raw = raw
        return raw

    def __repr__(self) -> str:
        return f"Instruction({self.program_id!r}, accounts={self.num_accounts}, height={self.stack_height})"


class InstructionList(Sequence[Instruction]):
    """Instructions (a transaction's outer ones, or those under one of them) built when first read.

    Normalisation checks every JSON entry and reads their program ids (`program_ids`, which the decoder
    scans); the decoder then reads only a few instructions (a known program's, its events), so most are
    never built. An instruction, once built, is kept: it is the same object on every read. `build`
    makes one from its entry and program id; `default_height` is the stack height of an entry without
    one (1 for outer instructions, unknown for inner ones), as `build` reads it.
    """

    __slots__ = ("_build", "_built", "_default_height", "_entries", "_heights", "program_ids")

    def __init__(
        self,
        entries: list[Any],
        program_ids: list[str],
        build: Callable[[Any, str], Instruction],
        default_height: int | None = None,
    ) -> None:
        self._entries = entries
        self.program_ids = program_ids
        """The program id of each instruction, in order."""
        self._build = build
        self._default_height = default_height
        self._built: list[Instruction | None] = [None] * len(entries)
        self._heights: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Instruction: ...

    @overload
    def __getitem__(self, index: slice) -> list[Instruction]: ...

    def __getitem__(self, index: int | slice) -> Instruction | list[Instruction]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self._entries)))]
        found = self._built[index]
        if found is None:
            found = self._built[index] = self._build(self._entries[index], self.program_ids[index])
        return found

    def __iter__(self) -> Iterator[Instruction]:
        built = self._built
        if None in built:  # build the rest at once, then iterate the list itself (in C)
            for position, instruction in enumerate(built):
                if instruction is None:
                    built[position] = self._build(self._entries[position], self.program_ids[position])
        return iter(cast("list[Instruction]", built))

    @property
    def stack_heights(self) -> list[int | None]:
        """Each instruction's stack height (None when unknown), read from the entries without building them."""
        heights = self._heights
        if heights is None:
            # As `Instruction` reads it: a missing or zero height is the default, a non-integer unknown.
            default = self._default_height
            heights = self._heights = []
            for entry in self._entries:
                height = entry.get("stackHeight") or default
                heights.append(height if type(height) is int else None)
        return heights

    def __repr__(self) -> str:
        return f"InstructionList({len(self._entries)} instructions, {self._built.count(None)} not built)"


def program_ids_of(instructions: Sequence[Instruction]) -> list[str]:
    """The program ids of a list of instructions (an `InstructionList` has them without building any)."""
    if type(instructions) is InstructionList:
        return instructions.program_ids
    return list(map(_PROGRAM_ID, instructions)) if instructions else []


def stack_heights_of(instructions: Sequence[Instruction]) -> list[int | None]:
    """The stack heights of a list of instructions (an `InstructionList` has them without building any)."""
    if type(instructions) is InstructionList:
        return instructions.stack_heights
    return list(map(_STACK_HEIGHT, instructions))


class TokenBalance(NamedTuple):
    """One token account's balance before or after the transaction."""

    account_index: int
    account: str
    mint: str
    owner: str | None
    amount: int
    decimals: int | None


@dataclass(slots=True)
class Transaction:
    """A confirmed transaction with its status metadata, in one shape whatever the source encoding.

    `inner[i]` lists the inner instructions run under outer instruction `i`, in execution order.
    `instructions` and each `inner[i]` are lists or, from normalisation, `InstructionList`s, which
    build each instruction when first read.
    `pre_balances`/`post_balances` are lamports per entry of `account_keys`.
    """

    signature: str
    slot: int | None
    block_time: int | None
    err: Any
    fee: int
    account_keys: list[str]
    signers: list[str]
    instructions: Sequence[Instruction]
    inner: list[Sequence[Instruction]]
    logs: list[str] | None
    pre_balances: list[int]
    post_balances: list[int]
    pre_token_balances: list[TokenBalance] = field(default_factory=list)
    post_token_balances: list[TokenBalance] = field(default_factory=list)

    @property
    def fee_payer(self) -> str:
        """The first signer, who pays the fee; the trader unless an event names another signer."""
        return self.account_keys[0] if self.account_keys else ""

    @property
    def failed(self) -> bool:
        """Whether the transaction failed (its effects, but the fee, were rolled back)."""
        return self.err is not None
