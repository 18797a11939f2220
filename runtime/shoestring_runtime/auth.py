# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Zero-trust request authentication: every endpoint call carries a JWT that this module verifies.

A token is accepted only when all of these hold (RFC 8725, the JWT best current practices):

- it is a compact JWS of at most `MAX_TOKEN_LENGTH` characters;
- its `iss` is exactly one of the trusted issuers: this service itself (keys from its own key
  directory), or an entry of `TRUSTED_ISSUERS` (a peer service or an OIDC provider);
- its signature verifies with a key of that issuer found by `kid`, with the algorithm pinned by
  the key's type (EdDSA for Ed25519, RS256 for RSA unless the JWK names another RSA algorithm,
  ES256/384/512 by curve); the token's `alg` header must match and never chooses anything;
- `jku`, `x5u`, `jwk` and `x5c` headers are never read: keys come only from configuration;
- `iss`, `sub`, `aud`, `exp` and `iat` are present, `aud` names this service, `exp`, `nbf` and
  `iat` hold with at most `AUTH_LEEWAY_SECONDS` (<= 60) of clock skew;
- the endpoint's scopes are all granted, compared exactly, from the space-delimited `scope`
  claim or the `scp` claim (a list or a space-delimited string).

An unknown `kid` makes the issuer's JWKS be fetched again, but at most once per
`JWKS_REFETCH_COOLDOWN_SECONDS`, so random key ids cannot turn this service into a traffic
amplifier against the issuer. Caches are per process.

A client sends the same token with every request until it expires, and verifying it (base64,
JSON, an Ed25519 or RSA signature) costs more than the rest of a small request. So the claims of
a token that verified are kept for `TOKEN_CACHE_SECONDS` at most, never past its `exp`, in a
bounded per-process cache keyed by the token itself. That is safe because verification is a
pure function of the token, the keys and the clock: a hit checks the clock again, and checks
that the issuer still publishes the very key that verified it, so a retired or rotated-out key
stops its tokens at once. Only tokens that verified are cached; scopes are checked per request.

Failures are problem+json responses: 401 with `WWW-Authenticate: Bearer ... error="invalid_token"`
(or no error when no token was sent, RFC 6750 section 3.1) and 403 with
`error="insufficient_scope"` naming the scopes needed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask, Response, current_app, request

from . import problems
from .jsonbody import copy_json
from .keys import ALGORITHMS, DEFAULT_ALGORITHM, KeyStore, KeyStoreError, public_jwk, thumbprint
from .problems import Problem
from .settings import SettingsError, number

log = logging.getLogger(__name__)

# Real access tokens are well under 2 KB; anything near 10 KB is an attack on the parser.
MAX_TOKEN_LENGTH = 8192
MAX_LEEWAY_SECONDS = 60
DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_JWKS_CACHE_SECONDS = 3600
DEFAULT_JWKS_REFETCH_COOLDOWN_SECONDS = 60
DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS = 3.0
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat")
# Verified tokens kept per process (see the module docstring): enough for every client of a
# small service, and at most MAX_TOKEN_LENGTH bytes each.
TOKEN_CACHE_SIZE = 1024
TOKEN_CACHE_SECONDS = 60.0
JWKS_PATH = "/.well-known/jwks.json"
EXTENSION = "auth"

# Three base64url segments; the signature segment must not be empty (no unsigned tokens).
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Token types an access token may declare (RFC 9068 section 2.1); other JWTs (logout tokens,
# DPoP proofs, security events) must never pass as access tokens.
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})


# -- errors ------------------------------------------------------------------------------------


