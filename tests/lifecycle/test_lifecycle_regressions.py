"""Bugs the lifecycle machines found, each pinned by a plain test named after it."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from idp.core.clock import shift
from idp.infra.extensions import db
from tests.lifecycle_env import lifecycle_world


@pytest.fixture
def world(make_app, monkeypatch):
    """A seeded app with a signed-in test client (see tests/lifecycle_env.py)."""
    return lifecycle_world(make_app, monkeypatch)


def _first_pair(world):
    """Connect, redeem the code and return (connection id, token response)."""
    from tests.lifecycle_model import Connection

    status, code, verifier, public_id, scope = world.connect()
    assert status == 302
    pending = Connection(public_id, scope, code, verifier, code_expires_at=60)
    response = world.exchange(pending)
    assert response.status_code == 200, response.get_json()
    return public_id, response.get_json()


class WriteBetweenReadAndWrite:
    """Another request's committed write, slipped in after a view's first read of connections.

    That is what a concurrent refresh does to a Disconnect click on a busy IdP. On SQLite a
    transaction that has read cannot start writing once another writer has committed, so a view
    that reads before taking the write lock fails; one holding the lock makes the intruder wait
    (here: give up after a moment), which is the fix.
    """

    def __init__(self, app, url: str, org_pk: int):
        """Listen on the app's engine; intrude once, renaming an unrelated organization."""
        self.done = False
        self.org_pk = org_pk
        options = {"connect_args": {"timeout": 0.2}} if url.startswith("sqlite") else {}
        self.other = create_engine(url, **options)
        with app.app_context():
            self.engine = db.engine
        event.listen(self.engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        """After the first read of connections, commit a write from another connection."""
        if self.done or not statement.lstrip().upper().startswith("SELECT"):
            return
        if "FROM connections" not in statement:
            return
        self.done = True
        try:
            with self.other.begin() as other:
                # A real change: SQLite skips writing a row whose values stay the same.
                other.execute(text("UPDATE organizations SET name = 'Renamed' WHERE id = :pk"),
                              {"pk": self.org_pk})
        except OperationalError:
            pass  # the view holds the write lock: the intruder waits its turn instead

    def close(self):
        """Stop intruding and release the other engine."""
        event.remove(self.engine, "after_cursor_execute", self._after)
        self.other.dispose()


def test_regression_disconnect_beside_a_concurrent_write_is_not_503(world, database_url):
    public_id, pair = _first_pair(world)
    intruder = WriteBetweenReadAndWrite(world.app, database_url, world.other_org_pk)
    try:
        response = world.disconnect(public_id)
    finally:
        intruder.close()
    assert intruder.done, "the disconnect never read its connection"
    assert response.status_code == 302, response.status_code
    refused = world.refresh(pair["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    me = world.me(pair["access_token"])
    assert me.status_code == 401 and me.get_json()["error"]["reason"] == "token_revoked"


def test_regression_disconnect_after_a_refused_consent_that_signed_in_again_is_not_400(world):
    """The harness kept the CSRF token of the session before a re-sign-in.

    A day on the clock ends the browser's session; the next connect signs in again, which starts
    a new session, and the consent is refused (the person is no longer a member). The harness
    took its CSRF token only from a consent page it was shown, so it went on posting the old
    session's token, and Disconnect answered 400 "This form has expired" instead of the 404 of
    a connection that has ended. Every sign-in now renews the token (World.sign_in).
    """
    public_id, pair = _first_pair(world)
    assert world.revoke(pair["refresh_token"]).status_code == 200
    world.set_member(False)
    shift(24 * 3600)
    before = world.csrf
    assert world.connect()[0] == 403
    assert world.csrf != before, "signing in again must renew the CSRF token"
    response = world.disconnect(public_id)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
