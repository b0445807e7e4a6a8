"""The stack's commands: `up`, `down` and `status`, over the four stores' servers."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from quantbot.ops.stack.postgres import INITDB_DEADLINE_S, POSTGRES_DATABASE, POSTGRES_USER, start_postgres
from quantbot.ops.stack.probes import DEFAULT_PORTS, is_reachable, unreachable_reason
from quantbot.ops.stack.process import (
    LOOPBACK,
    SERVER_START_DEADLINE_S,
    ServerStartError,
    ServerUnavailableError,
    display_path,
    first_line,
    free_port,
    locked,
    port_is_free,
    server_alive,
    stop,
)
from quantbot.ops.stack.secantusdb import start_mongo
from quantbot.ops.stack.valkey import start_valkey
from quantbot.ops.stack.victoria_metrics import start_victoria_metrics
from quantbot.redaction import redact_url, without_secrets
from quantbot.stack_state import STATE_FILE, RunningServer, StackError, StoreName, read_state, write_state

log = logging.getLogger(__name__)

LOCK_DEADLINE_S = 4 * SERVER_START_DEADLINE_S + INITDB_DEADLINE_S
"""How long `up`/`down` wait for another holder of the stack lock: one whole `up` of the four stores."""

PORT_ATTEMPTS = 3
"""A port found free can be taken by another program before our server binds it; retry on a new one."""


@dataclass(frozen=True)
class StoreWanted:
    """What the active profile asks for, one per store.

    Attributes:
        name: the store.
        url: the configured URL; None means "no URL configured: start one embedded".
        embedded: whether the stack may start this store when it does not answer.
    """

    name: StoreName
    url: str | None
    embedded: bool


Action = Literal["started", "reused", "running", "stopped", "unavailable", "failed", "external"]


@dataclass(frozen=True)
class StoreState:
    """One line of `stack up`, `stack down` or `stack status`.

    Attributes:
        name: the store.
        url: the URL other commands should use, secrets redacted; "" when there is none.
        action: what the stack did or found.
        detail: one human sentence: what runs where, or why it could not start (with the log's last lines).
        pid: the server's process id when the stack runs it.
    """

    name: StoreName
    url: str
    action: Action
    detail: str
    pid: int | None


def up(wanted: Sequence[StoreWanted], stack_dir: Path) -> list[StoreState]:
    """Make every wanted store answer, starting embedded servers where needed; idempotent.

    Per store: a configured URL that answers is reused (or reported external when the store is not
    embedded); a server the stack started before that still answers is reused; otherwise, when the
    store is embedded, a server is started on a free loopback port (or, for a configured loopback URL,
    on that URL's port), waited for, and recorded in `stack_dir/state.json`. A missing program or a
    failed start is reported ("unavailable" or "failed", with the reason and the log's last lines)
    and does not stop the other stores.

    Args:
        wanted: what the profile asks for, one entry per store.
        stack_dir: the stack's directory; created when absent.

    Returns:
        One state per wanted store, in the order given.

    Raises:
        StackError: another `stack up`/`down` held the lock for longer than `LOCK_DEADLINE_S`.
    """
    stack_dir = stack_dir.absolute()
    results: list[StoreState] = []
    with locked(stack_dir, LOCK_DEADLINE_S):
        records = read_state(stack_dir)
        for store in wanted:
            try:
                state, server = _up_one(store, records.get(store.name), stack_dir)
            except (StackError, OSError) as exc:  # e.g. an unwritable stack_dir, a stale server that will not die
                shown = redact_url(store.url) if store.url else ""
                state, server = StoreState(store.name, shown, "failed", first_line(exc), None), None
            if server is not None:
                records[store.name] = server
                write_state(stack_dir, records)
            log.info("stack store=%s action=%s pid=%s url=%s", store.name, state.action, state.pid, state.url)
            results.append(state)
    return results


def down(stack_dir: Path) -> list[StoreState]:
    """Stop every server the stack started, keep their data, and forget them.

    Returns:
        One "stopped" state per recorded server ("failed" if one would not die; it stays recorded).
        An empty list when the stack runs nothing.

    Raises:
        StackError: another `stack up`/`down` held the lock for longer than `LOCK_DEADLINE_S`.
    """
    stack_dir = stack_dir.absolute()
    results: list[StoreState] = []
    if not (stack_dir / STATE_FILE).exists():
        return results
    with locked(stack_dir, LOCK_DEADLINE_S):
        records = read_state(stack_dir)
        for name, server in list(records.items()):
            where = f"data kept in {display_path(server.data_dir)}"
            try:
                was_running = stop(server)
            except StackError as exc:
                results.append(StoreState(name, server.url, "failed", f"{exc}; still recorded", server.pid))
                continue
            if was_running:
                detail = f"stopped {server.program} (pid {server.pid}); {where}"
            else:
                detail = f"{server.program} (pid {server.pid}) was not running; {where}"
            del records[name]
            write_state(stack_dir, records)
            log.info("stack store=%s action=stopped pid=%s was_running=%s", name, server.pid, was_running)
            results.append(StoreState(name, server.url, "stopped", detail, server.pid))
    return results


def status(wanted: Sequence[StoreWanted], stack_dir: Path) -> list[StoreState]:
    """Tell, per wanted store, whether it answers now; starts and stops nothing.

    A server the stack started is "running" when its process is alive and it answers its protocol,
    else "stopped" with what is wrong. A configured URL the stack did not start is "external" when it
    answers and "unavailable" when it does not; an embedded store never started is "stopped".

    Returns:
        One state per wanted store, in the order given.
    """
    records = read_state(stack_dir.absolute())
    return [_status_one(store, records.get(store.name)) for store in wanted]


_STARTERS: dict[StoreName, Callable[[Path, int, Path], RunningServer]] = {
    StoreName.REDIS: start_valkey,
    StoreName.MONGO: start_mongo,
    StoreName.INFLUX: start_victoria_metrics,
}


def _up_one(
    store: StoreWanted, record: RunningServer | None, stack_dir: Path
) -> tuple[StoreState, RunningServer | None]:
    """One store's `up`: the state to report and, when a server was started, its new record."""
    name = store.name
    if store.url:
        shown = redact_url(store.url)
        problem = unreachable_reason(name, store.url)
        if problem is None:
            if record is not None and record.url == without_secrets(store.url):
                return StoreState(name, shown, "reused", f"already running: {_describe(record)}", record.pid), None
            if not store.embedded:
                return StoreState(name, shown, "external", f"{shown} answers (not run by the stack)", None), None
            return StoreState(name, shown, "reused", f"{shown} answers (not started by the stack)", None), None
        if not store.embedded:
            why = f"{problem}; the profile does not let the stack start one (embedded = false)"
            return StoreState(name, shown, "unavailable", why, None), None
        parts = urllib.parse.urlsplit(store.url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        if parts.hostname not in {LOOPBACK, "localhost"} or port is None:
            why = f"{problem}; the stack starts servers on {LOOPBACK} only, at a TCP port the URL names"
            return StoreState(name, shown, "unavailable", why, None), None
        if not port_is_free(port):
            why = f"{problem}; its port {port} is held by another program, so the stack cannot start one there"
            return StoreState(name, shown, "unavailable", why, None), None
        if record is not None and server_alive(record):
            why = (
                f"{problem}; the stack's own {record.program} holds this store's data at {record.url}: "
                "`quantbot stack down` it first, or remove the configured URL"
            )
            return StoreState(name, shown, "unavailable", why, None), None
        return _start(store, stack_dir, [port], _url_identity(store.url))
    if not store.embedded:
        return StoreState(name, "", "unavailable", _not_embedded(record), None), None
    if record is not None:
        if server_alive(record) and is_reachable(name, record.url):
            return StoreState(name, record.url, "reused", f"already running: {_describe(record)}", record.pid), None
        # Recorded but not serving: it died, or hangs. Clear it away and start afresh on the same port
        # when that is still free, so that URLs the user copied keep working.
        stop(record)
    ports: list[int] = []
    if record is not None and port_is_free(record.port):
        ports.append(record.port)
    ports += [free_port() for _ in range(PORT_ATTEMPTS - len(ports))]
    return _start(store, stack_dir, ports, None)


def _start(
    store: StoreWanted, stack_dir: Path, ports: Sequence[int], identity: tuple[str, str] | None
) -> tuple[StoreState, RunningServer | None]:
    """Start `store` on the first of `ports` that works; report "started", "unavailable" or "failed"."""
    name = store.name
    data_dir = stack_dir / name / "data"
    log_path = stack_dir / f"{name}.log"
    shown_url = redact_url(store.url) if store.url else ""
    failure: ServerStartError | None = None
    for port in ports:
        try:
            if name is StoreName.POSTGRES:
                user, database = identity or (POSTGRES_USER, POSTGRES_DATABASE)
                server = start_postgres(data_dir, port, log_path, user, database)
            else:
                server = _STARTERS[name](data_dir, port, log_path)
        except ServerUnavailableError as exc:
            return StoreState(name, shown_url, "unavailable", str(exc), None), None
        except ServerStartError as exc:
            failure = exc
            if not port_is_free(port) and len(ports) > 1:
                log.warning("stack store=%s port=%d taken while starting; trying another", name, port)
                continue
            break
        if store.url:
            # Started for a configured URL: record that URL (minus any password: trust auth needs none),
            # so that later commands recognise it as the stack's own server.
            server = replace(server, url=without_secrets(store.url))
        return StoreState(name, server.url, "started", _describe(server), server.pid), server
    return StoreState(name, shown_url, "failed", str(failure), None), None


def _status_one(store: StoreWanted, record: RunningServer | None) -> StoreState:
    """One store's `status`."""
    name = store.name
    if (
        record is not None
        and (store.url or store.embedded)
        and (not store.url or without_secrets(store.url) == record.url)
    ):
        alive = server_alive(record)
        problem = unreachable_reason(name, record.url)
        if alive and problem is None:
            return StoreState(name, record.url, "running", _describe(record), record.pid)
        where = f"data in {display_path(record.data_dir)}, log {display_path(record.log)}"
        if alive:
            why = f"{record.program} (pid {record.pid}) runs but {problem}; {where}"
            return StoreState(name, record.url, "stopped", why, record.pid)
        why = f"{record.program} (pid {record.pid}) is not running; {where}; `quantbot stack up` restarts it"
        return StoreState(name, record.url, "stopped", why, None)
    if store.url:
        shown = redact_url(store.url)
        problem = unreachable_reason(name, store.url)
        if problem is None:
            return StoreState(name, shown, "external", f"{shown} answers (not run by the stack)", None)
        return StoreState(name, shown, "unavailable", problem, None)
    if store.embedded:
        return StoreState(name, "", "stopped", "not started: `quantbot stack up` starts it", None)
    return StoreState(name, "", "unavailable", _not_embedded(record), None)


def _not_embedded(record: RunningServer | None) -> str:
    """Why a store with neither a URL nor `embedded` is unavailable (naming a stack server it leaves unused)."""
    why = "no URL is configured and the profile does not let the stack start one (embedded = false)"
    if record is not None:
        why += f"; the stack's {record.program} at {record.url} is left alone"
    return why


def _describe(server: RunningServer) -> str:
    """E.g. "valkey 8.1.8 on 127.0.0.1:41234 (pid 812), data .quantbot/stack/redis/data"."""
    owner = f", as user {server.account}" if server.account else ""
    return (
        f"{server.program} on {LOOPBACK}:{server.port} (pid {server.pid}{owner}), "
        f"data {display_path(server.data_dir)}, log {display_path(server.log)}"
    )


def _url_identity(url: str) -> tuple[str, str]:
    """The PostgreSQL user and database a configured URL names (the embedded defaults where it names none)."""
    parts = urllib.parse.urlsplit(url)
    database = urllib.parse.unquote(parts.path.lstrip("/")) or POSTGRES_DATABASE
    return urllib.parse.unquote(parts.username or POSTGRES_USER), database
