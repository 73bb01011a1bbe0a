"""On SQLite, views that read then write take the write lock first (no spurious 503).

In WAL mode a transaction that began by reading cannot upgrade to a writer once another
connection has committed since its first read: SQLite answers "database is locked" at once,
without waiting. Under connector load that turned a consent, a failed sign-in or a revocation
into a 503. Each test lets another connection commit in the middle of the request.
"""

import sqlite3

import pytest
from sqlalchemy import event

from idp.infra.extensions import db
from tests.conftest import PG_URL
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.oauth_helpers import authorize_url
from tests.oauth_helpers import connect
from tests.oauth_helpers import me

pytestmark = pytest.mark.skipif(
    bool(PG_URL), reason="SQLite's write lock; PostgreSQL takes row locks instead")


class Competitor:
    """Commit a write from another connection just before the first matching statement."""

    def __init__(self, app, database_url: str, prefix: str):
        """Watch ``app``'s engine for a statement starting with ``prefix``."""
        self.path = database_url.removeprefix("sqlite:///")
        self.prefix = prefix.upper()
        self.tried = False
        self.committed = False
        with app.app_context():
            self.engine = db.engine

    def __enter__(self):
        """Start watching."""
        event.listen(self.engine, "before_cursor_execute", self.hook)
        return self

    def __exit__(self, *exc):
        """Stop watching."""
        event.remove(self.engine, "before_cursor_execute", self.hook)

    def hook(self, conn, cursor, statement, parameters, context, executemany):
        """Another writer commits now, if the request's transaction lets it."""
        if self.tried or not statement.lstrip().upper().startswith(self.prefix):
            return
        self.tried = True
        other = sqlite3.connect(self.path, timeout=0.2, isolation_level=None)
        try:
            # A real change: a write that leaves every page as it was does not count.
            other.execute("INSERT INTO audit_events (created_at, event, detail) "
                          "VALUES ('2026-01-01 00:00:00', 'competing_write', '{}')")
            self.committed = True
        except sqlite3.OperationalError:
            pass  # the request holds the write lock, as it should
        finally:
            other.close()


def test_consent_survives_a_concurrent_writer(app, client, demo, database_url):
    flask_sign_in(client, demo)
    url = authorize_url(demo)
    page = client.get(url)
    with Competitor(app, database_url, "INSERT INTO connections") as competitor:
        response = client.post(url, data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "decision": "allow",
            "organization": demo["organization"]["id"]})
    assert competitor.tried and not competitor.committed
    assert response.status_code == 302, response.status_code
    assert "code=" in response.headers["Location"]


def test_failed_sign_in_survives_a_concurrent_writer(app, client, demo, database_url):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    with Competitor(app, database_url, "INSERT INTO audit_events") as competitor:
        response = client.post("/login", data={
            "csrf_token": token, "email": demo["user"]["email"], "password": "wrong"})
    assert competitor.tried and not competitor.committed
    assert response.status_code == 401, response.status_code


def test_revocation_survives_a_concurrent_writer(app, client, demo, database_url):
    body = connect(client, demo)
    zapier = demo["clients"]["zapier"]
    with Competitor(app, database_url, "UPDATE connections") as competitor:
        response = client.post("/oauth/revoke", data={
            "token": body["refresh_token"], "client_id": zapier["client_id"],
            "client_secret": zapier["client_secret"]})
    assert competitor.tried and not competitor.committed
    assert response.status_code == 200, response.get_json()
    assert me(client, body["access_token"]).status_code == 401
