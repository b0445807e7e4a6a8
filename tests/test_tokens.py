"""Token facts (`quantbot.tokens`): the accounts request, the SPL Token, Token-2022 and Metaplex layouts, the
contract analysis and the `tokens` document, through the real Mongo validator."""

from __future__ import annotations

import base64
import dataclasses
import struct
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pymongo.database import Database
from pymongo.errors import WriteError
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.pubkey import Pubkey
from solders.rpc.config import RpcAccountInfoConfig
from solders.rpc.requests import GetMultipleAccounts
from solders.rpc.responses import GetMultipleAccountsResp
from solders.token.state import Mint

from quantbot.models import DeadLetter, Frame, FrameKind
from quantbot.schema.mongo import TOKENS, apply
from quantbot.solana.context import SYSTEM_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from quantbot.steps import parse_frame
from quantbot.tokens import (
    METADATA_PROGRAM,
    Creator,
    TokenFacts,
    TokenFormatError,
    TokenMetadata,
    accounts_request,
    accounts_response,
    contract_analysis,
    decode_metaplex_metadata,
    decode_token_2022_mint,
    encode_metaplex_metadata,
    encode_mint,
    encode_token_2022_mint,
    metadata_address,
    parse_accounts,
    rent_exempt_lamports,
    token_document,
    uri_metadata,
)

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDC_METADATA = "5x38Kp4hvdomTCnCrAny4UtMUt5rQBdB6px2K1Ui45Wq"
"""USDC's Metaplex metadata account on mainnet: the PDA every Metaplex client derives for its mint."""
MINT = str(Pubkey.from_bytes(bytes(range(1, 33))))
AUTHORITY = str(Pubkey.from_bytes(bytes([7]) * 32))
FREEZER = str(Pubkey.from_bytes(bytes([9]) * 32))
OTHER = str(Pubkey.from_bytes(bytes([3]) * 32))
SLOT = 347_500_123
RECEIVED_NS = 1_750_000_000_000_000_000
JSON_URI = (
    "data:application/json;base64,"
    + base64.b64encode(
        orjson.dumps({"description": "A cat.", "image": "https://x.test/cat.png", "external_url": "https://x.test"})
    ).decode()
)
MINT_CLOSE_AUTHORITY = 3
"""A Token-2022 extension the reader does not read (`MintCloseAuthority`): it must skip it."""
UNKNOWN_EXTENSION = 999
"""An extension type newer than the reader: skipped by its length too."""


def _spl(supply: int = 10**15, decimals: int = 6, **authorities: str | None) -> tuple[str, bytes, int]:
    data = encode_mint(supply=supply, decimals=decimals, **authorities)  # type: ignore[arg-type]
    return TOKEN_PROGRAM, data, rent_exempt_lamports(len(data))


def _metaplex(mint: str = MINT, **overrides: Any) -> tuple[str, bytes, int]:
    fields: dict[str, Any] = {
        "update_authority": AUTHORITY,
        "mint": mint,
        "name": "Cat Coin",
        "symbol": "CAT",
        "uri": "https://x.test/cat.json",
        **overrides,
    }
    data = encode_metaplex_metadata(**fields)
    return METADATA_PROGRAM, data, rent_exempt_lamports(len(data))


def _answer(*accounts: tuple[str, bytes, int] | None, mint: str = MINT) -> str:
    return accounts_response(mint, list(accounts), SLOT)


def test_the_metadata_account_is_metaplexs_pda_of_the_mint() -> None:
    """USDC's metadata PDA is the mainnet account Metaplex clients derive; a bad mint is refused by name."""
    assert metadata_address(USDC) == USDC_METADATA
    with pytest.raises(TokenFormatError, match="mint `nope` is not a base58 32-byte address"):
        metadata_address("nope")


def test_the_request_is_solders_getmultipleaccounts_with_the_mint_as_id() -> None:
    """The request asks for the mint and its metadata PDA, base64 at `confirmed`, as solders builds it; id = mint."""
    request = accounts_request(USDC)
    config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=CommitmentLevel.Confirmed)
    reference = orjson.loads(
        GetMultipleAccounts([Pubkey.from_string(USDC), Pubkey.from_string(USDC_METADATA)], config).to_json()
    )

    assert request["id"] == USDC and request["method"] == reference["method"] == "getMultipleAccounts"
    assert request["params"][0] == reference["params"][0] == [USDC, USDC_METADATA]
    assert request["params"][1] == {k: v for k, v in reference["params"][1].items() if v is not None}


