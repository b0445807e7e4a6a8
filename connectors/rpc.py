"""The Solana JSON-RPC client: rate-limited, bounded, retrying, and exact about what it received.

One `RpcClient` per event loop (`async with RpcClient(url, policy) as rpc:`). Every request passes a
token bucket (`RpcPolicy.requests_per_s`; a batch of N calls counts N) and a semaphore
(`RpcPolicy.max_in_flight` HTTP requests awaiting an answer). What goes wrong is retried or not by the
type of the error, never by a check at the call site:

```
RpcError                       base of the client's errors; `retryable` says whether asking again can help
 ├── RpcTransientError         retryable: one attempt failed; the client retries it (`quantbot.backoff`:
 │    │                        jittered exponential) until `retry_budget_s` has passed since the first attempt
 │    ├── RpcRateLimitedError  HTTP 429 (or JSON-RPC -32429); waits `Retry-After` (seconds or an HTTP date)
 │    ├── RpcServerError       HTTP 5xx, a connection error, a timeout, an answer that is not JSON-RPC
 │    └── RpcNodeNotReadyError JSON-RPC -32004 block not available yet, -32005 node unhealthy, -32014 block
 │                             status not available yet, -32016 min context slot not reached, -32019 long-term
 │                             storage unreachable: the node may answer later
 ├── RpcUnavailableError       retryable (later, by the caller: a run exits 75): the budget was spent on
 │                             transient failures; raised to the caller, with the last one as its cause
 └── RpcRequestError           fatal: the same request fails again; raised at once
      ├── RpcConfigurationError  fatal, and a configuration matter: -32015 unsupported transaction version,
      │                          HTTP 401/403 (the provider refuses the URL's key), -32011 no transaction history
      └── RpcCallError           any other JSON-RPC error the method has no use for (-32602 invalid params, ...)
```

Two outcomes are data rather than errors: a `getTransaction` answered `null` (not yet visible at the
commitment) is asked again with backoff for `null_retry_s`, then returned as `Fetched(problem=...)`,
never dropped; a skipped or purged slot (-32007, -32009, -32001) is a `SlotUnavailable`.

Every retry is logged at DEBUG (retries are routine; their counts are metrics) as key=value
(`rpc=getTransaction status=429 retry_in_s=1.2`), and every request given up on at WARNING, with the URL
redacted (providers put their keys in it), and counted: `quantbot_rpc_requests_total{method, outcome}`
per JSON-RPC call answered (or not), `quantbot_rpc_retries_total{reason}` per call asked again.
`getTransaction` and `getBlock` always send `maxSupportedTransactionVersion: 0`; `get_token_accounts` sends
`quantbot.tokens.accounts_request(mint)` as it is, its id the mint (answers are matched by id, number or text).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

import aiohttp
import orjson

from quantbot import metrics
from quantbot.backoff import Backoff
from quantbot.errors import QuantbotError
from quantbot.redaction import redact_url
from quantbot.settings import SolanaSettings
from quantbot.tokens import accounts_request

log = logging.getLogger(__name__)

MAX_SUPPORTED_TRANSACTION_VERSION = 0
"""The newest transaction version the decoders read (legacy and v0); sent with every getTransaction."""
SIGNATURES_PAGE_MAX = 1000
"""getSignaturesForAddress returns at most this many signatures per call (agave's limit)."""
BURST_S = 1.0
"""The token bucket holds one second of requests: providers count requests per one-second window."""
MAX_DOUBLINGS = 32
"""Retries past this many doublings wait the cap anyway; bounding the exponent keeps the float finite."""
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
HTTP_CLIENT_ERROR = 400
HTTP_REFUSED_KEY = frozenset({401, 403})
"""HTTP statuses of a provider refusing the URL's key or plan (unless a batch was sent: see below)."""

NOT_READY_CODES = frozenset({-32004, -32005, -32014, -32016, -32019})
"""JSON-RPC errors (agave `rpc-client-api/src/custom_error.rs`) of a node not ready for the request yet."""
SLOT_UNAVAILABLE_CODES = frozenset({-32001, -32007, -32009})
"""Block cleaned up (purged), slot skipped, slot skipped or missing in long-term storage: no block to read."""
RATE_LIMITED_CODES = frozenset({-32429})
"""JSON-RPC errors some providers answer a rate limit with (in a 429, or in an HTTP 200 body)."""
UNSUPPORTED_VERSION = -32015
NO_TRANSACTION_HISTORY = -32011
INVALID_PARAMS = -32602
EXCERPT_CHARS = 200
"""Bytes of an unexpected answer quoted in an error: enough to recognise an HTML error page or a JSON error."""
MESSAGE_CHARS = 500
"""Characters of a provider's error message kept: agave's are one line; a proxy's may be a whole page."""


class RpcError(QuantbotError):
    """Base of the client's errors (see the module docstring); `retryable` is a property of the type."""

    retryable: ClassVar[bool] = False


class RpcTransientError(RpcError):
    """One attempt failed in a way that may pass: retried by the client within its budget."""

    retryable: ClassVar[bool] = True
    reason: ClassVar[str] = "transient"
    """The `reason` label of `quantbot_rpc_retries_total` and the `outcome` of `quantbot_rpc_requests_total`."""

    def __init__(self, message: str, *, status: int | str) -> None:
        super().__init__(message)
        self.status = status
        """What the log's `status=` says: an HTTP status, a JSON-RPC code, or `timeout`/`connection`."""


class RpcRateLimitedError(RpcTransientError):
    """HTTP 429; `retry_after_s` is the provider's `Retry-After`, None when it gave none."""

    reason: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(message, status=HTTP_TOO_MANY_REQUESTS)
        self.retry_after_s = retry_after_s


class RpcServerError(RpcTransientError):
    """HTTP 5xx, a connection error, a timeout, or an answer that is not JSON-RPC."""

    reason: ClassVar[str] = "server_error"


class RpcNodeNotReadyError(RpcTransientError):
    """A JSON-RPC error of a node that may answer later (`NOT_READY_CODES`)."""

    reason: ClassVar[str] = "node_not_ready"


class RpcUnavailableError(RpcError):
    """Transient failures outlasted `retry_budget_s`: the provider is unavailable; a later run may succeed."""

    retryable: ClassVar[bool] = True


class RpcRequestError(RpcError):
    """The request itself is refused: asking again fails again."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RpcConfigurationError(RpcRequestError):
    """The provider refuses what this configuration asks of it (its key, its plan, its history)."""


class RpcCallError(RpcRequestError):
    """A JSON-RPC error the method has no use for, such as -32602 invalid params."""


@dataclass(frozen=True)
class RpcPolicy:
    """How the client treats the provider; built from `[solana]` with `from_settings`.

    Attributes:
        requests_per_s: JSON-RPC calls per second at most (a batch of N counts N).
        max_in_flight: HTTP requests awaiting an answer at most.
        timeout_s: an HTTP request unanswered this long is a transient failure.
        retry_budget_s: transient failures of one request are retried this long after its first attempt.
        null_retry_s: a getTransaction answered null is asked again this long.
        backoff_base_s: the first retry's wait (before jitter); doubling each retry.
        backoff_cap_s: the longest wait between retries.
        batch_size: getTransaction calls per JSON-RPC batch (`get_transactions`); 1: no batches.
    """

    requests_per_s: float
    max_in_flight: int
    timeout_s: float
    retry_budget_s: float
    null_retry_s: float
    backoff_base_s: float
    backoff_cap_s: float
    batch_size: int = 1

    def __post_init__(self) -> None:
        for name in ("requests_per_s", "timeout_s", "retry_budget_s", "null_retry_s", "backoff_base_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"rpc policy `{name}` must be positive, got {getattr(self, name)}")
        if self.max_in_flight < 1 or self.batch_size < 1:
            raise ValueError(f"rpc policy needs max_in_flight and batch_size >= 1, got {self}")

    @classmethod
    def from_settings(cls, s: SolanaSettings) -> RpcPolicy:
        """The policy of `[solana]`: its rate, bounds, budgets, backoff and `backfill_batch_size`."""
        return cls(
            requests_per_s=s.requests_per_s,
            max_in_flight=s.max_in_flight,
            timeout_s=s.request_timeout_s,
            retry_budget_s=s.retry_budget_s,
            null_retry_s=s.null_retry_s,
            backoff_base_s=s.backoff_base_s,
            backoff_cap_s=s.backoff_cap_s,
            batch_size=s.backfill_batch_size,
        )

    @property
    def backoff(self) -> Backoff:
        """The wait between retries: the project's one backoff (`quantbot.backoff`), from base and cap."""
        return Backoff(base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)

    def backoff_s(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        return self.backoff.delay(min(attempt, MAX_DOUBLINGS))


@dataclass(frozen=True)
class Fetched:
    """One getTransaction outcome.

    Attributes:
        signature: the transaction's signature.
        response: the JSON-RPC response for this call exactly as received (in a batch: that element's
            exact bytes); with a problem, the last response received (a `null` or an error), None when
            no answer came at all.
        received_ns: when the response was received (ns since the epoch).
        problem: None when `response` holds the transaction; else why not.
    """

    signature: str
    response: bytes | None
    received_ns: int
    problem: str | None = None


@dataclass(frozen=True)
class SignatureInfo:
    """One getSignaturesForAddress entry: `err` is True for a failed transaction."""

    signature: str
    slot: int
    block_time: int | None
    err: bool


@dataclass(frozen=True)
class SlotUnavailable:
    """A slot without a block to read: skipped (-32007), skipped or missing in long-term storage (-32009),
    or purged from the node's ledger (-32001)."""

    slot: int
    code: int
    message: str


@dataclass(frozen=True)
class _Answer:
    """One JSON-RPC response element: its exact bytes and what it says."""

    raw: bytes
    body: dict[str, Any]
    received_ns: int

    @property
    def error(self) -> dict[str, Any] | None:
        error = self.body.get("error")
        return error if isinstance(error, dict) else None


class _BatchRefusedError(Exception):
    """The provider answered a batch with something other than a batch: its plan refuses batches."""


class _TokenBucket:
    """At most `rate` tokens per second, `burst` at once; a request for more than is left waits (FIFO)."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._held_until = 0.0
        self._lock = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        """Give out nothing for `seconds` (a provider's `Retry-After` concerns every request)."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    async def take(self, tokens: int) -> None:
        async with self._lock:
            while (wait := self._held_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            # Going into debt lets a batch larger than the burst through once its share of time has passed.
            self._tokens -= tokens
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self._rate)


def _retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def split_batch(raw: bytes) -> list[bytes]:
    """The elements of a JSON array, each as the exact bytes it was received as.

    Raises:
        ValueError: `raw` is not a JSON array.
    """
    text = raw.decode()
    decoder = json.JSONDecoder()
    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        raise ValueError("not a JSON array")
    i += 1
    elements: list[bytes] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if text.startswith("]", i):
            return elements
        _, end = decoder.raw_decode(text, i)
        elements.append(text[i:end].encode())
        i = end
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("]", i):
            raise ValueError(f"unexpected character at offset {i} of a JSON array")


def _count(method: str, outcome: str, n: int = 1) -> None:
    metrics.RPC_REQUESTS.labels(method, outcome).inc(n)


class RpcClient:
    """A Solana JSON-RPC client for one event loop: `async with RpcClient(url, policy) as rpc:`.

    Args:
        url: the provider's HTTP(S) URL; it may carry a key, so it is only ever logged redacted.
        policy: rate, bounds, budgets and backoff.
    """

    def __init__(self, url: str, policy: RpcPolicy) -> None:
        self._url = url
        self.redacted_url = redact_url(url)
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None
        self._bucket: _TokenBucket | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._next_id = 0
        self.batches_refused = False
        """Whether the provider refused a batch: every call since is sent alone."""

    async def __aenter__(self) -> RpcClient:
        policy = self.policy
        self._bucket = _TokenBucket(policy.requests_per_s, max(1.0, policy.requests_per_s * BURST_S))
        self._in_flight = asyncio.Semaphore(policy.max_in_flight)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=policy.timeout_s),
            connector=aiohttp.TCPConnector(limit=policy.max_in_flight),
            headers={"Content-Type": "application/json"},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one HTTP exchange -------------------------------------------------------------------------------

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}

    async def _post(self, body: bytes, calls: int) -> tuple[bytes, int]:
        """One HTTP POST: (the body received, when). Raises a `RpcTransientError` or a `RpcRequestError`."""
        if self._session is None or self._bucket is None or self._in_flight is None:
            raise RuntimeError("RpcClient used outside `async with`")
        await self._bucket.take(calls)
        async with self._in_flight:
            try:
                async with self._session.post(self._url, data=body) as response:
                    raw = await response.read()
                    received_ns = time.time_ns()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError as exc:
                raise RpcServerError(f"no answer within {self.policy.timeout_s} s", status="timeout") from exc
            except aiohttp.ClientError as exc:
                raise RpcServerError(f"connection failed: {type(exc).__name__}", status="connection") from exc
        if status == HTTP_TOO_MANY_REQUESTS:
            after = _retry_after_s(retry_after)
            if after is not None:
                self._bucket.hold(after)
            raise RpcRateLimitedError("rate limited (HTTP 429)", retry_after_s=after)
        if status >= HTTP_SERVER_ERROR:
            raise RpcServerError(f"HTTP {status}", status=status)
        if status >= HTTP_CLIENT_ERROR:
            if calls > 1 or body.startswith(b"["):
                raise _BatchRefusedError(f"HTTP {status}: {raw[:EXCERPT_CHARS]!r}")
            if status in HTTP_REFUSED_KEY:
                raise RpcConfigurationError(
                    f"the provider at {self.redacted_url} refuses the request (HTTP {status}): check the key in"
                    " QUANTBOT_SOLANA_RPC_URL and the plan's methods"
                )
            raise RpcCallError(f"HTTP {status} from {self.redacted_url}: {raw[:EXCERPT_CHARS]!r}")
        return raw, received_ns

    async def _exchange(self, requests: list[dict[str, Any]], batch: bool) -> dict[int | str, _Answer]:
        """One HTTP exchange of `requests` (a batch when `batch`, else exactly one): answers by request id."""
        body = orjson.dumps(requests if batch else requests[0])
        raw, received_ns = await self._post(body, len(requests))
        try:
            elements = split_batch(raw) if batch else [raw]
            bodies = [orjson.loads(element) for element in elements]
        except (ValueError, UnicodeDecodeError) as exc:
            if batch and raw.lstrip().startswith(b"{"):
                raise _BatchRefusedError(f"a batch answered by one object: {raw[:EXCERPT_CHARS]!r}") from exc
            raise RpcServerError(f"an answer that is not JSON-RPC: {raw[:EXCERPT_CHARS]!r}", status="garbled") from exc
        answers: dict[int | str, _Answer] = {}
        for element, parsed in zip(elements, bodies, strict=True):
            if isinstance(parsed, dict) and isinstance(parsed.get("id"), int | str):
                answers[parsed["id"]] = _Answer(element, parsed, received_ns)
        if len(requests) == 1 and not answers and isinstance(bodies[0], dict):
            # An error about the request as a whole (id null) answers its one call.
            answers[requests[0]["id"]] = _Answer(elements[0], bodies[0], received_ns)
        if not all(request["id"] in answers for request in requests):
            raise RpcServerError("an answer missing some of the calls' ids", status="garbled")
        return answers

    # -- retries -------------------------------------------------------------------------------------------

    async def _wait(self, method: str, exc: RpcTransientError, attempt: int, deadline: float, calls: int) -> None:
        """Sleep before asking again, or raise `RpcUnavailableError` when that would outlast `deadline`."""
        delay = self.policy.backoff_s(attempt)
        if isinstance(exc, RpcRateLimitedError) and exc.retry_after_s is not None:
            delay = exc.retry_after_s
        _count(method, exc.reason, calls)
        if time.monotonic() + delay > deadline:
            log.warning(
                "rpc=%s status=%s given_up_after_s=%.1f url=%s: %s",
                method,
                exc.status,
                self.policy.retry_budget_s,
                self.redacted_url,
                exc,
            )
            raise RpcUnavailableError(
                f"{method} at {self.redacted_url} still failing after {self.policy.retry_budget_s:g} s: {exc}"
            ) from exc
        metrics.RPC_RETRIES.labels(exc.reason).inc(calls)
        log.debug("rpc=%s status=%s retry_in_s=%.2f attempt=%d calls=%d", method, exc.status, delay, attempt + 1, calls)
        await asyncio.sleep(delay)

    def _check(self, method: str, answer: _Answer) -> None:
        """Raise the error a JSON-RPC error answer stands for, when it is not the caller's to handle."""
        error = answer.error
        if error is None:
            return
        code = error.get("code")
        message = str(error.get("message", ""))[:MESSAGE_CHARS]
        if code in RATE_LIMITED_CODES:
            raise RpcRateLimitedError(f"{method}: rate limited ({code}): {message}", retry_after_s=None)
        if code in NOT_READY_CODES:
            raise RpcNodeNotReadyError(f"{method}: {message}", status=str(code))
        if code == UNSUPPORTED_VERSION:
            raise RpcConfigurationError(
                f"{method}: the provider holds a transaction of a version newer than quantbot decodes"
                f" (maxSupportedTransactionVersion {MAX_SUPPORTED_TRANSACTION_VERSION} is sent): {message};"
                " upgrade quantbot",
                code=code,
            )
        if code == INVALID_PARAMS:
            raise RpcCallError(f"{method}: invalid params: {message}", code=code)
        if code == NO_TRANSACTION_HISTORY:
            raise RpcConfigurationError(
                f"{method}: the provider at {self.redacted_url} keeps no transaction history: {message};"
                " a backfill needs an archive RPC (QUANTBOT_SOLANA_RPC_URL)",
                code=code,
            )

    async def _call(
        self,
        method: str,
        params: list[Any],
        *,
        settle: frozenset[int] = frozenset(),
        prepared: dict[str, Any] | None = None,
    ) -> _Answer:
        """One call, its transient failures retried; an error with a code in `settle` is returned, not raised.

        `prepared`: the request to send as it is (its own id) instead of one built from `method` and `params`.
        """
        deadline = time.monotonic() + self.policy.retry_budget_s
        attempt = 0
        while True:
            request = prepared if prepared is not None else self._request(method, params)
            try:
                answer = (await self._exchange([request], batch=False))[request["id"]]
                error = answer.error
                if error is None or error.get("code") in settle:
                    _count(method, "ok" if error is None else "rpc_error")
                    return answer
                self._check(method, answer)
                _count(method, "rpc_error")
                raise RpcCallError(
                    f"{method}: error {error.get('code')}: {str(error.get('message', ''))[:MESSAGE_CHARS]}",
                    code=error.get("code") if isinstance(error.get("code"), int) else None,
                )
            except RpcTransientError as exc:
                await self._wait(method, exc, attempt, deadline, 1)
                attempt += 1

    async def call(self, method: str, params: list[Any]) -> bytes:
        """Any JSON-RPC method, with the client's rate limit, bounds and retries: the response as received.

        Raises:
            RpcUnavailableError: transient failures outlasted the retry budget.
            RpcRequestError: a JSON-RPC error (`RpcConfigurationError` for -32015 and the like).
        """
        return (await self._call(method, params)).raw

    # -- the methods -------------------------------------------------------------------------------------------

    async def get_token_accounts(self, mint: str) -> tuple[bytes, int]:
        """`mint`'s mint and metadata accounts: `quantbot.tokens.accounts_request(mint)` sent as it is (its id is
        the mint, so the answer alone says whose it is), with the client's rate limit, bounds and retries.

        Returns:
            The response exactly as received, and when (ns since the epoch).

        Raises:
            quantbot.tokens.TokenFormatError: `mint` is not an address (nothing is sent).
            RpcUnavailableError: transient failures outlasted the retry budget.
            RpcRequestError: a JSON-RPC error (-32602 for keys the node refuses, ...).
        """
        request = accounts_request(mint)
        answer = await self._call(request["method"], request["params"], prepared=request)
        return answer.raw, answer.received_ns

    async def get_slot(self, *, commitment: str) -> int:
        """The node's current slot at `commitment`."""
        answer = await self._call("getSlot", [{"commitment": commitment}])
        result = answer.body.get("result")
        if not isinstance(result, int):
            raise RpcCallError(f"getSlot answered {answer.raw[:EXCERPT_CHARS]!r}")
        return result

    async def get_signatures_for_address(
        self,
        address: str,
        *,
        before: str | None = None,
        until: str | None = None,
        limit: int = SIGNATURES_PAGE_MAX,
        commitment: str = "confirmed",
    ) -> list[SignatureInfo]:
        """Signatures of transactions touching `address`, newest first, older than `before`, newer than `until`."""
        config: dict[str, Any] = {"limit": limit, "commitment": commitment}
        if before is not None:
            config["before"] = before
        if until is not None:
            config["until"] = until
        answer = await self._call("getSignaturesForAddress", [address, config])
        result = answer.body.get("result")
        if not isinstance(result, list):
            raise RpcCallError(f"getSignaturesForAddress answered {answer.raw[:EXCERPT_CHARS]!r}")
        return [
            SignatureInfo(
                signature=entry["signature"],
                slot=int(entry["slot"]),
                block_time=entry.get("blockTime"),
                err=entry.get("err") is not None,
            )
            for entry in result
        ]

    async def get_block_signatures(self, slot: int, *, commitment: str) -> list[str] | SlotUnavailable:
        """The signatures of the block at `slot`, in block order; `SlotUnavailable` when it has no block to read."""
        config = {
            "encoding": "json",
            "transactionDetails": "signatures",
            "rewards": False,
            "commitment": commitment,
            "maxSupportedTransactionVersion": MAX_SUPPORTED_TRANSACTION_VERSION,
        }
        answer = await self._call("getBlock", [slot, config], settle=SLOT_UNAVAILABLE_CODES)
        error = answer.error
        if error is not None:
            return SlotUnavailable(slot, int(error["code"]), str(error.get("message", ""))[:MESSAGE_CHARS])
        result = answer.body.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("signatures"), list):
            raise RpcCallError(f"getBlock {slot} answered {answer.raw[:EXCERPT_CHARS]!r}")
        return [str(signature) for signature in result["signatures"]]

    async def get_transaction(self, signature: str, *, encoding: str, commitment: str) -> Fetched:
        """One transaction: its response as received, or `Fetched(problem=...)` (see the module docstring)."""
        return (await self._get_transactions([signature], encoding=encoding, commitment=commitment, batch=False))[0]

    async def get_transactions(self, signatures: Sequence[str], *, encoding: str, commitment: str) -> list[Fetched]:
        """Transactions in the order of `signatures`, fetched in JSON-RPC batches of `policy.batch_size`.

        A provider that refuses a batch is asked one call at a time from then on (logged once).
        """
        size = self.policy.batch_size
        chunks = [list(signatures[i : i + size]) for i in range(0, len(signatures), size)]
        results = await asyncio.gather(
            *(self._get_transactions(chunk, encoding=encoding, commitment=commitment, batch=True) for chunk in chunks)
        )
        return [fetched for chunk in results for fetched in chunk]

    async def _get_transactions(
        self, signatures: Sequence[str], *, encoding: str, commitment: str, batch: bool
    ) -> list[Fetched]:
        method = "getTransaction"
        config = {
            "encoding": encoding,
            "commitment": commitment,
            "maxSupportedTransactionVersion": MAX_SUPPORTED_TRANSACTION_VERSION,
        }
        done: dict[str, Fetched] = {}
        last: dict[str, _Answer] = {}
        pending = list(dict.fromkeys(signatures))
        started = time.monotonic()
        deadline = started + self.policy.retry_budget_s
        null_deadline = started + self.policy.null_retry_s
        attempt = 0
        while pending:
            requests = {signature: self._request(method, [signature, config]) for signature in pending}
            try:
                answers = await self._send(list(requests.values()), batch=batch and len(pending) > 1)
            except RpcTransientError as exc:
                await self._wait(method, exc, attempt, deadline, len(pending))
                attempt += 1
                continue
            retry: list[str] = []
            not_ready: RpcTransientError | None = None
            for signature, request in requests.items():
                answer = answers[request["id"]]
                last[signature] = answer
                try:
                    self._check(method, answer)
                except RpcTransientError as exc:
                    not_ready = exc
                    retry.append(signature)
                    continue
                if (error := answer.error) is not None:
                    _count(method, "rpc_error")
                    done[signature] = Fetched(
                        signature,
                        answer.raw,
                        answer.received_ns,
                        f"error {error.get('code')}: {str(error.get('message', ''))[:MESSAGE_CHARS]}",
                    )
                elif answer.body.get("result") is None:
                    retry.append(signature)
                else:
                    _count(method, "ok")
                    done[signature] = Fetched(signature, answer.raw, answer.received_ns)
            nulls = [s for s in retry if last[s].error is None]
            now = time.monotonic()
            delay = self.policy.backoff_s(attempt)
            if nulls and now + delay > null_deadline:
                for signature in nulls:
                    answer = last[signature]
                    _count(method, "null")
                    done[signature] = Fetched(
                        signature,
                        answer.raw,
                        answer.received_ns,
                        f"null: not found at commitment `{commitment}` for {self.policy.null_retry_s:g} s",
                    )
                log.info("rpc=%s nulls_given_up=%d after_s=%.1f", method, len(nulls), now - started)
                retry = [s for s in retry if s not in done]
            pending = retry
            if not pending:
                break
            if not_ready is not None:
                await self._wait(method, not_ready, attempt, deadline, len(pending))
            else:
                _count(method, "null", len(pending))
                metrics.RPC_RETRIES.labels("null").inc(len(pending))
                log.debug("rpc=%s status=null retry_in_s=%.2f calls=%d", method, delay, len(pending))
                await asyncio.sleep(delay)
            attempt += 1
        return [done[signature] for signature in signatures]

    async def _send(self, requests: list[dict[str, Any]], *, batch: bool) -> dict[int | str, _Answer]:
        """`requests` in one batch, or each alone (concurrently) when not `batch` or batches are refused."""
        if batch and not self.batches_refused:
            try:
                return await self._exchange(requests, batch=True)
            except _BatchRefusedError as exc:
                if not self.batches_refused:
                    self.batches_refused = True
                    log.warning(
                        "rpc=batch refused=true url=%s fallback=single_calls: %s",
                        self.redacted_url,
                        str(exc)[:EXCERPT_CHARS],
                    )
        answers: dict[int | str, _Answer] = {}
        for part in await asyncio.gather(*(self._exchange([request], batch=False) for request in requests)):
            answers.update(part)
        return answers
