"""Token facts: a mint's on-chain accounts, read from a recorded `getMultipleAccounts` answer, and the token's
`tokens` document.

```
accounts_request(mint)   {"method": "getMultipleAccounts", "params": [[mint, metadata PDA], {base64}], "id": mint}
   | the answer, exactly as received: an `accounts` frame (recorded, so a replay needs no network)
parse_accounts           mint account: SPL Token `Mint`, or Token-2022 `Mint` + TLV extensions (decode_mint)
                         metadata account: Metaplex `Metadata` (decode_metaplex_metadata), or null
   -> TokenFacts  -> contract_analysis, token_document
```

Layouts, as the programs' own sources define them (Borsh and `Pack` are little-endian):

- SPL Token `Mint` (solana-labs/solana-program-library `token/program/src/state.rs`, `impl Pack for Mint`,
  `LEN = 82`): `COption<Pubkey>` mint authority (u32 tag 0/1 + 32 bytes), u64 supply, u8 decimals, bool
  is_initialized (0/1), `COption<Pubkey>` freeze authority.
- Token-2022 (`token/program-2022/src/extension/mod.rs`): the same 82 bytes; when the mint has extensions,
  zero padding up to `Account::LEN` (165), one `AccountType` byte (1 = mint), then TLV entries: u16
  `ExtensionType`, u16 length, value; an entry of type 0 (`Uninitialized`) or fewer than 4 bytes left ends
  them. A 355-byte account is a multisig (the program pads mints past that size). Extensions read:
  `TransferFeeConfig` (type 1, `extension/transfer_fee/mod.rs`: two `OptionalNonZeroPubkey` authorities,
  u64 withheld amount, older and newer `TransferFee` {u64 epoch, u64 maximum_fee, u16 basis points}),
  `MetadataPointer` (18, `extension/metadata_pointer/mod.rs`: authority, metadata address) and
  `TokenMetadata` (19, `token-metadata/interface/src/state.rs`, Borsh: `OptionalNonZeroPubkey` update
  authority (all zeros: none), mint, name, symbol, uri as Borsh strings (u32 length + UTF-8), additional
  metadata `Vec<(String, String)>`). Other extensions are skipped by their length.
- Metaplex `Metadata` (metaplex-foundation/mpl-token-metadata `programs/token-metadata/program/src/state/
  metadata.rs`, `state/mod.rs`, `state/creator.rs`), Borsh: u8 key (`Key::MetadataV1` = 4), update
  authority, mint, `Data` {name, symbol, uri: Borsh strings padded with NULs to 32, 10 and 200 bytes
  (`puff_out_data_fields`; stripped here), u16 seller_fee_basis_points, `Option<Vec<Creator>>` (address,
  bool verified, u8 share)}, bool primary_sale_happened, bool is_mutable, then optional fields (edition
  nonce, token standard, collection, uses, ...) not read here. The account is `MAX_METADATA_LEN` (607)
  bytes, zero-filled after the data. Its address is the PDA of seeds `["metadata", program id, mint]`.

Where both exist, the mint's own Token-2022 metadata wins over a Metaplex account. A missing (null)
metadata account is normal: the facts then have no name, symbol or URI.

The URI's content: only `data:` URIs carry it in themselves (`data:application/json;base64,...` and
`data:application/json,<percent-encoded JSON>`); their `description`, `image` and `external_url` become
`metadata` {description, image, externalUrl}. http(s), ipfs and arweave URIs are not fetched: the flow has
no network peer for arbitrary hosts, and a replay must need no network; their content stays unknown.

Errors: `TokenFormatError` (a `ValueError`) names what is wrong with an answer (not JSON, an RPC error, no
such mint account, an owner that is no token program, a short or malformed layout); the parse step makes it
a dead letter of stage `accounts`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import struct
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from solders.pubkey import Pubkey

from quantbot.solana.codec import CodecError, b64decode
from quantbot.solana.context import SYSTEM_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM

__all__ = [
    "API_VERSION",
    "METADATA_PROGRAM",
    "SPL_TOKEN",
    "TOKEN_2022",
    "Account",
    "Creator",
    "MetaplexMetadata",
    "MintLayout",
    "Token2022Mint",
    "TokenFacts",
    "TokenFormatError",
    "TokenMetadata",
    "TransferFee",
    "account_json",
    "accounts_request",
    "accounts_response",
    "contract_analysis",
    "decode_metaplex_metadata",
    "decode_mint",
    "decode_token_2022_mint",
    "encode_metaplex_metadata",
    "encode_mint",
    "encode_token_2022_mint",
    "metadata_address",
    "parse_accounts",
    "rent_exempt_lamports",
    "token_document",
    "uri_metadata",
]

log = logging.getLogger(__name__)

METADATA_PROGRAM = "metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s"
"""Metaplex Token Metadata: owner of every `Metadata` account, and the program its PDA derives from."""
_METADATA_PROGRAM_ID = Pubkey.from_string(METADATA_PROGRAM)
_METADATA_SEED = b"metadata"
"""mpl-token-metadata's `PREFIX`, the first seed of a metadata PDA."""
SPL_TOKEN = "spl_token"  # noqa: S105 - a program name, not a secret
"""`TokenFacts.program` of a mint owned by the SPL Token program."""
TOKEN_2022 = "token_2022"  # noqa: S105 - a program name, not a secret
"""`TokenFacts.program` of a mint owned by Token-2022; also `metadata_source` of its own metadata."""
METAPLEX = "metaplex"
"""`TokenFacts.metadata_source` of a Metaplex metadata account."""

