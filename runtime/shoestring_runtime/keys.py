# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""This service's identity: its signing keys, their rotation, its JWKS, the tokens it mints.

Keys live in one directory (setting `SERVICE_KEYS_DIR`, default `var/keys/`):

    keyring.json     which keys exist, which one signs, which are retired (public data only)
    <kid>.pem        one private key per live key, PKCS#8 PEM, mode 0600

A key's `kid` is its RFC 7638 JWK thumbprint, so any holder of the public key can recompute it.
Rotation overlaps: `rotate` makes a new key the signing key while the old one stays published in
`/.well-known/jwks.json`, so tokens signed before the rotation keep verifying at every peer until
the old key is retired with `retire`, which also deletes its private key.

The keyring is rewritten atomically (temporary file + rename) under an exclusive file lock, so a
command-line rotation never races another one, and running web processes notice the new keyring
on their next read (they compare the file's identity, a cheap `stat`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

try:  # POSIX file locks; a Windows laptop runs without them (one rotation at a time there)
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms services run on
    fcntl = None  # type: ignore[assignment]

ALGORITHMS = ("EdDSA", "RS256")
DEFAULT_ALGORITHM = "EdDSA"
RSA_KEY_BITS = 3072
# Minted tokens are short-lived credentials; a day is the most a script should ever need.
MAX_TOKEN_TTL_SECONDS = 86400
KEYRING_FILE = "keyring.json"
LOCK_FILE = ".lock"
# A kid is a base64url SHA-256 (43 characters); checking the shape keeps a tampered keyring from
# pointing a file name outside the key directory.
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


class KeyStoreError(Exception):
    """The key directory cannot serve the request; the message says how to fix it."""


@dataclass(frozen=True)
class KeyInfo:
    """One key of the keyring, as `keys list` shows it."""

    kid: str
    alg: str
    created_at: str
    retired_at: str | None
    public_jwk: Mapping[str, Any]
    signing: bool = False

    @property
    def status(self) -> str:
        if self.signing:
            return "signing"
        return "retired" if self.retired_at else "published"

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "public_jwk": dict(self.public_jwk),
        }


@dataclass(frozen=True)
class SigningKey:
    """The private key that signs this service's tokens now."""

    kid: str
    alg: str
    private_key: PrivateKey


