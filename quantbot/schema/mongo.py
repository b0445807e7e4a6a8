"""MongoDB schema: the four collections, their `$jsonSchema` validators and their indexes.

Collections, after the schema document's "NoSQL Schema" section:

=================== ============================ ===============================================
collection          document                     `_id`
=================== ============================ ===============================================
`tokens`            token metadata               the token's mint address
`market_snapshots`  market data snapshot         a snapshot id (string, or an ObjectId)
`whale_activity`    large transaction            the transaction signature (the natural key)
`strategy_configs`  strategy configuration       the strategy id, the UUID string PostgreSQL's
                                                 `trading_strategies.strategy_id` holds
=================== ============================ ===============================================

The validators type every field the document's example documents show (nested objects and array
items included) and require only a collection's identity and the fields the platform cannot do
without; fields the document does not show are allowed, as a document store should. They accept
the document's four example documents as they are, placeholder ids included: addresses and ids are
typed as non-empty strings here and checked in code (`quantbot.schema.redis_keys`), not by pattern.

- Numbers accept every BSON numeric type (`int`, `long`, `double`, `decimal`), since a writer cannot
  always control which one a value arrives as; two fields that are integers by nature (`decimals`, a
  u8 on chain, and `blockTime`, unix seconds) accept `int` and `long` only.
- Timestamps accept a BSON `date` or an ISO-8601 string with a zone (`2023-06-01T12:00:00Z`), the form
  the document's examples use. Writers should store `date`s: BSON orders all strings before all dates,
  so a collection mixing the two cannot be range-queried or sorted by time as one sequence.
- Fields that are naturally absent on chain or not yet known may be `null`: a renounced mint or freeze
  authority, an unknown wallet's entity, an unpriced token's USD value, a price move not yet observed.
- A token document needs only its address: the flow stores a token it saw trade before the chain's facts
  about it arrive; `totalSupply` (a raw amount) requires `decimals` beside it.

`apply(db)` creates missing collections with their validators, `collMod`s existing ones whose
validator differs, and creates or replaces indexes by name; running it again changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from quantbot.models import ActivityKind

if TYPE_CHECKING:
    from pymongo.database import Database

__all__ = [
    "COLLECTIONS",
    "DOCUMENT_VALIDATION_FAILURE_CODE",
    "ISO_8601_PATTERN",
    "MARKET_SNAPSHOTS",
    "STRATEGY_CONFIGS",
    "TOKENS",
    "WHALE_ACTIVITY",
    "CollectionReport",
    "CollectionSpec",
    "IndexSpec",
    "apply",
]

logger = logging.getLogger(__name__)

ISO_8601_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
"""An ISO-8601 timestamp with seconds and a zone; a zone-less one would be ambiguous."""

_TIME_OF_DAY_PATTERN = r"^\d{2}:\d{2}(:\d{2})?$"
_UNSIGNED_INTEGER_PATTERN = r"^\d+$"
_DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
# MongoDB's name for "document failed validation"; the error writers get for a broken document.
DOCUMENT_VALIDATION_FAILURE_CODE = 121
# MongoDB's NamespaceExists: a concurrent `apply` created the collection first.
_NAMESPACE_EXISTS_CODE = 48

_VALIDATION_LEVEL = "strict"  # every insert and update is checked, not only already-valid documents
_VALIDATION_ACTION = "error"  # a broken document is refused, not merely logged

JsonSchema = dict[str, Any]


def _typed(*bson_types: str) -> JsonSchema:
    return {"bsonType": bson_types[0] if len(bson_types) == 1 else list(bson_types)}


_NUMBERS = ("int", "long", "double", "decimal")
_NUMBER = _typed(*_NUMBERS)
_NUMBER_OR_NULL = _typed(*_NUMBERS, "null")
_INTEGER = _typed("int", "long")
_STRING = _typed("string")
_STRING_OR_NULL = _typed("string", "null")
_ID = {"bsonType": "string", "minLength": 1}
_BOOL = _typed("bool")
_TIMESTAMP = {"bsonType": ["date", "string"], "pattern": ISO_8601_PATTERN}
_TIMESTAMP_OR_NULL = {"bsonType": ["date", "string", "null"], "pattern": ISO_8601_PATTERN}
_STRINGS = {"bsonType": "array", "items": _STRING}


def _object(properties: Mapping[str, JsonSchema], required: Sequence[str] = ()) -> JsonSchema:
    schema: JsonSchema = {"bsonType": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return schema


def _array_of(items: JsonSchema) -> JsonSchema:
    return {"bsonType": "array", "items": items}


def _map_of(values: JsonSchema) -> JsonSchema:
    """An object used as a map (`{"raydium": 450000000, ...}`): any keys, typed values."""
    return {"bsonType": "object", "additionalProperties": values}


def _validator(schema: JsonSchema) -> dict[str, Any]:
    return {"$jsonSchema": schema}


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index, identified by its explicit name.

    Attributes:
        name: The index's name; `apply` finds, compares and replaces indexes by it.
        keys: The key pattern, `(field, 1 | -1)` pairs in order.
        unique: Whether the index enforces uniqueness.
    """

    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """One collection: its name, its validator and its indexes."""

    name: str
    validator: dict[str, Any]
    indexes: tuple[IndexSpec, ...]


