# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Calling peers safely: for the relay (outbox delivery) and for handlers (`ctx.peers`).

    def handle(ctx, data):
        payment = ctx.peers.payments.capture_payment(order_id=data["order_id"], amount_cents=1250)
        # -> {"payment_id": "...", "status": "captured"}, checked against the declared response

The spec declares what a service calls (`peers: {payments: {url_env: PAYMENTS_URL, calls:
{capture_payment: {method: POST, path: /v1/payments, request: ..., response: ...}}}}`) and the
generator writes one typed method per call in `_generated/peers.py`. Every call:

- is checked against the declared request schema before anything is sent (`PeerCallInvalid`);
- carries a short-lived token of this service (audience: the peer's name, the call's scopes),
  the trace (`traceparent`) and the request id of the work that makes it;
- has a timeout (PEER_TIMEOUT_SECONDS), always;
- on POST and PATCH carries an `Idempotency-Key`, the same on every retry, derived from the
  request id (the message id in the worker) and the call, so a handler that runs again for the
  same message or request sends the same key and the peer applies the call once (the peer's
  endpoint must honour the key: `idempotent: true` in a shoestring spec);
- is retried only where that is safe: connection errors and timeouts, 502/503/504, 429 with a
  Retry-After, and 409 with a Retry-After (the peer is still running an earlier try of this
  key), up to PEER_MAX_ATTEMPTS tries with backoff and jitter;
- goes through the peer's circuit breaker (breaker.py), shared with the relay: while it is open
  the call fails at once with `PeerUnavailable` instead of waiting for a timeout;
- has its response checked against the declared response schema (`PeerResponseInvalid`).

Errors are `problems.Problem`s: a handler that lets one through answers 503 (peer unavailable,
with Retry-After) or 502 (the peer refused the call or answered nonsense) instead of a bare 500;
in the worker, the message is retried later like any failure.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from jsonschema import Draft202012Validator

from .auth import AuthConfig
from .breaker import Breaker, BreakerOpen, BreakerPolicy, BreakerStore, Permit
from .keys import KeyStore, mint_token
from .problems import Problem
from .schemas import to_jsonable, validator_for
from .schemas import validation_errors as schema_errors
from .settings import number

log = logging.getLogger(__name__)

# Tokens for peers live this long; one is reused until it has less than TOKEN_REUSE_MARGIN left.
TOKEN_TTL_SECONDS = 300
TOKEN_REUSE_MARGIN_SECONDS = 60
# Connecting to a peer on the same network takes milliseconds; waiting longer only delays the
# failure (the read timeout is the setting).
CONNECT_TIMEOUT_SECONDS = 3.05
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
RETRY_BASE_SECONDS = 0.2
RETRY_MAX_SECONDS = 2.0
# Answers that mean "not now" rather than "not this": the request was not processed, and trying
# again later (after Retry-After, when given) may succeed.
UNAVAILABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


# (name, default, parser, help) of the settings of calls to peers; `Service.setting_rules` adds
# them.
PEER_SETTINGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    (
        "PEER_TIMEOUT_SECONDS",
        "5",
        number(0.1, 300),
        "timeout of one synchronous call to a peer (ctx.peers), waiting for its answer",
    ),
    (
        "PEER_MAX_ATTEMPTS",
        "3",
        number(1, 10, whole=True),
        "tries of a synchronous peer call where trying again is safe, the first included",
    ),
    (
        "RELAY_TIMEOUT_SECONDS",
        "10",
        number(0.1, 300),
        "timeout of one delivery of a batch of messages to a peer's inbox",
    ),
    (
        "RELAY_MAX_BATCH_BYTES",
        "262144",
        number(1024, 64 * 1024 * 1024, whole=True),
        "largest request body the relay sends to a peer (keep it below the peer's MAX_BODY_BYTES)",
    ),
    (
        "BREAKER_FAILURE_THRESHOLD",
        "3",
        number(1, 1000, whole=True),
        "failed calls in a row that open a peer's circuit breaker (keep it below max_attempts)",
    ),
    (
        "BREAKER_OPEN_SECONDS",
        "10",
        number(0.1, 3600),
        "how long an opened circuit breaker waits before one process tries the peer again",
    ),
    (
        "BREAKER_MAX_OPEN_SECONDS",
        "300",
        number(0.1, 86400),
        "the longest wait of an open breaker (the wait doubles after each failed trial)",
    ),
)


