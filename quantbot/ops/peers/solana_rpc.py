"""`SolanaPeer`: a Solana JSON-RPC (HTTP) and PubSub (websocket) server on loopback, serving a `SimulatedChain`.

One port serves both, as providers do: `POST /` is JSON-RPC over HTTP (single requests and batches), a
websocket upgrade on `GET /` is the PubSub endpoint. The shapes, error codes and messages are agave's
(`rpc/src/rpc.rs`, `rpc/src/rpc_pubsub.rs`, `rpc-client-api/src/custom_error.rs`, jsonrpc-core's
standard errors); provider behaviour (rate limits, refused batches) follows what public providers answer.

```
SolanaPeer(chain, faults=Faults(...), speed=1.0)
  thread "solana-peer": asyncio loop -> aiohttp server on 127.0.0.1:<port>
    POST /   getTransaction, getSignaturesForAddress, getBlock, getSlot, getHealth, getVersion,
             getAccountInfo, getMultipleAccounts (base64 only) (+ batches)
    GET / ws logsSubscribe/logsUnsubscribe, slotSubscribe/slotUnsubscribe
    timeline task: slot starts -> slotNotification, transactions due -> logsNotification
```

The chain's clock starts at `start()`: a transaction is visible (to every method and notification) once
`due_s / speed` seconds have passed; `speed=None` (or infinity) makes the whole chain visible at once (and
sends no notifications: a websocket feed cannot seek into the past). `Faults` script what providers do
wrong, and may be changed while the peer runs; every random draw comes from one seeded generator.

Accounts are the chain's (`SimulatedChain.account`: its mints and their Metaplex metadata accounts; null for
any other address), served in the `base64` encoding only: a request for another encoding (the methods'
default is `binary`, base58) or a `dataSlice` is answered with an invalid-params error, as a node answers a
config it does not serve.

It knows nothing of quantbot's sources: it is a protocol peer, not a mock of a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import orjson
from aiohttp import WSMsgType, web

from quantbot.ops.peers.chain import ENCODINGS, MS_PER_S, SLOT_MS, ChainTransaction, SimulatedChain
from quantbot.solana.codec import CodecError, b58decode
from quantbot.tokens import API_VERSION, account_json

__all__ = ["Faults", "PeerCounters", "SolanaPeer"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
"""How long `start()` waits for the server thread to listen before giving up."""
STOP_TIMEOUT_S = 10.0
"""How long `stop()` waits for the server thread to finish."""
FAULT_POLL_S = 0.02
"""How often the drop task looks at `Faults.drop_every_s` (it may change while the peer runs)."""
MAX_TIMELINE_SLEEP_S = 0.05
"""The timeline task wakes at least this often, so a peer stopped mid-chain stops promptly."""
MAX_SIGNATURES_LIMIT = 1000
"""getSignaturesForAddress's largest (and default) `limit` (agave's MAX_GET_CONFIRMED_SIGNATURES_FOR_ADDRESS2_LIMIT)."""
ROOT_DISTANCE = 32
"""Slots between the newest slot and the root (finalized) slot: a full vote lockout."""
OVERSIZE_PADDING_BYTES = (1 << 20) + 4096
"""Padding of an oversize logs notification: past websockets' 1 MiB default frame limit."""
MAX_REQUEST_BYTES = 50 * (1 << 20)
"""Largest HTTP body accepted (agave's MAX_REQUEST_BODY_SIZE is 50 MiB)."""
SIGNATURE_BYTES = 64
PUBKEY_BYTES = 32
MAX_SIGNATURE_CHARS = 88
"""A base58 signature is at most 88 characters; longer text is `WrongSize` without decoding."""
MAX_PUBKEY_CHARS = 44
MAX_U8 = 255
"""maxSupportedTransactionVersion is a u8."""
SOLANA_CORE_VERSION = "2.2.0"
"""What getVersion reports."""
FEATURE_SET = 3_294_202_862
"""A feature-set id, as getVersion reports it."""
MAX_MULTIPLE_ACCOUNTS = 100
"""getMultipleAccounts' largest number of keys (agave's `MAX_MULTIPLE_ACCOUNTS`)."""

