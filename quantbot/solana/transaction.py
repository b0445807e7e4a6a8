"""The normalised transaction: one shape for every RPC encoding and for Yellowstone/Geyser updates.

`normalise.py` builds it from `json`, `jsonParsed`, `base64` and Geyser-shaped input; decoders read only
this. Account indexes are resolved to base58 keys (loaded lookup-table addresses included), instruction
data is kept in its wire text and decoded to bytes only when a decoder asks (most instructions are never
looked at), inner instructions carry their stack height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from quantbot.solana.codec import b58decode


class Instruction:
    """One instruction, outer or inner, with accounts resolved to base58 keys on first use.

    `data` is decoded on first access from `data_b58` (JSON encodings) unless the encoding carried raw
    bytes (base64 messages). `parsed` holds the RPC's `jsonParsed` rendering when it replaced the raw
    data (System, SPL Token and similar programs); `data` is then empty. Normalisation checks account
    indexes against the key list, so resolving them later cannot fail.
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
        indexes: list[int] | None = None,
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
        return len(indexes) if type(indexes) is list else len(self.accounts)

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
    `pre_balances`/`post_balances` are lamports per entry of `account_keys`.
    """

    signature: str
    slot: int | None
    block_time: int | None
    err: Any
    fee: int
    account_keys: list[str]
    signers: list[str]
    instructions: list[Instruction]
    inner: list[list[Instruction]]
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