def test_encoded_mints_are_spl_token_mints_to_solders() -> None:
    """`encode_mint` writes what solders' (spl-token's) `Mint` packs, and solders reads the Token-2022 base the same."""
    ours = encode_mint(supply=123_456_789, decimals=9, mint_authority=AUTHORITY, freeze_authority=FREEZER)
    theirs = Mint(Pubkey.from_string(AUTHORITY), 123_456_789, 9, True, Pubkey.from_string(FREEZER))
    extended = encode_token_2022_mint(supply=5, decimals=2, transfer_fee_bps=30)

    assert ours == bytes(theirs)
    unpacked = Mint.from_bytes(extended[:82])
    assert (unpacked.supply, unpacked.decimals, unpacked.mint_authority, unpacked.is_initialized) == (5, 2, None, True)


def test_the_answer_is_a_getmultipleaccounts_response_to_solders() -> None:
    """solders reads the encoded answer as a getMultipleAccounts response: slot, api version, owners, data, null."""
    answer = _answer(_spl(), None)

    parsed = GetMultipleAccountsResp.from_json(answer)

    assert parsed.context.slot == SLOT and parsed.context.api_version is not None
    mint_account, missing = parsed.value
    assert missing is None and mint_account is not None
    assert str(mint_account.owner) == TOKEN_PROGRAM and bytes(mint_account.data) == _spl()[1]
    assert mint_account.lamports == 1_461_600 and orjson.loads(answer)["result"]["value"][0]["space"] == 82


def test_an_spl_token_mint_with_metaplex_metadata() -> None:
    """Authorities, supply, decimals from the mint; name, symbol, URI (NULs stripped) and mutability from Metaplex."""
    answer = _answer(_spl(mint_authority=AUTHORITY, freeze_authority=FREEZER), _metaplex(uri=JSON_URI))

    facts = parse_accounts(answer, RECEIVED_NS, "rec.jsonl@3")

    assert facts == TokenFacts(
        mint=MINT,
        program="spl_token",
        decimals=6,
        supply=10**15,
        mint_authority=AUTHORITY,
        freeze_authority=FREEZER,
        name="Cat Coin",
        symbol="CAT",
        uri=JSON_URI,
        update_authority=AUTHORITY,
        mutable=True,
        transfer_fee_bps=None,
        metadata={"description": "A cat.", "image": "https://x.test/cat.png", "externalUrl": "https://x.test"},
        received_ns=RECEIVED_NS,
        position="rec.jsonl@3",
        metadata_source="metaplex",
        slot=SLOT,
    )


def test_metaplex_strings_are_padded_as_the_program_writes_them() -> None:
    """A Metaplex account is 607 bytes, its strings padded with NULs to 32/10/200 bytes; reading strips them."""
    creators = (Creator(AUTHORITY, True, 100),)
    data = encode_metaplex_metadata(
        update_authority=AUTHORITY, mint=MINT, name="A", symbol="B", uri="u", creators=creators, is_mutable=False
    )

    metadata = decode_metaplex_metadata(data)

    assert len(data) == 607 and data[65:69] == struct.pack("<I", 32) and data[69:101] == b"A" + bytes(31)
    assert (metadata.name, metadata.symbol, metadata.uri) == ("A", "B", "u")
    assert metadata.creators == creators and metadata.is_mutable is False and metadata.primary_sale_happened is False


def test_token_2022_metadata_wins_over_metaplex_and_unknown_extensions_are_skipped() -> None:
    """A Token-2022 mint with a fee, its own metadata and extensions the reader does not know: its metadata is used."""
    own = TokenMetadata(None, MINT, "Own Name", "OWN", "https://x.test/own.json", (("website", "x.test"),))
    data = encode_token_2022_mint(
        supply=7,
        decimals=0,
        freeze_authority=FREEZER,
        transfer_fee_bps=150,
        metadata=own,
        extra_extensions=[(MINT_CLOSE_AUTHORITY, bytes(32)), (UNKNOWN_EXTENSION, b"\x01\x02\x03")],
    )
    answer = _answer((TOKEN_2022_PROGRAM, data, rent_exempt_lamports(len(data))), _metaplex(name="Metaplex Name"))

    facts = parse_accounts(answer, RECEIVED_NS, "p")
    layout = decode_token_2022_mint(data)

    assert layout.extension_types == (1, 18, 19, MINT_CLOSE_AUTHORITY, UNKNOWN_EXTENSION)
    assert layout.metadata == own and layout.metadata_pointer == (None, MINT)
    assert data[82:165] == bytes(83) and data[165] == 1  # padding to Account::LEN, then AccountType::Mint
    assert (facts.program, facts.name, facts.symbol, facts.uri) == ("token_2022", "Own Name", "OWN", own.uri)
    assert (facts.update_authority, facts.mutable, facts.metadata_source) == (None, False, "token_2022")
    assert (facts.transfer_fee_bps, facts.freeze_authority, facts.supply, facts.metadata) == (150, FREEZER, 7, {})


def test_a_token_2022_mint_without_extensions_and_metaplex_metadata() -> None:
    """An 82-byte Token-2022 mint reads like an SPL one; its name comes from Metaplex."""
    data = encode_token_2022_mint(supply=1, decimals=9)

    facts = parse_accounts(_answer((TOKEN_2022_PROGRAM, data, 1), _metaplex(is_mutable=False)), 0, "p")

    assert len(data) == 82 and decode_token_2022_mint(data).extension_types == ()
    assert (facts.program, facts.name, facts.mutable, facts.metadata_source) == (
        "token_2022",
        "Cat Coin",
        False,
        "metaplex",
    )


@pytest.mark.parametrize(
    "metadata",
    [None, (SYSTEM_PROGRAM, b"", 890_880)],
    ids=["null", "lamports-only"],
)
def test_no_metadata_account_is_fine(metadata: tuple[str, bytes, int] | None) -> None:
    """A null metadata account (or one that only holds lamports sent to the PDA) gives facts without metadata."""
    facts = parse_accounts(_answer(_spl(), metadata), 0, "p")

    assert (facts.name, facts.symbol, facts.uri, facts.mutable, facts.metadata_source) == (None,) * 5
    assert facts.decimals == 6 and facts.mint_authority is None


def _replace_data(answer: str, index: int, data: bytes) -> str:
    document = orjson.loads(answer)
    document["result"]["value"][index]["data"][0] = base64.b64encode(data).decode()
    return orjson.dumps(document).decode()


SPL_DATA = encode_mint(supply=1, decimals=6)
FEE_MINT = encode_token_2022_mint(supply=1, decimals=6, transfer_fee_bps=10)
GARBAGE: list[tuple[str, str, str]] = [
    ("not-json", '{"jsonrpc": "2.0", "result": ', "accounts answer is not JSON"),
    ("array", "[]", "a JSON list, not an object"),
    (
        "id-not-mint",
        accounts_response("mint?", [None, None], SLOT),
        r"accounts answer's id `mint\?` is not a base58 32-byte address",
    ),
    (
        "rpc-error",
        orjson.dumps({"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid param"}, "id": MINT}).decode(),
        f"accounts of `{MINT}`: RPC error -32602: Invalid param",
    ),
    ("one-account", accounts_response(MINT, [_spl()], SLOT), "is not the two accounts asked for"),
    ("no-mint", _answer(None, None), f"no such mint account `{MINT}`"),
    (
        "system-owner",
        _answer((SYSTEM_PROGRAM, SPL_DATA, 1), None),
        "owner `1111.*` is neither SPL Token nor Token-2022",
    ),
    (
        "base58",
        _answer(_spl(), None).replace('"base64"', '"base58"', 1),
        "data is encoded `base58`, not base64",
    ),
    ("bad-base64", _answer(_spl(), None).replace('"AAAA', '"!AAA', 1), "data is not valid base64"),
    ("short-spl", _replace_data(_answer(_spl(), None), 0, SPL_DATA[:81]), "SPL Token mint data is 81 bytes, not 82"),
    (
        "bad-coption",
        _replace_data(_answer(_spl(), None), 0, b"\x02" + SPL_DATA[1:]),
        "`mint_authority` at offset 0 has COption tag 2",
    ),
    (
        "not-initialized",
        _answer((TOKEN_PROGRAM, encode_mint(supply=1, decimals=1, is_initialized=False), 1), None),
        "not initialized",
    ),
    ("multisig-size", _answer((TOKEN_2022_PROGRAM, bytes(355), 1), None), "a multisig's size"),
    (
        "t22-between",
        _answer((TOKEN_2022_PROGRAM, FEE_MINT[:120], 1), None),
        "120 bytes: past the base mint but short of the account type",
    ),
    (
        "t22-account-type",
        _answer((TOKEN_2022_PROGRAM, FEE_MINT[:165] + b"\x02" + FEE_MINT[166:], 1), None),
        "account type 2 is not a mint",
    ),
    (
        "t22-padding",
        _answer((TOKEN_2022_PROGRAM, FEE_MINT[:100] + b"\x01" + FEE_MINT[101:], 1), None),
        "padding between the mint and its account type is not zero",
    ),
    (
        "t22-tlv-overrun",
        _answer((TOKEN_2022_PROGRAM, FEE_MINT[:-1], 1), None),
        "extension type 1 at offset 166 claims 108 bytes, past the data's 277",
    ),
    (
        "t22-fee-size",
        _answer((TOKEN_2022_PROGRAM, FEE_MINT[:168] + struct.pack("<H", 4) + bytes(4), 1), None),
        "the TransferFeeConfig extension is 4 bytes, not 108",
    ),
    (
        "metaplex-key",
        _answer(_spl(), (METADATA_PROGRAM, b"\x06" + _metaplex()[1][1:], 1)),
        "key 6 is not a Metaplex Metadata",
    ),
    ("metaplex-short", _answer(_spl(), (METADATA_PROGRAM, _metaplex()[1][:80], 1)), "80 bytes end inside `name`"),
    ("metaplex-other-mint", _answer(_spl(), _metaplex(mint=OTHER)), f"it names mint `{OTHER}`"),
    ("metaplex-owner", _answer(_spl(), (TOKEN_PROGRAM, _metaplex()[1], 1)), "is not Metaplex Token Metadata"),
    (
        "metaplex-utf8",
        _answer(_spl(), (METADATA_PROGRAM, _metaplex()[1][:69] + b"\xff" + _metaplex()[1][70:], 1)),
        "`name` is not UTF-8",
    ),
]


