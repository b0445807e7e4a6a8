"""Token facts: a mint's on-chain account and its Metaplex metadata, read from a recorded RPC answer.

(Skeleton: the parsers, encoders, contract analysis and document builder are being written.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What the chain says about one mint, from one `getMultipleAccounts` answer (an `accounts` frame).

    Attributes:
        mint: the mint address (the answer's JSON-RPC id).
        program: `spl_token` or `token_2022` (the mint account's owner).
        decimals, supply: the mint's decimals and raw total supply.
        mint_authority, freeze_authority: None when absent (renounced / not freezable).
        name, symbol, uri: from Token-2022's token-metadata extension, else the Metaplex metadata account.
        update_authority: the metadata's update authority; None when there is none.
        mutable: whether the metadata can still change (Metaplex `is_mutable`; Token-2022: an update authority).
        transfer_fee_bps: Token-2022's transfer-fee extension (the newer fee), None without it.
        metadata: `description`, `image`, `externalUrl` from the URI's JSON where its content is in the URI
            itself (a `data:` URI); empty otherwise.
        received_ns: the frame's receive time.
        position: the frame's position.
    """

    mint: str
    program: str
    decimals: int
    supply: int
    mint_authority: str | None
    freeze_authority: str | None
    name: str | None = None
    symbol: str | None = None
    uri: str | None = None
    update_authority: str | None = None
    mutable: bool | None = None
    transfer_fee_bps: int | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    received_ns: int = 0
    position: str = ""
