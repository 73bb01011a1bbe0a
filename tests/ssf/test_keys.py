"""SET signing keys (docs/ssf.md, "The SET"): made on first use, sealed under SECRET_KEY,
rotated without breaking a receiver that still checks an older SET."""

import json

import pytest
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.ssf import keys
from idp.store.models.ssf import SsfKey
from tests.ssf_support import decode
from tests.ssf_support import emit
from tests.ssf_support import new_stream
from tests.ssf_support import receiver


def kids(client) -> list[str]:
    """The kids the JWKS publishes, newest first."""
    return [key["kid"] for key in client.get("/ssf/jwks").get_json()["keys"]]


def poll(client, rs, stream_id, **body) -> dict:
    """An immediate poll's SETs."""
    response = client.post(f"/ssf/poll/{stream_id}", headers=rs["auth"],
                           json={"returnImmediately": True, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["sets"]


def test_the_first_key_is_made_once_and_its_private_half_is_sealed(app):
    with app.app_context():
        assert keys.jwks(db.session) == {"keys": []}
        first = keys.current_key(db.session, app.config, utcnow())
        db.session.commit()
        assert keys.current_key(db.session, app.config, utcnow()).kid == first.kid
        private = keys.private_key(first, app.config).as_dict(private=True)
        assert private["d"].encode() not in first.sealed_private
        assert "d" not in first.public_jwk
        assert first.public_jwk == {**{k: private[k] for k in ("kty", "crv", "x", "y")},
                                    "kid": first.kid, "alg": "ES256", "use": "sig"}
        assert keys.jwks(db.session) == {"keys": [first.public_jwk]}


def test_a_replaced_secret_key_still_opens_through_its_fallback(app, make_app):
    with app.app_context():
        row = keys.current_key(db.session, app.config, utcnow())
        db.session.commit()
        kid = row.kid
    rotated = make_app(SECRET_KEY="a-brand-new-secret-key-0123456789-abcdefgh",
                       SECRET_KEY_FALLBACKS=[app.config["SECRET_KEY"]])
    with rotated.app_context():
        row = db.session.scalar(select(SsfKey).where(SsfKey.kid == kid))
        assert keys.private_key(row, rotated.config) is not None
    replaced = make_app(SECRET_KEY="a-brand-new-secret-key-0123456789-abcdefgh")
    with replaced.app_context():
        row = db.session.scalar(select(SsfKey).where(SsfKey.kid == kid))
        with pytest.raises(keys.KeyUnavailable):
            keys.private_key(row, replaced.config)


def test_a_key_that_cannot_be_opened_makes_a_poll_a_passing_fault(app, make_app, factory):
    client = app.test_client()
    rs = receiver(factory)
    stream = new_stream(client, rs)["stream_id"]
    emit(app)
    replaced = make_app(SECRET_KEY="a-brand-new-secret-key-0123456789-abcdefgh")
    response = replaced.test_client().post(f"/ssf/poll/{stream}", headers=rs["auth"],
                                           json={"returnImmediately": True})
    assert response.status_code == 503
    assert response.get_json()["err"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    # The operator's way out: a new key, after which polls work again.
    assert replaced.test_cli_runner().invoke(args=["ssf", "rotate-key"]).exit_code == 0
    assert len(poll(replaced.test_client(), rs, stream)) == 1


def test_a_rotated_key_stays_published_until_its_sets_are_acknowledged(app, client, factory):
    rs = receiver(factory)
    stream = new_stream(client, rs)["stream_id"]
    emit(app)
    sets = poll(client, rs, stream)
    [old] = kids(client)
    assert decode(next(iter(sets.values())), client.get("/ssf/jwks").get_json()).header[
        "kid"] == old

    runner = app.test_cli_runner()
    result = runner.invoke(args=["ssf", "rotate-key"])
    assert result.exit_code == 0, result.output
    new = result.stdout.split()[0]
    assert kids(client) == [new, old]
    # The purge keeps the old key while a receiver may still be checking a SET it signed.
    assert runner.invoke(args=["purge"]).exit_code == 0
    assert kids(client) == [new, old]

    emit(app)
    fresh = poll(client, rs, stream, ack=list(sets))
    jwks = client.get("/ssf/jwks").get_json()
    assert [decode(token, jwks).header["kid"] for token in fresh.values()] == [new]
    assert runner.invoke(args=["purge"]).exit_code == 0
    assert kids(client) == [new]


def test_a_set_sent_again_after_a_rotation_is_signed_with_the_new_key(app, client, factory):
    rs = receiver(factory)
    stream = new_stream(client, rs)["stream_id"]
    emit(app)
    first = poll(client, rs, stream)
    app.test_cli_runner().invoke(args=["ssf", "rotate-key"])
    again = poll(client, rs, stream)
    assert list(again) == list(first)
    jwks = client.get("/ssf/jwks").get_json()
    assert decode(next(iter(again.values())), jwks).header["kid"] == kids(client)[0]
    # Nothing waits on the old key any more: the listing says so.
    listed = json.loads(app.test_cli_runner().invoke(args=["ssf", "keys", "--json"]).stdout)
    assert [(key["status"], key["unacknowledged"]) for key in listed] == [
        ("signing", 1), ("retired", 0)]
