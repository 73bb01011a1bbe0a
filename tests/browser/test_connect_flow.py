"""Flow 2: connect Zapier through the real sign-in and consent pages, then disconnect it."""

from urllib.parse import urlencode

import pytest
import requests

from tests.browser.support import sign_in
from tests.helpers import authorize_params
from tests.helpers import pkce_pair
from tests.helpers import query_of

pytestmark = [pytest.mark.browser, pytest.mark.live]

#: What the intercepted connector return page answers (zapier.com is out of reach here).
STUB = "<!doctype html><title>Zapier</title><p>Connected</p>"


def connect_in_browser(context, server, demo, state="browser-state"):
    """Authorize the demo Zapier client with Chromium; return (code, verifier, final URL)."""
    zapier = demo["clients"]["zapier"]
    verifier, challenge = pkce_pair()
    params = authorize_params(zapier, scope="leads:read contacts:read", state=state,
                              challenge=challenge)
    page = context.new_page()
    returned = []

    def fulfil(route):
        returned.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body=STUB)

    page.route("https://zapier.com/**", fulfil)
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
            path="/oauth/authorize?" + urlencode(params))
    assert page.get_by_role("heading", level=1).inner_text() == "Connect Zapier to FlowEstate"
    assert page.get_by_text("See your leads").is_visible()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url("https://zapier.com/**")
    assert page.get_by_text("Connected").is_visible()
    page.close()
    return query_of(returned[0]), verifier


def test_connect_use_and_disconnect(context, served_idp, demo):
    server = served_idp
    zapier = demo["clients"]["zapier"]
    query, verifier = connect_in_browser(context, server, demo)
    assert query["state"] == "browser-state" and query["iss"] == server.url

    tokens = requests.post(server.url + "/oauth/token", data={
        "grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
        "redirect_uri": zapier["redirect_uris"][0], "client_id": zapier["client_id"],
        "client_secret": zapier["client_secret"],
    }, timeout=10)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    bearer = {"Authorization": "Bearer " + body["access_token"]}
    me = requests.get(server.url + "/api/v1/me", headers=bearer, timeout=10)
    assert me.status_code == 200 and me.json()["client"]["name"] == "Zapier", me.text

    page = context.new_page()
    page.goto(server.url + "/settings/connected-apps")
    card = page.locator("li.connection", has_text="Zapier")
    assert card.count() == 1
    assert "Acme Realty" in card.inner_text()
    assert "See your leads" in card.inner_text() and "See your contacts" in card.inner_text()
    last_used = card.locator("dt:text-is('Last used') + dd").inner_text()
    assert "UTC from 127.0.0.1" in last_used, last_used

    card.get_by_role("link", name="Disconnect").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Disconnect Zapier?"
    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(server.url + "/settings/connected-apps")
    assert page.get_by_role("status").inner_text().strip() == (
        "Zapier is disconnected from Acme Realty.")
    assert page.locator("li.connection").count() == 0
    page.close()

    me = requests.get(server.url + "/api/v1/me", headers=bearer, timeout=10)
    assert me.status_code == 401 and me.json()["error"]["reason"] == "token_revoked"
    refresh = requests.post(server.url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "client_id": zapier["client_id"], "client_secret": zapier["client_secret"],
    }, timeout=10)
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    for secret in (body["access_token"], body["refresh_token"], query["code"]):
        assert secret not in server.log()


def test_deny_sends_access_denied_and_no_referer(context, served_idp, demo):
    server = served_idp
    params = authorize_params(demo["clients"]["zapier"], scope="leads:read", state="deny-state",
                              challenge=pkce_pair()[1])
    page = context.new_page()
    returned = []

    def fulfil(route):
        returned.append((route.request.url, route.request.headers))
        route.fulfill(status=200, content_type="text/html", body=STUB)

    page.route("https://zapier.com/**", fulfil)
    with page.expect_response(server.url + "/login") as signed_in:
        sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
                path="/oauth/authorize?" + urlencode(params))
    # A form post of our own carries our page as Referer (the https CSRF check needs it).
    assert signed_in.value.request.headers["referer"].startswith(server.url + "/login?next=")
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url("https://zapier.com/**")
    url, headers = returned[0]
    query = query_of(url)
    assert (query["error"], query["state"], query["iss"]) == (
        "access_denied", "deny-state", server.url)
    # Another origin learns nothing of our URLs (Referrer-Policy: same-origin).
    assert "referer" not in headers
    page.goto(server.url + "/settings/connected-apps")
    assert page.locator("li.connection").count() == 0
    page.close()