_UI_ENCODINGS = ("binary", "base64", "base58", "json", "jsonParsed")
"""agave's UiTransactionEncoding variants, in its order (for serde's unknown-variant message)."""
_ACCOUNT_ENCODINGS = ("binary", "base58", "base64", "jsonParsed", "base64+zstd")
"""agave's UiAccountEncoding variants, in its order; the peer serves `base64`."""
_TRANSACTION_DETAILS = ("full", "signatures", "none", "accounts")
_COMMITMENTS = ("processed", "confirmed", "finalized")
_BELOW_CONFIRMED = "Method does not support commitment below `confirmed`"
_HELIUS_BATCH_REFUSED = (
    "Batch requests are only available for paid plans. Please upgrade if you would like to gain access"
)
_HELIUS_BATCH_REFUSED_CODE = -32403
_RATE_LIMITED_CODE = -32429


@dataclass
class Faults:
    """What the peer does wrong; change the fields while it runs (`peer.faults.silent = True`).

    Attributes:
        drop_every_s: every this many seconds, abort every websocket connection abruptly (the TCP
            connection closes without a close frame); None: never.
        silent: keep websocket connections open but send nothing (pings are still answered, as a stalled
            server's library does); what would have been sent is lost.
        http_429_share: share of HTTP requests answered 429 with a JSON-RPC rate-limit error.
        retry_after_s: the `Retry-After` header of those answers (whole seconds); None: no header.
        http_503_share: share of HTTP requests answered 503 with a plain-text body.
        null_first_fetch_share: share of first getTransaction calls for a signature that answer `null`
            although the transaction is visible (a node behind its peers); a later call answers it.
        oversize_every: every Nth logs notification carries more than 1 MiB of logs (a padded
            `Program log:` line), as real ones sometimes do; None: never.
        malformed_share: share of logs notifications preceded by a garbage text frame (truncated JSON,
            text that is not JSON, or a notification for a subscription that does not exist).
        batch_refused: answer JSON-RPC batches the way Helius's free plan does: HTTP 403 with a JSON-RPC
            error (code -32403).
        long_term_missing_slots: slots whose block getBlock reports missing in long-term storage (-32009).
        seed: seed of the peer's random draws.
    """

    drop_every_s: float | None = None
    silent: bool = False
    http_429_share: float = 0.0
    retry_after_s: int | None = None
    http_503_share: float = 0.0
    null_first_fetch_share: float = 0.0
    oversize_every: int | None = None
    malformed_share: float = 0.0
    batch_refused: bool = False
    long_term_missing_slots: frozenset[int] = frozenset()
    seed: int = 0


@dataclass
class PeerCounters:
    """What the peer did, for assertions and benchmarks (a copy: `SolanaPeer.counters()`).

    Attributes:
        http_requests: HTTP requests received (a batch is one).
        requests: JSON-RPC calls by method, HTTP and websocket (each batch entry counts).
        responses: HTTP responses by status.
        notifications: websocket notifications produced, by method (a silent peer produces but drops them).
        connections: websocket connections accepted.
        drops: websocket connections aborted by `Faults.drop_every_s`.
        malformed_frames: garbage frames sent.
        oversize_notifications: logs notifications sent padded past 1 MiB.
        null_first_fetches: getTransaction calls answered null by `Faults.null_first_fetch_share`.
        notified: signatures of the logs notifications produced for any subscriber (a silent peer's
            included, though dropped: compare a client's findings with `SolanaPeer.emitted_dex`), each with
            the wall-clock time (Unix seconds) of its first notification: where a benchmark's lag starts.
    """

    http_requests: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[int] = field(default_factory=Counter)
    notifications: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    drops: int = 0
    malformed_frames: int = 0
    oversize_notifications: int = 0
    null_first_fetches: int = 0
    notified: dict[str, float] = field(default_factory=dict)

    def copy(self) -> PeerCounters:
        """A deep copy (the peer's thread keeps counting into the original)."""
        return PeerCounters(
            http_requests=self.http_requests,
            requests=Counter(self.requests),
            responses=Counter(self.responses),
            notifications=Counter(self.notifications),
            connections=self.connections,
            drops=self.drops,
            malformed_frames=self.malformed_frames,
            oversize_notifications=self.oversize_notifications,
            null_first_fetches=self.null_first_fetches,
            notified=dict(self.notified),
        )


class RpcError(Exception):
    """A JSON-RPC error answer: code, message and optional data, as agave renders them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, Any]:
        """The `error` member."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _parse_error() -> RpcError:
    return RpcError(-32700, "Parse error")


def _invalid_request() -> RpcError:
    return RpcError(-32600, "Invalid request")


def _method_not_found() -> RpcError:
    return RpcError(-32601, "Method not found")


def _invalid_params(message: str) -> RpcError:
    return RpcError(-32602, message)


