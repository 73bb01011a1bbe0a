"""The Zapier app's authentication (connectors/zapier/) in zapier-platform-core, on a live IdP.

Each step runs ``node connectors/zapier/test/run.js <step>``, which calls the app through core's
own ``createAppTester`` and plays the part of Zapier's backend that core leaves out (PKCE values,
refresh and retry on ``RefreshAuthError``, stale marking). The consent in Zapier's popup is
driven here with plain HTTP, and the redirect to Zapier is captured.
"""

import json
import re
import shutil
import subprocess
from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.scopes import DEFAULT_SCOPES
from tests.helpers import ROOT
from tests.helpers import csrf_token
from tests.helpers import query_of
from tests.live.test_oauth_live import consent_over_http

pytestmark = pytest.mark.live

APP_DIR = ROOT / "connectors" / "zapier"
RESULT = re.compile(r"^@@result (.*)$", re.MULTILINE)
DISCONNECT = re.compile(r'href="(/settings/connected-apps/(con_[A-Za-z0-9_-]+)/disconnect)"')


def node_binary() -> str:
    """The ``node`` that runs the app; missing node or packages fail the test, never skip it."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Zapier connector cannot be tested")
    if not (APP_DIR / "node_modules" / "zapier-platform-core").is_dir():
        pytest.fail("connectors/zapier/node_modules is missing: run .ci/setup (npm ci)")
    return node


def runner(env: dict):
    """Run one step of the app with ``env`` (the input travels on stdin, never in argv)."""
    node = node_binary()
    base_env = {"PATH": "/usr/bin:/bin", "HOME": str(APP_DIR), **env}

    def run(step: str, payload: dict | None = None, **overrides) -> dict:
        """The JSON the step printed."""
        done = subprocess.run(
            [node, "test/run.js", step], input=json.dumps(payload or {}), cwd=APP_DIR,
            env={**base_env, **overrides}, capture_output=True, text=True, timeout=90,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        found = RESULT.findall(done.stdout)
        assert found, done.stdout[-2000:]
        return json.loads(found[-1])

    return run


@pytest.fixture
def zapier(live_server, demo):
    """Steps against the live IdP with the demo Zapier client's credentials."""
    creds = demo["clients"]["zapier"]
    return runner({"FLOWESTATE_BASE_URL": live_server.url, "CLIENT_ID": creds["client_id"],
                   "CLIENT_SECRET": creds["client_secret"]})


