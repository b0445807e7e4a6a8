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


def token_document(
    mint: str,
    facts: TokenFacts | None,
    exchanges: list[dict[str, object]],
    created_at: int,
    updated_at: int,
) -> dict[str, object]:
    """The `tokens` document of `mint`: the schema's token metadata shape, from what is known.

    Args:
        mint: the document's `_id`.
        facts: the chain's facts about the mint; None while they have not arrived (the document then holds
            only what trading showed: `exchanges` and the times).
        exchanges: one entry per pool the token traded in (`name`, `address`, `liquidityUsd`, `volume24h`,
            `priceImpact1000usd`, each present where known).
        created_at, updated_at: feed times (Unix seconds) the token was first seen and last updated.
    """
    document: dict[str, object] = {"_id": mint, "exchanges": exchanges}
    if facts is not None:
        document.update(
            {
                "decimals": facts.decimals,
                "totalSupply": str(facts.supply),
                "mintAuthority": facts.mint_authority,
                "freezeAuthority": facts.freeze_authority,
            }
        )
        if facts.symbol:
            document["symbol"] = facts.symbol
        if facts.name:
            document["name"] = facts.name
    document["createdAt"] = created_at
    document["updatedAt"] = updated_at
    return document
