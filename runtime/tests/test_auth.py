"""Token verification: the attacks a zero-trust service must refuse, and the tokens it must accept.

Every refused request is checked for its status (401 or 403, never 500), its
`WWW-Authenticate` challenge, its problem+json body, and for the absence of any side effect:
the handler never ran. Peer JWKS are served by a real HTTP server on 127.0.0.1 that counts
the requests it gets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from werkzeug.serving import make_server

from shoestring_runtime import auth, keys
from shoestring_runtime.routes import register_endpoints
from shoestring_runtime.schemas import Endpoint
from shoestring_runtime.settings import SettingsError

from .shop import SERVICE, create_app, settings_for

NAME = SERVICE.model["service"]["name"]  # this service's issuer and audience by default
PEER = "test-peer"  # a trusted peer, keys by JWKS URL
PINNED = "test-pinned"  # a trusted peer, keys pinned in a file
READ = ["probe:read"]
# An endpoint added to the real app for these tests, so they hold whatever the spec declares:
# it needs the scope probe:read, and its handler records each call.
PROBE = Endpoint(
    name="auth_probe",
    method="GET",
    path="/tests/auth-probe",
    status=200,
    request={"type": "object"},
    response={"type": "object"},
    scopes=("probe:read",),
)


# -- test doubles of the outside world: real servers on 127.0.0.1 ---------------------------------


class JwksServer:
    """An HTTP server on 127.0.0.1 serving JSON documents by path and counting requests."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.redirects: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.hits[self.path] += 1
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                document = server.documents.get(self.path)
                body = json.dumps(document).encode() if document is not None else b"{}"
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any


class HttpClient:
    """Calls a served app over a real socket."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, token: str | None, path: str = PROBE.path) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.get(path, headers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        req = urllib.request.Request(self.base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Reply(resp.status, resp.headers, json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.headers, json.loads(exc.read()))


class TestService:
    """The real app with its own key directory, plus the probe endpoint and what it saw."""

    __test__ = False  # not a test class

    def __init__(self, root: Path, database_url: str, env: dict[str, str]) -> None:
        settings = settings_for(database_url, SERVICE_KEYS_DIR=str(root / "keys"), **env)
        self.handled: list[Any] = []
        self.app = create_app(settings)
        register_endpoints(self.app, [PROBE], {PROBE.name: self.handle})
        self.verifier = self.app.extensions["auth"]
        self.store = self.verifier.store
        self.store.generate()
        self.client = self.app.test_client()

    def handle(self, ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        self.handled.append(ctx.identity)
        return {"subject": ctx.identity.subject}

    def mint(self, scopes: list[str], subject: str = "tester") -> str:
        config = self.verifier.config
        return keys.mint_token(
            self.store,
            issuer=config.issuer,
            audience=config.audience,
            subject=subject,
            scopes=scopes,
        )

    def call(self, token: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        if headers is None:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.get(PROBE.path, headers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        response = self.client.get(path, headers=headers or {})
        return Reply(response.status_code, response.headers, response.get_json(force=True))

    @contextmanager
    def serve(self):
        server = make_server("127.0.0.1", 0, self.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield HttpClient(f"http://127.0.0.1:{server.server_port}")
        finally:
            server.shutdown()


@pytest.fixture
def jwks_server():
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
def peer(tmp_path: Path):
    """Another service's key directory (its JWKS is served by `jwks_server` when needed)."""
    store = keys.KeyStore(tmp_path / "peer-keys")
    store.generate()
    return store


@pytest.fixture
def make_service(tmp_path: Path, database_url: str, db):
    """`make_service(**settings)`: the real app with its own keys and these settings."""
    return lambda **env: TestService(tmp_path, database_url, env)


@pytest.fixture
def svc(make_service, jwks_server: JwksServer, peer):
    jwks_server.documents["/peer/jwks.json"] = peer.jwks()
    return make_service(
        TRUSTED_ISSUERS=f"{PEER}={jwks_server.url('/peer/jwks.json')}",
        JWKS_REFETCH_COOLDOWN_SECONDS="60",
    )


def b64(data: bytes | str | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "iss": NAME,
        "sub": "tester",
        "aud": NAME,
        "iat": now,
        "exp": now + 300,
        "scope": "probe:read",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def sign(store, payload: dict, **header) -> str:
    key = store.signing_key()
    return jwt.encode(
        payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, **header}
    )


def assert_refused(svc: TestService, response, status: int = 401) -> None:
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["status"] == status and response.body["detail"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{NAME}"')
    if status == 401:
        assert 'error="invalid_token"' in challenge
    assert svc.handled == []


# -- accepted tokens -----------------------------------------------------------------------------


def test_own_token_reaches_the_handler_with_the_identity(svc):
    token = svc.mint(["probe:read", "probe:write"], subject="script")
    response = svc.call(token)
    assert response.status == 200, response.body
    (identity,) = svc.handled
    assert identity.subject == "script" and identity.issuer == NAME
    assert identity.scopes == frozenset({"probe:read", "probe:write"})
    assert identity.claims["aud"] == NAME


def test_token_of_a_rotated_key_verifies_until_the_key_is_retired(svc):
    old_token = svc.mint(READ)
    old_kid = svc.store.signing_key().kid
    svc.store.rotate("RS256")
    new_token = svc.mint(READ)
    assert jwt.get_unverified_header(new_token)["alg"] == "RS256"
    assert svc.call(old_token).status == 200
    assert svc.call(new_token).status == 200
    svc.store.retire(old_kid)
    svc.handled.clear()
    assert_refused(svc, svc.call(old_token))
    assert svc.call(new_token).status == 200


def test_peer_token_verifies_with_the_peer_jwks_fetched_once(svc, peer, jwks_server):
    token = sign(peer, claims(iss=PEER, sub=PEER))
    for _ in range(5):
        assert svc.call(token).status == 200
    assert jwks_server.hits["/peer/jwks.json"] == 1
    assert svc.handled[0].issuer == PEER


def test_peer_key_rotation_is_picked_up_after_the_cooldown(make_service, peer, jwks_server):
    jwks_server.documents["/peer/jwks.json"] = peer.jwks()
    svc = make_service(
        TRUSTED_ISSUERS=f"{PEER}={jwks_server.url('/peer/jwks.json')}",
        JWKS_REFETCH_COOLDOWN_SECONDS="0.3",
    )
    assert svc.call(sign(peer, claims(iss=PEER))).status == 200
    peer.rotate()
    jwks_server.documents["/peer/jwks.json"] = peer.jwks()
    rotated = sign(peer, claims(iss=PEER))
    time.sleep(0.35)
    assert svc.call(rotated).status == 200
    assert jwks_server.hits["/peer/jwks.json"] == 2


@pytest.mark.parametrize("form", ["pem", "jwks", "jwk"])
def test_peer_pinned_in_a_key_file(make_service, tmp_path, peer, form):
    info = peer.keys()[0]
    public = peer.signing_key().private_key.public_key()
    path = tmp_path / f"pinned.{form}"
    if form == "pem":
        path.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    elif form == "jwks":
        path.write_text(json.dumps(peer.jwks()))
    else:
        path.write_text(json.dumps(dict(info.public_jwk)))  # no kid: the thumbprint is used
    svc = make_service(TRUSTED_ISSUERS=f"{PINNED}={path}")
    assert svc.call(sign(peer, claims(iss=PINNED))).status == 200
    svc.handled.clear()
    other = keys.KeyStore(tmp_path / "other")
    other.generate()
    assert_refused(svc, svc.call(sign(other, claims(iss=PINNED))))


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_user_token_of_an_oidc_provider_is_accepted(make_service, jwks_server, alg):
    """An OIDC provider: a URL as issuer, several keys, its own kids and algorithms."""
    issuer = jwks_server.url("/realms/shop")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    published = [
        {**keys.public_jwk(rsa_key.public_key()), "kid": "rsa-1", "alg": "RS256", "use": "sig"},
        {**keys.public_jwk(rsa_key.public_key()), "kid": "rsa-pss", "alg": "PS256"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1"},
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]
    jwks_server.documents["/realms/shop/certs"] = {"keys": published}
    svc = make_service(
        TRUSTED_ISSUERS=json.dumps(
            [{"issuer": issuer, "jwks_url": jwks_server.url("/realms/shop/certs")}]
        )
    )
    kid, key = {
        "RS256": ("rsa-1", rsa_key),
        "PS256": ("rsa-pss", rsa_key),
        "ES256": ("ec-1", ec_key),
    }[alg]
    token = jwt.encode(
        claims(
            iss=issuer,
            sub="user-42",
            aud=[NAME, "account"],
            azp="shop-web",
            scope=...,
            scp=["openid", "probe:read"],
        ),
        key,
        algorithm=alg,
        headers={"kid": kid, "typ": "at+jwt"},
    )
    assert svc.call(token).status == 200
    (identity,) = svc.handled
    assert identity.issuer == issuer and identity.subject == "user-42"
    assert identity.client_id == "shop-web"
    # The same provider cannot reach this service with another provider's issuer name.
    svc.handled.clear()
    assert_refused(
        svc,
        svc.call(jwt.encode(claims(iss=issuer + "/"), key, algorithm=alg, headers={"kid": kid})),
    )


def test_token_within_the_leeway_is_accepted(svc):
    now = int(time.time())
    token = sign(svc.store, claims(exp=now - 10, nbf=now + 10, iat=now + 10))
    assert svc.call(token).status == 200


@pytest.mark.parametrize(
    "scope_claims",
    [
        {"scope": "probe:read"},
        {"scope": "profile probe:read  email"},
        {"scope": ..., "scp": ["probe:read"]},
        {"scope": ..., "scp": "openid probe:read"},
    ],
)
def test_scopes_come_from_scope_or_scp(svc, scope_claims):
    assert svc.call(sign(svc.store, claims(**scope_claims))).status == 200


def test_audience_list_that_names_this_service_is_accepted(svc):
    assert svc.call(sign(svc.store, claims(aud=["another-service", NAME]))).status == 200


def test_lowercase_bearer_scheme_is_accepted(svc):
    response = svc.call(headers={"Authorization": "bearer " + svc.mint(READ)})
    assert response.status == 200


def test_jwks_endpoint_publishes_every_live_key(svc):
    first = svc.store.signing_key().kid
    second = svc.store.rotate().kid
    response = svc.get("/.well-known/jwks.json")
    assert response.status == 200
    published = response.body["keys"]
    assert [k["kid"] for k in published] == [second, first]
    assert all(k["use"] == "sig" and "d" not in k for k in published)


# -- missing, malformed and forged tokens --------------------------------------------------------


def test_missing_token_gets_a_bare_bearer_challenge(svc):
    response = svc.call(headers={})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="{NAME}"'
    assert response.body["title"] == "Unauthorized"
    assert svc.handled == []


def test_other_authorization_scheme_counts_as_missing(svc):
    response = svc.call(headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status == 401
    assert "error=" not in response.headers["WWW-Authenticate"]
    assert svc.handled == []


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer \t"])
def test_malformed_authorization_header_is_refused(svc, value):
    assert_refused(svc, svc.call(headers={"Authorization": value}))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_alg_none_is_refused(svc, alg, signature):
    kid = svc.store.signing_key().kid
    token = f"{b64({'alg': alg, 'kid': kid, 'typ': 'JWT'})}.{b64(claims())}.{signature}"
    assert_refused(svc, svc.call(token))


def _public_key_secrets(store) -> list[bytes]:
    public = store.signing_key().private_key.public_key()
    info = store.keys()[0]
    return [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        json.dumps(dict(info.public_jwk)).encode(),
        base64.urlsafe_b64decode(info.public_jwk["x"] + "=="),
    ]


@pytest.mark.parametrize("secret_index", range(4))
@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hmac_signed_with_the_public_key_is_refused(svc, secret_index, alg):
    """The classic key-confusion attack: the public key (known to all) used as an HMAC secret."""
    secret = _public_key_secrets(svc.store)[secret_index]
    kid = svc.store.signing_key().kid
    signing_input = f"{b64({'alg': alg, 'kid': kid, 'typ': 'JWT'})}.{b64(claims())}"
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    signature = b64(hmac.new(secret, signing_input.encode(), digest).digest())
    assert_refused(svc, svc.call(f"{signing_input}.{signature}"))


def test_stripped_signature_is_refused(svc):
    header, payload, _ = svc.mint(READ).split(".")
    assert_refused(svc, svc.call(f"{header}.{payload}."))
    assert_refused(svc, svc.call(f"{header}.{payload}"))


def test_payload_spliced_from_another_token_is_refused(svc):
    reader = svc.mint(READ).split(".")
    admin = sign(svc.store, claims(scope="probe:read probe:admin", sub="admin")).split(".")
    assert_refused(svc, svc.call(f"{reader[0]}.{admin[1]}.{reader[2]}"))
    assert_refused(svc, svc.call(f"{admin[0]}.{reader[1]}.{admin[2]}"))


def test_payload_edited_after_signing_is_refused(svc):
    header, payload, signature = svc.mint(READ).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "admin"
    assert_refused(svc, svc.call(f"{header}.{b64(data)}.{signature}"))


def test_token_signed_by_an_unknown_key_with_a_known_kid_is_refused(svc):
    attacker = ed25519.Ed25519PrivateKey.generate()
    kid = svc.store.signing_key().kid
    token = jwt.encode(claims(), attacker, algorithm="EdDSA", headers={"kid": kid})
    assert_refused(svc, svc.call(token))


def test_expired_token_beyond_the_leeway_is_refused(svc):
    token = sign(svc.store, claims(exp=int(time.time()) - 31 - 2))
    response = svc.call(token)
    assert_refused(svc, response)
    assert "expired" in response.body["detail"]


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_token_from_the_future_is_refused(svc, claim):
    token = sign(svc.store, claims(**{claim: int(time.time()) + 120}))
    assert_refused(svc, svc.call(token))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "iat", "sub"])
def test_token_missing_a_required_claim_is_refused(svc, claim):
    response = svc.call(sign(svc.store, claims(**{claim: ...})))
    assert_refused(svc, response)


@pytest.mark.parametrize("value", ["9999999999", True, None, [1], {"t": 1}])
def test_expiry_that_is_not_a_number_is_refused(svc, value):
    assert_refused(svc, svc.call(sign(svc.store, claims(exp=value))))


@pytest.mark.parametrize(
    "issuer",
    [
        "evil",
        NAME[:-1],
        NAME + " ",
        NAME.upper(),
        NAME + "/x",
        PEER + ".evil",
        PEER + "x",
        "https://" + NAME,
    ],
)
def test_untrusted_or_prefix_matching_issuer_is_refused(svc, issuer):
    # Signed with this service's own key: only the issuer name is wrong.
    assert_refused(svc, svc.call(sign(svc.store, claims(iss=issuer))))


@pytest.mark.parametrize(
    "audience", ["another-service", NAME[:-1], NAME + "-admin", "", [PEER], []]
)
def test_token_for_another_audience_is_refused(svc, audience):
    assert_refused(svc, svc.call(sign(svc.store, claims(aud=audience))))


@pytest.mark.parametrize("audience", [42, {NAME: True}, [1, NAME], True])
def test_audience_that_is_not_a_string_or_list_of_strings_is_refused(svc, audience):
    assert_refused(svc, svc.call(sign(svc.store, claims(aud=audience))))


def test_token_from_a_trusted_peer_for_another_audience_is_refused(svc, peer):
    token = sign(peer, claims(iss=PEER, aud=PEER))
    assert_refused(svc, svc.call(token))


def test_peer_cannot_issue_tokens_in_this_service_name(svc, peer):
    # The peer's key is trusted only for the peer's issuer.
    assert_refused(svc, svc.call(sign(peer, claims(iss=NAME))))


def test_thousand_random_kids_cause_at_most_one_jwks_fetch(svc, jwks_server):
    attacker = ed25519.Ed25519PrivateKey.generate()
    for _ in range(1000):
        token = jwt.encode(
            claims(iss=PEER), attacker, algorithm="EdDSA", headers={"kid": uuid.uuid4().hex}
        )
        response = svc.call(token)
        assert response.status == 401
    assert jwks_server.hits["/peer/jwks.json"] <= 1
    assert svc.handled == []


@pytest.mark.parametrize("header_name", ["jku", "x5u", "jwk"])
@pytest.mark.parametrize("issuer", [NAME, PEER])
def test_key_location_headers_are_never_followed(svc, jwks_server, header_name, issuer):
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = {**keys.public_jwk(attacker.public_key()), "kid": "attacker", "alg": "RS256"}
    jwks_server.documents["/attacker/jwks.json"] = {"keys": [attacker_jwk]}
    value = attacker_jwk if header_name == "jwk" else jwks_server.url("/attacker/jwks.json")
    for kid in ("attacker", keys.thumbprint(attacker_jwk)):
        token = jwt.encode(
            claims(iss=issuer),
            attacker,
            algorithm="RS256",
            headers={"kid": kid, header_name: value},
        )
        assert_refused(svc, svc.call(token))
    assert jwks_server.hits["/attacker/jwks.json"] == 0


def test_x5c_certificate_chain_header_is_not_trusted(svc):
    attacker = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), attacker, algorithm="EdDSA", headers={"x5c": ["MIIB"], "kid": "x"})
    assert_refused(svc, svc.call(token))


def test_symmetric_key_in_a_peer_jwks_is_never_used(svc, jwks_server):
    secret = b"shared-secret-known-to-the-attacker"
    jwks_server.documents["/peer/jwks.json"] = {
        "keys": [{"kty": "oct", "k": b64(secret), "kid": "oct", "alg": "HS256"}]
    }
    token = jwt.encode(claims(iss=PEER), secret, algorithm="HS256", headers={"kid": "oct"})
    assert_refused(svc, svc.call(token))


def test_weak_rsa_key_in_a_peer_jwks_is_never_used(svc, jwks_server):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwks_server.documents["/peer/jwks.json"] = {
        "keys": [{**keys.public_jwk(weak.public_key()), "kid": "weak"}]
    }
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = jwt.encode(claims(iss=PEER), weak, algorithm="RS256", headers={"kid": "weak"})
    assert_refused(svc, svc.call(token))


def test_key_published_with_its_private_part_is_never_used(svc, peer, jwks_server):
    # A peer that leaks its private key in its JWKS has lost it: its tokens must not verify.
    private = peer.signing_key().private_key
    numbers = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    leaked = {**peer.jwks()["keys"][0], "d": b64(numbers)}
    jwks_server.documents["/peer/jwks.json"] = {"keys": [leaked]}
    assert_refused(svc, svc.call(sign(peer, claims(iss=PEER))))


@pytest.mark.parametrize(
    "document",
    [
        "not a jwks",
        {"keys": "none"},
        {"keys": [None, 7, {"kty": "RSA"}, {"kty": "OKP", "crv": ["Ed25519"], "x": 1}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"}]},
        {"keys": [], "padding": "x" * 300_000},
        None,  # the path answers 404
    ],
)
def test_broken_peer_jwks_refuses_the_token_without_a_500(svc, peer, jwks_server, document):
    if document is None:
        del jwks_server.documents["/peer/jwks.json"]
    else:
        jwks_server.documents["/peer/jwks.json"] = document
    assert_refused(svc, svc.call(sign(peer, claims(iss=PEER))))


def test_redirect_of_the_jwks_url_is_not_followed(svc, peer, jwks_server):
    jwks_server.documents["/elsewhere/jwks.json"] = peer.jwks()
    jwks_server.redirects["/peer/jwks.json"] = jwks_server.url("/elsewhere/jwks.json")
    assert_refused(svc, svc.call(sign(peer, claims(iss=PEER))))
    assert jwks_server.hits["/elsewhere/jwks.json"] == 0


def test_unreachable_peer_is_401_and_known_keys_keep_working(
    make_service, peer, jwks_server, caplog
):
    jwks_server.documents["/peer/jwks.json"] = peer.jwks()
    svc = make_service(
        TRUSTED_ISSUERS=f"{PEER}={jwks_server.url('/peer/jwks.json')}",
        JWKS_CACHE_SECONDS="1",
        JWKS_REFETCH_COOLDOWN_SECONDS="0",
        JWKS_FETCH_TIMEOUT_SECONDS="1",
    )
    token = sign(peer, claims(iss=PEER))
    assert svc.call(token).status == 200
    jwks_server.close()  # the peer goes down
    time.sleep(1.05)  # the cached JWKS is stale: a refetch is due and fails
    assert svc.call(token).status == 200  # the keys fetched last still verify
    assert "cannot fetch the JWKS at http://127.0.0.1" in caplog.text
    other = keys.KeyStore(peer.directory.parent / "other-peer")
    other.generate()
    svc.handled.clear()
    assert_refused(svc, svc.call(sign(other, claims(iss=PEER))))


def test_rsa_key_cannot_be_used_with_another_rsa_algorithm_than_pinned(svc):
    svc.store.rotate("RS256")
    key = svc.store.signing_key()
    token = jwt.encode(claims(), key.private_key, algorithm="PS256", headers={"kid": key.kid})
    assert_refused(svc, svc.call(token))


def test_insufficient_scope_is_403_naming_the_scope(svc):
    response = svc.call(sign(svc.store, claims(scope="probe:readx probe:write")))
    assert_refused(svc, response, status=403)
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="probe:read"' in challenge
    assert response.body["title"] == "Forbidden"


@pytest.mark.parametrize(
    "scope_claims",
    [
        {"scope": "probe:rea"},
        {"scope": "PROBE:READ"},
        {"scope": "probe:*"},
        {"scope": "probe"},
        {"scope": ...},
        {"scope": "", "scp": []},
        {"scope": ..., "scp": ["probe:read probe:write"]},
    ],
)
def test_scopes_match_exactly(svc, scope_claims):
    assert_refused(svc, svc.call(sign(svc.store, claims(**scope_claims))), status=403)


@pytest.mark.parametrize("scope", [["probe:read"], {"probe:read": True}, 7])
def test_scope_claim_of_the_wrong_type_is_refused(svc, scope):
    assert_refused(svc, svc.call(sign(svc.store, claims(scope=scope))))


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt", 5])
def test_token_of_another_type_is_refused(svc, typ):
    assert_refused(svc, svc.call(sign(svc.store, claims(), typ=typ)))


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        "eyJ.eyJ.sig",
        b64("not json") + "." + b64(claims()) + ".c2ln",
        b64("[1, 2]") + "." + b64(claims()) + ".c2ln",
        b64({"alg": "EdDSA", "kid": 7}) + "." + b64(claims()) + ".c2ln",
        b64({"alg": "EdDSA"}) + "." + b64("not json") + ".c2ln",
        b64({"alg": "EdDSA"}) + "." + b64("[]") + ".c2ln",
        b64({"alg": "EdDSA", "crit": ["exp"], "exp": 1}) + "." + b64(claims()) + ".c2ln",
        b64({"alg": "EdDSA", "b64": False, "crit": ["b64"]}) + "." + b64(claims()) + ".c2ln",
        b64({"alg": ["EdDSA"]}) + "." + b64(claims()) + ".c2ln",
        b64({"alg": "EdDSA"}) + "=." + b64(claims()) + ".c2ln",
        "\u00e9" + b64({"alg": "EdDSA"}) + "." + b64(claims()) + ".c2ln",
    ],
)
def test_malformed_token_is_401_never_500(svc, token):
    assert_refused(svc, svc.call(token))


def test_token_of_10_kb_is_refused_before_parsing(svc):
    padding = "x" * 10_000
    token = sign(svc.store, claims(padding=padding))
    started = time.perf_counter()
    response = svc.call(token)
    assert_refused(svc, response)
    assert "longer than" in response.body["detail"]
    assert time.perf_counter() - started < 1


def test_verifier_refuses_a_long_token_whatever_the_transport(svc):
    with pytest.raises(auth.InvalidToken, match="longer than"):
        svc.verifier.verify("a" * (auth.MAX_TOKEN_LENGTH + 1))


def test_problem_details_never_echo_unsafe_characters_into_the_challenge(svc):
    response = svc.call(sign(svc.store, claims(iss='evil" , error="none\\')))
    assert_refused(svc, response)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.count('"') % 2 == 0 and "\\" not in challenge


# -- over real HTTP ------------------------------------------------------------------------------


def test_attacks_over_real_http_are_refused(svc, peer):
    with svc.serve() as http:
        assert http.call(svc.mint(READ)).status == 200
        assert http.call(sign(peer, claims(iss=PEER))).status == 200
        refused = [
            http.call(None),
            http.call(f"{b64({'alg': 'none'})}.{b64(claims())}."),
            http.call(sign(svc.store, claims(aud="another-service"))),
            http.call(sign(svc.store, claims(exp=int(time.time()) - 120))),
            http.call("x" * 12_000),
        ]
        assert [r.status for r in refused] == [401] * 5
        assert all(r.headers["WWW-Authenticate"].startswith("Bearer") for r in refused)
        forbidden = http.call(sign(svc.store, claims(scope="probe:readx")))
        assert forbidden.status == 403
        assert forbidden.headers["Content-Type"] == "application/problem+json"
        public = http.get("/.well-known/jwks.json")
        assert public.status == 200 and public.body["keys"]
    assert len(svc.handled) == 2


# -- settings --------------------------------------------------------------------------------------


def test_trusted_issuers_compact_form(tmp_path):
    pem = tmp_path / "billing.pem"
    pem.write_text("placeholder")
    parsed = auth.parse_trusted_issuers(
        f"payments=https://pay.example.com/.well-known/jwks.json; billing={pem.name};"
        "https://id.example.com/realms/shop=https://id.example.com/realms/shop/certs?x=1",
        base_dir=tmp_path,
    )
    assert parsed == (
        auth.TrustedIssuer("payments", jwks_url="https://pay.example.com/.well-known/jwks.json"),
        auth.TrustedIssuer("billing", jwks_file=pem),
        auth.TrustedIssuer(
            "https://id.example.com/realms/shop",
            jwks_url="https://id.example.com/realms/shop/certs?x=1",
        ),
    )


def test_trusted_issuers_json_forms(tmp_path):
    as_list = json.dumps(
        [
            {"issuer": "payments", "jwks_url": "https://pay.example.com/jwks.json"},
            {"issuer": "local", "jwks_url": "http://127.0.0.1:8001/.well-known/jwks.json"},
        ]
    )
    as_object = json.dumps({"payments": "https://pay.example.com/jwks.json"})
    assert len(auth.parse_trusted_issuers(as_list, base_dir=tmp_path)) == 2
    assert auth.parse_trusted_issuers(as_object, base_dir=tmp_path) == (
        auth.TrustedIssuer("payments", jwks_url="https://pay.example.com/jwks.json"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("payments=http://pay.example.com/jwks.json", "must be https"),
        ("payments=ftp://pay.example.com/jwks.json", "does not exist"),
        ("payments=missing.pem", "does not exist"),
        ("payments", "is not issuer=keys"),
        ("a=https://a.example.com/j;a=https://b.example.com/j", "listed twice"),
        ("[{bad json", "not valid JSON"),
        ('[{"issuer": "a"}]', "exactly one of"),
        ('[{"issuer": "a", "jwks_url": "https://a/j", "jwks_file": "f"}]', "exactly one of"),
        ('[{"issuer": "a", "jwks_uri": "https://a/j"}]', "unknown members"),
        ('"just a string"', "not issuer=keys"),
    ],
)
def test_trusted_issuers_mistakes_name_the_fix(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        auth.parse_trusted_issuers(text, base_dir=tmp_path)


def test_own_issuer_in_trusted_issuers_stops_the_start(database_url, tmp_path):
    settings = settings_for(
        database_url,
        SERVICE_KEYS_DIR=str(tmp_path / "keys"),
        TRUSTED_ISSUERS=f"{NAME}=https://impostor.example.com/jwks.json",
    )
    with pytest.raises(SettingsError, match="always trusts its own keys"):
        create_app(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_LEEWAY_SECONDS", "61"),
        ("AUTH_LEEWAY_SECONDS", "-1"),
        ("AUTH_LEEWAY_SECONDS", "2.5"),
        ("JWKS_FETCH_TIMEOUT_SECONDS", "nan"),
        ("SERVICE_KEY_ALGORITHM", "HS256"),
        ("SERVICE_AUDIENCE", "two words"),
    ],
)
def test_auth_settings_are_validated(name, value):
    parse = {rule[0]: rule[2] for rule in auth.auth_settings(SERVICE.root)}[name]
    with pytest.raises(ValueError):
        parse(value)


# -- the cache of verified tokens ----------------------------------------------------------------


def counting_verifications(svc: TestService) -> list[str]:
    """The tokens `svc` verifies from scratch from now on (cache misses), in order."""
    verified: list[str] = []
    verify = svc.verifier._verify

    def counted(token: str):
        verified.append(token)
        return verify(token)

    svc.verifier._verify = counted
    return verified


def test_a_token_is_verified_once_and_then_served_from_the_cache(svc):
    token = svc.mint(READ)
    verified = counting_verifications(svc)
    for _ in range(5):
        assert svc.call(token).status == 200
    assert verified == [token]


def test_the_cache_forgets_a_token_after_its_time(svc):
    token = svc.mint(READ)
    verified = counting_verifications(svc)
    assert svc.call(token).status == 200
    now = time.time()
    svc.verifier.clock = lambda: now + auth.TOKEN_CACHE_SECONDS + 1
    assert svc.call(token).status == 200
    assert verified == [token, token]


def test_the_cache_never_serves_a_token_past_its_expiry(svc):
    token = sign(svc.store, claims(exp=int(time.time()) + 5))
    verified = counting_verifications(svc)
    assert svc.call(token).status == 200
    svc.verifier.clock = lambda: time.time() + 6  # past exp, well within the cache time
    assert svc.call(token).status == 200  # verified again (PyJWT's clock: still valid)
    assert verified == [token, token]


def test_retiring_a_key_stops_its_cached_tokens_at_once(svc):
    token = svc.mint(READ)
    assert svc.call(token).status == 200
    old_kid = svc.store.signing_key().kid
    svc.store.rotate()
    svc.store.retire(old_kid)
    svc.handled.clear()
    assert_refused(svc, svc.call(token))


def test_the_cache_is_bounded_and_drops_the_least_recently_used(make_service):
    svc = make_service()
    svc.verifier.cache_size = 2
    first, second, third = (svc.mint(READ, subject=f"s{n}") for n in range(3))
    for token in (first, second, first, third):
        assert svc.call(token).status == 200
    assert list(svc.verifier._verified) == [first, third]


def test_refused_tokens_are_not_cached(svc):
    token = sign(svc.store, claims(aud="someone-else"))
    for _ in range(2):
        assert_refused(svc, svc.call(token))
    assert token not in svc.verifier._verified


def test_a_handler_editing_its_identity_does_not_change_the_next_request(svc):
    token = svc.mint(READ)
    assert svc.call(token).status == 200
    svc.handled[0].claims["sub"] = "someone else"
    assert svc.call(token).status == 200
    assert svc.handled[1].claims["sub"] == "tester"