class AuthError(Exception):
    """A request that may not reach the handler; rendered as problem+json."""

    status = 401
    error: str | None = "invalid_token"
    title = "Unauthorized"

    def __init__(self, detail: str, scope: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.scope = scope

    def www_authenticate(self, realm: str) -> str:
        parts = [f'realm="{_quotable(realm)}"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{_quotable(self.detail)}"')
        if self.scope:
            parts.append(f'scope="{_quotable(self.scope)}"')
        return "Bearer " + ", ".join(parts)


class TokenMissing(AuthError):
    """No bearer token was sent (RFC 6750: answer with the scheme and realm, no error code)."""

    error = None


class InvalidToken(AuthError):
    """The token is malformed, forged, expired, or not meant for this service."""


class InsufficientScope(AuthError):
    """The token is valid but does not grant every scope the endpoint needs."""

    status = 403
    error = "insufficient_scope"
    title = "Forbidden"


class UnusableKey(ValueError):
    """A JWK, JWKS or key file that cannot verify tokens; the message says why."""


class TrustedIssuersError(ValueError):
    """`TRUSTED_ISSUERS` cannot be parsed; the message shows the accepted forms."""


def _quotable(text: str) -> str:
    # RFC 6750 section 3: error_description and scope use printable ASCII without '"' and '\'.
    cleaned = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
    return cleaned[:300]


# -- identity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who called: the verified token's subject, issuer, scopes and every claim."""

    subject: str
    issuer: str
    scopes: frozenset[str]
    claims: Mapping[str, Any] = field(repr=False)

    @property
    def client_id(self) -> str:
        """The OAuth client the token was issued to (RFC 9068 `client_id`, OIDC `azp`), else
        the subject."""
        for claim in ("client_id", "azp"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return self.subject

    def has_scopes(self, required: Iterable[str]) -> bool:
        """Whether every scope of `required` is granted (for checks a handler makes itself)."""
        return all(scope in self.scopes for scope in required)


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer whose tokens this service accepts, and where its public keys come from."""

    issuer: str
    jwks_url: str | None = None
    jwks_file: Path | None = None


@dataclass(frozen=True)
class AuthConfig:
    """What verification needs; `from_settings` reads it from the service's settings."""

    issuer: str
    audience: str
    keys_dir: Path
    trusted: tuple[TrustedIssuer, ...] = ()
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    jwks_cache_seconds: float = DEFAULT_JWKS_CACHE_SECONDS
    jwks_refetch_cooldown_seconds: float = DEFAULT_JWKS_REFETCH_COOLDOWN_SECONDS
    jwks_fetch_timeout_seconds: float = DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS
    key_algorithm: str = DEFAULT_ALGORITHM

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], root: Path, service_name: str
    ) -> AuthConfig:
        """The config from the parsed values of `auth_settings` (`Settings.values` holds them);
        empty names default to the service name, a relative key directory is relative to
        `root`, the service's folder."""
        keys_dir = Path(settings["SERVICE_KEYS_DIR"])
        if not keys_dir.is_absolute():
            keys_dir = root / keys_dir
        issuer = settings["SERVICE_ISSUER"] or service_name
        problem = issuer_problem(issuer, service_name)
        if problem is not None:
            raise SettingsError([problem])
        trusted = settings["TRUSTED_ISSUERS"]
        if any(entry.issuer == issuer for entry in trusted):
            problem = (
                f"TRUSTED_ISSUERS lists {issuer!r}, this service's own issuer "
                "(SERVICE_ISSUER): remove it, this service always trusts its own keys"
            )
            raise SettingsError([problem])
        return cls(
            issuer=issuer,
            audience=settings["SERVICE_AUDIENCE"] or service_name,
            keys_dir=keys_dir,
            trusted=trusted,
            leeway_seconds=settings["AUTH_LEEWAY_SECONDS"],
            jwks_cache_seconds=settings["JWKS_CACHE_SECONDS"],
            jwks_refetch_cooldown_seconds=settings["JWKS_REFETCH_COOLDOWN_SECONDS"],
            jwks_fetch_timeout_seconds=settings["JWKS_FETCH_TIMEOUT_SECONDS"],
            key_algorithm=settings["SERVICE_KEY_ALGORITHM"],
        )