TOKENS = CollectionSpec(
    name="tokens",
    validator=_validator(
        _object(
            {
                "_id": _ID,
                "symbol": _STRING_OR_NULL,
                "name": _STRING_OR_NULL,
                "decimals": {**_INTEGER, "minimum": 0, "maximum": 255},
                "totalSupply": {"bsonType": "string", "pattern": _UNSIGNED_INTEGER_PATTERN},
                "mintAuthority": _STRING_OR_NULL,
                "freezeAuthority": _STRING_OR_NULL,
                "metadata": _object({"description": _STRING, "image": _STRING, "externalUrl": _STRING}),
                "contractAnalysis": _object(
                    {"renounced": _BOOL, "mutable": _BOOL, "securityScore": _NUMBER, "riskFactors": _STRINGS}
                ),
                "tokenomics": _object(
                    {
                        "initialDistribution": _map_of(_NUMBER),
                        "unlockSchedule": _array_of(
                            _object({"date": _TIMESTAMP, "percentage": _NUMBER, "category": _STRING})
                        ),
                    }
                ),
                "exchanges": _array_of(
                    _object(
                        {
                            "name": _STRING,
                            "address": _STRING,
                            "liquidityUsd": _NUMBER,
                            "volume24h": _NUMBER,
                            "priceImpact1000usd": _NUMBER_OR_NULL,
                        },
                        required=["name", "address"],
                    )
                ),
                "priceHistory": _object({"hourly": _STRING, "daily": _STRING}),
                "socialMetrics": _object(
                    {
                        "twitter": _object({"handle": _STRING, "followers": _NUMBER, "engagement": _NUMBER}),
                        "telegram": _object({"members": _NUMBER, "activity": _STRING}),
                    }
                ),
                "createdAt": _TIMESTAMP,
                "updatedAt": _TIMESTAMP,
            },
            # A token the flow saw trade is stored before its chain facts arrive (`quantbot.tokens`): only its
            # address is certain. Its raw supply, once there, means nothing without the decimals (DESIGN.md §4).
            required=["_id"],
        )
        | {"dependencies": {"totalSupply": ["decimals"]}}
    ),
    indexes=(IndexSpec("ix_tokens_symbol", (("symbol", 1),)),),
)
"""Token metadata, keyed by mint address; looked up by address and by symbol."""

