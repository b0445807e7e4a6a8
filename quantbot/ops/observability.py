"""Health, readiness and Prometheus metrics over HTTP, while a flow runs (`--http-port PORT`).

```
GET /healthz   200 "ok": the process runs and answers
GET /readyz    200 "ready", or 503 "not ready" and one line per failed check:
                 every store answers (the doctor's probe, `quantbot.ops.schema.unreachable_stores`),
                 and no source is stale (`quantbot.health.SourceActivity`)
GET /metrics   the Prometheus text format of `quantbot.metrics` (and the client's process metrics),
               without the `_created` series
```

One small standard-library HTTP server, answering each request on a thread of its own (a slow store
probe never holds up `/healthz` or `/metrics`), in daemon threads beside the flow. The stores' answer
is probed at most once per `[observability] ready_cache_s`, however often `/readyz` is asked, and each
probe is bounded by `[observability] probe_timeout_s`; the sources' staleness is read fresh on every
request (it costs nothing). Every body is redacted: a URL in a probe's answer loses its password.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest

from quantbot.health import SourceActivity
from quantbot.ops.schema import unreachable_stores
from quantbot.redaction import redact
from quantbot.settings import Settings

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"


class Readiness:
    """Whether the flow is ready: every store answers and no source is stale; why not, otherwise.

    Args:
        settings: the effective settings (stores, `[observability]`).
        sources: the running flow's sources; read at every question, so sources the flow adds to the list
            once it has built them (the price feeds) count as well.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self, settings: Settings, sources: Sequence[SourceActivity], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._clock = clock
        self._lock = threading.Lock()
        self._stores: list[str] = []
        self._probed_at: float | None = None

    def _store_problems(self) -> list[str]:
        """The stores' problems, probed again once the last answer is older than `ready_cache_s`."""
        config = self._settings.observability
        # One prober at a time: requests arriving meanwhile wait for its answer instead of probing too.
        with self._lock:
            now = self._clock()
            if self._probed_at is None or now - self._probed_at >= config.ready_cache_s:
                try:
                    found = unreachable_stores(self._settings, config.probe_timeout_s)
                    self._stores = [f"{store}: {why}" for store, why in found.items()]
                except Exception as exc:  # a probe that breaks is an answer ("not ready"), not the endpoint's end
                    log.exception("readiness probe failed")
                    self._stores = [f"stores: not probed: {type(exc).__name__}: {exc}"]
                self._probed_at = self._clock()
            return list(self._stores)

    def problems(self) -> list[str]:
        """Why the flow is not ready, one line per failed check; empty when it is."""
        stale_after_s = self._settings.observability.stale_after_s
        sources = [p for source in self._sources if (p := source.problem(stale_after_s)) is not None]
        return [*self._store_problems(), *sources]


class HttpEndpoint:
    """`/healthz`, `/readyz` and `/metrics` served on a port, until `close()`.

    Args:
        host: the address to listen on.
        port: the port; 0 lets the kernel choose one (see `port`).
        readiness: what `/readyz` asks.

    Raises:
        OSError: the address cannot be listened on (a port in use, an address not of this machine).
    """

    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        self._readiness = readiness
        self._server = ThreadingHTTPServer((host, port), _handler(readiness))
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-endpoint", daemon=True)
        self._thread.start()
        log.info("http=%s:%d serving /healthz /readyz /metrics", host, self.port)

    @property
    def url(self) -> str:
        """The endpoint's base URL (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    settings: Settings,
    port: int,
    sources: Sequence[SourceActivity],
    clock: Callable[[], float] = time.monotonic,
) -> HttpEndpoint:
    """Serve `/healthz`, `/readyz` and `/metrics` on `[observability] http_host`:`port` in daemon threads.

    Args:
        settings: the effective settings.
        port: the port; 0 lets the kernel choose one.
        sources: the running flow's sources, whose staleness `/readyz` reports.
        clock: monotonic seconds, for the stores' cache and the sources (injectable for tests).

    Raises:
        OSError: the address cannot be listened on.
    """
    # Each counter's and histogram's `_created` timestamp series would double the page; Prometheus
    # does not read them (it sees resets by itself).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return HttpEndpoint(settings.observability.http_host, port, Readiness(settings, sources, clock))


def _handler(readiness: Readiness) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(HTTPStatus.OK, TEXT, b"ok\n")
            elif path == "/readyz":
                problems = readiness.problems()
                if problems:
                    body = "not ready\n" + "".join(f"{redact(problem)}\n" for problem in problems)
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, TEXT, body.encode())
                else:
                    self._send(HTTPStatus.OK, TEXT, b"ready\n")
            elif path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            else:
                self._send(HTTPStatus.NOT_FOUND, TEXT, b"not found: try /healthz, /readyz or /metrics\n")

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s", format % args)

    return _Handler
