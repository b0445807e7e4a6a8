"""The synthetic market's tokens on chain: each mint's account and its metadata, as bytes the programs would hold.

One `TokenAccounts` per traded mint, drawn from a generator seeded by the feed's seed and the mint alone, so
the accounts do not depend on the trades (nor the trades on them), and the synthetic feed's `accounts` frames
and the test peer's `getMultipleAccounts` answers hold the very same bytes.

The mix, after what mainnet shows (shares are per kind of token, see `quantbot.synthetic.market`):

- quote mints (wSOL, USDC, USDT): SPL Token with Metaplex metadata; wSOL without authorities and a supply
  field of 0 (the native mint is never minted), the dollar stables with mint and freeze authorities;
- majors: SPL Token, mostly renounced, rarely freezable, Metaplex metadata, half of it still mutable;
- AMM tokens: a third on Token-2022 (some with a transfer fee; most with the mint's own token metadata, the
  others with a Metaplex account), the rest on SPL Token with Metaplex metadata or none at all; authorities
  kept by about half;
- Pump.fun tokens (on a curve or graduated): a fixed billion-token supply, no authorities; SPL Token with an
  immutable Metaplex account (Pump.fun's `create`) or Token-2022 with its own metadata (`create_v2`).

URIs are `data:` URIs (base64 or percent-encoded JSON with a description, an image and a site) for most
tokens, so their documents carry `metadata`; the others point to https hosts that are never fetched. The
generated transactions still move every token through the SPL Token program and charge no transfer fee:
the accounts describe the mints, the trades are the venues' (`quantbot.synthetic.venues`).
"""

from __future__ import annotations

import base64
import random
import urllib.parse
from dataclasses import dataclass

import orjson
from solders.pubkey import Pubkey

from quantbot.models import WSOL_MINT
from quantbot.pricing import USDC_MINT, USDT_MINT
from quantbot.solana.context import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from quantbot.synthetic.market import PUMP_DECIMALS, PUMP_SUPPLY, SCALE, Token
from quantbot.tokens import (
    METADATA_PROGRAM,
    METAPLEX_URI_LEN,
    Account,
    TokenMetadata,
    accounts_response,
    encode_metaplex_metadata,
    encode_mint,
    encode_token_2022_mint,
    metadata_address,
    rent_exempt_lamports,
)

__all__ = ["QUOTE_MINTS", "TokenAccounts", "quote_accounts", "token_accounts"]

KEY_SIZE = 32
QUOTE_MINTS = (WSOL_MINT, USDC_MINT, USDT_MINT)
"""The quote mints every feed trades besides its own tokens."""
STABLE_SUPPLY_WHOLE = (1_000_000_000, 10_000_000_000)
"""Whole dollars of a stablecoin in circulation: a billion to ten billion, mainnet's order."""
MAJOR_SUPPLY_WHOLE = (100_000_000, 5_000_000_000)
"""Whole tokens of a major: 100 million to 5 billion (fits a u64 at 9 decimals)."""
AMM_SUPPLY_WHOLE = (1_000_000, 1_000_000_000)

# The mix, per kind: chances that a draw comes out so.
MAJOR_RENOUNCED, MAJOR_FREEZABLE, MAJOR_MUTABLE = 0.7, 0.1, 0.5
AMM_TOKEN_2022 = 0.35
"""Share of AMM tokens minted by Token-2022."""
AMM_TRANSFER_FEE = 0.4
"""Share of Token-2022 AMM tokens charging a transfer fee."""
TRANSFER_FEES_BPS = (25, 50, 100, 200, 500)
"""Transfer fees drawn: 0.25% to 5%."""
AMM_OWN_METADATA = 0.7
"""Share of Token-2022 AMM tokens whose metadata is the mint's own extension (else a Metaplex account)."""
AMM_NO_METADATA = 0.15
"""Share of SPL Token AMM tokens without any metadata account."""
AMM_MINT_AUTHORITY, AMM_FREEZABLE, AMM_MUTABLE = 0.5, 0.35, 0.6
PUMP_TOKEN_2022 = 0.4
"""Share of Pump.fun tokens created by `create_v2` (Token-2022 with its own metadata)."""
PUMP_TOKEN_2022_MUTABLE = 0.3
"""Share of those whose metadata keeps an update authority."""