MARKET_SNAPSHOTS = CollectionSpec(
    name="market_snapshots",
    validator=_validator(
        _object(
            {
                "_id": {"bsonType": ["string", "objectId"], "minLength": 1},
                "timestamp": _TIMESTAMP,
                "globalMetrics": _object(
                    {
                        "totalMarketCapUsd": _NUMBER,
                        "solanaMarketCapUsd": _NUMBER,
                        "solanaPrice": _NUMBER,
                        "solanaDominance": _NUMBER,
                        "totalVolume24h": _NUMBER,
                    }
                ),
                "marketMood": _object({"fearGreedIndex": _NUMBER, "sentiment": _STRING, "volatilityIndex": _NUMBER}),
                "topMovers": _array_of(
                    _object(
                        {
                            "tokenAddress": _STRING,
                            "symbol": _STRING_OR_NULL,
                            "priceChangePercent": _NUMBER,
                            "volume24h": _NUMBER,
                        },
                        required=["tokenAddress"],
                    )
                ),
                "sectorPerformance": _array_of(
                    _object(
                        {"sector": _STRING, "performancePercent": _NUMBER, "marketCapUsd": _NUMBER},
                        required=["sector"],
                    )
                ),
                "whaleActivity": _object(
                    {
                        "largeTransactionCount": _NUMBER,
                        "largeTransactionVolumeUsd": _NUMBER,
                        "netFlowUsd": _NUMBER,
                    }
                ),
                "liquidityMetrics": _object({"totalValueLockedUsd": _NUMBER, "topDexVolume": _map_of(_NUMBER)}),
            },
            required=["_id", "timestamp"],
        )
    ),
    indexes=(IndexSpec("ix_market_snapshots_timestamp", (("timestamp", -1),)),),
)
"""Market snapshots, read newest first and by time range."""

WHALE_ACTIVITY = CollectionSpec(
    name="whale_activity",
    validator=_validator(
        _object(
            {
                "_id": _ID,
                "blockTime": _typed("int", "long", "null"),
                "timestamp": _TIMESTAMP,
                "signature": _ID,
                "walletAddress": _ID,
                "walletProfile": _object(
                    {
                        "type": _STRING,
                        "knownEntity": _STRING_OR_NULL,
                        "whaleCategory": _STRING,
                        "historicalInfluence": _NUMBER,
                    }
                ),
                "transactionType": {"bsonType": "string", "enum": [kind.value for kind in ActivityKind]},
                "tokens": {
                    "bsonType": "array",
                    "minItems": 1,
                    "items": _object(
                        {
                            "address": _ID,
                            "symbol": _STRING_OR_NULL,
                            "direction": _STRING,
                            # A UI amount as the document's example has it, or a decimal string when
                            # the writer keeps the exact raw u64 (DESIGN.md §4: strings in JSON).
                            "amount": {"bsonType": [*_NUMBERS, "string"], "pattern": _DECIMAL_PATTERN},
                            "valueUsd": _NUMBER_OR_NULL,
                        },
                        required=["address", "direction", "amount"],
                    ),
                },
                "market": _object({"venue": _STRING, "route": _STRING_OR_NULL, "priceImpact": _NUMBER_OR_NULL}),
                "significance": _object(
                    {
                        "relativeSize": _STRING,
                        "marketImpact": _STRING,
                        "signalStrength": _NUMBER,
                        "priceMoveAfter3h": _NUMBER_OR_NULL,
                    }
                ),
                "relatedTransactions": _STRINGS,
            },
            required=["_id", "signature", "timestamp", "walletAddress", "transactionType", "tokens"],
        )
    ),
    indexes=(
        IndexSpec("ix_whale_activity_timestamp", (("timestamp", -1),)),
        IndexSpec("ix_whale_activity_wallet_timestamp", (("walletAddress", 1), ("timestamp", -1))),
        IndexSpec("ix_whale_activity_token_timestamp", (("tokens.address", 1), ("timestamp", -1))),
        # Not unique: a writer may key a transaction's several whale trades as `<signature>:<index>`.
        IndexSpec("ix_whale_activity_signature", (("signature", 1),)),
    ),
)
"""Whale transactions, keyed by signature; read by time, by wallet and time, by token and time."""

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_PERFORMANCE_WINDOW = _object(
    {"tradesTotal": _NUMBER, "winRate": _NUMBER, "profitPercent": _NUMBER, "sharpeRatio": _NUMBER_OR_NULL}
)

