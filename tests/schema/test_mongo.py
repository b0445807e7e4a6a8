"""MongoDB validators and indexes against a real MongoDB-wire server, checked with the document's examples."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import WriteError

from quantbot.schema import mongo
from quantbot.schema.mongo import COLLECTIONS, DOCUMENT_VALIDATION_FAILURE_CODE, apply
from tests.schema import document

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]

# The document's examples, in its order, are one per collection of COLLECTIONS.
EXAMPLES = dict(zip((spec.name for spec in COLLECTIONS), document.example_documents(), strict=True))


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return mutate


def _example(collection: str, mutation: Mutation | None = None) -> Doc:
    doc = copy.deepcopy(EXAMPLES[collection])
    if mutation is not None:
        mutation(doc)
    return doc


def _required(collection: str) -> list[str]:
    spec = next(s for s in COLLECTIONS if s.name == collection)
    return list(spec.validator["$jsonSchema"]["required"])


def test_the_document_has_one_example_per_collection() -> None:
    """The document's four JSON examples map onto the four collections by their identity fields."""
    assert "decimals" in EXAMPLES["tokens"]
    assert "globalMetrics" in EXAMPLES["market_snapshots"]
    assert "walletAddress" in EXAMPLES["whale_activity"]
    assert "userId" in EXAMPLES["strategy_configs"]


def test_apply_creates_the_four_collections_with_validators(mongo_db: Database[Doc]) -> None:
    """A fresh database gets the four collections, each with a strict, erroring $jsonSchema validator."""
    reports = apply(mongo_db)

    infos = {info["name"]: info["options"] for info in mongo_db.list_collections()}
    assert [r.validator for r in reports] == ["created"] * 4
    assert set(infos) == {"tokens", "market_snapshots", "whale_activity", "strategy_configs"}
    for spec in COLLECTIONS:
        assert infos[spec.name]["validator"] == spec.validator
        assert infos[spec.name]["validationLevel"] == "strict"
        assert infos[spec.name]["validationAction"] == "error"


@pytest.mark.parametrize("collection", list(EXAMPLES))
def test_the_documents_example_is_accepted_as_written(mongo_db: Database[Doc], collection: str) -> None:
    """Each example document of the schema document is stored unchanged, placeholders and ISO strings included."""
    apply(mongo_db)
    example = _example(collection)

    mongo_db[collection].insert_one(example)

    assert mongo_db[collection].find_one({"_id": example["_id"]}) == example


TIMESTAMP_PATHS = {
    "tokens": ["createdAt", "updatedAt", "tokenomics.unlockSchedule.0.date"],
    "market_snapshots": ["timestamp"],
    "whale_activity": ["timestamp"],
    "strategy_configs": ["createdAt", "updatedAt", "lastRunAt"],
}


@pytest.mark.parametrize("collection", list(EXAMPLES))
def test_timestamps_may_be_bson_dates(mongo_db: Database[Doc], collection: str) -> None:
    """Every timestamp the examples write as an ISO string may be a BSON date instead."""
    apply(mongo_db)
    moment = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
    doc = _example(collection)
    for path in TIMESTAMP_PATHS[collection]:
        _set(path, moment)(doc)

    mongo_db[collection].insert_one(doc)

    assert mongo_db[collection].count_documents({}) == 1


@pytest.mark.parametrize(
    ("collection", "field"),
    [(name, field) for name in EXAMPLES for field in _required(name) if field != "_id"],
)
def test_a_document_missing_a_required_field_is_rejected(mongo_db: Database[Doc], collection: str, field: str) -> None:
    """Dropping any required field makes the server refuse the document with a validation error."""
    apply(mongo_db)

    with pytest.raises(WriteError) as raised:
        mongo_db[collection].insert_one(_example(collection, _drop(field)))

    assert raised.value.code == DOCUMENT_VALIDATION_FAILURE_CODE


