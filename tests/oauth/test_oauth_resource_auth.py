"""Resource-server checks for introspection: columns only, and a short, bounded memo."""

import base64

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.oauth import resource_auth
from idp.store.models import ResourceServer


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        """Start at an arbitrary instant."""
        self.now = 1000.0

    def __call__(self) -> float:
        """The current instant."""
        return self.now


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 7617)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def set_enabled(app, public_id: str, enabled: bool) -> None:
    """Enable or disable a resource server directly in the database."""
    with app.app_context():
        row = db.session.scalar(select(ResourceServer).where(ResourceServer.public_id == public_id))
        row.enabled = enabled
        db.session.commit()


@pytest.mark.parametrize("client_id, secret", [
    (None, "s"), ("", "s"), ("rs_x", None), ("rs_x", ""), ("r" * 65, "s"),
], ids=["no id", "empty id", "no secret", "empty secret", "id too long"])
def test_incomplete_credentials_are_refused_without_a_lookup(client_id, secret):
    # The session is never touched: None would raise if the function reached the query.
    assert resource_auth.check(None, resource_auth.Memo(), client_id, secret) is None


def test_a_good_check_is_remembered_for_at_most_memo_seconds(app, demo):
    rs = demo["resource_server"]
    clock = Clock()
    memo = resource_auth.Memo(seconds=5, clock=clock)
    with app.app_context():
        assert resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"]) \
            == rs["client_id"]
    set_enabled(app, rs["client_id"], False)
    with app.app_context():
        clock.now += 4.9
        # Inside the documented bound the disabled server still passes, from memory.
        assert resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"]) \
            == rs["client_id"]
        clock.now += 0.2
        assert resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"]) is None


def test_failures_are_never_remembered(app, demo):
    rs = demo["resource_server"]
    memo = resource_auth.Memo(seconds=5, clock=Clock())
    with app.app_context():
        assert resource_auth.check(db.session, memo, rs["client_id"], "wrong") is None
        assert resource_auth.check(db.session, memo, "rs_" + "0" * 20, "wrong") is None
    assert memo._until == {}


def test_a_wrong_secret_is_refused_even_after_the_right_one_was_remembered(app, demo):
    rs = demo["resource_server"]
    memo = resource_auth.Memo(seconds=5, clock=Clock())
    with app.app_context():
        assert resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"])
        assert resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"] + "x") \
            is None


def test_the_memo_holds_digests_never_raw_secrets(app, demo):
    rs = demo["resource_server"]
    memo = resource_auth.Memo(seconds=5, clock=Clock())
    with app.app_context():
        resource_auth.check(db.session, memo, rs["client_id"], rs["client_secret"])
    assert list(memo._until) and all(rs["client_secret"] not in key for key in memo._until)


def test_the_memo_is_bounded():
    memo = resource_auth.Memo(seconds=5, size=3, clock=Clock())
    for n in range(10):
        memo.remember((f"rs_{n}", "d"))
        assert len(memo._until) <= 3
    assert memo.holds(("rs_9", "d")) and not memo.holds(("rs_0", "d"))


def test_a_zero_memo_remembers_nothing():
    memo = resource_auth.Memo(seconds=0, clock=Clock())
    memo.remember(("rs_1", "d"))
    assert not memo.holds(("rs_1", "d"))


def test_introspection_refuses_a_disabled_server_once_the_memo_lapses(app, client, demo):
    rs = demo["resource_server"]
    clock = Clock()
    app.extensions["idp.resource_server_memo"] = resource_auth.Memo(seconds=5, clock=clock)
    headers = basic(rs["client_id"], rs["client_secret"])
    first = client.post("/oauth/introspect", data={"token": demo["api_key"]}, headers=headers)
    assert first.status_code == 200 and first.get_json()["active"] is True
    set_enabled(app, rs["client_id"], False)
    clock.now += resource_auth.MEMO_SECONDS + 0.1
    response = client.post("/oauth/introspect", data={"token": demo["api_key"]}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