@pytest.mark.parametrize(("payload", "message"), [(p, m) for _, p, m in GARBAGE], ids=[i for i, _, _ in GARBAGE])
def test_garbage_is_a_clear_error(payload: str, message: str) -> None:
    """Each malformed answer raises TokenFormatError saying what is wrong with it."""
    with pytest.raises(TokenFormatError, match=message):
        parse_accounts(payload, 0, "p")


def test_the_parse_step_makes_accounts_frames_facts_or_dead_letters() -> None:
    """An `accounts` frame parses to its TokenFacts; a broken one is an `accounts` dead letter with the reason."""
    good = Frame(RECEIVED_NS, "rpc", FrameKind.ACCOUNTS.value, _answer(_spl(), None), "rec.jsonl@1")
    bad = dataclasses.replace(good, payload=_answer(None, None), position="rec.jsonl@2")

    (facts,) = parse_frame(good)
    (letter,) = parse_frame(bad)

    assert isinstance(facts, TokenFacts) and (facts.mint, facts.position, facts.received_ns) == (
        MINT,
        "rec.jsonl@1",
        RECEIVED_NS,
    )
    assert isinstance(letter, DeadLetter) and (letter.stage, letter.position) == ("accounts", "rec.jsonl@2")
    assert letter.reason == f"no such mint account `{MINT}`" and letter.raw == bad.payload


CONTENT = {"description": "Hi, there", "image": "https://x.test/i.png", "external_url": "https://x.test", "x": 1}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (JSON_URI, {"description": "A cat.", "image": "https://x.test/cat.png", "externalUrl": "https://x.test"}),
        (
            "data:application/json," + urllib.parse.quote(orjson.dumps(CONTENT)),
            {"description": "Hi, there", "image": "https://x.test/i.png", "externalUrl": "https://x.test"},
        ),
        (
            "data:application/json;charset=utf-8," + urllib.parse.quote('{"image": "a", "description": 5}'),
            {"image": "a"},
        ),
        ("https://arweave.net/abc", {}),
        ("data:text/plain;base64,aGk=", {}),
        ("data:application/json;base64,not base64!", {}),
        ("data:application/json,[1, 2]", {}),
        ("data:application/json," + urllib.parse.quote(orjson.dumps({"description": "x" * 40_000})), {}),
    ],
    ids=["base64", "percent", "charset-and-types", "https", "text", "bad-base64", "array", "too-long"],
)
def test_data_uris_give_description_image_and_link(uri: str, expected: dict[str, str]) -> None:
    """Only a `data:` URI's JSON is read (bounded); anything else gives no metadata, not an error."""
    assert uri_metadata(uri) == expected