MINT_LEN = 82
"""SPL Token's `Mint::LEN`; Token-2022's base mint is the same."""
ACCOUNT_LEN = 165
"""SPL Token's `Account::LEN`: Token-2022 writes a mint's account type right after it."""
MULTISIG_LEN = 355
"""SPL Token's `Multisig::LEN`: never the size of a mint (Token-2022 pads a mint past it)."""
ACCOUNT_TYPE_MINT = 1
"""Token-2022's `AccountType::Mint`."""
EXT_UNINITIALIZED = 0
EXT_TRANSFER_FEE_CONFIG = 1
EXT_METADATA_POINTER = 18
EXT_TOKEN_METADATA = 19
"""Token-2022 `ExtensionType` values (the enum's order in `extension/mod.rs`)."""
TLV_HEADER = 4
"""u16 type + u16 length before each Token-2022 extension value."""
TRANSFER_FEE_CONFIG_LEN = 108
"""Two authorities (64), withheld amount (8), two `TransferFee`s (18 each)."""
METADATA_POINTER_LEN = 64
PUBKEY_LEN = 32
COPTION_NONE, COPTION_SOME = 0, 1
"""`COption` tags (u32)."""
U64_MAX = (1 << 64) - 1
U16_MAX = (1 << 16) - 1
MAX_BASIS_POINTS = 10_000
"""100%: the largest transfer fee Token-2022 accepts (`MAX_FEE_BASIS_POINTS`)."""

METAPLEX_KEY_METADATA_V1 = 4
"""mpl-token-metadata `Key::MetadataV1`."""
METAPLEX_NAME_LEN, METAPLEX_SYMBOL_LEN, METAPLEX_URI_LEN = 32, 10, 200
"""`MAX_NAME_LENGTH`, `MAX_SYMBOL_LENGTH`, `MAX_URI_LENGTH`: the program pads the strings to these."""
METAPLEX_MAX_CREATORS = 5
"""`MAX_CREATOR_LIMIT`."""
METAPLEX_METADATA_LEN = 607
"""`MAX_METADATA_LEN` (1 + 32 + 32 + 431 data + 1 + 1 + 9 + 2 + 34 + 18 + 10 + 35 + 1): a metadata account's size."""
METAPLEX_TOKEN_STANDARD_FUNGIBLE = 2
"""`TokenStandard::Fungible`."""

ACCOUNT_STORAGE_OVERHEAD = 128
LAMPORTS_PER_BYTE_YEAR = 3480
EXEMPTION_THRESHOLD_YEARS = 2
"""The rent sysvar's defaults: an account is rent-exempt with two years of rent for its size plus overhead."""
RENT_EPOCH_EXEMPT = U64_MAX
"""`rentEpoch` the RPC reports for rent-exempt accounts."""
API_VERSION = "2.2.0"
"""`context.apiVersion` of the answers the encoders build (an agave node's version)."""

METADATA_ADDRESS_CACHE = 65_536
"""Metadata PDAs remembered (a PDA search costs up to 255 hashes); more than the flow's token window holds."""
MAX_DATA_URI_CHARS = 32_768
"""A `data:` URI longer than this is not read: a JSON of a description, an image link and a site fits in a few
KiB; a longer one carries an inline image or worse, and the document does not store it."""
DATA_URI_MEDIA_TYPE = "application/json"
_METADATA_KEYS = (("description", "description"), ("image", "image"), ("external_url", "externalUrl"))
"""(JSON key in the URI's content, `metadata` key in the document)."""

# securityScore: 100, minus a penalty for each power someone other than the holders keeps over the token.
SCORE_MAX = 100
MINT_AUTHORITY_PENALTY = 30
"""Unlimited new supply can dilute every holder at once: the gravest power."""
FREEZE_AUTHORITY_PENALTY = 25
"""Frozen accounts cannot sell: the honeypot's tool."""
MUTABLE_METADATA_PENALTY = 10
"""Name, symbol and URI can change under the holders (impersonation, a rug's rebrand)."""
NO_METADATA_PENALTY = 10
"""A token without name or symbol on chain cannot be told from its copies."""
TRANSFER_FEE_PENALTY_PER_PERCENT = 5
"""Each 1% of transfer fee costs 5 points (rounded up) ..."""
TRANSFER_FEE_MAX_PENALTY = 25
"""... up to 25 (a 5% fee and above): a fee taxes every trade, but is visible and bounded."""


class TokenFormatError(ValueError):
    """An `accounts` answer (or one of its accounts) is not what a mint's facts are read from."""


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
        metadata_source: where name, symbol and URI came from: `token_2022` or `metaplex`; None without
            metadata.
        slot: the slot the answer was read at (`context.slot`), where it says.
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
    metadata_source: str | None = None
    slot: int | None = None


# ------------------------------------------------------------------------------------------ layouts


@dataclass(frozen=True, slots=True)
class MintLayout:
    """SPL Token's `Mint` (82 bytes; Token-2022's base mint too)."""

    mint_authority: str | None
    supply: int
    decimals: int
    is_initialized: bool
    freeze_authority: str | None


