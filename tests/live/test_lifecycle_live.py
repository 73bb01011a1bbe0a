"""The refresh interleavings for real: concurrent requests against a gunicorn process.

Several workers and threads race on one connection's refresh tokens, as Zapier's parallel zaps
do, on SQLite here and on PostgreSQL in CI. The invariants are the state machine's: no 4xx for a
benign concurrent refresh or retry, every racer gets the same successor, earlier access tokens
keep working, no connection ends by a race, and once the grace window has passed exactly one
refresh token works.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from idp.core import secrets as cs
from idp.infra.extensions import db
from idp.store.models import AuditEvent
from idp.store.models import Connection
from idp.store.models import RefreshToken
from tests.helpers import LiveServer
from tests.helpers import http_connect
from tests.helpers import pkce_pair

#: Short enough to wait out in the test, long enough that a round's retries land inside it.
GRACE = 8
#: Seconds of margin: a previous token is only retried while this much of its window is left.
MARGIN = 4
#: Racing requests per round and rounds per test; bounded so the test stays well under a minute.
RACERS = 8
ROUNDS = 6
TIMEOUT = 20


def _post(url: str, data: dict) -> requests.Response:
    """One POST on its own connection (closed on return)."""
    with requests.Session() as http:
        response = http.post(url, data=data, timeout=TIMEOUT)
        response.close()
        return response


class Connector:
    """A Zapier-like client of the live server: client secret in the body, parallel calls."""

    def __init__(self, server: LiveServer, demo: dict):
        """Remember where the server is and which client this is."""
        self.url = server.url
        self.demo = demo
        self.creds = demo["clients"]["zapier"]

    def connect(self) -> dict:
        """Authorize, Allow and redeem the code; return the first token response."""
        verifier, challenge = pkce_pair()
        with requests.Session() as browser:
            query = http_connect(self.url, self.demo, challenge=challenge, session=browser)
        response = self.token({
            "grant_type": "authorization_code", "code": query["code"],
            "redirect_uri": self.creds["redirect_uris"][0], "code_verifier": verifier,
        })
        assert response.status_code == 200, response.text
        return response.json()

    def token(self, data: dict) -> requests.Response:
        """POST /oauth/token with the client's credentials in the form body."""
        return _post(self.url + "/oauth/token", {
            **data, "client_id": self.creds["client_id"],
            "client_secret": self.creds["client_secret"]})

    def refresh(self, raw: str) -> requests.Response:
        """Present a refresh token."""
        return self.token({"grant_type": "refresh_token", "refresh_token": raw})

    def me(self, access: str) -> requests.Response:
        """Use an access token."""
        with requests.Session() as http:
            response = http.get(self.url + "/api/v1/me", timeout=TIMEOUT,
                                headers={"Authorization": "Bearer " + access})
            response.close()
            return response


def _race(calls) -> list:
    """Run the calls at the same instant from separate threads; return (label, response)."""
    barrier = threading.Barrier(len(calls))

    def fire(call):
        label, function = call
        barrier.wait(timeout=TIMEOUT)
        return label, function()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(fire, calls))


def _benign(label: str, response: requests.Response) -> None:
    """A benign refresh or retry is answered 200, or 503 + Retry-After under a passing fault."""
    if response.status_code == 503:
        assert response.headers.get("Retry-After"), label
        return
    assert response.status_code == 200, (label, response.status_code, response.text)


@pytest.fixture
def racing_server(make_app, database_url, tmp_path):
    """A gunicorn IdP (2 workers x 4 threads) with a short grace window, and its demo data."""
    from idp.cli.demo import seed_demo

    app = make_app()
    with app.app_context():
        demo = seed_demo()
    server = LiveServer(database_url, tmp_path, extra_env={
        "IDP_REFRESH_GRACE_SECONDS": str(GRACE)}, workers=2, threads=4)
    server.start()
    yield app, server, demo
    server.stop()


def _rows(app, public_id: str):
    """The connection row, its refresh rows and its audit events, read directly."""
    with app.app_context():
        connection = db.session.scalar(select(Connection).where(Connection.public_id == public_id))
        rows = list(db.session.scalars(
            select(RefreshToken).where(RefreshToken.connection_id == connection.id)))
        events = list(db.session.scalars(
            select(AuditEvent.event).where(AuditEvent.subject == public_id)))
        return connection, rows, events


def _connection_id(app, access: str) -> str:
    """Which connection an access token belongs to."""
    from idp.store.models import AccessToken

    with app.app_context():
        row = db.session.scalar(select(AccessToken).where(AccessToken.digest == cs.digest(access)))
        return row.connection.public_id