def public_jwk(public_key: PublicKey) -> dict[str, Any]:
    """The public JWK members of a key (no kid, alg or use), as PyJWT exports them."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(public_key, as_dict=True))
    if isinstance(public_key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public_key, as_dict=True))
    raise KeyStoreError(f"unsupported key type {type(public_key).__name__}: use Ed25519 or RSA")


# RFC 7638 section 3.2: the thumbprint hashes only the required members of each key type.
THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise KeyStoreError(f"cannot compute a thumbprint of a {jwk.get('kty')!r} key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_private_key(alg: str) -> PrivateKey:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise KeyStoreError(f"unknown key algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyStore:
    """The key directory of this service. Safe to share between threads and processes."""

    def __init__(self, directory: str | os.PathLike[str], package: str = "<package>") -> None:
        """`package` names the service's package in the commands the errors suggest
        (`python -m <package> keys generate`)."""
        self.directory = Path(directory)
        self.package = package
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: tuple[KeyInfo, ...] = ()
        self._live: tuple[KeyInfo, ...] = ()
        # Checked on every token a request carries: a plain string saves building a Path.
        self._keyring = os.fspath(self.directory / KEYRING_FILE)
        self._signing: SigningKey | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def keyring_path(self) -> Path:
        return self.directory / KEYRING_FILE

    def keys(self) -> tuple[KeyInfo, ...]:
        """Every key of the keyring, newest first (retired ones included)."""
        with self._lock:
            self._reload_if_changed()
            return self._keys

    def live_keys(self) -> tuple[KeyInfo, ...]:
        """The keys that verify: the signing key and the keys not yet retired. The same tuple
        object until the keyring changes, so callers may cache what they build from it."""
        with self._lock:
            self._reload_if_changed()
            return self._live

    def signing_key(self) -> SigningKey:
        """The key that signs tokens now; a KeyStoreError says how to create one."""
        with self._lock:
            self._reload_if_changed()
            if self._signing is not None:
                return self._signing
            info = next((k for k in self._keys if k.signing), None)
            if info is None:
                raise KeyStoreError(
                    f"no signing key in {self.directory}: create one with "
                    f"`python -m {self.package} keys generate`"
                )
            self._signing = SigningKey(info.kid, info.alg, self._load_private_key(info))
            return self._signing

    def jwks(self) -> dict[str, Any]:
        """The JWKS this service publishes: every key that is not retired, signing key first."""
        live = sorted(self.live_keys(), key=lambda k: not k.signing)  # stable: newest next
        return {"keys": [{**k.public_jwk, "kid": k.kid, "alg": k.alg, "use": "sig"} for k in live]}

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self._keyring)
        except FileNotFoundError:
            self._stamp, self._keys, self._live, self._signing = None, (), (), None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._keys = self._read_keyring()
        self._live = tuple(k for k in self._keys if k.retired_at is None)
        self._stamp = stamp
        self._signing = None

    def _read_keyring(self) -> tuple[KeyInfo, ...]:
        try:
            data = json.loads(self.keyring_path.read_text(encoding="utf-8"))
            signing = data.get("signing")
            keys = tuple(
                KeyInfo(
                    kid=str(k["kid"]),
                    alg=str(k["alg"]),
                    created_at=str(k["created_at"]),
                    retired_at=k.get("retired_at"),
                    public_jwk=dict(k["public_jwk"]),
                    signing=k["kid"] == signing,
                )
                for k in data["keys"]
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyStoreError(
                f"{self.keyring_path} is unreadable ({exc}): restore it from a backup, or move the "
                f"key directory away and run `python -m {self.package} keys generate`"
            ) from exc
        for k in keys:
            if not KID_PATTERN.match(k.kid) or k.alg not in ALGORITHMS:
                raise KeyStoreError(
                    f"{self.keyring_path} lists a key with kid {k.kid!r} and alg {k.alg!r}; "
                    "the keyring was edited by hand: restore it from a backup"
                )
        return tuple(reversed(keys))  # the file lists keys oldest first

    def _private_key_path(self, kid: str) -> Path:
        return self.directory / f"{kid}.pem"

    def _load_private_key(self, info: KeyInfo) -> PrivateKey:
        path = self._private_key_path(info.kid)
        try:
            if os.name == "posix" and path.stat().st_mode & 0o077:
                # Like ssh, refuse a private key others can read: it may already be compromised.
                raise KeyStoreError(
                    f"{path} can be read by other users: run `chmod 600 {path}`, and rotate the "
                    f"key (`python -m {self.package} keys rotate`) if someone may have copied it"
                )
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise KeyStoreError(
                f"the private key of the signing key {info.kid} is missing ({path}): restore "
                "it from a backup, or make a new signing key with "
                f"`python -m {self.package} keys rotate`"
            ) from exc
        except ValueError as exc:
            raise KeyStoreError(f"{path} is not a PEM private key ({exc}): restore it") from exc
        if not isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
            raise KeyStoreError(
                f"{path} holds a {type(key).__name__}: only Ed25519 and RSA keys sign"
            )
        if thumbprint(public_jwk(key.public_key())) != info.kid:
            raise KeyStoreError(f"{path} does not hold the key {info.kid}: restore the right file")
        return key

    # -- changing (each change holds the directory lock) -------------------------------------------

    def generate(self, alg: str = DEFAULT_ALGORITHM) -> KeyInfo:
        """Create the first signing key; refuses when one exists (use `rotate` then)."""
        with self._exclusive() as data:
            if data["signing"]:
                raise KeyStoreError(
                    f"{self.directory} already has the signing key {data['signing']}: use "
                    f"`python -m {self.package} keys rotate` to replace it"
                )
            return self._add_key(data, alg)

    def rotate(self, alg: str = DEFAULT_ALGORITHM) -> KeyInfo:
        """Make a new key the signing key; the previous one stays published until retired."""
        with self._exclusive() as data:
            return self._add_key(data, alg)

    def retire(self, kid: str) -> KeyInfo:
        """Stop publishing a key (tokens it signed stop verifying) and delete its private key."""
        with self._exclusive() as data:
            if kid == data["signing"]:
                raise KeyStoreError(
                    f"{kid} is the signing key: run `python -m {self.package} keys rotate` first, "
                    "then retire it once the tokens it signed have expired"
                )
            entry = next((k for k in data["keys"] if k["kid"] == kid), None)
            if entry is None:
                known = ", ".join(k["kid"] for k in data["keys"]) or "none"
                raise KeyStoreError(f"no key {kid!r} in {self.directory} (keys: {known})")
            if entry.get("retired_at") is None:
                entry["retired_at"] = _utc_now()
            self._private_key_path(kid).unlink(missing_ok=True)
            return _info(entry, data["signing"])

    def _add_key(self, data: dict[str, Any], alg: str) -> KeyInfo:
        private_key = new_private_key(alg)
        jwk = public_jwk(private_key.public_key())
        kid = thumbprint(jwk)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(self._private_key_path(kid), pem)
        entry = {
            "kid": kid,
            "alg": alg,
            "created_at": _utc_now(),
            "retired_at": None,
            "public_jwk": jwk,
        }
        data["keys"].append(entry)
        data["signing"] = kid
        return _info(entry, kid)

    @contextmanager
    def _exclusive(self) -> Iterator[dict[str, Any]]:
        """Lock the directory, yield the keyring data to change, write it back atomically."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with self._lock:
                self._stamp = None  # re-read under the lock: another process may have changed it
                self._reload_if_changed()
                data = {
                    "version": 1,
                    "signing": next((k.kid for k in self._keys if k.signing), None),
                    "keys": [k.to_json() for k in reversed(self._keys)],  # oldest first
                }
                yield data
                _write_atomic(self.keyring_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
                self._stamp = None
                self._reload_if_changed()
        finally:
            os.close(lock_fd)  # closing releases the flock


def _info(entry: Mapping[str, Any], signing: str | None) -> KeyInfo:
    return KeyInfo(
        kid=entry["kid"],
        alg=entry["alg"],
        created_at=entry["created_at"],
        retired_at=entry.get("retired_at"),
        public_jwk=entry["public_jwk"],
        signing=entry["kid"] == signing,
    )


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: a key file is written once; mode 0600 from the first byte, not chmod-ed afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def mint_token(
    store: KeyStore,
    *,
    issuer: str,
    audience: str | list[str],
    subject: str,
    scopes: Iterable[str] = (),
    ttl: int = 300,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A token signed with this service's signing key, valid for `ttl` seconds from now.

    Used by the relay (service-to-service calls) and by `python -m <package> token` (scripts,
    tests). `claims` may add claims; it cannot replace the registered ones set here.
    """
    if not 0 < ttl <= MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 and {MAX_TOKEN_TTL_SECONDS} seconds, not {ttl}")
    scope_list = sorted(set(scopes))
    bad = [s for s in scope_list if not s or any(c.isspace() for c in s)]
    if bad:
        raise ValueError(f"scopes cannot be empty or contain spaces: {bad!r}")
    key = store.signing_key()
    now = int(time.time())
    payload: dict[str, Any] = {**(claims or {})}
    payload.update(
        iss=issuer,
        sub=subject,
        aud=audience,
        iat=now,
        nbf=now,
        exp=now + ttl,
        jti=uuid.uuid4().hex,
    )
    if scope_list:
        payload["scope"] = " ".join(scope_list)
    return jwt.encode(
        payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"}
    )


def format_keys(keys: Iterable[KeyInfo]) -> str:
    """The keyring as the table `keys list` prints, newest first."""
    rows = [("KID", "ALG", "STATUS", "CREATED", "RETIRED")]
    rows += [(k.kid, k.alg, k.status, k.created_at, k.retired_at or "-") for k in keys]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )
