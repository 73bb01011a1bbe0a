"""The connect flow against a real gunicorn process, driven by real OAuth client libraries."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests_oauthlib import OAuth2Session as OAuthlibSession
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import AuditEvent
from idp.store.models import Connection
from tests.helpers import LiveServer
from tests.helpers import csrf_token
from tests.helpers import http_connect
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.oauth_helpers import assert_nothing_raw_stored

pytestmark = pytest.mark.live

NEXT_RE = re.compile(r'name="next" type="hidden" value="([^"]*)"')


def consent_over_http(http: requests.Session, url: str, demo: dict) -> str:
    """Open an authorization URL, sign in and allow with plain form posts; return Location.

    Each post carries the page it came from as Referer, as a browser does under our
    same-origin policy: over https the CSRF check demands it.
    """
    page = http.get(url)
    assert page.status_code == 200, page.text[:1000]
    if 'name="password"' in page.text:
        page = http.post(url.split("/oauth/")[0] + "/login", data={
            "csrf_token": csrf_token(page.text), "email": demo["user"]["email"],
            "password": demo["user"]["password"],
            "next": NEXT_RE.search(page.text).group(1).replace("&amp;", "&"),
        }, headers={"Referer": page.url})
    assert page.status_code == 200 and "Allow" in page.text, page.text[:1000]
    response = http.post(url, data={
        "csrf_token": csrf_token(page.text), "decision": "allow",
        "organization": demo["organization"]["id"],
    }, headers={"Referer": page.url}, allow_redirects=False)
    assert response.status_code == 302, response.text[:1000]
    return response.headers["Location"]


def _me(base_url: str, access_token: str) -> requests.Response:
    """GET /api/v1/me with a bearer (closing the connection afterwards)."""
    with requests.get(base_url + "/api/v1/me",
                      headers={"Authorization": "Bearer " + access_token}, timeout=10) as r:
        r.content  # noqa: B018  (read the body before the connection closes)
        return r


def _refresh_raw(base_url: str, creds: dict, refresh_token: str) -> requests.Response:
    """A body-authenticated refresh, as Zapier sends it."""
    with requests.post(base_url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": creds["client_id"], "client_secret": creds["client_secret"],
    }, timeout=30) as r:
        r.content  # noqa: B018
        return r


def test_full_flow_with_authlib_client(served_idp, demo, database_url):
    base = served_idp.url
    zapier = demo["clients"]["zapier"]
    seen = []
    with requests.Session() as http, OAuth2Session(
        zapier["client_id"], zapier["client_secret"], scope="leads:read contacts:read",
        redirect_uri=zapier["redirect_uris"][0], code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",
    ) as oauth:
        verifier = generate_token(64)
        url, state = oauth.create_authorization_url(base + "/oauth/authorize",
                                                    code_verifier=verifier)
        callback = consent_over_http(http, url, demo)
        query = query_of(callback)
        assert callback.startswith(zapier["redirect_uris"][0] + "?")
        assert query["state"] == state and query["iss"] == base
        token = oauth.fetch_token(base + "/oauth/token", authorization_response=callback,
                                  code_verifier=verifier)
        assert token["token_type"] == "Bearer" and token["scope"] == "contacts:read leads:read"
        seen += [query["code"], verifier, token["access_token"], token["refresh_token"]]
        me = oauth.get(base + "/api/v1/me")
        assert me.status_code == 200
        assert me.json()["organization"]["id"] == demo["organization"]["id"]
        assert me.json()["client"]["id"] == zapier["client_id"]

        refreshed = oauth.refresh_token(base + "/oauth/token")
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert refreshed["expires_in"] == 3600 and refreshed["refresh_expires_in"] > 0
        seen += [refreshed["access_token"], refreshed["refresh_token"]]
        assert oauth.get(base + "/api/v1/me").status_code == 200
        # The access token from before the refresh keeps working to its own expiry.
        assert _me(base, token["access_token"]).status_code == 200

        revoked = oauth.revoke_token(base + "/oauth/revoke", token=refreshed["refresh_token"],
                                     token_type_hint="refresh_token")
        assert revoked.status_code == 200
        with pytest.raises(OAuthError) as failed:
            oauth.refresh_token(base + "/oauth/token", refresh_token=refreshed["refresh_token"])
        assert failed.value.error == "invalid_grant"
        dead = _me(base, refreshed["access_token"])
        assert dead.status_code == 401 and dead.json()["error"]["reason"] == "token_revoked"
    seen += [demo["user"]["password"], zapier["client_secret"]]
    assert_nothing_raw_stored(database_url, seen)
    log = served_idp.log()
    for raw in seen:
        assert raw not in log


def test_full_flow_with_requests_oauthlib(served_idp, demo, monkeypatch):
    base = served_idp.url
    if base.startswith("http://"):
        # oauthlib refuses plain http unless told otherwise; the dev server is on loopback.
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    make = demo["clients"]["make"]
    with requests.Session() as http, OAuthlibSession(
        make["client_id"], redirect_uri=make["redirect_uris"][0],
        scope=["contacts:read", "leads:read"], pkce="S256",
    ) as oauth:
        url, state = oauth.authorization_url(base + "/oauth/authorize")
        callback = consent_over_http(http, url, demo)
        assert query_of(callback)["iss"] == base
        token = oauth.fetch_token(base + "/oauth/token", client_secret=make["client_secret"],
                                  authorization_response=callback)
        assert token["access_token"].startswith("fe_at_")
        assert oauth.get(base + "/api/v1/me").status_code == 200
        # Make sends the client credentials in the body of the refresh.
        refreshed = oauth.refresh_token(base + "/oauth/token", client_id=make["client_id"],
                                        client_secret=make["client_secret"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert "expires_in" in refreshed
        assert oauth.get(base + "/api/v1/me").status_code == 200
        with requests.post(base + "/oauth/revoke", data={
            "token": refreshed["access_token"], "client_id": make["client_id"],
            "client_secret": make["client_secret"],
        }, timeout=10) as revoked:
            assert revoked.status_code == 200
        again = _refresh_raw(base, make, refreshed["refresh_token"])
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def _first_pair(base: str, demo: dict, creds_key="zapier") -> dict:
    """Connect over HTTP and redeem the code; return the first token response."""
    verifier, challenge = pkce_pair()
    with requests.Session() as http:
        query = http_connect(base, demo, creds_key, challenge=challenge, session=http)
    creds = demo["clients"][creds_key]
    with requests.post(base + "/oauth/token", data={
        "grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
        "redirect_uri": creds["redirect_uris"][0], "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
    }, timeout=10) as response:
        assert response.status_code == 200, response.text
        return response.json()


def _burst(base: str, creds: dict, refresh_token: str, n: int) -> list[requests.Response]:
    """``n`` refreshes of one token released at the same instant."""
    barrier = threading.Barrier(n)

    def one(_):
        """Wait for the others, then refresh."""
        barrier.wait()
        return _refresh_raw(base, creds, refresh_token)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_refreshes_share_one_successor(live_server, demo):
    base = live_server.url
    zapier = demo["clients"]["zapier"]
    first = _first_pair(base, demo)
    responses = _burst(base, zapier, first["refresh_token"], 20)
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    assert all("expires_in" in r.json() for r in responses)
    successor = successors.pop()
    # A retry within the window (a lost response) answers the same successor.
    retry = _refresh_raw(base, zapier, first["refresh_token"])
    assert retry.status_code == 200 and retry.json()["refresh_token"] == successor
    # Whichever response the client kept goes on working.
    nxt = _refresh_raw(base, zapier, successor)
    assert nxt.status_code == 200, nxt.text
    assert _me(base, nxt.json()["access_token"]).status_code == 200


def test_reuse_after_the_grace_window_ends_the_connection(database_url, tmp_path, demo, app):
    server = LiveServer(database_url, tmp_path, extra_env={"IDP_REFRESH_GRACE_SECONDS": "2"})
    server.start()
    try:
        base = server.url
        zapier = demo["clients"]["zapier"]
        first = _first_pair(base, demo)
        responses = _burst(base, zapier, first["refresh_token"], 5)
        assert [r.status_code for r in responses] == [200] * 5
        successor = responses[0].json()
        assert {r.json()["refresh_token"] for r in responses} == {successor["refresh_token"]}
        time.sleep(2.5)
        # Several late reuses at once (a stolen token racing the real one): each is refused
        # for good, none is answered as a passing fault.
        reused = _burst(base, zapier, first["refresh_token"], 6)
        assert [r.status_code for r in reused] == [400] * 6, [r.text for r in reused]
        assert {r.json()["error"] for r in reused} == {"invalid_grant"}
        dead = _refresh_raw(base, zapier, successor["refresh_token"])
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
        gone = _me(base, successor["access_token"])
        assert gone.status_code == 401 and gone.json()["error"]["reason"] == "token_revoked"
    finally:
        server.stop()
    with app.app_context():
        connection = db.session.scalar(select(Connection))
        assert connection.ended_at is not None and connection.end_reason == "refresh_reuse"
        events = list(db.session.scalars(
            select(AuditEvent.event).where(AuditEvent.subject == connection.public_id)))
        assert events.count("refresh_token_reuse") == 1


def test_concurrent_code_redemption_succeeds_once_and_ends_the_connection(live_server, demo):
    base = live_server.url
    zapier = demo["clients"]["zapier"]
    verifier, challenge = pkce_pair()
    with requests.Session() as http:
        code = http_connect(base, demo, challenge=challenge, session=http)["code"]
    barrier = threading.Barrier(6)

    def redeem(_):
        """Wait for the others, then redeem the code."""
        barrier.wait()
        with requests.post(base + "/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": zapier["redirect_uris"][0], "client_id": zapier["client_id"],
            "client_secret": zapier["client_secret"],
        }, timeout=30) as response:
            return response.status_code, response.json()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(redeem, range(6)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 5, results
    assert {body["error"] for status, body in results if status == 400} == {"invalid_grant"}
    winner = next(body for status, body in results if status == 200)
    # RFC 6749 §10.5: a code presented twice revokes what it issued.
    dead = _me(base, winner["access_token"])
    assert dead.status_code == 401 and dead.json()["error"]["reason"] == "token_revoked"