# -- errors ------------------------------------------------------------------------------------


class PeerCallInvalid(ValueError):
    """A handler asked to call a peer with data its declared request schema does not allow (a
    bug in the handler, or a spec that no longer matches the peer): nothing was sent."""


class PeerError(Problem):
    """A call to a peer did not give a usable answer. A Problem: uncaught in a request, it
    answers with its status instead of a bare 500."""

    def __init__(
        self,
        status: int,
        peer: str,
        call: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.peer = peer
        self.call = call


class PeerUnavailable(PeerError):
    """The peer could not be reached, timed out, said it is unavailable, or its circuit breaker
    is open. `retry_after`: seconds after which trying again makes sense, when known."""

    def __init__(self, peer: str, call: str, reason: str, retry_after: float | None = None):
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        super().__init__(
            503,
            peer,
            call,
            f"a service this request depends on ({peer}) is unavailable right now; retry later",
            headers=headers,
        )
        self.reason = reason
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.peer}.{self.call}: {self.reason}"


class PeerRejected(PeerError):
    """The peer answered with an error (4xx, or a 500): `peer_status` is its status and
    `peer_problem` its problem+json body (None when it sent none), e.g. to tell a 404 apart."""

    def __init__(self, peer: str, call: str, peer_status: int, peer_problem: Any) -> None:
        super().__init__(
            502,
            peer,
            call,
            f"a service this request depends on ({peer}) refused the call it needed "
            f"(status {peer_status})",
        )
        self.peer_status = peer_status
        self.peer_problem = peer_problem

    def __str__(self) -> str:
        detail = self.peer_problem.get("detail") if isinstance(self.peer_problem, dict) else None
        return f"{self.peer}.{self.call} answered {self.peer_status}: {detail or self.peer_problem}"


class PeerResponseInvalid(PeerError):
    """The peer answered 2xx with a body its declared response schema does not allow."""

    def __init__(self, peer: str, call: str, reason: str) -> None:
        super().__init__(
            502,
            peer,
            call,
            f"a service this request depends on ({peer}) answered with data this service cannot "
            "use",
        )
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.peer}.{self.call}: {self.reason}"


# -- HTTP helpers shared with the relay --------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) as seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def read_body(response: requests.Response) -> bytes:
    """The body of a streamed response, at most MAX_RESPONSE_BYTES (a peer cannot exhaust our
    memory); raises ValueError beyond. A body read to its end gives the connection back to the
    session's pool (kept alive for the next call); one cut short closes it."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ValueError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


def problem_of(body: bytes) -> Any:
    """A peer's error body as JSON when it is JSON (problem+json), else its text (shortened)."""
    try:
        return json.loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace")


def problem_detail(body: bytes) -> str:
    found = problem_of(body)
    if isinstance(found, dict) and isinstance(found.get("detail"), str):
        return found["detail"][:500]
    return str(found)[:500] or "no detail"


class TokenSource:
    """This service's tokens for its peers: minted with its signing key, reused until close to
    expiry (one per audience and set of scopes), safe to share between threads."""

    def __init__(self, store: KeyStore, *, issuer: str, subject: str) -> None:
        self.store = store
        self.issuer = issuer
        self.subject = subject
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, frozenset[str]], tuple[str, float]] = {}

    def token(self, audience: str, scopes: Iterable[str] = ()) -> str:
        key = (audience, frozenset(scopes))
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] - now > TOKEN_REUSE_MARGIN_SECONDS:
                return cached[0]
            token = mint_token(
                self.store,
                issuer=self.issuer,
                audience=audience,
                subject=self.subject,
                scopes=sorted(key[1]),
                ttl=TOKEN_TTL_SECONDS,
            )
            self._cache[key] = (token, now + TOKEN_TTL_SECONDS)
            return token


