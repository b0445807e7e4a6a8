"""MongoDB sink: whale documents, upserted by transaction signature."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import bson
import bson.errors
import pymongo
import pymongo.errors
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot import metrics
from quantbot.models import WhaleTransaction
from quantbot.schema.mongo import WHALE_ACTIVITY
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


def replacement(whale: WhaleTransaction) -> pymongo.ReplaceOne[dict[str, Any]]:
    """The upsert of a whale's document.

    Raises:
        ValueError: the document cannot be encoded as BSON (e.g. an integer beyond 64 bits), which
            would otherwise fail the whole bulk write, not just this document.
    """
    document = whale.document
    try:
        bson.encode(document)
    except bson.errors.InvalidDocument as exc:
        raise ValueError(f"document cannot be encoded as BSON: {exc}") from exc
    return pymongo.ReplaceOne({"_id": document["_id"]}, document, upsert=True)


def _reason(error: dict[str, Any]) -> str:
    info = json.dumps(error.get("errInfo"), default=str) if error.get("errInfo") else ""
    return f"write error code {error.get('code')}: {error.get('errmsg')} {info}".rstrip()


class MongoSink(DynamicSink[WhaleTransaction]):
    """Upserts whale documents into `whale_activity`, replacing by `_id` (the signature).

    Delivery: one unordered bulk write per batch, acknowledged before `write_batch` returns; a
    replacement with the same document is idempotent, so at-least-once input is stored exactly once.

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


class _MongoPartition(StatelessSinkPartition[WhaleTransaction]):
    def __init__(
        self,
        client: pymongo.MongoClient[dict[str, Any]],
        database: str,
        retry: Retry,
        letters: DeadLetterWriter | None,
    ) -> None:
        self._client = client
        self._collection = client[database][WHALE_ACTIVITY.name]
        self._retry = retry
        self._letters = letters

    @metrics.observe_batches(STORE)
    def write_batch(self, items: list[WhaleTransaction]) -> None:
        converted, letters = convert_each(items, replacement, STORE)
        requests = [request for _, request in converted]

        def write() -> list[dict[str, Any]]:
            """The bulk write; the write errors of documents refused for what they hold."""
            try:
                self._collection.bulk_write(requests, ordered=False)
            except pymongo.errors.BulkWriteError as exc:
                errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
                if is_transient(exc) or not errors:
                    raise
                return errors
            return []

        if requests:
            start = time.perf_counter()
            what = f"sink=mongo docs={len(requests)}"
            errors = self._retry.call(write, is_transient, what=what, sink=STORE)
            log.debug("%s refused=%d elapsed_s=%.3f", what, len(errors), time.perf_counter() - start)
            letters += [refused(converted[error["index"]][0], STORE, _reason(error)) for error in errors]
        deliver(self._letters, letters)

    def close(self) -> None:
        self._client.close()
        if self._letters is not None:
            self._letters.close()