@dataclass(frozen=True, slots=True)
class TransferFee:
    """Token-2022's `TransferFee`: from `epoch` on, `basis_points` of each transfer, at most `maximum_fee`."""

    epoch: int
    maximum_fee: int
    basis_points: int


@dataclass(frozen=True, slots=True)
class TokenMetadata:
    """Token-2022's token-metadata extension (`spl_token_metadata_interface::state::TokenMetadata`)."""

    update_authority: str | None
    mint: str
    name: str
    symbol: str
    uri: str
    additional: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Token2022Mint:
    """A Token-2022 mint: its base `Mint` and the extensions read (`extension_types`: every one present)."""

    base: MintLayout
    transfer_fee: TransferFee | None = None
    metadata_pointer: tuple[str | None, str | None] | None = None
    """(authority, metadata address)."""
    metadata: TokenMetadata | None = None
    extension_types: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Creator:
    """A Metaplex `Creator`: its address, whether it signed, and its share in percent."""

    address: str
    verified: bool
    share: int


@dataclass(frozen=True, slots=True)
class MetaplexMetadata:
    """The fields of a Metaplex `Metadata` account read here (NUL padding stripped from the strings)."""

    update_authority: str
    mint: str
    name: str
    symbol: str
    uri: str
    seller_fee_basis_points: int
    creators: tuple[Creator, ...] | None
    primary_sale_happened: bool
    is_mutable: bool


class _Reader:
    """Little-endian reads over `data`, raising `TokenFormatError` that names `what` and the offset."""

    __slots__ = ("at", "data", "what")

    def __init__(self, data: bytes, what: str, at: int = 0) -> None:
        self.data = data
        self.what = what
        self.at = at

    def take(self, size: int, field_name: str) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise TokenFormatError(
                f"{self.what}: {len(self.data)} bytes end inside `{field_name}` ({size} bytes at offset {self.at})"
            )
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def u16(self, field_name: str) -> int:
        value: int = struct.unpack("<H", self.take(2, field_name))[0]
        return value

    def u32(self, field_name: str) -> int:
        value: int = struct.unpack("<I", self.take(4, field_name))[0]
        return value

    def u64(self, field_name: str) -> int:
        value: int = struct.unpack("<Q", self.take(8, field_name))[0]
        return value

    def boolean(self, field_name: str) -> bool:
        at = self.at
        value = self.u8(field_name)
        if value not in (0, 1):
            raise TokenFormatError(f"{self.what}: `{field_name}` at offset {at} is {value}, not a bool (0 or 1)")
        return value == 1

    def pubkey(self, field_name: str) -> str:
        return str(Pubkey.from_bytes(self.take(PUBKEY_LEN, field_name)))

    def optional_nonzero_pubkey(self, field_name: str) -> str | None:
        """spl-pod's `OptionalNonZeroPubkey`: 32 bytes, all zeros for none."""
        raw = self.take(PUBKEY_LEN, field_name)
        return None if raw == bytes(PUBKEY_LEN) else str(Pubkey.from_bytes(raw))

    def coption_pubkey(self, field_name: str) -> str | None:
        at = self.at
        tag = self.u32(field_name)
        raw = self.take(PUBKEY_LEN, field_name)
        if tag == COPTION_NONE:
            return None
        if tag == COPTION_SOME:
            return str(Pubkey.from_bytes(raw))
        raise TokenFormatError(f"{self.what}: `{field_name}` at offset {at} has COption tag {tag}, not 0 or 1")

    def borsh_string(self, field_name: str) -> str:
        length = self.u32(field_name)
        raw = self.take(length, field_name)
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise TokenFormatError(f"{self.what}: `{field_name}` is not UTF-8 ({exc.reason})") from None

    def option_tag(self, field_name: str) -> bool:
        """A Borsh `Option` tag: whether a value follows."""
        at = self.at
        tag = self.u8(field_name)
        if tag not in (0, 1):
            raise TokenFormatError(f"{self.what}: `{field_name}` at offset {at} has Option tag {tag}, not 0 or 1")
        return tag == 1


def _mint_layout(reader: _Reader) -> MintLayout:
    mint_authority = reader.coption_pubkey("mint_authority")
    supply = reader.u64("supply")
    decimals = reader.u8("decimals")
    is_initialized = reader.boolean("is_initialized")
    freeze_authority = reader.coption_pubkey("freeze_authority")
    return MintLayout(mint_authority, supply, decimals, is_initialized, freeze_authority)


def decode_mint(data: bytes, what: str = "mint account") -> MintLayout:
    """An SPL Token mint account's data (exactly 82 bytes).

    Raises:
        TokenFormatError: not 82 bytes, or a field out of its range (a COption tag, the initialized flag).
    """
    if len(data) != MINT_LEN:
        raise TokenFormatError(f"{what}: SPL Token mint data is {len(data)} bytes, not {MINT_LEN}")
    return _mint_layout(_Reader(data, what))


