"""The service's own keys: generation, rotation with overlap, retirement, JWKS, minted tokens."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from shoestring_runtime import auth, keys
from shoestring_runtime.cli import main

from .shop import SERVICE

NAME = SERVICE.model["service"]["name"]


@pytest.fixture
def store(tmp_path: Path):
    return keys.KeyStore(tmp_path / "keys")


def test_thumbprint_matches_rfc_7638_example():
    # The example key of RFC 7638 section 3.1 and the thumbprint the RFC gives for it.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
            "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
            "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
            "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
            "Cur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert keys.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_generate_writes_a_private_key_only_the_owner_can_read(store):
    info = store.generate()
    assert info.alg == "EdDSA" and info.status == "signing"
    pem = store.directory / f"{info.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    assert keys.thumbprint(keys.public_jwk(private.public_key())) == info.kid
    published = store.jwks()["keys"]
    assert [set(k) for k in published] == [{"kty", "crv", "x", "kid", "alg", "use"}]  # no "d"


def test_generate_refuses_when_a_signing_key_exists(store):
    store.generate()
    with pytest.raises(keys.KeyStoreError, match="keys rotate"):
        store.generate()


def test_rotation_keeps_the_old_key_published_until_it_is_retired(store):
    old = store.generate()
    new = store.rotate("RS256")
    assert store.signing_key().kid == new.kid and new.alg == "RS256"
    published = [k["kid"] for k in store.jwks()["keys"]]
    assert published == [new.kid, old.kid]  # signing key first
    assert {k.kid: k.status for k in store.keys()} == {new.kid: "signing", old.kid: "published"}

    store.retire(old.kid)
    assert [k["kid"] for k in store.jwks()["keys"]] == [new.kid]
    assert {k.kid: k.status for k in store.keys()}[old.kid] == "retired"
    assert not (store.directory / f"{old.kid}.pem").exists()  # retired private keys are erased


def test_the_signing_key_cannot_be_retired(store):
    info = store.generate()
    with pytest.raises(keys.KeyStoreError, match="rotate"):
        store.retire(info.kid)


def test_retiring_an_unknown_key_lists_the_known_ones(store):
    info = store.generate()
    with pytest.raises(keys.KeyStoreError, match=info.kid):
        store.retire("no-such-key-id-at-all")


def test_a_running_process_sees_a_rotation_made_by_another(store):
    store.generate()
    other_process = keys.KeyStore(store.directory)
    assert other_process.signing_key().kid == store.signing_key().kid
    rotated = store.rotate()
    assert other_process.signing_key().kid == rotated.kid
    assert len(other_process.jwks()["keys"]) == 2


def test_concurrent_rotations_lose_no_key(store):
    store.generate()
    stores = [keys.KeyStore(store.directory) for _ in range(4)]
    threads = [threading.Thread(target=s.rotate) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.keys()) == 5
    assert sum(k.signing for k in store.keys()) == 1


def test_a_private_key_readable_by_others_is_refused(store):
    info = store.generate()
    os.chmod(store.directory / f"{info.kid}.pem", 0o644)
    with pytest.raises(keys.KeyStoreError, match="chmod 600"):
        keys.KeyStore(store.directory).signing_key()


def test_a_missing_signing_key_says_how_to_create_one(store):
    with pytest.raises(keys.KeyStoreError, match="keys generate"):
        store.signing_key()


def test_a_keyring_naming_a_path_outside_the_directory_is_refused(store):
    store.generate()
    data = json.loads(store.keyring_path.read_text())
    data["keys"][0]["kid"] = "../../etc/passwd"
    data["signing"] = "../../etc/passwd"
    store.keyring_path.write_text(json.dumps(data))
    with pytest.raises(keys.KeyStoreError, match="edited by hand"):
        keys.KeyStore(store.directory).signing_key()


def test_minted_token_carries_kid_and_registered_claims(store):
    info = store.generate()
    token = keys.mint_token(
        store, issuer="orders", audience="payments", subject="relay", scopes=["b:x", "a:y"], ttl=120
    )
    header = jwt.get_unverified_header(token)
    assert header["kid"] == info.kid and header["alg"] == "EdDSA"
    public = serialization.load_pem_public_key(
        store._load_private_key(info)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="payments", issuer="orders")
    assert claims["sub"] == "relay" and claims["scope"] == "a:y b:x"
    assert claims["exp"] - claims["iat"] == 120 and claims["jti"]


@pytest.mark.parametrize("ttl", [0, -5, keys.MAX_TOKEN_TTL_SECONDS + 1])
def test_minting_refuses_a_ttl_out_of_range(store, ttl):
    store.generate()
    with pytest.raises(ValueError, match="ttl"):
        keys.mint_token(store, issuer="a", audience="b", subject="c", ttl=ttl)


def test_minting_refuses_a_scope_with_a_space(store):
    store.generate()
    with pytest.raises(ValueError, match="spaces"):
        keys.mint_token(
            store, issuer="a", audience="b", subject="c", scopes=["orders:read orders:write"]
        )


# -- the `keys` and `token` commands -----------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path):
    """`cli(*args)`: run `python -m <package> ARGS` with the key directory in tmp_path."""
    runner = CliRunner()
    environ = {"SERVICE_KEYS_DIR": str(tmp_path / "cli-keys"), "SERVICE_KEY_ALGORITHM": "EdDSA"}

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), obj=SERVICE, env=environ, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    run.store = keys.KeyStore(tmp_path / "cli-keys")
    return run


def test_keys_commands_generate_rotate_list_and_retire(cli):
    # The fix names the service's own command, not the runtime's package.
    assert f"python -m {SERVICE.package} keys generate" in cli("keys", "list", ok=False).output
    cli("keys", "generate")
    first = cli.store.signing_key().kid
    assert f"python -m {SERVICE.package} keys rotate" in cli("keys", "generate", ok=False).output
    cli("keys", "rotate", "--alg", "RS256")
    second = cli.store.signing_key()
    assert second.kid != first and second.alg == "RS256"
    listing = cli("keys", "list").output.splitlines()
    assert listing[1].split()[:3] == [second.kid, "RS256", "signing"]
    assert listing[2].split()[:3] == [first, "EdDSA", "published"]
    # `--`: a key id is a base64url thumbprint and may start with '-'
    assert "rotate" in cli("keys", "retire", "--", second.kid, ok=False).output
    cli("keys", "retire", "--", first)
    assert cli("keys", "list").output.splitlines()[2].split()[2] == "retired"
    assert [k["kid"] for k in cli.store.jwks()["keys"]] == [second.kid]


def test_token_command_mints_a_token_this_service_accepts(cli, tmp_path):
    cli("keys", "generate")
    minted = cli("token", "--scope", "b:read a:write", "--scope", "c:x", "--ttl", "120")
    token = minted.output.strip()
    config = auth.AuthConfig(issuer=NAME, audience=NAME, keys_dir=cli.store.directory)
    identity = auth.Verifier(config).verify(token)
    assert identity.scopes == frozenset({"a:write", "b:read", "c:x"})
    assert identity.subject == NAME and identity.issuer == NAME
    assert identity.claims["exp"] - identity.claims["iat"] == 120


def test_token_command_takes_audience_and_subject(cli):
    cli("keys", "generate")
    token = cli("token", "--audience", "payments", "--subject", "nightly-job").output.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "payments" and claims["sub"] == "nightly-job"
    assert "scope" not in claims


def test_token_command_without_a_key_says_how_to_make_one(cli):
    assert f"python -m {SERVICE.package} keys generate" in cli(
        "token", "--scope", "a:b", ok=False
    ).output


def test_token_command_refuses_a_ttl_out_of_range(cli):
    cli("keys", "generate")
    assert "ttl" in cli("token", "--ttl", "0", ok=False).output
