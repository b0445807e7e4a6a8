"""`doctor` and `migrate` say whether a store is reachable, and why not, through the stack's one probe."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tests.conftest import InfluxEndpoint, run_cli

EX_UNAVAILABLE = 69


def _detail(output: str, store: str) -> str:
    """The last column of `store`'s row in a table, its wrapped lines joined."""
    cells: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        columns = [c.strip() for c in line.split("│")[1:-1]]
        if not columns:
            continue
        current = columns[0] or current
        cells.setdefault(current, []).append(columns[-1])
    return " ".join(cells.get(store, []))


def test_doctor_and_migrate_name_a_server_of_another_kind(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> None:
    """A Redis URL at PostgreSQL's port is not reachable as Redis: doctor and migrate say so, as `stack` does."""
    pg_port = urllib.parse.urlsplit(pg_url).port
    env = {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_STACK_DIR": str(tmp_path / "stack"),
        "QUANTBOT_POSTGRES_URL": pg_url,
        "QUANTBOT_REDIS_URL": f"redis://127.0.0.1:{pg_port}/0",
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": "probe_test",
        "QUANTBOT_INFLUX_URL": influx.url,
    }

    for args in (["doctor"], ["migrate", "up"]):
        result = run_cli(*args, env=env)

        assert result.returncode == EX_UNAVAILABLE, result.stdout + result.stderr
        assert "does not answer as Redis" in _detail(result.stdout, "redis"), result.stdout