def _unexpected(value: Any) -> str:
    """serde's description of an unexpected JSON value (`invalid type: integer \\`5\\`, expected ...`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _type_error(value: Any, expected: str) -> RpcError:
    return _invalid_params(f"Invalid params: invalid type: {_unexpected(value)}, expected {expected}.")


def _verify_signature(text: Any) -> str:
    """agave's `verify_signature`: a base58 64-byte signature, else `Invalid param: WrongSize|Invalid`."""
    if not isinstance(text, str):
        raise _type_error(text, "a string")
    if len(text) > MAX_SIGNATURE_CHARS:
        raise _invalid_params("Invalid param: WrongSize")
    try:
        raw = b58decode(text)
    except CodecError:
        raise _invalid_params("Invalid param: Invalid") from None
    if len(raw) != SIGNATURE_BYTES:
        raise _invalid_params("Invalid param: WrongSize")
    return text


def _verify_pubkey(text: Any) -> str:
    """agave's `verify_pubkey`: a base58 32-byte key, else `Invalid param: WrongSize|Invalid`."""
    if not isinstance(text, str):
        raise _type_error(text, "a string")
    if len(text) > MAX_PUBKEY_CHARS:
        raise _invalid_params("Invalid param: WrongSize")
    try:
        raw = b58decode(text)
    except CodecError:
        raise _invalid_params("Invalid param: Invalid") from None
    if len(raw) != PUBKEY_BYTES:
        raise _invalid_params("Invalid param: WrongSize")
    return text


def _params(params: Any, required: int, name: str) -> list[Any]:
    """The positional params, padded with None; fewer than `required` is serde's invalid-length error."""
    if params is None:
        params = []
    if not isinstance(params, list):
        raise _type_error(params, f"a tuple of size {required}" if required else "a sequence")
    if len(params) < required:
        raise _invalid_params(f"Invalid params: invalid length {len(params)}, expected {name}.")
    return params


def _config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error(value, "a map")
    return value


def _commitment(config: dict[str, Any]) -> str:
    commitment = config.get("commitment", "finalized")
    if commitment is None:
        return "finalized"
    if commitment not in _COMMITMENTS:
        raise _invalid_params(
            f"Invalid params: unknown variant `{commitment}`, expected one of `processed`, `confirmed`, `finalized`."
        )
    return str(commitment)


def _at_least_confirmed(config: dict[str, Any]) -> None:
    if _commitment(config) == "processed":
        raise _invalid_params(_BELOW_CONFIRMED)


def _encoding(config: dict[str, Any], default: str = "json") -> str:
    encoding = config.get("encoding") or default
    if encoding not in _UI_ENCODINGS or encoding not in ENCODINGS:
        variants = ", ".join(f"`{v}`" for v in _UI_ENCODINGS)
        raise _invalid_params(f"Invalid params: unknown variant `{encoding}`, expected one of {variants}.")
    return str(encoding)


def _max_version(config: dict[str, Any]) -> int | None:
    value = config.get("maxSupportedTransactionVersion")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_U8):
        raise _type_error(value, "u8")
    return value


def _check_version(tx: ChainTransaction, max_version: int | None) -> None:
    """agave's encode-with-options check: a versioned transaction needs `maxSupportedTransactionVersion`."""
    if isinstance(tx.version, int) and (max_version is None or tx.version > max_version):
        version = tx.version
        raise RpcError(
            -32015,
            f"Transaction version ({version}) is not supported by the requesting client. Please try the request "
            f'again with the following configuration parameter: "maxSupportedTransactionVersion": {version}',
        )


def _response(result: bytes, request_id: Any) -> bytes:
    return b'{"jsonrpc":"2.0","result":' + result + b',"id":' + orjson.dumps(request_id) + b"}"


def _error_response(error: RpcError, request_id: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "error": error.body(), "id": request_id})


