"""What the seed writes is what the IdP accepts: every sampled credential is live."""

from sqlalchemy import select

from bench.dataset import Shape
from bench.dataset import s256
from bench.seed import seed
from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.credentials import Credential
from idp.infra.extensions import db
from idp.store.credentials import authenticate_token
from idp.store.models import AuthorizationCode
from idp.store.models import Client
from idp.store.models import RefreshToken
from idp.store.models import ResourceServer

SHAPE = Shape(size=300, sample=20, pool=15)


def test_counts_follow_the_shape(database_url):
    """Every stored-token table holds the size; pools add their own rows."""
    seeded = seed(database_url, SHAPE)
    assert seeded.counts["access_tokens"] == 300
    assert seeded.counts["api_keys"] == 300
    assert seeded.counts["refresh_tokens"] == 300 + 2 * 15
    assert seeded.counts["authorization_codes"] == 15
    assert seeded.counts["connections"] == SHAPE.connections + 2 * 15


def test_sampled_keys_and_tokens_authenticate(database_url, app):
    """The credentials the read rows present pass the credential core, each of its own kind."""
    seeded = seed(database_url, SHAPE)
    assert len(seeded.api_keys) == 20 and len(seeded.access_tokens) == 20
    with app.app_context():
        for raw, kind in [(k, "api_key") for k in seeded.api_keys] + [
            (t, "oauth") for t in seeded.access_tokens
        ]:
            verdict = authenticate_token(db.session, raw, utcnow())
            assert isinstance(verdict, Credential), (raw[:8], verdict)
            assert verdict.kind == kind


def test_no_raw_value_is_stored(database_url, app):
    """Only digests reach the database."""
    seeded = seed(database_url, SHAPE)
    raw = set(seeded.api_keys + seeded.access_tokens + seeded.refresh_pool + seeded.code_pool)
    with app.app_context():
        stored = set(db.session.scalars(select(RefreshToken.digest)))
        stored |= set(db.session.scalars(select(AuthorizationCode.digest)))
    assert not raw & stored
    assert {cs.digest(r) for r in seeded.refresh_pool} <= stored


def test_pools_are_live_and_bound_to_the_known_clients(database_url, app):
    """Pool refresh tokens are unrotated with a sealed predecessor; codes carry the S256 pair."""
    seeded = seed(database_url, SHAPE)
    with app.app_context():
        client = db.session.scalar(select(Client).where(Client.public_id == seeded.client_id))
        assert client.check_client_secret(seeded.client_secret)
        server = db.session.scalar(select(ResourceServer))
        assert server.public_id == seeded.rs_id
        assert cs.same_digest(server.secret_digest, seeded.rs_secret)
        for raw in seeded.refresh_pool:
            token = db.session.scalar(
                select(RefreshToken).where(RefreshToken.digest == cs.digest(raw)))
            assert token.rotated_at is None and token.expires_at > utcnow()
            assert token.connection.client_id == client.id
            before = db.session.scalar(
                select(RefreshToken).where(RefreshToken.successor_id == token.id))
            assert before.sealed_successor
        for raw in seeded.code_pool:
            code = db.session.scalar(
                select(AuthorizationCode).where(AuthorizationCode.digest == cs.digest(raw)))
            assert code.used_at is None and code.expires_at > utcnow()
            assert code.code_challenge == s256(seeded.code_verifier)
            assert code.redirect_uri == seeded.redirect_uri
