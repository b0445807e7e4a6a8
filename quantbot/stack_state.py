"""The embedded stack's state file: which store servers the stack started, and where they answer.

`quantbot stack up` (in `quantbot.ops.stack`) records every server it starts in `<stack dir>/state.json`;
the store clients (`sinks.clients`) read the URLs recorded there for a store that the profile marks
embedded and gives no URL. This module is that file's one reader and writer: plain file I/O, no
process, socket or store client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from quantbot.errors import QuantbotError

STATE_FILE = "state.json"
STATE_VERSION = 1
"""Version of `state.json`'s layout, so a later layout can read or refuse an older one."""


class StackError(QuantbotError):
    """A server of the embedded stack could not be started or stopped."""


class StoreName(StrEnum):
    """The four stores of the platform."""

    POSTGRES = "postgres"
    REDIS = "redis"
    MONGO = "mongo"
    INFLUX = "influx"


@dataclass(frozen=True)
class RunningServer:
    """A server process started by this module.

    Attributes:
        name: the store it serves.
        pid: its process id; it leads its own session and process group.
        port: the loopback TCP port it listens on.
        url: the URL clients use (no password: trust auth or none).
        data_dir: where it keeps its data.
        log: the file its stdout and stderr go to.
        program: the server and its version, e.g. "valkey 8.1.8".
        account: the system account it runs as when that is not the caller's (PostgreSQL under root).
        started_ticks: its start time in clock ticks since boot (Linux procfs), which tells it apart
            from a later process that reuses its pid; None where procfs is missing.
    """

    name: StoreName
    pid: int
    port: int
    url: str
    data_dir: Path
    log: Path
    program: str
    account: str | None = None
    started_ticks: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record kept in `state.json`."""
        return {
            "pid": self.pid,
            "port": self.port,
            "url": self.url,
            "data_dir": str(self.data_dir),
            "log": str(self.log),
            "program": self.program,
            "account": self.account,
            "started_ticks": self.started_ticks,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, name: StoreName, record: Mapping[str, Any]) -> RunningServer:
        """Read back a record written by `to_json`."""
        return cls(
            name=name,
            pid=int(record["pid"]),
            port=int(record["port"]),
            url=str(record["url"]),
            data_dir=Path(record["data_dir"]),
            log=Path(record["log"]),
            program=str(record["program"]),
            account=record.get("account"),
            started_ticks=record.get("started_ticks"),
        )


def read_state(stack_dir: Path) -> dict[StoreName, RunningServer]:
    """The servers recorded in `state.json` (none when it does not exist)."""
    path = stack_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StackError(f"stack state `{path}` is unreadable ({exc}); stop its servers, then remove it") from exc
    if raw.get("version") != STATE_VERSION:
        raise StackError(f"stack state `{path}` has layout version {raw.get('version')!r}, expected {STATE_VERSION}")
    return {StoreName(name): RunningServer.from_json(StoreName(name), rec) for name, rec in raw["servers"].items()}


def write_state(stack_dir: Path, servers: Mapping[StoreName, RunningServer]) -> None:
    """Replace `state.json` atomically: readers see the old file or the new one, never half of one."""
    path = stack_dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    body = {"version": STATE_VERSION, "servers": {str(n): s.to_json() for n, s in sorted(servers.items())}}
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def recorded_urls(stack_dir: Path) -> dict[StoreName, str]:
    """The URLs of the embedded servers recorded by `up`, whether or not they answer right now.

    `sinks.clients.resolve_endpoints` uses them for a store that is embedded and has no configured URL.
    """
    return {name: server.url for name, server in read_state(stack_dir.absolute()).items()}