def issuer_problem(issuer: str, service_name: str) -> str | None:
    """Why `issuer` (SERVICE_ISSUER) cannot be this service's, or None when it is its name.

    A peer knows the sender of a message only by the issuer of its token (a trusted issuer
    chooses its own `sub`, so the subject proves nothing), and compares it with the `from:` of
    its subscriptions and the `source` of each message, which are the service name. Any other
    issuer gets every delivery of this service refused, so it is refused here, at start-up.
    """
    if not issuer or issuer == service_name:
        return None
    return (
        f"SERVICE_ISSUER={issuer!r}: peers know the sender of a message by the issuer of its "
        f"token and compare it with the service name, {service_name!r}, so any other issuer "
        f"gets every delivery refused: remove SERVICE_ISSUER (it defaults to {service_name!r}) "
        f"or set it to {service_name!r}; peers trust this service with "
        f"TRUSTED_ISSUERS={service_name}=https://<its host>{JWKS_PATH}"
    )


def _name(raw: str) -> str:
    value = raw.strip()
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    return value


def _key_algorithm(raw: str) -> str:
    value = raw.strip()
    if value not in ALGORITHMS:
        raise ValueError(f"must be one of {', '.join(ALGORITHMS)}")
    return value


def auth_settings(root: Path) -> tuple[tuple[str, str, Callable[[str], Any], str], ...]:
    """(name, default, parser, help) of each auth setting; `Service.setting_rules` adds them.
    The parsers raise ValueError with the fix, like every other setting's. Key files named in
    TRUSTED_ISSUERS are relative to `root`, the service's folder."""

    def trusted_issuers(raw: str) -> tuple[TrustedIssuer, ...]:
        return parse_trusted_issuers(raw, base_dir=root)

    return (
        (
            "SERVICE_ISSUER",
            "",
            _name,
            "the iss of the tokens this service signs: empty or the service name (peers know the "
            "sender of a message by it)",
        ),
        (
            "SERVICE_AUDIENCE",
            "",
            _name,
            "the aud a token must name to call this service (empty: the service name)",
        ),
        ("SERVICE_KEYS_DIR", "var/keys", str, "directory of this service's private signing keys"),
        (
            "SERVICE_KEY_ALGORITHM",
            DEFAULT_ALGORITHM,
            _key_algorithm,
            "algorithm of new keys: EdDSA or RS256",
        ),
        (
            "TRUSTED_ISSUERS",
            "",
            trusted_issuers,
            "issuers whose tokens are accepted besides this service: iss=jwks_url_or_file;... or "
            "JSON",
        ),
        (
            "AUTH_LEEWAY_SECONDS",
            str(DEFAULT_LEEWAY_SECONDS),
            number(0, MAX_LEEWAY_SECONDS, whole=True, unit="seconds"),
            "clock skew allowed when checking exp, nbf and iat",
        ),
        (
            "JWKS_CACHE_SECONDS",
            str(DEFAULT_JWKS_CACHE_SECONDS),
            number(1, 7 * 86400, unit="seconds"),
            "how long a fetched JWKS is used before it is fetched again",
        ),
        (
            "JWKS_REFETCH_COOLDOWN_SECONDS",
            str(DEFAULT_JWKS_REFETCH_COOLDOWN_SECONDS),
            number(0, 86400, unit="seconds"),
            "least time between two fetches of one issuer's JWKS (an unknown kid triggers one)",
        ),
        (
            "JWKS_FETCH_TIMEOUT_SECONDS",
            str(DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS),
            number(0.1, 60, unit="seconds"),
            "timeout of one JWKS fetch",
        ),
    )


TRUSTED_ISSUERS_FORMS = (
    "write it as `issuer=https://host/.well-known/jwks.json;other=path/to/key.pem` "
    'or as JSON: [{"issuer": "...", "jwks_url": "https://..."}, '
    '{"issuer": "...", "jwks_file": "..."}]'
)


def parse_trusted_issuers(text: str, *, base_dir: Path) -> tuple[TrustedIssuer, ...]:
    """Parse `TRUSTED_ISSUERS`; a ValueError names the mistake and the expected forms.

    Three forms, each mapping an exact `iss` value to its keys (an http(s) URL of a JWKS, or a
    file: a JWKS, one JWK, or a PEM public key):

        payments=https://payments.example.com/.well-known/jwks.json;billing=var/trust/billing.pem
        {"payments": "https://payments.example.com/.well-known/jwks.json"}
        [{"issuer": "https://id.example.com/realms/shop",
          "jwks_url": "https://id.example.com/realms/shop/protocol/openid-connect/certs"}]
    """
    text = text.strip()
    if not text:
        return ()
    pairs: list[tuple[str, str | None, str | None]] = []
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TrustedIssuersError(f"not valid JSON ({exc}): {TRUSTED_ISSUERS_FORMS}") from exc
        if isinstance(data, dict):
            data = [{"issuer": k, "keys": v} for k, v in data.items()]
        if not isinstance(data, list):
            raise TrustedIssuersError(
                f"the JSON must be a list or an object: {TRUSTED_ISSUERS_FORMS}"
            )
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("issuer"), str):
                raise TrustedIssuersError(
                    f"the entry {item!r} has no issuer: {TRUSTED_ISSUERS_FORMS}"
                )
            unknown = set(item) - {"issuer", "jwks_url", "jwks_file", "keys"}
            if unknown:
                raise TrustedIssuersError(
                    f"the entry for {item['issuer']!r} has unknown members "
                    f"{sorted(unknown)}: use issuer with jwks_url or jwks_file"
                )
            url, path = item.get("jwks_url"), item.get("jwks_file")
            if "keys" in item:
                url, path = _url_or_file(item["keys"])
            if not (isinstance(url, str) or isinstance(path, str)) or (url and path):
                raise TrustedIssuersError(
                    f"the entry for {item['issuer']!r} needs exactly one of "
                    "jwks_url (an https URL) or jwks_file (a path)"
                )
            pairs.append((item["issuer"], url, path))
    else:
        for part in filter(None, (p.strip() for p in text.split(";"))):
            # Split at the first '=': issuers have no '=' (OIDC issuers carry no query string),
            # a JWKS URL may.
            issuer, sep, value = part.partition("=")
            if not sep or not issuer.strip() or not value.strip():
                raise TrustedIssuersError(
                    f"the entry {part!r} is not issuer=keys: {TRUSTED_ISSUERS_FORMS}"
                )
            pairs.append((issuer.strip(), *_url_or_file(value.strip())))

    result: list[TrustedIssuer] = []
    seen: set[str] = set()
    for issuer, url, path in pairs:
        issuer = issuer.strip()
        if not issuer:
            raise TrustedIssuersError(f"an entry has an empty issuer: {TRUSTED_ISSUERS_FORMS}")
        if issuer in seen:
            raise TrustedIssuersError(f"{issuer!r} is listed twice: keep one entry per issuer")
        seen.add(issuer)
        if url:
            _check_jwks_url(issuer, url)
            result.append(TrustedIssuer(issuer, jwks_url=url))
        else:
            assert path is not None
            file = Path(path)
            if not file.is_absolute():
                file = base_dir / file
            if not file.is_file():
                raise TrustedIssuersError(
                    f"the key file of {issuer!r} ({file}) does not exist: copy the "
                    "issuer's JWKS or PEM public key there, or point to its JWKS URL"
                )
            result.append(TrustedIssuer(issuer, jwks_file=file))
    return tuple(result)


def _url_or_file(value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, str) or not value:
        return None, None
    if value.lower().startswith(("http://", "https://")):
        return value, None
    return None, value


def _check_jwks_url(issuer: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return  # a peer on the same machine: nothing on the wire to tamper with
    raise TrustedIssuersError(
        f"the JWKS URL of {issuer!r} ({url}) must be https (plain http is allowed "
        "only on 127.0.0.1/localhost): whoever can change the keys in transit can forge any token"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- verification keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """A public key and the one algorithm it verifies, fixed when the key was loaded."""

    kid: str
    alg: str
    jwk: jwt.PyJWK


class KeySource(Protocol):
    def find(self, kid: str | None) -> VerificationKey | None: ...


def pinned_algorithm(jwk: Mapping[str, Any]) -> str:
    """The one algorithm a JWK verifies, from its key type; a ValueError when it verifies none."""
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if not all(value is None or isinstance(value, str) for value in (kty, crv, alg)):
        raise UnusableKey("kty, crv and alg must be strings")
    if kty == "OKP" and crv == "Ed25519":
        allowed = {"EdDSA"}
        default = "EdDSA"
    elif kty == "RSA":
        allowed = RSA_ALGORITHMS
        default = "RS256"
    elif kty == "EC" and crv in EC_ALGORITHMS:
        default = EC_ALGORITHMS[crv]
        allowed = {default}
    else:
        # "oct" (shared secrets) above all: a symmetric key in a JWKS would let anyone who can
        # read the JWKS sign tokens.
        raise UnusableKey(f"key type {kty!r} (curve {crv!r}) is not accepted for signatures")
    if alg is None:
        return default
    if alg not in allowed:
        raise UnusableKey(f"alg {alg!r} does not fit a {kty} key")
    return str(alg)


def verification_key(jwk: Any) -> VerificationKey:
    """A VerificationKey from one JWK of a JWKS; a ValueError says why the JWK is unusable."""
    if not isinstance(jwk, dict):
        raise UnusableKey("a JWK must be a JSON object")
    if PRIVATE_JWK_MEMBERS & jwk.keys():
        raise UnusableKey("the JWK holds private key material; publish only public keys")
    if jwk.get("use") not in (None, "sig"):
        raise UnusableKey(f"the JWK is for use {jwk.get('use')!r}, not signatures")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("the JWK's key_ops do not include verify")
    alg = pinned_algorithm(jwk)
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
        kid = jwk["kid"] if "kid" in jwk else thumbprint(jwk)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        # A peer's JWKS is outside this service's control: a malformed key is skipped, it must
        # never turn a token check into a 500.
        raise UnusableKey(f"the JWK is invalid ({exc!r})") from exc
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        raise UnusableKey(
            f"the RSA key has {key.key.key_size} bits; at least {MIN_RSA_BITS} are needed"
        )
    if not isinstance(kid, str) or not kid:
        raise UnusableKey("the JWK's kid must be a non-empty string")
    return VerificationKey(kid=kid, alg=alg, jwk=key)


def parse_jwks(data: Any, origin: str) -> dict[str, VerificationKey]:
    """The usable keys of a JWKS document, by kid; unusable keys are logged and skipped."""
    if isinstance(data, dict) and "keys" not in data and "kty" in data:
        data = {"keys": [data]}  # a file may hold a single JWK
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise UnusableKey(f"{origin} is not a JWKS (a JSON object with a `keys` list)")
    keys: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(data["keys"][:MAX_JWKS_KEYS]):
        try:
            key = verification_key(jwk)
        except (ValueError, KeyStoreError) as exc:
            log.warning(
                "key %d of the JWKS of %s is skipped: %s",
                index,
                origin,
                exc,
                extra={"jwks": origin, "reason": str(exc)},
            )
            continue
        keys.setdefault(key.kid, key)
    return keys


def _pick(keys: Mapping[str, VerificationKey], kid: str | None) -> VerificationKey | None:
    if kid is None:
        # Some issuers omit kid while they have a single key; with several, guessing is unsafe.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class LocalKeys:
    """This service's own published keys, straight from its key directory (no HTTP to itself)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._built_from: tuple[Any, ...] | None = None
        self._keys: dict[str, VerificationKey] = {}

    def find(self, kid: str | None) -> VerificationKey | None:
        live = self.store.live_keys()  # re-reads the keyring only when the file changed
        with self._lock:
            if live is not self._built_from:  # the store keeps one tuple per keyring state
                self._keys = {
                    info.kid: VerificationKey(
                        info.kid, info.alg, jwt.PyJWK(dict(info.public_jwk), algorithm=info.alg)
                    )
                    for info in live
                }
                self._built_from = live
            return _pick(self._keys, kid)


class PinnedKeys:
    """Keys pinned in a file (a JWKS, one JWK, or a PEM public key), re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, VerificationKey] = {}

    def find(self, kid: str | None) -> VerificationKey | None:
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    self._keys = load_key_file(self.path)
                    self._stamp = stamp
            except (OSError, ValueError) as exc:
                # Keep the keys read last: a half-copied file must not lock every caller out.
                log.error(
                    "cannot read the key file %s (the keys read before stay in use): %s",
                    self.path,
                    exc,
                    extra={"jwks": str(self.path), "reason": str(exc)},
                )
            return _pick(self._keys, kid)


def load_key_file(path: Path) -> dict[str, VerificationKey]:
    """The keys of a pinned key file: PEM public key, JWKS or single JWK."""
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"-----BEGIN"):
        public_key = serialization.load_pem_public_key(raw)
        if isinstance(public_key, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
            jwk = public_jwk(public_key)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            jwk = dict(jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True))
        else:
            raise UnusableKey(f"{path} holds a {type(public_key).__name__}; use Ed25519, RSA or EC")
        key = verification_key(jwk)  # kid: the RFC 7638 thumbprint, as this chassis signs with
        return {key.kid: key}
    return parse_jwks(json.loads(raw), str(path))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could move the fetch to plain http or to another host; JWKS URLs are configured
    # exactly, so a redirect is a configuration error to fix, not to follow.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise urllib.error.HTTPError(
            req.full_url, code, f"redirect to {newurl} refused", headers, fp
        )