# -- the process-wide part ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call of the spec (`peers: <peer>: calls: <name>`), as the generator wrote it."""

    peer: str
    name: str
    method: str
    path: str
    path_params: tuple[str, ...]
    scopes: tuple[str, ...]
    request: dict[str, Any]
    response: dict[str, Any]
    timeout_seconds: float | None = None
    request_validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    response_validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_validator", validator_for(self.request))
        object.__setattr__(self, "response_validator", validator_for(self.response))

    @classmethod
    def from_model(cls, peer: str, name: str, model: Mapping[str, Any]) -> Call:
        return cls(
            peer=peer,
            name=name,
            method=str(model["method"]).upper(),
            path=model["path"],
            path_params=tuple(model.get("path_params") or ()),
            scopes=tuple(model.get("scopes") or ()),
            request=model.get("request") or {"type": "object"},
            response=model.get("response") or {"type": "object"},
            timeout_seconds=model.get("timeout_seconds"),
        )

    @property
    def has_body(self) -> bool:
        return self.method not in ("GET", "DELETE", "HEAD")


class Connector:
    """What talking to peers needs, once per process: their URLs, this service's tokens, one
    HTTP session per thread and peer (kept-alive connections), the breakers, the settings."""

    def __init__(
        self,
        settings: Any,
        *,
        service: Mapping[str, Any] | None = None,
        sender: str | None = None,
        breakers: BreakerStore | None = None,
    ) -> None:
        model = settings.service.model if service is None else service
        self.service = sender or str(model["service"]["name"])
        self.peers: dict[str, Any] = dict(model.get("peers") or {})
        self.settings = settings
        config = AuthConfig.from_settings(settings.values, settings.root, self.service)
        self.tokens = TokenSource(
            KeyStore(config.keys_dir, settings.service.package),
            issuer=config.issuer,
            subject=self.service,
        )
        self.breakers = breakers or BreakerStore(settings.database_url, settings.root)
        self.policy = BreakerPolicy(
            failure_threshold=int(settings.get("BREAKER_FAILURE_THRESHOLD", 3)),
            open_seconds=float(settings.get("BREAKER_OPEN_SECONDS", 10.0)),
            max_open_seconds=float(settings.get("BREAKER_MAX_OPEN_SECONDS", 300.0)),
            trial_seconds=max(60.0, 2 * float(settings.get("RELAY_TIMEOUT_SECONDS", 10.0))),
        )
        self.timeout = float(settings.get("PEER_TIMEOUT_SECONDS", 5.0))
        self.max_attempts = int(settings.get("PEER_MAX_ATTEMPTS", 3))
        self._calls: dict[tuple[str, str], Call] = {}
        self._local = threading.local()

    def base_url(self, peer: str) -> str:
        """The peer's base URL, from the setting its `url_env` names (checked at start-up)."""
        entry = self.peers.get(peer)
        if entry is None:
            raise LookupError(
                f"{self.service} has no peer {peer!r}: add it under `peers:` in service.yaml with "
                "its url_env, and run `shoestring generate`"
            )
        url = self.settings.get(entry["url_env"])
        if not url:
            raise LookupError(f"{entry['url_env']} is not set: give it the base URL of {peer}")
        return str(url).rstrip("/")

    def breaker(self, peer: str) -> Breaker:
        return Breaker(self.breakers, peer, self.policy)

    def session(self, peer: str) -> requests.Session:
        """This thread's HTTP session for `peer` (requests sessions are not meant to be shared
        between threads). No proxies or .netrc from the environment: peers are called directly."""
        sessions: dict[str, requests.Session] | None = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        session = sessions.get(peer)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            sessions[peer] = session
        return session

    def call(self, peer: str, name: str) -> Call:
        found = self._calls.get((peer, name))
        if found is None:
            calls = (self.peers.get(peer) or {}).get("calls") or {}
            if name not in calls:
                raise LookupError(
                    f"{self.service} declares no call {name!r} to {peer}: add it under "
                    f"`peers: {peer}: calls:` in service.yaml and run `shoestring generate`"
                )
            found = self._calls[(peer, name)] = Call.from_model(peer, name, calls[name])
        return found