def expire(database_url: str, access_token: str) -> None:
    """Put an access token past its expiry, as an hour's wait would."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        changed = conn.execute(
            text("UPDATE access_tokens SET expires_at = :past WHERE digest = :digest"),
            {"past": utcnow() - timedelta(seconds=5), "digest": cs.digest(access_token)},
        ).rowcount
    engine.dispose()
    assert changed == 1


def me(base: str, access_token: str) -> requests.Response:
    """What the IdP itself answers the bearer."""
    return requests.get(base + "/api/v1/me", timeout=10,
                        headers={"Authorization": "Bearer " + access_token})


def connect(zapier, base: str, demo: dict, http: requests.Session) -> dict:
    """Zapier's connect: its popup URL, the person's consent, the code redeemed, test, label."""
    redirect_uri = demo["clients"]["zapier"]["redirect_uris"][0]
    popup = zapier("authorize", {"state": "zap-state-0123456789", "redirect_uri": redirect_uri})
    query = query_of(popup["url"])
    assert popup["url"].startswith(base + "/oauth/authorize?")
    assert query["client_id"] == demo["clients"]["zapier"]["client_id"]
    assert query["response_type"] == "code" and query["redirect_uri"] == redirect_uri
    assert query["code_challenge_method"] == "S256"
    callback = consent_over_http(http, popup["url"], demo)
    assert callback.startswith(redirect_uri + "?")
    returned = query_of(callback)
    assert returned["state"] == "zap-state-0123456789" and returned["iss"] == base
    return zapier("connect", {"code": returned["code"], "redirect_uri": redirect_uri,
                              "code_verifier": popup["code_verifier"]})


def test_the_app_passes_zapiers_schema():
    assert runner({})("validate") == {"errors": []}


def test_a_connection_from_connect_to_disconnect(zapier, live_server, demo, database_url):
    base = live_server.url
    with requests.Session() as http:
        connected = connect(zapier, base, demo, http)
        auth = connected["authData"]
        assert set(auth) == {"access_token", "refresh_token"}
        assert cs.ACCESS_TOKEN_PATTERN.fullmatch(auth["access_token"])
        assert cs.REFRESH_TOKEN_PATTERN.fullmatch(auth["refresh_token"])
        assert connected["me"]["type"] == "oauth"
        assert connected["me"]["client"]["id"] == demo["clients"]["zapier"]["client_id"]
        assert connected["me"]["organization"]["id"] == demo["organization"]["id"]
        assert sorted(connected["me"]["scopes"]) == sorted(DEFAULT_SCOPES)
        assert connected["label"] == "owner@acme-realty.example (Acme Realty)"

        # A step with a live token: no refresh.
        step = zapier("run", {"authData": auth})
        assert step["events"] == [] and step["authData"] == auth

        # An hour later: the API's 401 makes Zapier refresh, keep the rotated token, retry.
        expire(database_url, auth["access_token"])
        refused = me(base, auth["access_token"])
        assert refused.status_code == 401
        assert refused.json()["error"]["reason"] == "token_expired"
        step = zapier("run", {"authData": auth})
        assert step["events"] == ["refresh", "retry"]
        assert step["result"]["organization"]["id"] == demo["organization"]["id"]
        renewed = step["authData"]
        assert renewed["refresh_token"] != auth["refresh_token"]
        assert renewed["access_token"] != auth["access_token"]

        # Eight zaps of the connection meet the next expiry at once: each refreshes the same
        # refresh token, every one succeeds, and all keep the same successor.
        expire(database_url, renewed["access_token"])
        runs = zapier("concurrent", {"authData": renewed, "n": 8})["runs"]
        assert [run.get("error") for run in runs] == [None] * 8
        assert [run["events"] for run in runs] == [["refresh", "retry"]] * 8
        successors = {run["authData"]["refresh_token"] for run in runs}
        assert len(successors) == 1 and renewed["refresh_token"] not in successors
        latest = zapier("refresh", {"authData": runs[-1]["authData"]})["authData"]
        assert me(base, latest["access_token"]).status_code == 200

        # The person disconnects Zapier in Connected Apps: the next step's 401 leads to a
        # refresh that fails with invalid_grant, and Zapier marks the connection stale.
        page = http.get(base + "/settings/connected-apps")
        links = DISCONNECT.findall(page.text)
        assert len(links) == 1, page.text[:2000]
        confirm = http.get(base + links[0][0])
        assert confirm.status_code == 200
        ended = http.post(base + links[0][0], data={"csrf_token": csrf_token(confirm.text)},
                          allow_redirects=False)
        assert ended.status_code == 302
    gone = me(base, latest["access_token"])
    assert gone.status_code == 401 and gone.json()["error"]["reason"] == "token_revoked"
    step = zapier("run", {"authData": latest})
    assert step["error"]["name"] == "ExpiredAuthError"
    assert step["error"]["outcome"] == "stale"
    assert "(invalid_grant)" in step["error"]["message"]


def test_refusals_of_the_refresh_mark_the_connection_stale(zapier):
    dead = {"access_token": "fe_at_" + "x" * 43, "refresh_token": "fe_rt_" + "y" * 43}
    stale = zapier("refresh", {"authData": dead})
    assert stale["error"]["name"] == "ExpiredAuthError"
    assert stale["error"]["outcome"] == "stale"
    assert "(invalid_grant)" in stale["error"]["message"]
    # The token endpoint's 401 (a wrong secret) must not read as "refresh and retry".
    stale = zapier("refresh", {"authData": dead}, CLIENT_SECRET="fe_cs_not-the-secret")
    assert stale["error"]["name"] == "ExpiredAuthError"
    assert stale["error"]["outcome"] == "stale"
    assert "(invalid_client)" in stale["error"]["message"]