class _Connection:
    """One websocket client: its subscriptions and the queue its writer task sends from."""

    __slots__ = ("logs", "outbox", "slots", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self.transport = transport
        self.logs: dict[int, str | None] = {}  # subscription id -> mentioned address (None: all)
        self.slots: set[int] = set()
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()


class SolanaPeer:
    """A Solana JSON-RPC + PubSub server on loopback over a `SimulatedChain`, in a thread of its own.

    Use it as a context manager (`with SolanaPeer(chain) as peer: peer.http_url, peer.ws_url`) or call
    `start()`/`stop()`. Delivery: each logs notification is sent once to each matching subscription open
    when its transaction becomes visible; nothing is replayed to later subscribers.

    Args:
        chain: the chain to serve.
        faults: what to do wrong (default: nothing); `peer.faults` may be changed while it runs.
        speed: chain seconds per wall second; None or infinity: the whole chain is visible at once.
        port: the port to listen on (0: a free one).
        wall_clock: at speed 1, run on the chain's own clock: a transaction is due when the wall clock reaches
            its place on the chain (the chain's `start_time` plus its `due_s`), as if the chain had been
            running before the peer started; block times then read as a real node's do (the live demo's
            lag). Default: the chain starts when the peer does.
    """

    def __init__(
        self,
        chain: SimulatedChain,
        *,
        faults: Faults | None = None,
        speed: float | None = 1.0,
        port: int = 0,
        wall_clock: bool = False,
    ) -> None:
        if wall_clock and speed != 1.0:
            raise ValueError(f"the chain's own clock runs at speed 1, not {speed}")
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.chain = chain
        self.faults = faults if faults is not None else Faults()
        self.speed = math.inf if speed is None else speed
        self._port = port
        self._lock = threading.Lock()
        self._counters = PeerCounters()
        self._rng = random.Random(self.faults.seed)  # noqa: S311 - a seeded simulation, not cryptography
        self._fetched: set[str] = set()
        self._connections: set[_Connection] = set()
        self._next_subscription = 0
        self._logs_sent = 0
        self._started_at: float | None = None
        self._wall_clock = wall_clock
        self._next_event = 0  # the timeline's position, kept across a restart
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.port = 0

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def http_url(self) -> str:
        """`http://127.0.0.1:<port>/`."""
        return f"http://{HOST}:{self.port}/"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>/`."""
        return f"ws://{HOST}:{self.port}/"

    def start(self) -> SolanaPeer:
        """Listen, and start the chain's clock.

        After `stop()`, `start()` again is a restarted node: the same port, the chain's clock and counters
        going on (what came due while it was down is not notified: nobody was connected).

        Raises:
            RuntimeError: the server did not come up within `START_TIMEOUT_S`, or it is already running.
        """
        if self._thread is not None:
            raise RuntimeError("the peer is already running")
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="solana-peer", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"the solana peer did not start: {self._failure!r}")
        log.info("peer=solana event=listening url=%s speed=%s txs=%d", self.http_url, self.speed, len(self.chain))
        return self

    def stop(self) -> None:
        """Close every connection, stop listening and end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):  # the loop may have ended on its own
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SolanaPeer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which raises
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/", self._http)
        app.router.add_get("/", self._websocket)
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self._port)
        await site.start()
        self._runner = runner
        self.port = self._port = runner.addresses[0][1]  # the bound port (kept for a restart)
        if self._started_at is None:  # a restarted peer's chain goes on where it is
            behind_s = time.time() - self.chain.start_time if self._wall_clock else 0.0
            self._started_at = time.monotonic() - max(behind_s, 0.0)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._timeline()), loop.create_task(self._dropper())]

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for connection in list(self._connections):
            connection.outbox.put_nowait(None)
            if connection.transport is not None:
                connection.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------------------------ the clock

    @property
    def elapsed_s(self) -> float:
        """Chain seconds since `start()` (infinity when the peer serves the whole chain at once)."""
        if math.isinf(self.speed):
            return math.inf
        if self._started_at is None:
            return 0.0
        return (time.monotonic() - self._started_at) * self.speed

    def current_slot(self) -> int:
        """The newest slot that has started (the chain's last once it is over)."""
        elapsed = self.elapsed_s
        if math.isinf(elapsed):
            return self.chain.last_slot
        return min(self.chain.first_slot + int(elapsed * MS_PER_S // SLOT_MS), self.chain.last_slot)

    # ------------------------------------------------------------------------------------ counters

    def counters(self) -> PeerCounters:
        """A copy of what the peer did so far."""
        with self._lock:
            return self._counters.copy()

    @property
    def notified(self) -> set[str]:
        """Signatures sent in logs notifications so far."""
        with self._lock:
            return set(self._counters.notified)

    def emitted_dex(self, programs: Iterable[str]) -> frozenset[str]:
        """Signatures of the transactions mentioning any of `programs` that have become visible so far:
        what a client subscribed to those programs should end up with."""
        return self.chain.dex_signatures(programs, visible_until_s=self.elapsed_s)

    def _count(self, update: Callable[[PeerCounters], None]) -> None:
        with self._lock:
            update(self._counters)

    # ------------------------------------------------------------------------------------ HTTP

    async def _http(self, request: web.Request) -> web.Response:
        faults = self.faults
        body = await request.read()
        with self._lock:
            self._counters.http_requests += 1
            draw = self._rng.random()
        if draw < faults.http_429_share:
            return self._reply_429(body)
        if draw < faults.http_429_share + faults.http_503_share:
            return self._reply(web.Response(status=503, text="Service Unavailable"))
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._json(_error_response(_parse_error(), None))
        if isinstance(document, list):
            if faults.batch_refused:
                refused = {
                    "jsonrpc": "2.0",
                    "error": {"code": _HELIUS_BATCH_REFUSED_CODE, "message": _HELIUS_BATCH_REFUSED},
                }
                return self._json(orjson.dumps(refused), status=403)
            if not document:
                return self._json(_error_response(_invalid_request(), None))
            answers = [answer for item in document if (answer := self._call(item)) is not None]
            return self._json(b"[" + b",".join(answers) + b"]" if answers else b"")
        answer = self._call(document)
        return self._json(answer if answer is not None else b"")

    async def _health(self, request: web.Request) -> web.Response:
        """agave's `GET /health`: `ok` as plain text."""
        return self._reply(web.Response(text="ok"))

    def _reply_429(self, body: bytes) -> web.Response:
        request_id: Any = None
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            request_id = orjson.loads(body).get("id")
        error = RpcError(_RATE_LIMITED_CODE, "rate limit exceeded")
        headers = {}
        retry_after = self.faults.retry_after_s
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        response = web.Response(
            status=429, body=_error_response(error, request_id), content_type="application/json", headers=headers
        )
        return self._reply(response)

    def _json(self, body: bytes, status: int = 200) -> web.Response:
        return self._reply(web.Response(status=status, body=body, content_type="application/json"))

    def _reply(self, response: web.Response) -> web.Response:
        status = response.status
        self._count(lambda c: c.responses.update((status,)))
        return response

    def _call(self, request: Any) -> bytes | None:
        """One JSON-RPC call's answer (None for a notification, which gets none)."""
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
        ):
            return _error_response(_invalid_request(), request.get("id") if isinstance(request, dict) else None)
        method: str = request["method"]
        has_id = "id" in request
        request_id = request.get("id")
        self._count(lambda c: c.requests.update((method,)))
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise _method_not_found()
            result = handler(self, request.get("params"))
        except RpcError as error:
            return _error_response(error, request_id) if has_id else None
        return _response(result, request_id) if has_id else None

    def _get_transaction(self, params: Any) -> bytes:
        args = _params(params, 1, "at least 1 parameter")
        signature = _verify_signature(args[0])
        config_value = args[1] if len(args) > 1 else None
        # The config may be the legacy bare encoding string.
        config = {"encoding": config_value} if isinstance(config_value, str) else _config(config_value)
        encoding = _encoding(config)
        _at_least_confirmed(config)
        max_version = _max_version(config)
        tx = self.chain.by_signature(signature)
        if tx is None or tx.due_s > self.elapsed_s:
            return b"null"
        with self._lock:
            first = signature not in self._fetched
            self._fetched.add(signature)
            if first and self._rng.random() < self.faults.null_first_fetch_share:
                self._counters.null_first_fetches += 1
                return b"null"
        _check_version(tx, max_version)
        text = tx.result(encoding)
        if max_version is None and not tx.recorded:
            # Without maxSupportedTransactionVersion the RPC leaves `version` out.
            result = orjson.loads(text)
            result.pop("version", None)
            text = orjson.dumps(result)
        return text

    def _get_signatures_for_address(self, params: Any) -> bytes:
        args = _params(params, 1, "at least 1 parameter")
        address = _verify_pubkey(args[0])
        config = _config(args[1] if len(args) > 1 else None)
        before = config.get("before")
        until = config.get("until")
        before = None if before is None else _verify_signature(before)
        until = None if until is None else _verify_signature(until)
        limit = config.get("limit")
        if limit is None:
            limit = MAX_SIGNATURES_LIMIT
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise _type_error(limit, "usize")
        if limit == 0 or limit > MAX_SIGNATURES_LIMIT:
            raise _invalid_params(f"Invalid limit; max {MAX_SIGNATURES_LIMIT}")
        _at_least_confirmed(config)
        self._min_context_slot(config)
        root = self.current_slot() - ROOT_DISTANCE
        found = self.chain.signatures_for_address(
            address, before=before, until=until, limit=limit, visible_until_s=self.elapsed_s
        )
        return orjson.dumps(
            [
                {
                    "signature": tx.signature,
                    "slot": tx.slot,
                    "err": tx.err,
                    "memo": None,
                    "blockTime": tx.block_time,
                    "confirmationStatus": "finalized" if tx.slot <= root else "confirmed",
                }
                for tx in found
            ]
        )

    def _min_context_slot(self, config: dict[str, Any]) -> None:
        wanted = config.get("minContextSlot")
        slot = self.current_slot()
        if wanted is not None and isinstance(wanted, int) and slot < wanted:
            raise RpcError(-32016, "Minimum context slot has not been reached", {"contextSlot": slot})

    def _get_slot(self, params: Any) -> bytes:
        args = _params(params, 0, "a sequence")
        config = _config(args[0] if args else None)
        commitment = _commitment(config)
        self._min_context_slot(config)
        slot = self.current_slot()
        if commitment == "finalized":
            slot = max(slot - ROOT_DISTANCE, self.chain.first_slot)
        return orjson.dumps(slot)

    def _get_block(self, params: Any) -> bytes:
        args = _params(params, 1, "at least 1 parameter")
        slot = args[0]
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            raise _type_error(slot, "u64")
        config_value = args[1] if len(args) > 1 else None
        config = {"encoding": config_value} if isinstance(config_value, str) else _config(config_value)
        encoding = _encoding(config)
        details = config.get("transactionDetails") or "full"
        if details not in _TRANSACTION_DETAILS:
            variants = ", ".join(f"`{v}`" for v in _TRANSACTION_DETAILS)
            raise _invalid_params(f"Invalid params: unknown variant `{details}`, expected one of {variants}.")
        _at_least_confirmed(config)
        max_version = _max_version(config)
        chain = self.chain
        if slot < chain.first_slot:
            raise RpcError(
                -32001,
                f"Block {slot} cleaned up, does not exist on node. First available block: {chain.first_slot}",
            )
        if slot in self.faults.long_term_missing_slots:
            raise RpcError(-32009, f"Slot {slot} was skipped, or missing in long-term storage")
        block = chain.block(slot)
        if block is None or block.due_s > self.elapsed_s:
            if chain.is_skipped(slot) and slot < self.current_slot():
                raise RpcError(-32007, f"Slot {slot} was skipped, or missing due to ledger jump to recent snapshot")
            raise RpcError(-32004, f"Block not available for slot {slot}")
        out: dict[str, Any] = {
            "blockHeight": block.block_height,
            "blockTime": block.block_time,
            "blockhash": block.blockhash,
            "parentSlot": block.parent_slot,
            "previousBlockhash": block.previous_blockhash,
        }
        if details == "signatures":
            out["signatures"] = list(block.signatures)
        elif details in ("full", "accounts"):
            entries = []
            for signature in block.signatures:
                tx = chain.by_signature(signature)
                assert tx is not None
                _check_version(tx, max_version)
                result = orjson.loads(tx.result(encoding))
                entry = {"meta": result["meta"], "transaction": result["transaction"]}
                if max_version is not None:
                    entry["version"] = tx.version
                entries.append(entry)
            out["transactions"] = entries
        if config.get("rewards", True):
            out["rewards"] = []
        return orjson.dumps(out)

    def _get_health(self, params: Any) -> bytes:
        return b'"ok"'

    def _get_version(self, params: Any) -> bytes:
        return orjson.dumps({"feature-set": FEATURE_SET, "solana-core": SOLANA_CORE_VERSION})

    def _account_config(self, value: Any) -> None:
        """Check an account method's config: base64, no data slice, a commitment, a reached min context slot."""
        config = _config(value)
        encoding = config.get("encoding") or "binary"
        if encoding not in _ACCOUNT_ENCODINGS:
            variants = ", ".join(f"`{v}`" for v in _ACCOUNT_ENCODINGS)
            raise _invalid_params(f"Invalid params: unknown variant `{encoding}`, expected one of {variants}.")
        if encoding != "base64":
            raise _invalid_params(f"Invalid params: this node serves account data in `base64`, not `{encoding}`.")
        if config.get("dataSlice") is not None:
            raise _invalid_params("Invalid params: this node does not serve `dataSlice`.")
        _commitment(config)
        self._min_context_slot(config)

    def _accounts_result(self, value: Any) -> bytes:
        context = {"apiVersion": API_VERSION, "slot": self.current_slot()}
        return orjson.dumps({"context": context, "value": value})

    def _account_value(self, address: str) -> dict[str, Any] | None:
        account = self.chain.account(address)
        return None if account is None else account_json(*account)

    def _get_account_info(self, params: Any) -> bytes:
        args = _params(params, 1, "at least 1 parameter")
        address = _verify_pubkey(args[0])
        self._account_config(args[1] if len(args) > 1 else None)
        return self._accounts_result(self._account_value(address))

    def _get_multiple_accounts(self, params: Any) -> bytes:
        args = _params(params, 1, "at least 1 parameter")
        keys = args[0]
        if not isinstance(keys, list):
            raise _type_error(keys, "a sequence")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise _invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        addresses = [_verify_pubkey(key) for key in keys]
        self._account_config(args[1] if len(args) > 1 else None)
        return self._accounts_result([self._account_value(address) for address in addresses])

    _methods: ClassVar[dict[str, Callable[[SolanaPeer, Any], bytes]]] = {
        "getTransaction": _get_transaction,
        "getSignaturesForAddress": _get_signatures_for_address,
        "getSlot": _get_slot,
        "getBlock": _get_block,
        "getHealth": _get_health,
        "getVersion": _get_version,
        "getAccountInfo": _get_account_info,
        "getMultipleAccounts": _get_multiple_accounts,
    }

    # ------------------------------------------------------------------------------------ websocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=MAX_REQUEST_BYTES)
        if not ws.can_prepare(request).ok:
            return self._reply(web.Response(status=405, text="Method Not Allowed"))
        transport = request.transport
        await ws.prepare(request)
        connection = _Connection(ws, transport)
        self._connections.add(connection)
        self._count(lambda c: setattr(c, "connections", c.connections + 1))
        writer = asyncio.get_running_loop().create_task(self._writer(connection))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_text(connection, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._on_text(connection, message.data.decode(errors="replace"))
        finally:
            self._connections.discard(connection)
            connection.outbox.put_nowait(None)
            writer.cancel()
        return ws

    async def _writer(self, connection: _Connection) -> None:
        ws = connection.ws
        with contextlib.suppress(ConnectionError, RuntimeError):
            while (text := await connection.outbox.get()) is not None:
                if self.faults.silent:
                    continue
                await ws.send_str(text)

    def _on_text(self, connection: _Connection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            connection.outbox.put_nowait(_error_response(_parse_error(), None).decode())
            return
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
        ):
            request_id = request.get("id") if isinstance(request, dict) else None
            connection.outbox.put_nowait(_error_response(_invalid_request(), request_id).decode())
            return
        method: str = request["method"]
        request_id = request.get("id")
        self._count(lambda c: c.requests.update((method,)))
        try:
            result = self._subscription_call(connection, method, request.get("params"))
        except RpcError as error:
            connection.outbox.put_nowait(_error_response(error, request_id).decode())
            return
        connection.outbox.put_nowait(_response(orjson.dumps(result), request_id).decode())

    def _subscription_call(self, connection: _Connection, method: str, params: Any) -> Any:
        if method == "logsSubscribe":
            args = _params(params, 1, "at least 1 parameter")
            selector = args[0]
            address: str | None
            if selector in ("all", "allWithVotes"):
                address = None
            elif isinstance(selector, dict) and isinstance(selector.get("mentions"), list):
                mentions = selector["mentions"]
                if len(mentions) != 1:
                    raise _invalid_params("Invalid Request: Only 1 address supported")
                address = _verify_pubkey(mentions[0])
            else:
                raise _invalid_params(
                    "Invalid params: data did not match any variant of untagged enum RpcTransactionLogsFilter."
                )
            _commitment(_config(args[1] if len(args) > 1 else None))
            subscription = self._new_subscription()
            connection.logs[subscription] = address
            return subscription
        if method == "slotSubscribe":
            subscription = self._new_subscription()
            connection.slots.add(subscription)
            return subscription
        if method in ("logsUnsubscribe", "slotUnsubscribe"):
            args = _params(params, 1, "a tuple of size 1")
            subscription = args[0]
            if not isinstance(subscription, int) or isinstance(subscription, bool):
                raise _type_error(subscription, "u64")
            held = connection.logs if method == "logsUnsubscribe" else connection.slots
            if subscription not in held:
                raise _invalid_params("Invalid subscription id.")
            if isinstance(held, dict):
                del held[subscription]
            else:
                held.discard(subscription)
            return True
        raise _method_not_found()

    def _new_subscription(self) -> int:
        self._next_subscription += 1
        return self._next_subscription

    # ------------------------------------------------------------------------------------ timeline

    async def _timeline(self) -> None:
        """Send each slot's notification when it starts and each transaction's when it becomes due."""
        if math.isinf(self.speed):
            return
        # (due, 0 for a slot start / 1 for a transaction, position): a slot starts before its entries.
        events: list[tuple[float, int, int]] = [(block.start_s, 0, block.slot) for block in self.chain.blocks()]
        events += [(tx.due_s, 1, position) for position, tx in enumerate(self.chain.transactions)]
        events.sort()
        transactions = self.chain.transactions
        parents = {block.slot: block.parent_slot for block in self.chain.blocks()}
        while self._next_event < len(events):
            elapsed = self.elapsed_s
            due, kind, which = events[self._next_event]
            if due > elapsed:
                await asyncio.sleep(min((due - elapsed) / self.speed, MAX_TIMELINE_SLEEP_S))
                continue
            if kind == 0:
                self._notify_slot(which, parents[which])
            else:
                self._notify_logs(transactions[which])
            self._next_event += 1

    def _notify_slot(self, slot: int, parent: int) -> None:
        result = orjson.dumps({"parent": parent, "root": max(slot - ROOT_DISTANCE, 0), "slot": slot}).decode()
        sent = 0
        for connection in self._connections:
            for subscription in connection.slots:
                connection.outbox.put_nowait(
                    f'{{"jsonrpc":"2.0","method":"slotNotification","params":{{"result":{result},'
                    f'"subscription":{subscription}}}}}'
                )
                sent += 1
        if sent:
            self._count(lambda c: c.notifications.update({"slotNotification": sent}))

    def _notify_logs(self, tx: ChainTransaction) -> None:
        targets = [
            (connection, subscription)
            for connection in self._connections
            for subscription, address in connection.logs.items()
            if address is None or address in tx.mentions
        ]
        if not targets:
            return
        faults = self.faults
        value = orjson.dumps({"signature": tx.signature, "err": tx.err, "logs": list(tx.logs)}).decode()
        oversize = malformed = 0
        for connection, subscription in targets:
            self._logs_sent += 1
            text = value
            if faults.oversize_every and self._logs_sent % faults.oversize_every == 0:
                padded = [*tx.logs, "Program log: " + "x" * OVERSIZE_PADDING_BYTES]
                text = orjson.dumps({"signature": tx.signature, "err": tx.err, "logs": padded}).decode()
                oversize += 1
            notification = (
                f'{{"jsonrpc":"2.0","method":"logsNotification","params":{{"result":{{"context":{{"slot":{tx.slot}}},'
                f'"value":{text}}},"subscription":{subscription}}}}}'
            )
            if faults.malformed_share and self._rng.random() < faults.malformed_share:
                connection.outbox.put_nowait(self._garbage(notification))
                malformed += 1
            connection.outbox.put_nowait(notification)

        now = time.time()

        def update(c: PeerCounters) -> None:
            c.notifications.update({"logsNotification": len(targets)})
            c.notified.setdefault(tx.signature, now)
            c.oversize_notifications += oversize
            c.malformed_frames += malformed

        self._count(update)

    def _garbage(self, notification: str) -> str:
        """A garbage text frame: the notification cut short, text that is not JSON, or a stranger's notification."""
        kind = self._rng.randrange(3)
        if kind == 0:
            return notification[: self._rng.randrange(1, len(notification) - 1)]
        if kind == 1:
            return self._rng.choice(("<html><body><h1>502 Bad Gateway</h1></body></html>", "ping", "\x00\x01"))
        # A well-formed notification for a subscription this connection never made.
        return notification.replace('"subscription":', '"subscription":9', 1)

    # ------------------------------------------------------------------------------------ drops

    async def _dropper(self) -> None:
        """Abort every websocket connection every `Faults.drop_every_s` seconds (read afresh each time)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(FAULT_POLL_S)
            every = self.faults.drop_every_s
            now = time.monotonic()
            if every is None:
                last = now
                continue
            if now - last < every:
                continue
            last = now
            dropped = 0
            for connection in list(self._connections):
                if connection.transport is not None and not connection.transport.is_closing():
                    connection.transport.abort()
                    dropped += 1
            if dropped:
                log.info("peer=solana event=drop connections=%d", dropped)
                with self._lock:
                    self._counters.drops += dropped