# URIs: what the metadata's `uri` holds.
DATA_URI_BASE64, DATA_URI_PERCENT = 0.35, 0.25
"""Shares of base64 and percent-encoded `data:` URIs; the rest are https links (never fetched)."""
DATA_URI_SAFE = ",:/{}"
"""Characters a percent-encoded JSON `data:` URI leaves as they are (the rest of JSON's punctuation is encoded)."""
NAME_STEMS = (
    "Moon", "Pepe", "Doge", "Cat", "Sol", "Bonk", "Wif", "Frog", "Based", "Giga",
    "Turbo", "Shiba", "Ape", "Chad", "Lion", "Orca", "Nova", "Pixel", "Rocket", "Zen",
)  # fmt: skip
NAME_ENDINGS = ("coin", "inu", "dog", " AI", "swap", "fi", "verse", "", " Token", " Cash")
SYMBOL_LETTERS = (3, 5)
"""A symbol is three to five letters of the name, uppercased."""
TAKEN_SYMBOLS = frozenset({"SOL", "USDC", "USDT", "BONK", "WIF", "JUP", "PEPE", "DOGE", "SHIB"})
"""Real tokens' symbols: a synthetic memecoin drawn as one gets an `X` after it, so that no summary shows a
"SOL" that is not SOL."""
HOST = "quantbot.test"
"""RFC 2606's reserved `.test` domain: links of synthetic tokens lead nowhere real."""
ARWEAVE_ID_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenAccounts:
    """A mint's accounts: the mint account and its Metaplex metadata account (None: it has none).

    Attributes:
        mint: the mint address.
        mint_account: (owner program, data, lamports) of the mint.
        metadata: (owner program, data, lamports) of the account at `metadata_address(mint)`, or None.
    """

    mint: str
    mint_account: Account
    metadata: Account | None

    @property
    def metadata_address(self) -> str:
        """The Metaplex metadata PDA of the mint (where `metadata` lives, when it exists)."""
        return metadata_address(self.mint)

    def response(self, slot: int) -> str:
        """The `getMultipleAccounts` answer to `quantbot.tokens.accounts_request(mint)` at `slot`."""
        return accounts_response(self.mint, [self.mint_account, self.metadata], slot)

    def by_address(self) -> dict[str, Account]:
        """The accounts that exist, by address."""
        found = {self.mint: self.mint_account}
        if self.metadata is not None:
            found[self.metadata_address] = self.metadata
        return found


def _rng(seed: int, mint: str) -> random.Random:
    return random.Random(f"quantbot-synthetic/tokens/{seed}/{mint}")  # noqa: S311 - a seeded simulation


def _key(rng: random.Random) -> str:
    return str(Pubkey.from_bytes(rng.randbytes(KEY_SIZE)))


def _name(rng: random.Random) -> tuple[str, str]:
    """A token's name and symbol."""
    name = rng.choice(NAME_STEMS) + rng.choice(NAME_ENDINGS)
    letters = [c for c in name.upper() if c.isalpha()]
    symbol = "".join(letters[: rng.randint(*SYMBOL_LETTERS)])
    return name, symbol + "X" if symbol in TAKEN_SYMBOLS else symbol


def _uri(rng: random.Random, name: str, symbol: str, limit: int | None) -> str:
    """The metadata's URI: a `data:` URI of its JSON (when it fits `limit`), or an https link."""
    slug = symbol.lower()
    # Name and symbol are on chain already; short fields keep most `data:` URIs within Metaplex's 200 bytes.
    content = orjson.dumps(
        {
            "description": f"{name}, a test token",
            "image": f"https://{HOST}/{slug}.png",
            "external_url": f"https://{HOST}/{slug}",
        }
    )
    draw = rng.random()
    candidates: list[str] = []
    if draw < DATA_URI_BASE64:
        candidates.append("data:application/json;base64," + base64.b64encode(content).decode("ascii"))
    elif draw < DATA_URI_BASE64 + DATA_URI_PERCENT:
        candidates.append("data:application/json," + urllib.parse.quote(content, safe=DATA_URI_SAFE))
    link = f"https://arweave.{HOST}/" + base64.urlsafe_b64encode(rng.randbytes(ARWEAVE_ID_BYTES)).decode().rstrip("=")
    candidates.append(link)
    return next(uri for uri in candidates if limit is None or len(uri.encode()) <= limit)


def _metaplex(rng: random.Random, mint: str, name: str, symbol: str, *, mutable: bool) -> Account:
    data = encode_metaplex_metadata(
        update_authority=_key(rng),
        mint=mint,
        name=name,
        symbol=symbol,
        uri=_uri(rng, name, symbol, METAPLEX_URI_LEN),
        is_mutable=mutable,
    )
    return METADATA_PROGRAM, data, rent_exempt_lamports(len(data))


def _spl(data: bytes) -> Account:
    return TOKEN_PROGRAM, data, rent_exempt_lamports(len(data))