WRONG_TYPES: list[tuple[str, Mutation, str]] = [
    ("tokens", _set("decimals", "9"), "decimals as a string"),
    ("tokens", _set("decimals", 9.5), "decimals as a double"),
    ("tokens", _set("decimals", 256), "decimals beyond a u8"),
    ("tokens", _set("totalSupply", 10**18), "totalSupply as a number"),
    ("tokens", _set("totalSupply", "1e18"), "totalSupply not in digits"),
    ("tokens", _set("contractAnalysis.renounced", "no"), "renounced as a string"),
    ("tokens", _set("exchanges.0.liquidityUsd", "250000"), "liquidity as a string"),
    ("tokens", _set("updatedAt", "yesterday"), "a timestamp that is not ISO-8601"),
    ("tokens", _set("updatedAt", "2023-04-23T09:12:34"), "a timestamp without zone"),
    ("tokens", _set("_id", ""), "an empty address"),
    ("market_snapshots", _set("timestamp", 1685620800), "timestamp as a number"),
    ("market_snapshots", _set("globalMetrics.solanaPrice", "145.75"), "price as a string"),
    ("market_snapshots", _set("topMovers", {"tokenAddress": "x"}), "topMovers not an array"),
    ("market_snapshots", _set("liquidityMetrics.topDexVolume.orca", "lots"), "a dex volume as a string"),
    ("whale_activity", _set("transactionType", "teleport"), "an unknown transaction type"),
    ("whale_activity", _set("tokens", []), "no tokens"),
    ("whale_activity", _set("tokens.0.amount", "lots"), "an amount that is no number"),
    ("whale_activity", _drop("tokens.0.address"), "a token without address"),
    ("whale_activity", _set("blockTime", 1654372800.5), "blockTime as a double"),
    ("whale_activity", _set("walletProfile.historicalInfluence", "8.5"), "influence as a string"),
    ("whale_activity", _set("relatedTransactions", [1, 2]), "related transactions as numbers"),
    ("strategy_configs", _set("parameters", "fast"), "parameters as a string"),
    ("strategy_configs", _set("userId", 42), "userId as a number"),
    ("strategy_configs", _set("parameters.timeBasedExit.enabled", "yes"), "enabled as a string"),
    ("strategy_configs", _set("schedule.timeWindows.0.days", ["funday"]), "an unknown weekday"),
    ("strategy_configs", _set("schedule.timeWindows.0.startTime", "9am"), "a time of day not HH:MM[:SS]"),
]


@pytest.mark.parametrize(("collection", "mutation", "what"), WRONG_TYPES, ids=[w for _, _, w in WRONG_TYPES])
def test_a_document_with_a_wrong_type_is_rejected(
    mongo_db: Database[Doc], collection: str, mutation: Mutation, what: str
) -> None:
    """A field of the wrong type or shape makes the server refuse the document with a validation error."""
    apply(mongo_db)

    with pytest.raises(WriteError) as raised:
        mongo_db[collection].insert_one(_example(collection, mutation))

    assert raised.value.code == DOCUMENT_VALIDATION_FAILURE_CODE


def test_values_absent_on_chain_may_be_null(mongo_db: Database[Doc]) -> None:
    """A renounced mint authority, an anonymous wallet, an unpriced leg and a never-run strategy are null."""
    apply(mongo_db)

    mongo_db.tokens.insert_one(_example("tokens", _set("mintAuthority", None)))
    whale = _example("whale_activity", _set("walletProfile.knownEntity", None))
    _set("tokens.0.valueUsd", None)(whale)
    _set("significance.priceMoveAfter3h", None)(whale)
    mongo_db.whale_activity.insert_one(whale)
    mongo_db.strategy_configs.insert_one(_example("strategy_configs", _set("lastRunAt", None)))

    assert mongo_db.tokens.count_documents({"mintAuthority": None}) == 1
    assert mongo_db.whale_activity.count_documents({}) == 1
    assert mongo_db.strategy_configs.count_documents({}) == 1