STRATEGY_CONFIGS = CollectionSpec(
    name="strategy_configs",
    validator=_validator(
        _object(
            {
                "_id": _ID,
                "userId": _ID,
                "name": {"bsonType": "string", "minLength": 1},
                "type": {"bsonType": "string", "minLength": 1},
                "description": _STRING_OR_NULL,
                "status": {"bsonType": "string", "minLength": 1},
                "parameters": _object(
                    {
                        "minTransactionValueUsd": _NUMBER,
                        "minWhaleInfluenceScore": _NUMBER,
                        "followSizePercentage": _NUMBER,
                        "maxPositionSizeUsd": _NUMBER,
                        "allowedTokens": _object({"type": _STRING, "list": _STRINGS}),
                        "executionDelay": _NUMBER,
                        "takeProfitPercent": _NUMBER,
                        "stopLossPercent": _NUMBER,
                        "timeBasedExit": _object({"enabled": _BOOL, "maxHoldingTimeHours": _NUMBER}),
                    }
                ),
                "filters": _object(
                    {"transactionTypes": _STRINGS, "excludedWallets": _STRINGS, "minimumLiquidityUsd": _NUMBER}
                ),
                "performance": _object({"allTime": _PERFORMANCE_WINDOW, "last30Days": _PERFORMANCE_WINDOW}),
                "schedule": _object(
                    {
                        "active": _BOOL,
                        "timeWindows": _array_of(
                            _object(
                                {
                                    "days": _array_of({"bsonType": "string", "enum": _WEEKDAYS}),
                                    "startTime": {"bsonType": "string", "pattern": _TIME_OF_DAY_PATTERN},
                                    "endTime": {"bsonType": "string", "pattern": _TIME_OF_DAY_PATTERN},
                                    "timezone": _STRING,
                                }
                            )
                        ),
                    }
                ),
                "createdAt": _TIMESTAMP,
                "updatedAt": _TIMESTAMP,
                "lastRunAt": _TIMESTAMP_OR_NULL,
            },
            required=["_id", "userId", "name", "type", "status", "parameters"],
        )
    ),
    indexes=(
        IndexSpec("ix_strategy_configs_user", (("userId", 1),)),
        IndexSpec("ix_strategy_configs_type_status", (("type", 1), ("status", 1))),
    ),
)
"""Strategy configurations, keyed by strategy id; read by user, and by type and status."""

COLLECTIONS: tuple[CollectionSpec, ...] = (TOKENS, MARKET_SNAPSHOTS, WHALE_ACTIVITY, STRATEGY_CONFIGS)
"""The four collections, in the schema document's order."""

ValidatorAction = Literal["created", "updated", "unchanged"]
IndexAction = Literal["created", "replaced", "unchanged"]


