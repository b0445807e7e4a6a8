"""Shared helpers for the decoder tests: the recorded mainnet corpus and a synthetic transaction builder.

The corpus lives in `shared/` beside the repository and is read in place, never copied.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from quantbot.solana.codec import b58encode, pubkey_str
from quantbot.solana.events import EVENT_IX_TAG
from quantbot.solana.normalise import parse_transactions
from quantbot.solana.transaction import Instruction, TokenBalance, Transaction

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "mainnet"
SIGNATURE = b58encode(bytes(range(64)))


@cache
def index() -> list[dict[str, Any]]:
    """The corpus's `index.json`: independently computed facts per transaction."""
    entries: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text())
    return entries


def corpus_files() -> list[Path]:
    """Every recorded transaction file (RPC and Geyser shapes)."""
    return sorted(p for p in CORPUS.glob("*.json") if p.name != "index.json")


def load(name: str) -> Transaction:
    """The one transaction recorded in corpus file `name`."""
    (tx,) = parse_transactions((CORPUS / name).read_bytes())
    return tx


def file_of(prefix: str) -> str:
    """The RPC-shaped corpus file whose signature starts with `prefix`."""
    (match,) = [p.name for p in corpus_files() if p.name.startswith(prefix) and ".geyser." not in p.name]
    return match


def key(n: int) -> str:
    """A deterministic, distinct public key for synthetic transactions."""
    return pubkey_str(n.to_bytes(2, "big") * 16)


def cpi_event_data(discriminator: bytes, payload: bytes) -> bytes:
    """Instruction data of an Anchor CPI event."""
    return EVENT_IX_TAG + discriminator + payload


def log_data_line(discriminator: bytes, payload: bytes) -> str:
    """A `Program data:` log line as Anchor's `emit!` prints it."""
    return "Program data: " + base64.b64encode(discriminator + payload).decode()


def ix(program_id: str, accounts: Sequence[str], data: bytes = b"", height: int | None = None) -> Instruction:
    """An instruction with raw data."""
    return Instruction(program_id, list(accounts), None, data, height)


def balance(index: int, keys: Sequence[str], mint: str, owner: str, amount: int, *, decimals: int = 6) -> TokenBalance:
    """A token balance entry for account `keys[index]`."""
    return TokenBalance(index, keys[index], mint, owner, amount, decimals)


def make_tx(
    keys: Sequence[str],
    instructions: Sequence[Instruction],
    inner: dict[int, list[Instruction]] | None = None,
    *,
    logs: Sequence[str] | None = None,
    lamports: tuple[Sequence[int], Sequence[int]] | None = None,
    tokens: tuple[Sequence[TokenBalance], Sequence[TokenBalance]] = ((), ()),
    fee: int = 5000,
    signers: int = 1,
) -> Transaction:
    """A synthetic successful transaction; `keys[0]` pays the fee (and by default spends nothing else)."""
    pre, post = lamports if lamports is not None else ([fee] + [0] * (len(keys) - 1), [0] * len(keys))
    return Transaction(
        signature=SIGNATURE,
        slot=1,
        block_time=2,
        err=None,
        fee=fee,
        account_keys=list(keys),
        signers=list(keys[:signers]),
        instructions=list(instructions),
        inner=[list((inner or {}).get(i, [])) for i in range(len(instructions))],
        logs=list(logs) if logs is not None else None,
        pre_balances=list(pre),
        post_balances=list(post),
        pre_token_balances=list(tokens[0]),
        post_token_balances=list(tokens[1]),
    )