_opener = urllib.request.build_opener(_NoRedirects())


class RemoteJwks:
    """An issuer's JWKS fetched over HTTPS: cached, refetched on an unknown kid at most once per
    cooldown, and kept (stale) when the issuer cannot be reached."""

    def __init__(
        self, url: str, *, cache_seconds: float, cooldown_seconds: float, timeout_seconds: float
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.cooldown_seconds = cooldown_seconds
        self.timeout_seconds = timeout_seconds
        # One lock per issuer: concurrent requests with a new kid wait for one fetch, not N.
        self._lock = threading.Lock()
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self.fetches = 0

    def find(self, kid: str | None) -> VerificationKey | None:
        with self._lock:
            now = time.monotonic()
            expired = self._fetched_at is None or now - self._fetched_at >= self.cache_seconds
            if expired and self._may_fetch(now):
                self._refresh(now)
            key = _pick(self._keys, kid)
            if key is None and kid is not None and self._may_fetch(now):
                self._refresh(now)  # the issuer may have rotated its keys since the last fetch
                key = _pick(self._keys, kid)
            return key

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.cooldown_seconds

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            self._keys = parse_jwks(self._fetch(), self.url)
            self._fetched_at = now
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            log.warning(
                "cannot fetch the JWKS at %s (the keys fetched before stay in use): %s",
                self.url,
                exc,
                extra={"jwks": self.url, "reason": str(exc)},
            )

    def _fetch(self) -> Any:
        req = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with _opener.open(req, timeout=self.timeout_seconds) as resp:
            body = resp.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"{self.url} answered more than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)


# -- the verifier ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    """A token that verified: the identity it proves, the key that verified it and where that
    key is published, and when the entry must be forgotten (time.time())."""

    identity: Identity
    source: KeySource
    kid: str | None
    key: VerificationKey
    forget_at: float


class Verifier:
    """Verifies bearer tokens for one service. One per process (it holds the JWKS caches and
    the cache of verified tokens)."""

    def __init__(
        self,
        config: AuthConfig,
        store: KeyStore | None = None,
        *,
        cache_size: int = TOKEN_CACHE_SIZE,
        cache_seconds: float = TOKEN_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store or KeyStore(config.keys_dir)
        self.cache_size = cache_size
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._verified_lock = threading.Lock()
        self.sources: dict[str, KeySource] = {config.issuer: LocalKeys(self.store)}
        for entry in config.trusted:
            if entry.jwks_url:
                self.sources[entry.issuer] = RemoteJwks(
                    entry.jwks_url,
                    cache_seconds=config.jwks_cache_seconds,
                    cooldown_seconds=config.jwks_refetch_cooldown_seconds,
                    timeout_seconds=config.jwks_fetch_timeout_seconds,
                )
            else:
                assert entry.jwks_file is not None
                self.sources[entry.issuer] = PinnedKeys(entry.jwks_file)

    def authenticate(self, authorization: str | None, required_scopes: Sequence[str]) -> Identity:
        """The caller's identity from an `Authorization` header value, checked for the scopes."""
        token = bearer_token(authorization)
        identity = self.verify(token)
        missing = [s for s in required_scopes if s not in identity.scopes]
        if missing:
            raise InsufficientScope(
                f"this endpoint needs the scope(s) {' '.join(required_scopes)}; the token lacks "
                f"{' '.join(missing)}: request a token that grants them",
                scope=" ".join(required_scopes),
            )
        return identity

    def verify(self, token: str) -> Identity:
        """The identity a token proves; InvalidToken says what is wrong with it."""
        known = self._remembered(token)
        if known is None:
            claims, source, kid, key = self._verify(token)
            known = _identity(claims)  # checked once; the cache keeps what it found
            self._remember(token, known, source, kid, key)
        # A copy per request: a handler that edits its identity's claims edits only its own.
        return Identity(known.subject, known.issuer, known.scopes, copy_json(known.claims))

    def _remembered(self, token: str) -> Identity | None:
        """The identity `token` proved if it verified recently, its time is not up and the key
        that verified it is still published by its issuer; else None (and the entry goes)."""
        with self._verified_lock:
            entry = self._verified.get(token)
            if entry is None:
                return None
            self._verified.move_to_end(token)
        try:
            current = entry.source.find(entry.kid)
        except KeyStoreError:
            current = None
        # `is`: key sources build new key objects whenever the published set changes.
        if self.clock() < entry.forget_at and current is entry.key:
            return entry.identity
        with self._verified_lock:
            self._verified.pop(token, None)
        return None

    def _remember(
        self,
        token: str,
        identity: Identity,
        source: KeySource,
        kid: str | None,
        key: VerificationKey,
    ) -> None:
        if self.cache_size <= 0:
            return
        forget_at = min(float(identity.claims["exp"]), self.clock() + self.cache_seconds)
        with self._verified_lock:
            self._verified[token] = _Verified(identity, source, kid, key, forget_at)
            self._verified.move_to_end(token)
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)  # the least recently used

    def forget_verified_tokens(self) -> None:
        """Empty the cache of verified tokens (every token is verified again on next use)."""
        with self._verified_lock:
            self._verified.clear()

    def _verify(
        self, token: str
    ) -> tuple[dict[str, Any], KeySource, str | None, VerificationKey]:
        """Verify `token` from scratch: (claims, key source, kid, key) or InvalidToken."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        if not COMPACT_JWS.fullmatch(token):
            raise InvalidToken(
                "the token is not a signed JWT (three base64url parts joined by dots)"
            )
        try:
            # Read without verification only to learn which issuer's keys to use; nothing from it is
            # trusted until the signature and claims are verified below.
            unverified_token = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token cannot be decoded ({exc})") from exc
        header, unverified = unverified_token["header"], unverified_token["payload"]
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
            raise InvalidToken(f"the token type {typ!r} is not an access token")
        kid = header.get("kid")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise InvalidToken("the token has no iss claim naming its issuer")
        source = self.sources.get(issuer)  # exact match: no prefixes, no normalisation
        if source is None:
            raise InvalidToken(f"the issuer {issuer[:100]!r} is not trusted by this service")
        try:
            key = source.find(kid)
        except KeyStoreError as exc:
            log.error("this service's key directory cannot be read: %s", exc)
            key = None
        if key is None:
            raise InvalidToken(
                f"the token's key id {str(kid)[:64]!r} is not a published key of {issuer[:100]!r}"
            )
        try:
            claims = jwt.decode(
                token,
                key.jwk,
                algorithms=[key.alg],
                audience=self.config.audience,
                issuer=issuer,
                leeway=self.config.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": False},
            )
        except jwt.InvalidAlgorithmError as exc:
            raise InvalidToken(
                f"the token must be signed with {key.alg} for key {key.kid}"
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("the token signature is invalid") from exc
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the token is not valid yet (nbf or iat is in the future)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the required claim {exc.claim!r}") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(
                "the token is not meant for this service: its aud must name "
                f"{self.config.audience!r}"
            ) from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is invalid ({exc})") from exc
        _identity(claims)  # the claims' own checks (types of exp, iat, nbf, sub; scopes)
        return claims, source, kid, key


def _identity(claims: dict[str, Any]) -> Identity:
    for name in ("exp", "iat", "nbf"):
        # PyJWT coerces with int(), which would also accept "123" and true; RFC 7519 says number.
        if name in claims and (
            isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))
        ):
            raise InvalidToken(f"the token's {name} claim must be a number of seconds")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token's sub claim must be a non-empty string")
    return Identity(
        subject=subject, issuer=claims["iss"], scopes=granted_scopes(claims), claims=claims
    )


def granted_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: `scope` (space-delimited, RFC 8693) and `scp` (list or string)."""
    scopes: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            scopes.update(s for s in value.split(" ") if s)
        elif name == "scp" and isinstance(value, list) and all(isinstance(s, str) for s in value):
            scopes.update(s for s in value if s)
        else:
            raise InvalidToken(f"the token's {name} claim must be a space-delimited string")
    return frozenset(scopes)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not authorization or not authorization.strip():
        raise TokenMissing("this endpoint needs a token: send `Authorization: Bearer <token>`")
    if len(authorization) > MAX_TOKEN_LENGTH + 16:
        raise InvalidToken(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenMissing(f"this endpoint takes a Bearer token, not {scheme[:20]!r} credentials")
    token = token.strip()
    if not token or " " in token:
        raise InvalidToken("the Authorization header must be `Bearer <token>`, one token")
    return token


# -- Flask wiring --------------------------------------------------------------------------------


def install(app: Flask, settings: Any, service_name: str) -> Verifier:
    """Give `app` a verifier, the `/.well-known/jwks.json` route and the 401/403 responses."""
    config = AuthConfig.from_settings(settings.values, settings.root, service_name)
    verifier = Verifier(config, KeyStore(config.keys_dir, settings.service.package))
    app.extensions[EXTENSION] = verifier
    app.add_url_rule(JWKS_PATH, "jwks", jwks_view, methods=["GET"])
    app.register_error_handler(AuthError, problem_response)
    return verifier


def authenticate(required_scopes: Sequence[str]) -> Identity:
    """The identity of the current request, for the route of an endpoint needing `required_scopes`.

    Raises AuthError, which `install` turns into a 401/403 problem response.
    """
    verifier: Verifier = current_app.extensions[EXTENSION]
    try:
        return verifier.authenticate(request.headers.get("Authorization"), required_scopes)
    except AuthError as exc:
        log.info(
            "token refused (%d): %s",
            exc.status,
            exc.detail,
            extra={"status": exc.status, "reason": exc.detail},
        )
        raise


def jwks_view() -> Response:
    verifier: Verifier = current_app.extensions[EXTENSION]
    try:
        body = verifier.store.jwks()
    except KeyStoreError as exc:
        log.error("this service's key directory cannot be read: %s", exc)
        body = {"keys": []}
    response = Response(json.dumps(body, sort_keys=True), mimetype="application/json")
    # Peers cache the JWKS themselves and refetch on an unknown kid; a short HTTP cache is enough.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def problem_response(error: AuthError) -> Response:
    """The 401/403 problem+json response, with the `WWW-Authenticate` challenge of RFC 6750."""
    verifier: Verifier | None = current_app.extensions.get(EXTENSION)
    realm = verifier.config.audience if verifier else "service"
    problem = Problem(
        error.status,
        error.detail,
        title=error.title,
        headers={"WWW-Authenticate": error.www_authenticate(realm)},
    )
    return problems.problem_response(problem)