@dataclass(frozen=True, slots=True)
class CollectionReport:
    """What `apply` did to one collection.

    Attributes:
        name: The collection.
        validator: `created` with the collection, `updated` by `collMod`, or `unchanged`.
        indexes: `(index name, action)` for each of the spec's indexes, in the spec's order.
        dropped: Indexes dropped because they had one of the spec's key patterns under another name.
        foreign: Indexes present that the spec does not name; left alone, reported for review.
    """

    name: str
    validator: ValidatorAction
    indexes: tuple[tuple[str, IndexAction], ...]
    dropped: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether `apply` changed anything in this collection."""
        return (
            self.validator != "unchanged"
            or any(action != "unchanged" for _, action in self.indexes)
            or bool(self.dropped)
        )


def apply(db: Database[Any], collections: Sequence[CollectionSpec] = COLLECTIONS) -> tuple[CollectionReport, ...]:
    """Bring `db`'s collections, validators and indexes to the specs; idempotent.

    A missing collection is created with its validator; an existing one whose validator, validation
    level or action differs is changed in place with `collMod` (its documents are kept). Each index
    is found by name: created when missing, dropped and rebuilt when its keys or uniqueness differ,
    left alone when equal. An index with a spec's key pattern under another name is dropped first,
    since MongoDB refuses two indexes on one key pattern. Other indexes are left alone.

    Args:
        db: The database to apply the schema to.
        collections: The specs to apply; all four by default.

    Returns:
        One report per collection, in `collections`' order.
    """
    names = [spec.name for spec in collections]
    existing = {info["name"]: info for info in db.list_collections(filter={"name": {"$in": names}})}
    return tuple(_apply_one(db, spec, existing.get(spec.name)) for spec in collections)


def _apply_one(db: Database[Any], spec: CollectionSpec, info: Mapping[str, Any] | None) -> CollectionReport:
    validator = _apply_validator(db, spec, info)
    collection = db[spec.name]
    current = {str(ix["name"]): ix for ix in collection.list_indexes()}
    actions: list[tuple[str, IndexAction]] = []
    dropped: list[str] = []
    for index in spec.indexes:
        have = current.get(index.name)
        if have is not None and _same_index(have, index):
            actions.append((index.name, "unchanged"))
            continue
        if have is not None:
            collection.drop_index(index.name)
            action: IndexAction = "replaced"
        else:
            action = "created"
            for other_name, other in current.items():
                if other_name != "_id_" and _key_pattern(other) == index.keys:
                    collection.drop_index(other_name)
                    dropped.append(other_name)
        collection.create_index(list(index.keys), name=index.name, unique=index.unique)
        actions.append((index.name, action))
    wanted = {index.name for index in spec.indexes} | {"_id_"}
    foreign = tuple(sorted(set(current) - wanted - set(dropped)))
    report = CollectionReport(
        name=spec.name, validator=validator, indexes=tuple(actions), dropped=tuple(dropped), foreign=foreign
    )
    logger.info(
        "schema=mongo collection=%s validator=%s indexes_changed=%d dropped=%s foreign=%s",
        spec.name,
        validator,
        sum(1 for _, a in actions if a != "unchanged"),
        ",".join(dropped) or "-",
        ",".join(foreign) or "-",
    )
    return report


def _apply_validator(db: Database[Any], spec: CollectionSpec, info: Mapping[str, Any] | None) -> ValidatorAction:
    options: dict[str, Any] = {
        "validator": spec.validator,
        "validationLevel": _VALIDATION_LEVEL,
        "validationAction": _VALIDATION_ACTION,
    }
    if info is None:
        try:
            db.command("create", spec.name, **options)
        except Exception as exc:
            # pymongo's OperationFailure carries `code`; matching on it keeps pymongo out of this
            # module's runtime imports. Anything but "already exists" is the caller's problem.
            if getattr(exc, "code", None) != _NAMESPACE_EXISTS_CODE:
                raise
        else:
            return "created"
    else:
        current = info.get("options", {})
        if all(current.get(key) == value for key, value in options.items()):
            return "unchanged"
    db.command("collMod", spec.name, **options)
    return "updated"


def _key_pattern(index: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    # Servers may echo a direction as 1.0; text and geo indexes have strings ("text", "2dsphere").
    return tuple(
        (str(field), int(kind) if isinstance(kind, int | float) else kind) for field, kind in index["key"].items()
    )


def _same_index(have: Mapping[str, Any], want: IndexSpec) -> bool:
    return _key_pattern(have) == want.keys and bool(have.get("unique", False)) == want.unique