def decode_token_2022_mint(data: bytes, what: str = "mint account") -> Token2022Mint:
    """A Token-2022 mint account's data: the base mint and its extensions (see the module docstring).

    Raises:
        TokenFormatError: too short, a multisig's size, non-zero padding, an account type other than mint,
            or an extension whose length runs past the data or whose value is malformed.
    """
    if len(data) < MINT_LEN:
        raise TokenFormatError(f"{what}: Token-2022 mint data is {len(data)} bytes, shorter than {MINT_LEN}")
    if len(data) == MULTISIG_LEN:
        raise TokenFormatError(f"{what}: {MULTISIG_LEN} bytes is a multisig's size, not a mint's")
    base = _mint_layout(_Reader(data[:MINT_LEN], what))
    if len(data) == MINT_LEN:
        return Token2022Mint(base)
    if len(data) <= ACCOUNT_LEN:
        raise TokenFormatError(
            f"{what}: Token-2022 mint data is {len(data)} bytes: past the base mint but short of the account type"
            f" at offset {ACCOUNT_LEN}"
        )
    if any(data[MINT_LEN:ACCOUNT_LEN]):
        raise TokenFormatError(f"{what}: the padding between the mint and its account type is not zero")
    if data[ACCOUNT_LEN] != ACCOUNT_TYPE_MINT:
        raise TokenFormatError(f"{what}: account type {data[ACCOUNT_LEN]} is not a mint ({ACCOUNT_TYPE_MINT})")
    transfer_fee: TransferFee | None = None
    pointer: tuple[str | None, str | None] | None = None
    metadata: TokenMetadata | None = None
    types: list[int] = []
    at = ACCOUNT_LEN + 1
    while len(data) - at >= TLV_HEADER:
        kind, length = struct.unpack_from("<HH", data, at)
        if kind == EXT_UNINITIALIZED:
            break
        start = at + TLV_HEADER
        end = start + length
        if end > len(data):
            raise TokenFormatError(
                f"{what}: extension type {kind} at offset {at} claims {length} bytes, past the data's {len(data)}"
            )
        value = data[start:end]
        types.append(kind)
        if kind == EXT_TRANSFER_FEE_CONFIG:
            transfer_fee = _transfer_fee(value, what)
        elif kind == EXT_METADATA_POINTER:
            pointer = _metadata_pointer(value, what)
        elif kind == EXT_TOKEN_METADATA:
            metadata = _token_metadata(value, what)
        at = end
    return Token2022Mint(base, transfer_fee, pointer, metadata, tuple(types))


def _exact(value: bytes, size: int, name: str, what: str) -> _Reader:
    if len(value) != size:
        raise TokenFormatError(f"{what}: the {name} extension is {len(value)} bytes, not {size}")
    return _Reader(value, f"{what} {name}")


def _transfer_fee(value: bytes, what: str) -> TransferFee:
    reader = _exact(value, TRANSFER_FEE_CONFIG_LEN, "TransferFeeConfig", what)
    reader.take(2 * PUBKEY_LEN, "authorities")
    reader.u64("withheld_amount")
    reader.take(8 + 8 + 2, "older_transfer_fee")
    fee = TransferFee(reader.u64("epoch"), reader.u64("maximum_fee"), reader.u16("transfer_fee_basis_points"))
    if fee.basis_points > MAX_BASIS_POINTS:
        raise TokenFormatError(f"{what}: a transfer fee of {fee.basis_points} basis points is above 100%")
    return fee


def _metadata_pointer(value: bytes, what: str) -> tuple[str | None, str | None]:
    reader = _exact(value, METADATA_POINTER_LEN, "MetadataPointer", what)
    return reader.optional_nonzero_pubkey("authority"), reader.optional_nonzero_pubkey("metadata_address")


def _token_metadata(value: bytes, what: str) -> TokenMetadata:
    reader = _Reader(value, f"{what} TokenMetadata")
    update_authority = reader.optional_nonzero_pubkey("update_authority")
    mint = reader.pubkey("mint")
    name = reader.borsh_string("name")
    symbol = reader.borsh_string("symbol")
    uri = reader.borsh_string("uri")
    pairs = reader.u32("additional_metadata")
    # Each pair is at least two u32 lengths: a count the value cannot hold is malformed, not a huge loop.
    if pairs * 8 > len(value) - reader.at:
        raise TokenFormatError(f"{what} TokenMetadata: {pairs} additional pairs cannot fit the extension")
    additional = tuple((reader.borsh_string("key"), reader.borsh_string("value")) for _ in range(pairs))
    return TokenMetadata(update_authority, mint, name, symbol, uri, additional)


def decode_metaplex_metadata(data: bytes, what: str = "metadata account") -> MetaplexMetadata:
    """A Metaplex `Metadata` account's data, up to `is_mutable` (see the module docstring).

    Raises:
        TokenFormatError: another Metaplex account kind (its key), or data too short or malformed.
    """
    reader = _Reader(data, what)
    key = reader.u8("key")
    if key != METAPLEX_KEY_METADATA_V1:
        raise TokenFormatError(f"{what}: key {key} is not a Metaplex Metadata account ({METAPLEX_KEY_METADATA_V1})")
    update_authority = reader.pubkey("update_authority")
    mint = reader.pubkey("mint")
    name = reader.borsh_string("name").rstrip("\x00")
    symbol = reader.borsh_string("symbol").rstrip("\x00")
    uri = reader.borsh_string("uri").rstrip("\x00")
    seller_fee = reader.u16("seller_fee_basis_points")
    creators: tuple[Creator, ...] | None = None
    if reader.option_tag("creators"):
        count = reader.u32("creators")
        if count > METAPLEX_MAX_CREATORS:
            raise TokenFormatError(f"{what}: {count} creators, more than Metaplex allows ({METAPLEX_MAX_CREATORS})")
        creators = tuple(
            Creator(reader.pubkey("creator.address"), reader.boolean("creator.verified"), reader.u8("creator.share"))
            for _ in range(count)
        )
    primary_sale = reader.boolean("primary_sale_happened")
    is_mutable = reader.boolean("is_mutable")
    return MetaplexMetadata(update_authority, mint, name, symbol, uri, seller_fee, creators, primary_sale, is_mutable)


