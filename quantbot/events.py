"""Notable operational events of the pipeline: rows of PostgreSQL's `system_events` (seed schema).

An event is one occurrence (a run started, a burst of dead letters, a store given up on). Its id is a
random UUID drawn once, when the occurrence is noticed: writing the same `SystemEvent` again (a retried
insert) changes nothing, and two occurrences are two rows. These are not replayed data, so the ids need
not be derived from the input as the stores' natural keys are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """`system_events.event_type`: what happened."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    RUN_STOPPED = "run_stopped"
    """The run was asked to stop (SIGTERM, SIGINT) and stopped cleanly; a resume continues it."""
    RUN_FAILED = "run_failed"
    DEAD_LETTER_BURST = "dead_letter_burst"
    SINK_RETRIES_EXHAUSTED = "sink_retries_exhausted"
    RESUME_REFUSED = "resume_refused"
    # Defined for the live sources (not emitted by a replay):
    GAP_DETECTED = "gap_detected"
    GAP_BACKFILLED = "gap_backfilled"
    RECONNECT_STORM = "reconnect_storm"
    PRICE_DISAGREEMENT = "price_disagreement"
    """A price feed and the prices learned from on-chain trades disagree beyond tolerance."""
    BACKFILL_SLOT_UNAVAILABLE = "backfill_slot_unavailable"
    """A slot the backfill read to fix its range had no block: skipped, or missing from long-term storage."""


class Severity(StrEnum):
    """`system_events.severity`."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """One `system_events` row; `status` starts as the schema's default, `new`.

    Attributes:
        event_type: what happened.
        severity: how much it matters.
        source: who noticed it, e.g. `replay`.
        message: one human-readable line.
        details: JSON-able particulars (counts, the store, the error).
        event_id: the occurrence's id, drawn once.
        created_at: when it was noticed (timezone-aware).
    """

    event_type: EventType
    severity: Severity
    source: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
