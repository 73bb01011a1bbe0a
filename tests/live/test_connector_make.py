"""Make's connection (connectors/make/) run against a live IdP the way Make's runtime runs it.

``MakeRuntime`` plays Make: it renders the JSON with tests/make_iml.py, adds and checks its own
``state``, stores ``response.data`` over what it had, refreshes when the ``refresh`` condition
holds on its clock (15 minutes before ``data.expires``), calls modules through the base, maps
errors to Make's error types, and calls ``invalidate`` when the connection is deleted.
"""

import json
import re
import secrets
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests

from idp.core.scopes import DEFAULT_SCOPES
from tests.helpers import ROOT
from tests.helpers import query_of
from tests.live.test_oauth_live import consent_over_http
from tests.make_iml import render

pytestmark = pytest.mark.live

APP_DIR = ROOT / "connectors" / "make"
#: Make's default error types for statuses the base does not name (ConnectionError for 503/504).
DEFAULT_TYPES = {503: "ConnectionError", 504: "ConnectionError"}
#: The zone a European customer's Make account lives in; its callback is registered too.
ZONE_CALLBACK = "https://eu1.make.com/oauth/cb/app"


def load(name: str):
    """One JSON part of the Make app."""
    return json.loads((APP_DIR / name).read_text())


class MakeError(Exception):
    """An error as Make's runtime raises it: an error type and a message."""

    def __init__(self, kind: str, message: str, status: int):
        """Keep the type, message and status apart for assertions."""
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.status = kind, message, status


class MakeRuntime:
    """One Make connection of the FlowEstate app, on a clock the test moves."""

    def __init__(self, common: dict):
        """A fresh connection: nothing stored yet."""
        self.communication = load("connection/communication.json")
        self.base = load("base.json")
        self.common = common
        self.temp, self.data = {}, {}
        self.expires = self.uid = self.metadata = None
        self.now = datetime.now(UTC)
        self.state = secrets.token_urlsafe(16)
        self.requests: list[str] = []

    def context(self, **extra) -> dict:
        """The IML variables of a connection's communication."""
        return {"common": self.common, "temp": self.temp, "data": self.data,
                "connection": self.data, "parameters": {}, "now": self.now,
                "oauth": {"scope": load("connection/default-scope.json"),
                          "localRedirectUri": ZONE_CALLBACK}, **extra}

    def authorize_url(self) -> str:
        """The popup's URL: the section's query plus Make's own state."""
        section = self.communication["authorize"]
        self.temp.update(render(section["temp"], self.context()))
        query = render(section["qs"], self.context())
        return render(section["url"], self.context()) + "?" + urlencode({**query,
                                                                          "state": self.state})

    def callback(self, query: dict) -> None:
        """The popup's return: Make checks its state, then keeps what the section asks."""
        assert query["state"] == self.state
        section = self.communication["authorize"]["response"]
        self.temp.update(render(section["temp"], self.context(query=query)))

    def call(self, section: dict, context: dict) -> requests.Response:
        """Send one rendered request (JSON, or a form with ``type: urlencoded``)."""
        url = render(section["url"], context)
        options = {"headers": render(section.get("headers", {}), context),
                   "params": render(section.get("qs", {}), context), "timeout": 30,
                   "allow_redirects": False}
        if "body" in section:
            body = render(section["body"], context)
            options["data" if section.get("type") == "urlencoded" else "json"] = body
        self.requests.append(url)
        return requests.request(section.get("method", "GET"), url, **options)

    def judge(self, response: requests.Response, spec: dict, context: dict) -> dict:
        """The body of a success, or the MakeError that the response's ``error`` maps it to."""
        body = response.json()
        if response.status_code < 400:
            return body
        errors = spec.get("error", {})
        status = response.status_code
        named = errors.get(str(status), {})
        scope = {**context, "body": body, "statusCode": status}
        kind = named.get("type") or DEFAULT_TYPES.get(status) or errors.get("type", "RuntimeError")
        message = render(named.get("message") or errors.get("message", ""), scope)
        raise MakeError(kind, message, status)

    def store(self, name: str) -> None:
        """Run ``token`` or ``refresh`` and overwrite what is stored with what came back."""
        section = self.communication[name]
        response = self.call(section, self.context())
        body = self.judge(response, section["response"], self.context())
        scope = self.context(body=body)
        self.data.update(render(section["response"]["data"], scope))
        self.expires = render(section["response"]["expires"], scope)

    def token(self) -> None:
        """Redeem the code when there is one (the section's condition)."""
        assert render(self.communication["token"]["condition"], self.context())
        self.store("token")

    def info(self) -> None:
        """Validate the connection and keep its uid and label."""
        section = self.communication["info"]
        response = self.call(section, self.context())
        body = self.judge(response, section["response"], self.context())
        rendered = render({"uid": section["response"]["uid"],
                           "metadata": section["response"]["metadata"]},
                          self.context(body=body))
        self.uid, self.metadata = rendered["uid"], rendered["metadata"]

    def refresh_if_due(self) -> bool:
        """Before using the connection, refresh when the ``refresh`` condition holds."""
        if not render(self.communication["refresh"]["condition"], self.context()):
            return False
        self.store("refresh")
        return True

    def module(self, path: str, access_token: str | None = None) -> dict:
        """A module's request through the base (optionally with a token a scenario still holds)."""
        data = dict(self.data, accessToken=access_token or self.data["accessToken"])
        context = self.context(connection=data)
        section = {"url": render(self.base["baseUrl"], context) + path,
                   "headers": self.base["headers"]}
        return self.judge(self.call(section, context), self.base["response"], context)

    def delete(self) -> requests.Response:
        """The person deletes the connection: Make calls ``invalidate``."""
        return self.call(self.communication["invalidate"], self.context())


@pytest.fixture
def make(live_server, demo):
    """A Make runtime holding the demo Make client's credentials, on the live IdP."""
    creds = demo["clients"]["make"]
    return MakeRuntime({"clientId": creds["client_id"], "clientSecret": creds["client_secret"],
                        "baseUrl": live_server.url})


def test_a_connection_from_authorize_to_delete(make, live_server, demo):
    base = live_server.url
    url = make.authorize_url()
    query = query_of(url)
    assert url.startswith(base + "/oauth/authorize?")
    assert query["redirect_uri"] == ZONE_CALLBACK and query["scope"] == " ".join(DEFAULT_SCOPES)
    # RFC 7636 §4.1-4.2: a 43-128 character verifier and its unpadded base64url S256.
    assert 43 <= len(make.temp["verifier"]) <= 128
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"])
    with requests.Session() as http:
        callback = consent_over_http(http, url, demo)
    assert callback.startswith(ZONE_CALLBACK + "?")
    make.callback(query_of(callback))
    make.token()
    first = dict(make.data)
    assert first["accessToken"].startswith("fe_at_") and first["refreshToken"].startswith("fe_rt_")
    assert first["expires"] == make.now + timedelta(seconds=3600)
    assert make.expires > make.now + timedelta(days=89)
    make.info()
    assert make.uid.startswith("usr_")
    assert make.metadata == {"type": "email", "value": "owner@acme-realty.example (Acme Realty)"}

    # Make's timer: 30 minutes in, nothing to do; 46 minutes in, less than 15 are left.
    make.now += timedelta(minutes=30)
    assert make.refresh_if_due() is False
    make.now += timedelta(minutes=16)
    sent = len(make.requests)
    assert make.refresh_if_due() is True and len(make.requests) == sent + 1
    assert make.data["refreshToken"] != first["refreshToken"]
    assert make.data["accessToken"] != first["accessToken"]
    assert make.data["expires"] == make.now + timedelta(seconds=3600)
    assert make.refresh_if_due() is False

    # A scenario that started before the refresh still holds the previous access token.
    assert make.module("/me", access_token=first["accessToken"])["type"] == "oauth"
    assert make.module("/me")["organization"]["id"] == demo["organization"]["id"]

    # The stored refresh token is the rotated one, and the next timer refresh takes it.
    make.now += timedelta(minutes=46)
    assert make.refresh_if_due() is True
    current = dict(make.data)

    revoked = make.delete()
    assert revoked.status_code == 200
    for token in (current["accessToken"], first["accessToken"]):
        with pytest.raises(MakeError) as failed:
            make.module("/me", access_token=token)
        assert failed.value.kind == "InvalidAccessTokenError" and failed.value.status == 401
        assert "(token_revoked)" in failed.value.message
    make.now += timedelta(minutes=46)
    with pytest.raises(MakeError) as failed:
        make.refresh_if_due()
    assert failed.value.kind == "InvalidAccessTokenError" and failed.value.status == 400
    assert "(invalid_grant)" in failed.value.message
    assert demo["clients"]["make"]["client_secret"] not in live_server.log()


class FakeResponse:
    """A stand-in for an answer the live IdP cannot be made to give on demand."""

    def __init__(self, status: int, body: dict):
        """Status and JSON body."""
        self.status_code, self._body = status, body

    def json(self) -> dict:
        """The body."""
        return self._body


@pytest.mark.parametrize(("status", "reason", "kind"), [
    (401, "token_expired", "InvalidAccessTokenError"),
    (403, "insufficient_scope", "RuntimeError"),
    (429, "rate_limited", "RateLimitError"),
    (503, "temporarily_unavailable", "ConnectionError"),
])
def test_the_base_maps_api_refusals_to_makes_error_types(status, reason, kind):
    runtime = MakeRuntime({"baseUrl": "https://id.flowestate.example"})
    body = {"error": {"code": "X", "reason": reason, "message": "A sentence."}}
    with pytest.raises(MakeError) as failed:
        runtime.judge(FakeResponse(status, body), runtime.base["response"], runtime.context())
    assert failed.value.kind == kind and failed.value.message.startswith(f"[{status}] ")


@pytest.mark.parametrize(("status", "kind"), [
    (400, "InvalidAccessTokenError"), (401, "InvalidConfigurationError"),
    (429, "RateLimitError"), (503, "ConnectionError"),
])
def test_refresh_refusals_map_to_makes_error_types(status, kind):
    runtime = MakeRuntime({})
    spec = runtime.communication["refresh"]["response"]
    with pytest.raises(MakeError) as failed:
        runtime.judge(FakeResponse(status, {"error": "invalid_grant"}), spec, runtime.context())
    assert failed.value.kind == kind