# ------------------------------------------------------------------------------------------ requests


@lru_cache(maxsize=METADATA_ADDRESS_CACHE)
def metadata_address(mint: str) -> str:
    """The Metaplex metadata account of `mint`: the PDA of seeds `["metadata", program id, mint]`.

    Raises:
        TokenFormatError: `mint` is not a base58 32-byte address.
    """
    key = _pubkey(mint, "mint")
    address, _bump = Pubkey.find_program_address(
        [_METADATA_SEED, bytes(_METADATA_PROGRAM_ID), bytes(key)], _METADATA_PROGRAM_ID
    )
    return str(address)


def _pubkey(text: str, what: str) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except (ValueError, TypeError):
        raise TokenFormatError(f"{what} `{text}` is not a base58 32-byte address") from None


def accounts_request(mint: str) -> dict[str, Any]:
    """The JSON-RPC request for `mint`'s facts: its mint account and its Metaplex metadata account, base64.

    Its `id` is the mint: the answer echoes it, so the answer alone (an `accounts` frame) says whose it is.

    Raises:
        TokenFormatError: `mint` is not an address.
    """
    return {
        "jsonrpc": "2.0",
        "id": mint,
        "method": "getMultipleAccounts",
        "params": [[mint, metadata_address(mint)], {"encoding": "base64", "commitment": "confirmed"}],
    }


# ------------------------------------------------------------------------------------------ answers


def parse_accounts(payload: str, received_ns: int, position: str) -> TokenFacts:
    """The facts of the mint a `getMultipleAccounts` answer (an `accounts_request`'s) holds.

    Args:
        payload: the answer, exactly as received.
        received_ns: when it was received.
        position: the frame's position.

    Raises:
        TokenFormatError: naming what is wrong: not JSON, an id that is no mint, an RPC error, not two
            accounts, no such mint account, an owner that is neither SPL Token nor Token-2022, data that is
            not base64, a layout too short or malformed, metadata of another mint.
    """
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise TokenFormatError(f"accounts answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise TokenFormatError(f"accounts answer is a JSON {type(answer).__name__}, not an object")
    mint = answer.get("id")
    if not isinstance(mint, str):
        raise TokenFormatError(f"accounts answer's id {mint!r} is not a mint address")
    _pubkey(mint, "accounts answer's id")
    error = answer.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise TokenFormatError(f"accounts of `{mint}`: RPC error {code}: {message}")
    result = answer.get("result")
    value = result.get("value") if isinstance(result, dict) else None
    if not isinstance(value, list) or len(value) != 2:
        raise TokenFormatError(f"accounts of `{mint}`: `result.value` is not the two accounts asked for")
    assert isinstance(result, dict)
    context = result.get("context")
    slot = context.get("slot") if isinstance(context, dict) else None
    mint_account, metadata_account = value
    if mint_account is None:
        raise TokenFormatError(f"no such mint account `{mint}`")
    owner, data = _account(mint_account, f"mint account `{mint}`")
    what = f"mint account `{mint}`"
    token_metadata: TokenMetadata | None = None
    transfer_fee: TransferFee | None = None
    if owner == TOKEN_PROGRAM:
        program, base = SPL_TOKEN, decode_mint(data, what)
    elif owner == TOKEN_2022_PROGRAM:
        extended = decode_token_2022_mint(data, what)
        program, base = TOKEN_2022, extended.base
        token_metadata, transfer_fee = extended.metadata, extended.transfer_fee
    else:
        raise TokenFormatError(f"{what}: owner `{owner}` is neither SPL Token nor Token-2022")
    if not base.is_initialized:
        raise TokenFormatError(f"{what}: the mint is not initialized")
    metaplex = _metaplex(metadata_account, mint)
    facts: dict[str, Any] = {}
    if token_metadata is not None:
        if token_metadata.mint != mint:
            raise TokenFormatError(f"{what}: its token metadata names mint `{token_metadata.mint}`")
        facts = {
            "name": token_metadata.name,
            "symbol": token_metadata.symbol,
            "uri": token_metadata.uri,
            "update_authority": token_metadata.update_authority,
            "mutable": token_metadata.update_authority is not None,
            "metadata_source": TOKEN_2022,
        }
    elif metaplex is not None:
        facts = {
            "name": metaplex.name,
            "symbol": metaplex.symbol,
            "uri": metaplex.uri,
            "update_authority": metaplex.update_authority,
            "mutable": metaplex.is_mutable,
            "metadata_source": METAPLEX,
        }
    uri = facts.get("uri") or None
    return TokenFacts(
        mint=mint,
        program=program,
        decimals=base.decimals,
        supply=base.supply,
        mint_authority=base.mint_authority,
        freeze_authority=base.freeze_authority,
        name=facts.get("name") or None,
        symbol=facts.get("symbol") or None,
        uri=uri,
        update_authority=facts.get("update_authority"),
        mutable=facts.get("mutable"),
        transfer_fee_bps=None if transfer_fee is None else transfer_fee.basis_points,
        metadata=uri_metadata(uri) if uri else {},
        received_ns=received_ns,
        position=position,
        metadata_source=facts.get("metadata_source"),
        slot=slot if isinstance(slot, int) and not isinstance(slot, bool) else None,
    )


def _account(value: object, what: str) -> tuple[str, bytes]:
    """An RPC account object's owner and data (base64 only: what `accounts_request` asks for)."""
    if not isinstance(value, dict):
        raise TokenFormatError(f"{what}: not an account object")
    owner = value.get("owner")
    data = value.get("data")
    if not isinstance(owner, str):
        raise TokenFormatError(f"{what}: no owner")
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
        raise TokenFormatError(f"{what}: data is not a [text, encoding] pair")
    if data[1] != "base64":
        raise TokenFormatError(f"{what}: data is encoded `{data[1]}`, not base64")
    try:
        return owner, b64decode(data[0])
    except CodecError:
        raise TokenFormatError(f"{what}: data is not valid base64") from None


def _metaplex(value: object, mint: str) -> MetaplexMetadata | None:
    """The Metaplex metadata of `mint` from its account object; None for a null account, or one that only
    holds lamports someone sent to the PDA before Metaplex created it (owned by the system program, no data)."""
    if value is None:
        return None
    what = f"metadata account of `{mint}`"
    owner, data = _account(value, what)
    if owner == SYSTEM_PROGRAM and not data:
        return None
    if owner != METADATA_PROGRAM:
        raise TokenFormatError(f"{what}: owner `{owner}` is not Metaplex Token Metadata")
    metadata = decode_metaplex_metadata(data, what)
    if metadata.mint != mint:
        raise TokenFormatError(f"{what}: it names mint `{metadata.mint}`")
    return metadata


def uri_metadata(uri: str) -> dict[str, str]:
    """`description`, `image` and `externalUrl` from a `data:` URI's JSON (see the module docstring).

    Anything else (an http(s) URI, which is not fetched; a `data:` URI too long, of another media type, or
    whose content is not a JSON object) gives `{}`: the token's other facts stand without it. Fields that are
    absent, not strings or empty are left out.
    """
    if not uri.startswith("data:") or len(uri) > MAX_DATA_URI_CHARS:
        return {}
    header, comma, body = uri[len("data:") :].partition(",")
    if not comma:
        return {}
    media_type, *parameters = (part.strip() for part in header.split(";"))
    if media_type.lower() != DATA_URI_MEDIA_TYPE:
        return {}
    try:
        if "base64" in (p.lower() for p in parameters):
            raw = base64.b64decode(urllib.parse.unquote(body), validate=True)
        else:
            raw = urllib.parse.unquote_to_bytes(body)
        content = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        log.debug("token_uri=data problem=%s", exc)
        return {}
    if not isinstance(content, dict):
        return {}
    found: dict[str, str] = {}
    for source, target in _METADATA_KEYS:
        text = content.get(source)
        if isinstance(text, str) and text:
            found[target] = text
    return found


# ------------------------------------------------------------------------------------------ documents


def contract_analysis(facts: TokenFacts) -> dict[str, object]:
    """The document's `contractAnalysis`, from the facts alone.

    - `renounced`: no mint authority (the supply is fixed).
    - `mutable`: the metadata has an update authority and can still change.
    - `riskFactors`, in this order, each where its fact holds: `mutable_supply` (a mint authority),
      `not_renounced` (any authority left: mint, freeze, or a mutable metadata's update authority),
      `freezable` (a freeze authority), `mutable_metadata`, `token_2022_transfer_fee` (a non-zero
      Token-2022 transfer fee), `no_metadata` (no name and no symbol on chain).
    - `securityScore`: 100 minus `MINT_AUTHORITY_PENALTY` (30) for a mint authority,
      `FREEZE_AUTHORITY_PENALTY` (25) for a freeze authority, `MUTABLE_METADATA_PENALTY` (10) for mutable
      metadata, `NO_METADATA_PENALTY` (10) without metadata, and 5 per percent of transfer fee (rounded up,
      at most 25); never below 0. A renounced, unfreezable, immutable, fee-free token with metadata scores 100.
    """
    mutable = bool(facts.mutable)
    no_metadata = facts.name is None and facts.symbol is None
    fee_bps = facts.transfer_fee_bps or 0
    risks: list[str] = []
    if facts.mint_authority is not None:
        risks.append("mutable_supply")
    if facts.mint_authority is not None or facts.freeze_authority is not None or mutable:
        risks.append("not_renounced")
    if facts.freeze_authority is not None:
        risks.append("freezable")
    if mutable:
        risks.append("mutable_metadata")
    if fee_bps > 0:
        risks.append("token_2022_transfer_fee")
    if no_metadata:
        risks.append("no_metadata")
    fee_penalty = min(TRANSFER_FEE_MAX_PENALTY, math.ceil(fee_bps * TRANSFER_FEE_PENALTY_PER_PERCENT / 100))
    score = (
        SCORE_MAX
        - MINT_AUTHORITY_PENALTY * (facts.mint_authority is not None)
        - FREEZE_AUTHORITY_PENALTY * (facts.freeze_authority is not None)
        - MUTABLE_METADATA_PENALTY * mutable
        - NO_METADATA_PENALTY * no_metadata
        - fee_penalty
    )
    return {
        "renounced": facts.mint_authority is None,
        "mutable": mutable,
        "securityScore": max(0, score),
        "riskFactors": risks,
    }


def token_document(
    mint: str,
    facts: TokenFacts | None,
    exchanges: list[dict[str, object]],
    created_at: int,
    updated_at: int,
) -> dict[str, object]:
    """The `tokens` document of `mint`: the schema's token metadata shape, from what is known.

    Fields, in the schema's order: `_id`, `symbol` and `name` (where the metadata has them), `decimals`,
    `totalSupply` (the raw supply as a decimal string), `mintAuthority` and `freezeAuthority` (null when
    absent), `metadata` (where a `data:` URI carried it), `contractAnalysis`, `exchanges`, `createdAt` and
    `updatedAt` (timezone-aware datetimes). `tokenomics` (distribution and unlocks are off-chain plans),
    `socialMetrics` (no feed of them) and `priceHistory` (its series live in InfluxDB `token_prices`, not
    in a link the flow could vouch for) are absent: nothing the flow reads supports them.

    Args:
        mint: the document's `_id`.
        facts: the chain's facts about the mint; None while they have not arrived (the document then holds
            only what trading showed: `exchanges` and the times).
        exchanges: one entry per pool the token traded in (`name`, `address`, `liquidityUsd`, `volume24h`,
            `priceImpact1000usd`, each present where known).
        created_at, updated_at: feed times (Unix seconds) the token was first seen and last updated.

    Raises:
        ValueError: `facts` are another mint's.
    """
    document: dict[str, object] = {"_id": mint}
    if facts is not None:
        if facts.mint != mint:
            raise ValueError(f"facts of mint `{facts.mint}` given for the document of `{mint}`")
        if facts.symbol:
            document["symbol"] = facts.symbol
        if facts.name:
            document["name"] = facts.name
        document["decimals"] = facts.decimals
        document["totalSupply"] = str(facts.supply)
        document["mintAuthority"] = facts.mint_authority
        document["freezeAuthority"] = facts.freeze_authority
        if facts.metadata:
            document["metadata"] = dict(facts.metadata)
        document["contractAnalysis"] = contract_analysis(facts)
    document["exchanges"] = exchanges
    document["createdAt"] = datetime.fromtimestamp(created_at, tz=UTC)
    document["updatedAt"] = datetime.fromtimestamp(updated_at, tz=UTC)
    return document


# ------------------------------------------------------------------------------------------ encoders


def rent_exempt_lamports(size: int) -> int:
    """Lamports that make an account of `size` data bytes rent-exempt (82 bytes: 1,461,600)."""
    return (ACCOUNT_STORAGE_OVERHEAD + size) * LAMPORTS_PER_BYTE_YEAR * EXEMPTION_THRESHOLD_YEARS


def _key_bytes(address: str | None) -> bytes:
    return bytes(PUBKEY_LEN) if address is None else bytes(_pubkey(address, "address"))


def _coption(address: str | None) -> bytes:
    tag = COPTION_NONE if address is None else COPTION_SOME
    return struct.pack("<I", tag) + _key_bytes(address)


def _borsh_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<I", len(raw)) + raw


def _padded_string(text: str, size: int, name: str) -> bytes:
    raw = text.encode()
    if len(raw) > size:
        raise ValueError(f"Metaplex {name} `{text}` is {len(raw)} bytes, longer than {size}")
    return struct.pack("<I", size) + raw.ljust(size, b"\x00")


def encode_mint(
    *,
    supply: int,
    decimals: int,
    mint_authority: str | None = None,
    freeze_authority: str | None = None,
    is_initialized: bool = True,
) -> bytes:
    """An SPL Token `Mint`'s 82 bytes (Token-2022's base mint is the same).

    Raises:
        ValueError: a supply beyond u64 or decimals beyond u8.
    """
    if not 0 <= supply <= U64_MAX or not 0 <= decimals <= 0xFF:
        raise ValueError(f"supply {supply} or decimals {decimals} out of range (u64, u8)")
    return b"".join(
        (
            _coption(mint_authority),
            struct.pack("<QBB", supply, decimals, int(is_initialized)),
            _coption(freeze_authority),
        )
    )


def _tlv(kind: int, value: bytes) -> bytes:
    if len(value) > U16_MAX:
        raise ValueError(f"extension type {kind} value of {len(value)} bytes does not fit a u16 length")
    return struct.pack("<HH", kind, len(value)) + value


def encode_token_2022_mint(
    *,
    supply: int,
    decimals: int,
    mint_authority: str | None = None,
    freeze_authority: str | None = None,
    transfer_fee_bps: int | None = None,
    transfer_fee_max: int = U64_MAX,
    metadata: TokenMetadata | None = None,
    extra_extensions: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """A Token-2022 mint's data: the base mint, then (when there are extensions) padding, account type and TLV.

    Args:
        supply, decimals, mint_authority, freeze_authority: the base mint.
        transfer_fee_bps: a `TransferFeeConfig` with this fee (older and newer, from epoch 0), capped at
            `transfer_fee_max`, with no authorities; None: no transfer fee extension.
        transfer_fee_max: the fee's `maximum_fee` (raw units).
        metadata: a `MetadataPointer` to the mint itself (its authority the metadata's update authority) and
            the `TokenMetadata` extension; None: neither.
        extra_extensions: more (type, value) entries, after the others (tests: extensions the reader skips).

    Raises:
        ValueError: a value out of its range.
    """
    base = encode_mint(
        supply=supply, decimals=decimals, mint_authority=mint_authority, freeze_authority=freeze_authority
    )
    entries: list[bytes] = []
    if transfer_fee_bps is not None:
        if not 0 <= transfer_fee_bps <= MAX_BASIS_POINTS:
            raise ValueError(f"transfer fee of {transfer_fee_bps} basis points is not within 0-{MAX_BASIS_POINTS}")
        fee = struct.pack("<QQH", 0, transfer_fee_max, transfer_fee_bps)
        entries.append(_tlv(EXT_TRANSFER_FEE_CONFIG, bytes(2 * PUBKEY_LEN) + struct.pack("<Q", 0) + fee + fee))
    if metadata is not None:
        entries.append(_tlv(EXT_METADATA_POINTER, _key_bytes(metadata.update_authority) + _key_bytes(metadata.mint)))
        value = b"".join(
            (
                _key_bytes(metadata.update_authority),
                _key_bytes(metadata.mint),
                _borsh_string(metadata.name),
                _borsh_string(metadata.symbol),
                _borsh_string(metadata.uri),
                struct.pack("<I", len(metadata.additional)),
                *(_borsh_string(key) + _borsh_string(text) for key, text in metadata.additional),
            )
        )
        entries.append(_tlv(EXT_TOKEN_METADATA, value))
    entries.extend(_tlv(kind, value) for kind, value in extra_extensions)
    if not entries:
        return base
    data = base + bytes(ACCOUNT_LEN - MINT_LEN) + bytes([ACCOUNT_TYPE_MINT]) + b"".join(entries)
    if len(data) == MULTISIG_LEN:  # the program's `adjust_len_for_multisig`: an `Uninitialized` type after
        data += struct.pack("<H", EXT_UNINITIALIZED)
    return data


def encode_metaplex_metadata(
    *,
    update_authority: str,
    mint: str,
    name: str,
    symbol: str,
    uri: str,
    seller_fee_basis_points: int = 0,
    creators: Sequence[Creator] | None = None,
    primary_sale_happened: bool = False,
    is_mutable: bool = True,
) -> bytes:
    """A Metaplex `Metadata` account's data as the program writes it: strings padded with NULs, token standard
    `Fungible`, no edition nonce, collection, uses, collection details or programmable config, zero-filled
    to `METAPLEX_METADATA_LEN`.

    Raises:
        ValueError: a string longer than Metaplex allows, or more than 5 creators.
    """
    if creators is not None and len(creators) > METAPLEX_MAX_CREATORS:
        raise ValueError(f"{len(creators)} creators, more than Metaplex allows ({METAPLEX_MAX_CREATORS})")
    parts = [
        bytes([METAPLEX_KEY_METADATA_V1]),
        _key_bytes(update_authority),
        _key_bytes(mint),
        _padded_string(name, METAPLEX_NAME_LEN, "name"),
        _padded_string(symbol, METAPLEX_SYMBOL_LEN, "symbol"),
        _padded_string(uri, METAPLEX_URI_LEN, "uri"),
        struct.pack("<H", seller_fee_basis_points),
    ]
    if creators is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x01" + struct.pack("<I", len(creators)))
        parts.extend(_key_bytes(c.address) + bytes([int(c.verified), c.share]) for c in creators)
    parts += [
        bytes([int(primary_sale_happened), int(is_mutable)]),
        b"\x00",  # edition_nonce: None
        bytes([1, METAPLEX_TOKEN_STANDARD_FUNGIBLE]),  # token_standard: Some(Fungible)
        b"\x00\x00\x00\x00",  # collection, uses, collection_details, programmable_config: None
    ]
    data = b"".join(parts)
    return data.ljust(METAPLEX_METADATA_LEN, b"\x00")


Account = tuple[str, bytes, int]
"""An account as the chain holds it: (owner program, data, lamports)."""


def account_json(owner: str, data: bytes, lamports: int) -> dict[str, Any]:
    """The RPC's account object for `base64` encoding, keys in its order (the Solana RPC docs' examples)."""
    return {
        "data": [base64.b64encode(data).decode("ascii"), "base64"],
        "executable": False,
        "lamports": lamports,
        "owner": owner,
        "rentEpoch": RENT_EPOCH_EXEMPT,
        "space": len(data),
    }


def accounts_response(mint: str, accounts: Sequence[Account | None], slot: int, api_version: str = API_VERSION) -> str:
    """The `getMultipleAccounts` answer to `accounts_request(mint)`, shaped as the Solana RPC docs show it.

    Args:
        mint: the request's id.
        accounts: (owner, data, lamports) or None (no such account), in the request's order.
        slot: `context.slot`.
        api_version: `context.apiVersion`.
    """
    value = [None if account is None else account_json(*account) for account in accounts]
    answer = {
        "jsonrpc": "2.0",
        "result": {"context": {"apiVersion": api_version, "slot": slot}, "value": value},
        "id": mint,
    }
    return orjson.dumps(answer).decode()