def _facts(**changes: Any) -> TokenFacts:
    clean = TokenFacts(MINT, "spl_token", 6, 10**15, None, None, name="Cat", symbol="CAT", mutable=False)
    return dataclasses.replace(clean, **changes)


@pytest.mark.parametrize(
    ("changes", "score", "risks"),
    [
        ({}, 100, []),
        ({"mint_authority": AUTHORITY}, 70, ["mutable_supply", "not_renounced"]),
        ({"freeze_authority": FREEZER}, 75, ["not_renounced", "freezable"]),
        ({"mutable": True}, 90, ["not_renounced", "mutable_metadata"]),
        ({"name": None, "symbol": None, "mutable": None}, 90, ["no_metadata"]),
        ({"transfer_fee_bps": 150}, 92, ["token_2022_transfer_fee"]),
        ({"transfer_fee_bps": 0}, 100, []),
        (
            {
                "mint_authority": AUTHORITY,
                "freeze_authority": FREEZER,
                "mutable": True,
                "transfer_fee_bps": 1000,
                "name": None,
                "symbol": None,
            },
            0,
            [
                "mutable_supply",
                "not_renounced",
                "freezable",
                "mutable_metadata",
                "token_2022_transfer_fee",
                "no_metadata",
            ],
        ),
    ],
    ids=["clean", "mintable", "freezable", "mutable", "no-metadata", "fee-1.5pct", "fee-zero", "everything"],
)
def test_contract_analysis_scores_by_its_documented_formula(
    changes: dict[str, Any], score: int, risks: list[str]
) -> None:
    """Each power kept over holders costs its points (30, 25, 10, 10, 5 per fee percent up to 25), floor 0."""
    analysis = contract_analysis(_facts(**changes))

    assert analysis["securityScore"] == score and analysis["riskFactors"] == risks
    assert analysis["renounced"] is ("mint_authority" not in changes)
    assert analysis["mutable"] is bool(changes.get("mutable"))


def test_the_document_has_the_schemas_fields_in_its_order() -> None:
    """Facts become the schema's token document; the times are aware datetimes; no tokenomics or social fields."""
    facts = parse_accounts(_answer(_spl(mint_authority=AUTHORITY), _metaplex(uri=JSON_URI)), 0, "p")
    exchanges: list[dict[str, object]] = [{"name": "raydium_amm_v4", "address": OTHER, "liquidityUsd": 1.5}]

    document = token_document(MINT, facts, exchanges, 1_750_000_000, 1_750_003_600)

    assert list(document) == [
        "_id", "symbol", "name", "decimals", "totalSupply", "mintAuthority", "freezeAuthority",
        "metadata", "contractAnalysis", "exchanges", "createdAt", "updatedAt",
    ]  # fmt: skip
    assert document["totalSupply"] == "1000000000000000" and document["freezeAuthority"] is None
    assert document["createdAt"] == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    assert document["exchanges"] == exchanges
    with pytest.raises(ValueError, match=f"facts of mint `{MINT}` given for the document of `{OTHER}`"):
        token_document(OTHER, facts, [], 0, 0)


def test_documents_pass_the_tokens_validator(mongo_db: Database[dict[str, Any]]) -> None:
    """Documents with and without facts are accepted and read back as written; a supply without decimals is not."""
    apply(mongo_db, [TOKENS])
    facts = parse_accounts(_answer(_spl(freeze_authority=FREEZER), _metaplex(uri=JSON_URI)), 0, "p")
    full = token_document(MINT, facts, [{"name": "orca_whirlpool", "address": OTHER, "volume24h": 12.0}], 10, 20)
    bare = token_document(OTHER, None, [], 10, 10)

    for document in (full, bare, full):  # the flow replaces documents whole: a second write changes nothing
        mongo_db.tokens.replace_one({"_id": document["_id"]}, document, upsert=True)

    stored = mongo_db.tokens.find_one({"_id": MINT})
    assert stored is not None and stored["contractAnalysis"] == full["contractAnalysis"]
    assert stored["metadata"] == full["metadata"]
    assert stored["updatedAt"].replace(tzinfo=UTC) == datetime(1970, 1, 1, 0, 0, 20, tzinfo=UTC)
    assert mongo_db.tokens.count_documents({}) == 2
    with pytest.raises(WriteError, match="validation"):
        mongo_db.tokens.insert_one({"_id": "no-decimals", "totalSupply": "5"})