@pytest.mark.live
def test_concurrent_refreshes_and_retries_keep_one_connection_alive(racing_server):
    app, server, demo = racing_server
    zap = Connector(server, demo)
    first = zap.connect()
    public_id = _connection_id(app, first["access_token"])
    # The last rotation happened between these two instants (wall clock of this process).
    current, previous, rotated_after, rotated_before = first, None, None, None
    access_tokens = [first["access_token"]]
    answered = []
    deadline = time.monotonic() + 60
    for round_no in range(ROUNDS):
        assert time.monotonic() < deadline, "the rounds took longer than a minute"
        calls = [("current", lambda raw=current["refresh_token"]: zap.refresh(raw))
                 for _ in range(RACERS - 3)]
        # A lost response: the same token presented twice by one zap, one after the other.
        calls.append(("lost response", lambda raw=current["refresh_token"]: (
            zap.refresh(raw), zap.refresh(raw))))
        # A slow zap still holding the previous token, inside its window.
        if previous and time.monotonic() - rotated_after < GRACE - MARGIN:
            calls.append(("previous", lambda raw=previous["refresh_token"]: zap.refresh(raw)))
        # A running scenario still using every earlier access token.
        calls.append(("old access", lambda: [zap.me(a) for a in access_tokens[-3:]]))
        started = time.monotonic()
        results = _race(calls)
        successors = {}
        for label, outcome in results:
            if label == "old access":
                for response in outcome:
                    assert response.status_code == 200, (round_no, response.text)
                continue
            responses = outcome if isinstance(outcome, tuple) else (outcome,)
            for response in responses:
                _benign(f"round {round_no} {label}", response)
                if response.status_code == 200:
                    body = response.json()
                    assert body["refresh_token"] and body["expires_in"] > 0
                    answered.append(body["refresh_token"])
                    if label != "previous":
                        successors[body["refresh_token"]] = body
        # Everyone who presented the current token holds the very same successor.
        assert len(successors) == 1, (round_no, len(successors))
        (body,) = successors.values()
        previous, current = current, body
        rotated_after, rotated_before = started, time.monotonic()
        access_tokens.append(body["access_token"])
    connection, rows, events = _rows(app, public_id)
    assert connection.ended_at is None, ("a race ended the connection", connection.end_reason)
    assert "connection_ended" not in events and "refresh_token_reuse" not in events
    # Wait out the last grace window: then exactly one refresh token is live, the newest one.
    time.sleep(max(0.0, rotated_before + GRACE + 1 - time.monotonic()))
    connection, rows, events = _rows(app, public_id)
    live = [r for r in rows if r.rotated_at is None]
    assert [r.digest for r in live] == [cs.digest(current["refresh_token"])]
    assert len(rows) == ROUNDS + 1, "a race rotated a token twice"
    newest = zap.refresh(current["refresh_token"])
    assert newest.status_code == 200, newest.text
    assert zap.me(newest.json()["access_token"]).status_code == 200
    # Past its window an earlier token is reuse: refused, and the whole connection ends.
    stale = zap.refresh(previous["refresh_token"])
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    connection, rows, events = _rows(app, public_id)
    assert connection.end_reason == "refresh_reuse"
    dead = zap.refresh(newest.json()["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    assert zap.me(newest.json()["access_token"]).json()["error"]["reason"] == "token_revoked"


def _confirm_csrf(browser: requests.Session, url: str) -> str:
    """The CSRF token of the disconnect confirmation page."""
    from tests.helpers import csrf_token

    page = browser.get(url, timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:500]
    return csrf_token(page.text)


@pytest.mark.live
@pytest.mark.parametrize(("ender", "reason", "status", "rounds"), [
    ("disconnect", "disconnected", 302, 4),
    ("revoke", "revoked_by_client", 200, 4),
    # Theft needs a token past its window, so one round: it waits the window out once.
    ("reuse", "refresh_reuse", 400, 1),
])
def test_ending_racing_refreshes_ends_the_connection_cleanly(racing_server, ender, reason,
                                                              status, rounds):
    app, server, demo = racing_server
    zap = Connector(server, demo)
    with requests.Session() as browser:
        for round_no in range(rounds):
            verifier, challenge = pkce_pair()
            query = http_connect(server.url, demo, challenge=challenge, session=browser)
            first = zap.token({
                "grant_type": "authorization_code", "code": query["code"],
                "redirect_uri": zap.creds["redirect_uris"][0], "code_verifier": verifier,
            }).json()
            public_id = _connection_id(app, first["access_token"])
            current = first
            if ender == "reuse":
                current = zap.refresh(first["refresh_token"]).json()
                time.sleep(GRACE + 1)
            calls = [("refresh", lambda raw=current["refresh_token"]: zap.refresh(raw))
                     for _ in range(RACERS - 1)]
            if ender == "disconnect":
                url = f"{server.url}/settings/connected-apps/{public_id}/disconnect"
                token = _confirm_csrf(browser, url)
                calls.append(("end", lambda url=url, token=token: browser.post(
                    url, data={"csrf_token": token}, allow_redirects=False, timeout=TIMEOUT)))
            elif ender == "revoke":
                calls.append(("end", lambda raw=first["access_token"]: _post(
                    server.url + "/oauth/revoke", {
                        "token": raw, "client_id": zap.creds["client_id"],
                        "client_secret": zap.creds["client_secret"]})))
            else:
                calls.append(("end", lambda raw=first["refresh_token"]: zap.refresh(raw)))
            for label, response in _race(calls):
                if label == "end":
                    # The person's click, Make's revocation, theft: each must land, race or not.
                    assert response.status_code == status, (round_no, response.status_code)
                else:
                    # Before the end: rotated (or its retry); after: the connection is dead.
                    assert response.status_code in (200, 400), (round_no, response.text)
                    if response.status_code == 400:
                        assert response.json()["error"] == "invalid_grant"
                response.close()
            connection, _, events = _rows(app, public_id)
            assert connection.end_reason == reason
            assert events.count("connection_ended") == 1
            assert events.count("refresh_token_reuse") == (reason == "refresh_reuse")
            after = zap.refresh(current["refresh_token"])
            assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