_connectors: dict[int, tuple[Any, Connector]] = {}
_connectors_lock = threading.Lock()


def connector_for(settings: Any) -> Connector:
    """The process's Connector for these settings, made on first use. One per process (like the
    message catalog): it holds the kept-alive HTTP connections and the token cache, which are
    worth reusing across requests and messages."""
    with _connectors_lock:
        found = _connectors.get(id(settings))
        if found is None or found[0] is not settings:
            found = (settings, Connector(settings))
            _connectors[id(settings)] = found
        return found[1]


# -- the typed clients -------------------------------------------------------------------------


class PeerClient:
    """The calls to one peer, for one handler run (its request id and trace). The generator
    subclasses it once per peer, with one typed method per declared call."""

    peer: str = ""

    def __init__(self, connector: Connector, ctx: Any) -> None:
        self.connector = connector
        self.ctx = ctx
        self._counts: dict[str, int] = {}

    def call(
        self,
        name: str,
        data: Mapping[str, Any],
        *,
        optional: Iterable[str] = (),
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Make the call `name` with `data`; return the peer's answer, checked. Optional fields
        left as None are not sent."""
        call = self.connector.call(self.peer, name)
        skip = set(optional)
        body = {k: v for k, v in to_jsonable(dict(data)).items() if not (k in skip and v is None)}
        errors = schema_errors(call.request_validator, body)
        if errors:
            listed = "; ".join(f"{e['pointer'] or '/'} {e['detail']}" for e in errors)
            raise PeerCallInvalid(
                f"{self.peer}.{name}: the data does not match the declared request ({listed}); "
                f"fix the call, or the request fields of peers: {self.peer}: calls: {name}"
            )
        position = self._counts[name] = self._counts.get(name, 0) + 1
        if call.method not in SAFE_METHODS and idempotency_key is None:
            idempotency_key = self._derived_key(call, body, position)
        return _Attempts(self.connector, call, self.ctx, body, idempotency_key, timeout).run()

    def _derived_key(self, call: Call, body: dict[str, Any], position: int) -> str:
        # The same work (request id; message id in the worker) making the same call again with
        # the same data gets the same key, so a re-run handler is applied once by the peer; any
        # other call gets another key, even if a client reuses a request id.
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        material = f"{self.ctx.request_id}\n{self.peer}\n{call.name}\n{position}\n{canonical}"
        return hashlib.sha256(material.encode()).hexdigest()


class _Attempts:
    """The tries of one call: breaker, request, classification, backoff."""

    def __init__(
        self,
        connector: Connector,
        call: Call,
        ctx: Any,
        body: dict[str, Any],
        idempotency_key: str | None,
        timeout: float | None,
    ) -> None:
        self.connector = connector
        self.call = call
        self.ctx = ctx
        self.body = body
        self.idempotency_key = idempotency_key
        self.timeout = timeout or call.timeout_seconds or connector.timeout
        self.breaker = connector.breaker(call.peer)

    def run(self) -> Any:
        call = self.call
        last: PeerError | None = None
        for attempt in range(1, self.connector.max_attempts + 1):
            try:
                permit = self.breaker.allow()
            except BreakerOpen as exc:
                raise PeerUnavailable(call.peer, call.name, str(exc), exc.retry_in) from None
            outcome = self._try(permit)
            if not isinstance(outcome, _Retry):
                return outcome
            last = outcome.error
            log.warning(
                "peer.call_failed",
                extra={"peer": call.peer, "call": call.name, "attempt": attempt,
                       "reason": str(outcome.error)},
            )
            if attempt == self.connector.max_attempts:
                break
            wait = random.uniform(0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** attempt))
            if outcome.after is not None:
                if outcome.after > self.timeout:
                    break  # the peer asks for more patience than a caller waiting on us has
                wait = max(wait, outcome.after)
            time.sleep(wait)
        assert last is not None
        raise last

    def _try(self, permit: Permit) -> Any:
        call, peer = self.call, self.call.peer
        try:
            response = self._send()
        except requests.RequestException as exc:
            # Connection refused or dropped, DNS, timeouts: the peer's health, so the breaker's.
            # Retrying is safe: the method is idempotent, or the request carries its key.
            reason = f"{type(exc).__name__}: {exc}"
            self.breaker.failed(permit, reason)
            return _Retry(PeerUnavailable(peer, call.name, reason))
        try:
            body = read_body(response)
        except (ValueError, requests.RequestException, OSError) as exc:
            self.breaker.failed(permit, f"reading the answer failed: {exc}")
            return _Retry(PeerUnavailable(peer, call.name, f"reading the answer failed: {exc}"))
        status = response.status_code
        after = retry_after_seconds(response.headers.get("Retry-After"))
        if status in UNAVAILABLE_STATUSES:
            reason = f"answered {status}: {problem_detail(body)}"
            self.breaker.failed(permit, reason, after if status in (429, 503) else None)
            error = PeerUnavailable(peer, call.name, reason, after)
            if status == 429 and after is None:
                raise error  # no Retry-After: the peer did not say when trying again is fine
            return _Retry(error, after)
        self.breaker.succeeded(permit)  # it answered: whatever it said, it is up
        if status == 409 and after is not None and self.idempotency_key is not None:
            # The peer is still running an earlier try with this key (a timeout here, not
            # there): asking again once it has finished returns that try's answer.
            return _Retry(PeerRejected(peer, call.name, status, problem_of(body)), after)
        if not 200 <= status < 300:
            raise PeerRejected(peer, call.name, status, problem_of(body))
        return self._answer(status, body)

    def _send(self) -> requests.Response:
        call, connector = self.call, self.connector
        path = call.path
        for name in call.path_params:
            path = path.replace("{" + name + "}", requests.utils.quote(str(self.body[name]), ""))
        rest = {k: v for k, v in self.body.items() if k not in call.path_params}
        token = connector.tokens.token(call.peer, call.scopes)
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "traceparent": self.ctx.traceparent,
            "X-Request-Id": self.ctx.request_id,
        }
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return connector.session(call.peer).request(
            call.method,
            connector.base_url(call.peer) + path,
            params=None if call.has_body else _query(rest),
            json=rest if call.has_body else None,
            headers=headers,
            timeout=(min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout),
            allow_redirects=False,
            stream=True,
        )

    def _answer(self, status: int, body: bytes) -> Any:
        call = self.call
        if status == 204 or not body.strip():
            answer: Any = {}
        else:
            try:
                answer = json.loads(body)
            except ValueError as exc:
                raise PeerResponseInvalid(
                    call.peer, call.name, f"the answer is not JSON ({exc})"
                ) from None
        errors = schema_errors(call.response_validator, answer)
        if errors:
            listed = "; ".join(f"{e['pointer'] or '/'} {e['detail']}" for e in errors)
            raise PeerResponseInvalid(
                call.peer,
                call.name,
                f"the answer does not match the declared response ({listed}); update the "
                f"response fields of peers: {call.peer}: calls: {call.name} if {call.peer} "
                "changed its API",
            )
        return answer


@dataclass
class _Retry:
    error: PeerError
    after: float | None = None


def _query(data: Mapping[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return [text(item) for item in value]
        return value

    return {key: text(value) for key, value in data.items() if value is not None}


class PeersBase:
    """`ctx.peers`: the generated `Peers` class sets one attribute per peer it calls."""

    def __init__(self, connector: Connector, ctx: Any) -> None:
        self.connector = connector
        self.ctx = ctx

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"ctx.peers has no {name!r}: this service declares no calls to a peer of that name; "
            f"add them under `peers: {name}: calls:` in service.yaml and run `shoestring generate`"
        )


def bind(ctx: Any) -> Any:
    """`ctx.peers` for a handler's context: the generated clients, bound to its ids."""
    generated = ctx.settings.service.generated("peers")
    return generated.Peers(connector_for(ctx.settings), ctx)
