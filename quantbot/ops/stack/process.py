"""What every embedded server shares: launching it detached, waiting until it answers, stopping it.

A server is a process in its own session (so it outlives the command and Ctrl-C in its terminal does
not reach it) whose output is appended to its log file. `stop` sends the polite signal, waits, then
kills its process group. A recorded server is told apart from a later process that reuses its pid by
its start time (`start_ticks`). `locked` is the stack directory's lock, so that two commands never
start the same server twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantbot import redaction
from quantbot.stack_state import RunningServer, StackError, StoreName

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""Every embedded server listens on IPv4 loopback only: it is a development stack with trust auth."""

SERVER_START_DEADLINE_S = 30.0
"""From launch to answering its protocol. PostgreSQL's first start after initdb takes 1–5 s on a laptop
and SecantusDB imports its Python stack in about 2 s; six times that is a hung server, not a slow one."""

STOP_DEADLINE_S = 15.0
"""After the polite signal, before SIGKILL. PostgreSQL's fast shutdown writes one checkpoint and Valkey
fsyncs its append-only file: well under a second for a development data set, 15 s for a large one."""

KILL_DEADLINE_S = 5.0
"""After SIGKILL the kernel tears a process down within milliseconds; 5 s means it is stuck in I/O."""

VERSION_DEADLINE_S = 10.0
"""`<server> --version` prints one line at once; 10 s covers a cold disk and an overloaded CI runner."""

POLL_INTERVAL_S = 0.05
"""Between readiness and exit checks: fast enough that a start is not padded, slow enough to stay idle."""

LOG_TAIL_LINES = 12
"""How much of a server's log a failure report quotes: enough for PostgreSQL's FATAL and its context."""

LOCK_FILE = ".lock"


class ServerUnavailableError(StackError):
    """The server's program is not installed, or not usable by this account: nothing was started."""


class ServerStartError(StackError):
    """The server was launched but exited, or did not answer within its deadline; it was stopped again."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}
"""Servers started by this process, kept so that their exit is reaped (no zombies) and seen at once."""


def launch(
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


def wait_until_answering(pid: int, probe: Callable[[], str | None], log_path: Path, program: str) -> None:
    """Poll until the new server answers; on exit or deadline stop it and raise `ServerStartError`.

    Args:
        pid: the launched server.
        probe: why the server does not answer yet, or None once it does (see `probes.unreachable_reason`).
        log_path: its log, quoted on failure.
        program: its name and version, for messages.
    """
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    problem: str | None = "not probed yet"
    try:
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                code = _LAUNCHED[pid].returncode if pid in _LAUNCHED else None
                raise ServerStartError(f"{program} exited while starting (status {code}); {log_tail(log_path)}")
            problem = probe()
            if problem is None:
                return
            time.sleep(POLL_INTERVAL_S)
        raise ServerStartError(
            f"{program} did not answer within {SERVER_START_DEADLINE_S:.0f} s ({problem}); {log_tail(log_path)}"
        )
    except BaseException:
        # Whatever went wrong (deadline, missing client library, Ctrl-C), leave no unrecorded server behind.
        kill_group(pid)
        wait_for_exit(pid, KILL_DEADLINE_S)
        raise


def pid_alive(pid: int) -> bool:
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


def start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (procfs field 22); None without procfs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return int(fields[19])  # fields[0] is field 3 (state), so field 22 (starttime) is fields[19]


def server_alive(server: RunningServer) -> bool:
    """Whether the recorded server process still runs: its pid is alive and was not reused since."""
    if not pid_alive(server.pid):
        return False
    if server.started_ticks is None:
        return True
    now = start_ticks(server.pid)
    return now is None or now == server.started_ticks


def wait_for_exit(pid: int, deadline_s: float) -> bool:
    """Poll until `pid` is gone; whether it went within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (the server and any children it left behind)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def port_is_free(port: int) -> bool:
    """Whether nothing listens on loopback `port` (we can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


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
    if not server_alive(server):
        return False
    polite = signal.SIGINT if server.name is StoreName.POSTGRES else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, polite)
    if wait_for_exit(pid, deadline_s):
        kill_group(pid)  # stragglers of a clean exit, e.g. PostgreSQL backends of a killed postmaster
        return True
    log.warning("stack store=%s pid=%d ignored %s for %.0f s; killing it", server.name, pid, polite.name, deadline_s)
    kill_group(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_for_exit(pid, KILL_DEADLINE_S):
        raise StackError(f"{server.program} (pid {pid}) survived SIGKILL for {KILL_DEADLINE_S:.0f} s")
    return True


@contextlib.contextmanager
def locked(stack_dir: Path, deadline_s: float) -> Iterator[None]:
    """Hold the stack's exclusive lock (flock on `stack_dir/.lock`), waiting at most `deadline_s`."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    path = stack_dir / LOCK_FILE
    with path.open("a+b") as fh:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another `quantbot stack` command has held `{path}` for {deadline_s:.0f} s"
                    ) from None
                time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def run_version(argv: Sequence[str], account: pwd.struct_passwd | None = None) -> str:
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


def log_tail(log_path: Path) -> str:
    """The last `LOG_TAIL_LINES` lines of a server log, for a failure report."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"no log at {display_path(log_path)}"
    tail = "\n  ".join(lines[-LOG_TAIL_LINES:])
    return f"last lines of {display_path(log_path)}:\n  {tail}"


def first_line(exc: BaseException) -> str:
    """`quantbot.redaction.first_line` without a trailing period: the stack quotes it mid-sentence."""
    return redaction.first_line(exc).rstrip(".")


def display_path(path: Path) -> str:
    """`path` relative to the working directory when under it (as users typed it), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
