"""Retrying store writes through transient failures, with bounded exponential backoff.

Which errors are worth retrying is the store's decision (each sink passes its own predicate); how long
to wait between attempts and when to give up is this module's. A write that still fails when the
budget is spent raises: the flow stops loudly and resumes from its last snapshot when restarted,
which loses nothing because every write is idempotent. A store's refusal of one item is neither
retried nor raised: the item becomes a dead letter (`sinks.dead_letters`).

Failures are counted here: per sink, each failed attempt in `quantbot_sink_write_errors_total{sink}` and
each attempt made again in `quantbot_sink_retries_total{sink}`; in all, the writes given up on
(`STORE_WRITE_FAILURES`). The writes themselves and their time are observed per batch by each sink
(`quantbot.metrics.observe_batches`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from quantbot import metrics
from quantbot.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry policy: keep trying a transient failure until `budget_s` has passed since the first attempt.

    The default budget outlasts a store restart (tens of seconds); configure it with
    `[sinks] retry_budget_s`.
    """

    budget_s: float = 60.0
    backoff: Backoff = Backoff()  # noqa: RUF009 - frozen: one default shared safely

    def call(
        self,
        operation: Callable[[], T],
        is_transient: Callable[[BaseException], bool],
        *,
        what: str,
        sink: str,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Run `operation`, retrying transient failures within the budget.

        Args:
            operation: the write; it must be idempotent.
            is_transient: whether an exception may go away by itself.
            what: a key=value description for the log (`sink=redis items=500`).
            sink: the sink whose write this is, as the metrics label it (`redis`).
            on_retry: called after a transient failure, before waiting (e.g. to reset a connection).

        Raises:
            BaseException: the last failure, once it is permanent or the budget is spent.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return operation()
            except Exception as exc:
                metrics.SINK_WRITE_ERRORS.labels(sink).inc()
                elapsed = time.monotonic() - started
                if not is_transient(exc) or elapsed >= self.budget_s:
                    metrics.STORE_WRITE_FAILURES.inc()
                    log.error("%s attempts=%d elapsed_s=%.1f giving up: %r", what, attempt + 1, elapsed, exc)
                    raise
                delay = min(self.backoff.delay(attempt), max(0.0, self.budget_s - elapsed))
                log.warning("%s attempt=%d retry_in_s=%.2f transient: %r", what, attempt + 1, delay, exc)
                if on_retry is not None:
                    on_retry(exc)
                time.sleep(delay)
                metrics.SINK_RETRIES.labels(sink).inc()
                attempt += 1
