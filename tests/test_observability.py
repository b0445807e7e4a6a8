"""Prometheus metrics of the flow and the sinks, and the health and readiness of a running flow."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from quantbot.health import SourceActivity
from sinks.retry import Backoff, Retry


def test_a_source_is_stale_only_while_reading_without_items() -> None:
    """Not opened: not reading yet; opened: stale after `stale_after_s` without an item; finished: never stale."""
    now = [100.0]
    source = SourceActivity("live", clock=lambda: now[0])
    assert source.problem(10.0) == "source live: not reading yet"
    source.opened()
    now[0] += 10.0
    assert source.problem(10.0) is None
    now[0] += 0.5
    assert source.problem(10.0) == "source live: no item for 10.5 s (stale after 10 s)"
    source.progressed()
    assert source.problem(10.0) is None
    source.finished()
    now[0] += 1_000.0
    assert source.problem(10.0) is None


def _counted(name: str, sink: str) -> float:
    return REGISTRY.get_sample_value(name, {"sink": sink}) or 0.0


def test_retries_and_write_errors_are_counted_by_sink() -> None:
    """Each failed attempt counts a write error of its sink; each attempt made again after one counts a retry."""
    retry = Retry(budget_s=5.0, backoff=Backoff(base_s=0.001, cap_s=0.001))
    failures = [ConnectionError("reset"), ConnectionError("reset")]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "stored"

    def refused() -> str:
        raise ValueError("refused")

    errors, retries = _counted("quantbot_sink_write_errors_total", "t"), _counted("quantbot_sink_retries_total", "t")
    assert retry.call(flaky, lambda exc: isinstance(exc, ConnectionError), what="sink=t", sink="t") == "stored"
    with pytest.raises(ValueError, match="refused"):
        retry.call(refused, lambda exc: isinstance(exc, ConnectionError), what="sink=t", sink="t")

    assert _counted("quantbot_sink_write_errors_total", "t") - errors == 3
    assert _counted("quantbot_sink_retries_total", "t") - retries == 2
