"""Grace-window retries across a SECRET_KEY rotation, and seals that cannot be opened.

Inside the grace window a rotated refresh token is a retry, never theft: when its sealed
successor cannot be opened (the key replaced without SECRET_KEY_FALLBACKS, a corrupt seal, a
seal erased early) the answer is 503 with Retry-After and the connection lives on (SPEC §5.3
as changed on 2026-11-28).
"""

import logging

import pytest
from sqlalchemy import select
from sqlalchemy import update

from idp.core import secrets as cs
from idp.infra.extensions import db
from idp.store.models import AuditEvent
from idp.store.models import RefreshToken
from tests.conftest import BASE_CONFIG
from tests.oauth_helpers import connect
from tests.oauth_helpers import me
from tests.oauth_helpers import oauth_error
from tests.oauth_helpers import refresh

OLD_KEY = BASE_CONFIG["SECRET_KEY"]
NEW_KEY = "rotated-secret-key-9876543210-zyxwvutsrqponm"


def test_a_seal_opens_under_a_fallback_key_and_only_under_its_own_key():
    sealed = cs.seal(OLD_KEY, "fe_rt_old", {"refresh_token": "fe_rt_new"})
    assert cs.unseal((NEW_KEY, OLD_KEY), "fe_rt_old", sealed) == {"refresh_token": "fe_rt_new"}
    assert cs.unseal((NEW_KEY,), "fe_rt_old", sealed) is None
    assert cs.unseal((OLD_KEY,), "fe_rt_other", sealed) is None
    assert cs.unseal((), "fe_rt_old", sealed) is None
    with pytest.raises(TypeError):
        cs.unseal(OLD_KEY, "fe_rt_old", sealed)


def _rotated(client, demo) -> tuple[dict, dict]:
    """Connect and refresh once: the first token response and its successor."""
    first = connect(client, demo)
    second = refresh(client, demo, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    return first, second.get_json()


def _assert_unavailable(response):
    """503 in the OAuth fault shape with Retry-After, never a 4xx a connector acts on."""
    assert response.status_code == 503, response.get_json()
    assert oauth_error(response) == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"


def _assert_alive(app, client, demo, second):
    """The connection was not ended: no reuse recorded, its newest tokens still work."""
    with app.app_context():
        events = set(db.session.scalars(select(AuditEvent.event)))
    assert "refresh_token_reuse" not in events and "connection_ended" not in events
    assert me(client, second["access_token"]).status_code == 200
    assert refresh(client, demo, second["refresh_token"]).status_code == 200


def test_retry_after_a_key_rotation_with_the_old_key_as_fallback_gets_the_same_successor(
        client, demo, make_app, clock):
    first, second = _rotated(client, demo)
    rotated = make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]).test_client()
    clock.shift(20)
    retry = refresh(rotated, demo, first["refresh_token"])
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["refresh_token"] == second["refresh_token"]
    assert retry.get_json()["access_token"] == second["access_token"]


def test_new_seals_use_the_current_key(client, demo, make_app, clock):
    first, second = _rotated(client, demo)
    rotated = make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]).test_client()
    third = refresh(rotated, demo, second["refresh_token"]).get_json()
    clock.shift(5)
    # Sealed under NEW_KEY: opens with NEW_KEY alone, and not with the old key alone.
    new_only = make_app(SECRET_KEY=NEW_KEY).test_client()
    retry = refresh(new_only, demo, second["refresh_token"])
    assert retry.status_code == 200 and retry.get_json()["refresh_token"] == third["refresh_token"]
    _assert_unavailable(refresh(client, demo, second["refresh_token"]))


def test_key_rotated_without_fallback_is_503_and_the_connection_lives(
        app, client, demo, make_app, clock, caplog):
    first, second = _rotated(client, demo)
    rotated = make_app(SECRET_KEY=NEW_KEY).test_client()
    clock.shift(20)
    with caplog.at_level(logging.WARNING, logger="idp.oauth.refresh_token"):
        _assert_unavailable(refresh(rotated, demo, first["refresh_token"]))
    warnings = [r.getMessage() for r in caplog.records if r.name == "idp.oauth.refresh_token"]
    assert len(warnings) == 1 and "cannot be opened" in warnings[0]
    secrets = [body[name] for body in (first, second) for name in ("access_token",
                                                                   "refresh_token")]
    for secret in (*secrets, OLD_KEY, NEW_KEY):
        assert secret not in warnings[0]
    _assert_alive(app, rotated, demo, second)


def _set_seal(app, raw: str, value):
    """Overwrite the sealed successor kept on the row of refresh token ``raw``."""
    with app.app_context():
        db.session.execute(update(RefreshToken).where(RefreshToken.digest == cs.digest(raw))
                           .values(sealed_successor=value))
        db.session.commit()


@pytest.mark.parametrize("damage", ["corrupt seal", "truncated seal", "seal erased early"])
def test_a_seal_that_cannot_be_opened_inside_the_window_is_503(app, client, demo, clock, damage):
    first, second = _rotated(client, demo)
    with app.app_context():
        sealed = db.session.scalar(select(RefreshToken.sealed_successor).where(
            RefreshToken.digest == cs.digest(first["refresh_token"])))
    value = {"corrupt seal": b"not-a-fernet-token", "truncated seal": sealed[:-10],
             "seal erased early": None}[damage]
    _set_seal(app, first["refresh_token"], value)
    clock.shift(10)
    _assert_unavailable(refresh(client, demo, first["refresh_token"]))
    _assert_alive(app, client, demo, second)


def test_a_later_link_that_cannot_be_opened_is_503(app, client, demo, clock):
    first, second = _rotated(client, demo)
    third = refresh(client, demo, second["refresh_token"]).get_json()
    _set_seal(app, second["refresh_token"], b"not-a-fernet-token")
    clock.shift(5)
    # Answering the stale middle successor would make its next use count as reuse.
    _assert_unavailable(refresh(client, demo, first["refresh_token"]))
    _assert_alive(app, client, demo, third)


def test_after_the_window_reuse_still_ends_the_connection(client, demo, make_app, clock):
    first, _ = _rotated(client, demo)
    rotated = make_app(SECRET_KEY=NEW_KEY).test_client()
    clock.shift(61)
    reused = refresh(rotated, demo, first["refresh_token"])
    assert reused.status_code == 400 and oauth_error(reused) == "invalid_grant"
