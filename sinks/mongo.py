"""MongoDB sink: whale documents, upserted by transaction signature."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pymongo
import pymongo.errors
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot.models import WhaleTransaction
from quantbot.schema.mongo import WHALE_ACTIVITY
from sinks.retry import Retry

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Lost connection, no primary (a server restarting), network timeouts."""
    return isinstance(exc, pymongo.errors.AutoReconnect | pymongo.errors.ServerSelectionTimeoutError) or (
        isinstance(exc, pymongo.errors.BulkWriteError | pymongo.errors.OperationFailure)
        and getattr(exc, "has_error_label", lambda _label: False)("RetryableWriteError")
    )


class MongoSink(DynamicSink[WhaleTransaction]):
    """Upserts whale documents into `whale_activity`, replacing by `_id` (the signature).

    Delivery: one unordered bulk write per batch, acknowledged before `write_batch` returns; a
    replacement with the same document is idempotent, so at-least-once input is stored exactly once.
    A document the collection's validator refuses is a bug, not bad input: it stops the flow.

    Parallelism: one client per worker.

    Args:
        client: builds the pymongo client (from `sinks.clients.mongo_client`).
        database: the database name.
        retry: the retry policy for transient failures.
    """

    def __init__(self, client: Callable[[], pymongo.MongoClient[dict[str, Any]]], database: str, retry: Retry) -> None:
        self.client = client
        self.database = database
        self.retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoPartition:
        """A client for this worker."""
        return _MongoPartition(self.client(), self.database, self.retry)


class _MongoPartition(StatelessSinkPartition[WhaleTransaction]):
    def __init__(self, client: pymongo.MongoClient[dict[str, Any]], database: str, retry: Retry) -> None:
        self._client = client
        self._collection = client[database][WHALE_ACTIVITY.name]
        self._retry = retry

    def write_batch(self, items: list[WhaleTransaction]) -> None:
        if not items:
            return
        requests = [pymongo.ReplaceOne({"_id": w.document["_id"]}, w.document, upsert=True) for w in items]
        start = time.perf_counter()
        what = f"sink=mongo docs={len(requests)}"
        self._retry.call(lambda: self._collection.bulk_write(requests, ordered=False), is_transient, what=what)
        log.debug("%s elapsed_s=%.3f", what, time.perf_counter() - start)

    def close(self) -> None:
        self._client.close()