def _token_2022(
    rng: random.Random,
    mint: str,
    *,
    supply: int,
    decimals: int,
    mint_authority: str | None,
    freeze_authority: str | None,
    transfer_fee_bps: int | None,
    own_metadata: bool,
    mutable: bool,
) -> tuple[Account, tuple[str, str]]:
    name, symbol = _name(rng)
    metadata = None
    if own_metadata:
        update_authority = _key(rng) if mutable else None
        metadata = TokenMetadata(update_authority, mint, name, symbol, _uri(rng, name, symbol, None))
    data = encode_token_2022_mint(
        supply=supply,
        decimals=decimals,
        mint_authority=mint_authority,
        freeze_authority=freeze_authority,
        transfer_fee_bps=transfer_fee_bps,
        metadata=metadata,
    )
    return (TOKEN_2022_PROGRAM, data, rent_exempt_lamports(len(data))), (name, symbol)


def quote_accounts(seed: int) -> list[TokenAccounts]:
    """The quote mints' accounts (wSOL, USDC, USDT) of the feed seeded `seed`."""
    out = []
    for mint, decimals, (name, symbol) in (
        (WSOL_MINT, 9, ("Wrapped SOL", "SOL")),
        (USDC_MINT, 6, ("USD Coin", "USDC")),
        (USDT_MINT, 6, ("USDT", "USDT")),
    ):
        rng = _rng(seed, mint)
        if mint == WSOL_MINT:
            data = encode_mint(supply=0, decimals=decimals)
            metadata = _metaplex(rng, mint, name, symbol, mutable=False)
        else:
            supply = rng.randint(*STABLE_SUPPLY_WHOLE) * SCALE[decimals]
            data = encode_mint(supply=supply, decimals=decimals, mint_authority=_key(rng), freeze_authority=_key(rng))
            metadata = _metaplex(rng, mint, name, symbol, mutable=True)
        out.append(TokenAccounts(mint, _spl(data), metadata))
    return out


def token_accounts(seed: int, token: Token) -> TokenAccounts:
    """The accounts of one of the market's tokens, drawn from `seed` and its mint alone (see the module docstring)."""
    rng = _rng(seed, token.mint)
    mint, decimals = token.mint, token.decimals
    if token.kind == "major":
        supply = rng.randint(*MAJOR_SUPPLY_WHOLE) * SCALE[decimals]
        mint_authority = None if rng.random() < MAJOR_RENOUNCED else _key(rng)
        freeze_authority = _key(rng) if rng.random() < MAJOR_FREEZABLE else None
        name, symbol = _name(rng)
        data = encode_mint(
            supply=supply, decimals=decimals, mint_authority=mint_authority, freeze_authority=freeze_authority
        )
        metadata = _metaplex(rng, mint, name, symbol, mutable=rng.random() < MAJOR_MUTABLE)
        return TokenAccounts(mint, _spl(data), metadata)
    if token.kind == "amm":
        supply = rng.randint(*AMM_SUPPLY_WHOLE) * SCALE[decimals]
        mint_authority = _key(rng) if rng.random() < AMM_MINT_AUTHORITY else None
        freeze_authority = _key(rng) if rng.random() < AMM_FREEZABLE else None
        mutable = rng.random() < AMM_MUTABLE
        if rng.random() < AMM_TOKEN_2022:
            fee = rng.choice(TRANSFER_FEES_BPS) if rng.random() < AMM_TRANSFER_FEE else None
            own = rng.random() < AMM_OWN_METADATA
            account, (name, symbol) = _token_2022(
                rng,
                mint,
                supply=supply,
                decimals=decimals,
                mint_authority=mint_authority,
                freeze_authority=freeze_authority,
                transfer_fee_bps=fee,
                own_metadata=own,
                mutable=mutable,
            )
            return TokenAccounts(mint, account, None if own else _metaplex(rng, mint, name, symbol, mutable=mutable))
        data = encode_mint(
            supply=supply, decimals=decimals, mint_authority=mint_authority, freeze_authority=freeze_authority
        )
        if rng.random() < AMM_NO_METADATA:
            return TokenAccounts(mint, _spl(data), None)
        name, symbol = _name(rng)
        return TokenAccounts(mint, _spl(data), _metaplex(rng, mint, name, symbol, mutable=mutable))
    # Pump.fun tokens, on their curve or graduated to PumpSwap.
    supply = PUMP_SUPPLY * SCALE[PUMP_DECIMALS]
    if rng.random() < PUMP_TOKEN_2022:
        account, _ = _token_2022(
            rng,
            mint,
            supply=supply,
            decimals=decimals,
            mint_authority=None,
            freeze_authority=None,
            transfer_fee_bps=None,
            own_metadata=True,
            mutable=rng.random() < PUMP_TOKEN_2022_MUTABLE,
        )
        return TokenAccounts(mint, account, None)
    name, symbol = _name(rng)
    data = encode_mint(supply=supply, decimals=decimals)
    return TokenAccounts(mint, _spl(data), _metaplex(rng, mint, name, symbol, mutable=False))
