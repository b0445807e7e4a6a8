"""MongoDB sink: whale documents (upserted by signature, then followed up in place), token documents, market
snapshots and strategy performance."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bson
import bson.errors
import pymongo
import pymongo.errors
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot import metrics
from quantbot.analytics import MarketSnapshot, StrategyPerformance, TokenDocument, WhaleUpdate
from quantbot.models import WhaleTransaction
from quantbot.schema.mongo import MARKET_SNAPSHOTS, STRATEGY_CONFIGS, TOKENS, WHALE_ACTIVITY
from sinks.dead_letters import DeadLetterStore, DeadLetterWriter, convert_each, deliver, refused
from sinks.retry import Retry

log = logging.getLogger(__name__)

STORE = "mongo"

TRANSIENT_WRITE_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11000, 11600, 11602, 13435, 13436})
"""Write errors that say nothing about the document: host unreachable or not found (6, 7), network
timeout (89), shutdown or stepdown in progress (91, 189, 11600, 11602), time limit (262), socket error
(9001), not primary (10107, 13435, 13436), and a duplicate `_id` (11000), which two upserts of one new
document racing each other can meet (the server's own advice is to retry). Any other write error
(121: the collection's validator refuses the document; 2: a bad value) refuses the document itself."""


def is_transient(exc: BaseException) -> bool:
    """Lost connection, no primary (a server restarting), network timeouts, and transient write errors."""
    if isinstance(exc, pymongo.errors.AutoReconnect | pymongo.errors.ServerSelectionTimeoutError):
        return True
    if not isinstance(exc, pymongo.errors.BulkWriteError | pymongo.errors.OperationFailure):
        return False
    if exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, pymongo.errors.BulkWriteError):
        details: Mapping[str, Any] = exc.details
        if details.get("writeConcernErrors"):
            return True  # the writes were applied, but not yet acknowledged as asked: write them again
        return any(error.get("code") in TRANSIENT_WRITE_CODES for error in details.get("writeErrors", ()))
    return False


Documented = WhaleTransaction | WhaleUpdate | TokenDocument | MarketSnapshot | StrategyPerformance
"""What the sink writes."""

Request = pymongo.ReplaceOne[dict[str, Any]] | pymongo.UpdateOne
"""One write of a bulk."""


def _encodable(document: Mapping[str, Any]) -> None:
    try:
        bson.encode(document)
    except bson.errors.InvalidDocument as exc:
        raise ValueError(f"document cannot be encoded as BSON: {exc}") from exc


def replacement(whale: WhaleTransaction) -> pymongo.ReplaceOne[dict[str, Any]]:
    """The upsert of a whale's document.

    Raises:
        ValueError: the document cannot be encoded as BSON (e.g. an integer beyond 64 bits), which
            would otherwise fail the whole bulk write, not just this document.
    """
    document = whale.document
    _encodable(document)
    return pymongo.ReplaceOne({"_id": document["_id"]}, document, upsert=True)


@dataclass(frozen=True, slots=True)
class MongoWrite:
    """One item's write: its collection, document id and request; `whole` when it sets everything the document's
    earlier writes of its kind set (a replacement; a strategy's performance), so that those may be skipped."""

    collection: str
    key: object
    request: Request
    whole: bool


def write_of(item: Documented) -> MongoWrite:
    """The write of one item.

    A whale follow-up sets its fields in place and appends related signatures once each (`$addToSet`), and
    never creates a document (a whale its collection refused stays refused); a strategy's performance is set
    on its existing configuration with `lastRunAt`, the feed time of the figures.

    Raises:
        ValueError: the document or update cannot be encoded as BSON.
    """
    if isinstance(item, WhaleTransaction):
        return MongoWrite(WHALE_ACTIVITY.name, item.document["_id"], replacement(item), whole=True)
    if isinstance(item, TokenDocument | MarketSnapshot):
        document = item.document
        _encodable(document)
        collection = TOKENS.name if isinstance(item, TokenDocument) else MARKET_SNAPSHOTS.name
        replaced = pymongo.ReplaceOne({"_id": document["_id"]}, document, upsert=True)
        return MongoWrite(collection, document["_id"], replaced, whole=True)
    if isinstance(item, WhaleUpdate):
        update: dict[str, Any] = {}
        if item.fields:
            update["$set"] = item.fields
        if item.related:
            update["$addToSet"] = {"relatedTransactions": {"$each": list(item.related)}}
        _encodable(update)
        return MongoWrite(
            WHALE_ACTIVITY.name, item.signature, pymongo.UpdateOne({"_id": item.signature}, update), False
        )
    performance = {"performance": item.performance, "lastRunAt": datetime.fromtimestamp(item.at, tz=UTC)}
    _encodable(performance)
    request = pymongo.UpdateOne({"_id": item.strategy_id}, {"$set": performance})
    return MongoWrite(STRATEGY_CONFIGS.name, item.strategy_id, request, whole=True)


def latest_only(writes: list[tuple[int, MongoWrite]]) -> list[tuple[int, MongoWrite]]:
    """The writes without those a later whole write of the same document supersedes (a token's document
    rewritten at the next boundary, a strategy's performance): the document ends the same, in fewer writes."""
    last = {(w.collection, w.key): index for index, w in writes if w.whole}
    return [(index, w) for index, w in writes if not w.whole or last[(w.collection, w.key)] == index]


def waves(writes: list[tuple[int, MongoWrite]]) -> list[dict[str, list[tuple[int, Request]]]]:
    """The writes split, in order, into waves in which no document is written twice, by collection.

    An unordered bulk write may apply its requests in any order; two writes of one document (a whale and
    its follow-up) must apply in stream order, so the second goes to the next wave. Each request keeps its
    item's index in the batch.
    """
    out: list[dict[str, list[tuple[int, Request]]]] = []
    touched: set[tuple[str, object]] = set()
    for index, write in writes:
        if not out or (write.collection, write.key) in touched:
            out.append({})
            touched = set()
        touched.add((write.collection, write.key))
        out[-1].setdefault(write.collection, []).append((index, write.request))
    return out


def _reason(error: dict[str, Any]) -> str:
    info = json.dumps(error.get("errInfo"), default=str) if error.get("errInfo") else ""
    return f"write error code {error.get('code')}: {error.get('errmsg')} {info}".rstrip()


class MongoSink(DynamicSink[Documented]):
    """Upserts whale documents into `whale_activity` (replacing by `_id`, the signature) and applies their
    follow-ups in place; replaces token documents (`tokens`, by mint) and market snapshots
    (`market_snapshots`, by time); sets strategies' performance (`strategy_configs`).

    Delivery: unordered bulk writes per collection, acknowledged before `write_batch` returns, in waves so
    that two writes of one document apply in stream order (`waves`). Each write is a replacement or a `$set`
    of values fixed by the stream, or an `$addToSet`: applied again, it changes nothing, so at-least-once
    input in stream order is stored exactly once. A document's writes must reach one partition in stream
    order (the flow writes them from the valuation's worker).

    A document the collection's validator refuses (write error 121), or that cannot be encoded as
    BSON, goes to `dead_letters` as a dead letter of stage `sink:mongo` with the server's reason; the
    bulk write is unordered, so the batch's other documents are stored. Without a `dead_letters`
    store, such a document stops the flow.

    Parallelism: one client per worker.

    Args:
        client: builds the pymongo client (from `sinks.clients.mongo_client`).
        database: the database name.
        retry: the retry policy for transient failures.
        dead_letters: where documents that cannot be stored go.
    """

    def __init__(
        self,
        client: Callable[[], pymongo.MongoClient[dict[str, Any]]],
        database: str,
        retry: Retry,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.retry = retry
        self.dead_letters = dead_letters

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoPartition:
        """A client for this worker."""
        letters = self.dead_letters.writer() if self.dead_letters is not None else None
        return _MongoPartition(self.client(), self.database, self.retry, letters)


class _MongoPartition(StatelessSinkPartition[Documented]):
    def __init__(
        self,
        client: pymongo.MongoClient[dict[str, Any]],
        database: str,
        retry: Retry,
        letters: DeadLetterWriter | None,
    ) -> None:
        self._client = client
        self._database = client[database]
        self._retry = retry
        self._letters = letters

    def _bulk(self, collection: str, requests: list[tuple[int, Request]]) -> list[tuple[int, dict[str, Any]]]:
        """One unordered bulk write; (batch index, write error) of the requests refused for what they hold."""

        def write() -> list[dict[str, Any]]:
            try:
                self._database[collection].bulk_write([request for _, request in requests], ordered=False)
            except pymongo.errors.BulkWriteError as exc:
                errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
                if is_transient(exc) or not errors:
                    raise
                return errors
            return []

        start = time.perf_counter()
        what = f"sink=mongo collection={collection} docs={len(requests)}"
        errors = self._retry.call(write, is_transient, what=what, sink=STORE)
        log.debug("%s refused=%d elapsed_s=%.3f", what, len(errors), time.perf_counter() - start)
        return [(requests[error["index"]][0], error) for error in errors]

    @metrics.observe_batches(STORE)
    def write_batch(self, items: list[Documented]) -> None:
        converted, letters = convert_each(items, write_of, STORE)
        for wave in waves(latest_only(list(enumerate(write for _, write in converted)))):
            for collection, requests in wave.items():
                refusals = self._bulk(collection, requests)
                letters += [refused(converted[index][0], STORE, _reason(error)) for index, error in refusals]
        deliver(self._letters, letters)

    def close(self) -> None:
        self._client.close()
        if self._letters is not None:
            self._letters.close()