def test_an_update_that_breaks_a_document_is_rejected(mongo_db: Database[Doc]) -> None:
    """Validation is strict: updates are checked too, not only inserts."""
    apply(mongo_db)
    mongo_db.tokens.insert_one(_example("tokens"))

    with pytest.raises(WriteError) as raised:
        mongo_db.tokens.update_one({"_id": EXAMPLES["tokens"]["_id"]}, {"$set": {"decimals": "nine"}})

    assert raised.value.code == DOCUMENT_VALIDATION_FAILURE_CODE


def test_indexes_exist_under_their_names(mongo_db: Database[Doc]) -> None:
    """Every collection carries its named indexes with the specified keys."""
    apply(mongo_db)

    for spec in COLLECTIONS:
        have = {ix["name"]: tuple(dict(ix["key"]).items()) for ix in mongo_db[spec.name].list_indexes()}
        for index in spec.indexes:
            assert have.get(index.name) == index.keys, (spec.name, index.name)


def test_indexes_serve_the_dataflow_and_platform_queries() -> None:
    """The issue's query paths are each the leading keys of some index."""
    keys = {spec.name: [tuple(field for field, _ in ix.keys) for ix in spec.indexes] for spec in COLLECTIONS}
    paths: dict[str, list[tuple[str, ...]]] = {
        "whale_activity": [("timestamp",), ("walletAddress", "timestamp"), ("tokens.address", "timestamp")],
        "tokens": [("symbol",)],
        "market_snapshots": [("timestamp",)],
        "strategy_configs": [("userId",), ("type", "status")],
    }

    for collection, wanted in paths.items():
        for path in wanted:
            assert any(k[: len(path)] == path for k in keys[collection]), (collection, path)


def test_apply_twice_changes_nothing(mongo_db: Database[Doc]) -> None:
    """A second apply finds validators and indexes as specified and reports everything unchanged."""
    apply(mongo_db)
    mongo_db.tokens.insert_one(_example("tokens"))

    second = apply(mongo_db)

    assert [r.validator for r in second] == ["unchanged"] * 4
    assert all(action == "unchanged" for r in second for _, action in r.indexes)
    assert not any(r.changed for r in second)
    assert mongo_db.tokens.count_documents({}) == 1


def test_apply_updates_an_older_schema_in_place(mongo_db: Database[Doc]) -> None:
    """An existing collection keeps its documents while its validator and a changed index are replaced."""
    mongo_db.create_collection("tokens", validator={"$jsonSchema": {"bsonType": "object"}})
    mongo_db.tokens.insert_one({"_id": "legacy", "symbol": "OLD", "decimals": 6})
    mongo_db.tokens.create_index([("symbol", -1)], name="ix_tokens_symbol")

    (report,) = apply(mongo_db, [mongo.TOKENS])

    assert report.validator == "updated"
    assert report.indexes == (("ix_tokens_symbol", "replaced"),)
    assert mongo_db.tokens.find_one({"_id": "legacy"}) is not None
    assert mongo_db.tokens.index_information()["ix_tokens_symbol"]["key"] == [("symbol", 1)]
    with pytest.raises(WriteError):
        mongo_db.tokens.insert_one({"_id": "broken", "decimals": "six"})


def test_an_index_under_another_name_is_renamed_and_foreign_ones_are_kept(mongo_db: Database[Doc]) -> None:
    """An index with a spec's keys but another name gives way to the named one; unrelated indexes stay."""
    mongo_db.create_collection("tokens")
    mongo_db.tokens.create_index([("symbol", 1)], name="symbol_1")
    mongo_db.tokens.create_index([("name", 1)], name="by_name")

    (report,) = apply(mongo_db, [mongo.TOKENS])

    names = set(mongo_db.tokens.index_information())
    assert report.validator == "updated"
    assert report.dropped == ("symbol_1",)
    assert report.foreign == ("by_name",)
    assert names == {"_id_", "ix_tokens_symbol", "by_name"}
