"""The connect popup without dead ends: sign-in names the app, "Not you?", error next steps."""

from urllib.parse import quote

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import Connection
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.oauth_helpers import authorize_url
from tests.oauth_helpers import client_row
from tests.oauth_helpers import org_row

#: What every popup error page offers when the only way on is the app itself.
RESTART = "Close this window and start the connection again from"


def test_sign_in_names_the_app_asking(client, demo):
    url = authorize_url(demo)
    start = client.get(url)
    assert start.status_code == 302
    page = client.get(start.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<h1 id=\"sign-in-title\">Sign in to connect Zapier to FlowEstate</h1>" in html
    assert "Zapier is asking to reach your FlowEstate data." in html


def test_a_failed_sign_in_still_names_the_app(client, demo):
    url = authorize_url(demo)
    page = client.get("/login?next=" + quote(url, safe=""))
    response = client.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "next": url,
        "email": demo["user"]["email"], "password": "wrong password"})
    assert response.status_code == 401
    assert "Sign in to connect Zapier to FlowEstate" in response.get_data(as_text=True)


@pytest.mark.parametrize("next_path", [
    None, "/settings/api-keys", "/oauth/authorize?client_id=cli_nope",
    "https://evil.example/oauth/authorize?client_id=x", "/oauth/authorize",
])
def test_plain_sign_in_names_no_app(client, demo, next_path):
    url = "/login" + (f"?next={quote(next_path, safe='')}" if next_path else "")
    html = client.get(url).get_data(as_text=True)
    assert '<h1 id="sign-in-title">Sign in to FlowEstate</h1>' in html
    assert "is asking to reach" not in html


def test_a_disabled_app_is_not_named(app, client, demo):
    with app.app_context():
        client_row(demo).enabled = False
        db.session.commit()
    url = "/login?next=" + quote(authorize_url(demo), safe="")
    assert "Sign in to connect" not in client.get(url).get_data(as_text=True)


def test_consent_offers_not_you_which_signs_out_and_returns_to_the_request(app, client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo, state="keep-me")
    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f"Signed in as <strong>{demo['user']['email']}</strong>." in html
    assert ">Sign in as someone else</button>" in html and 'action="/logout"' in html
    response = client.post("/logout", data={"csrf_token": csrf_token(html), "next": url})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=" + quote(url, safe="/?")
    # Signed out: the request now starts at sign-in again, and that page names the app.
    again = client.get(url)
    assert again.status_code == 302 and again.headers["Location"].startswith("/login?next=")
    assert "Sign in to connect Zapier" in client.get(response.headers["Location"]).text
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []


def test_not_you_without_csrf_signs_nobody_out(client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo)
    response = client.post("/logout", data={"next": url})
    assert response.status_code == 400
    assert client.get(url).status_code == 200  # still signed in: consent shows


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x"])
def test_logout_next_is_a_local_path_only(client, demo, target):
    flask_sign_in(client, demo)
    html = client.get(authorize_url(demo)).get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token(html), "next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/settings/connected-apps"


def test_consent_groups_scopes_by_resource(client, demo):
    flask_sign_in(client, demo)
    scopes = " ".join(f"{r}:{m}" for r in ("leads", "contacts", "properties", "pipelines",
                                            "tasks", "webhooks") for m in ("read", "write"))
    html = client.get(authorize_url(demo, scope=scopes)).get_data(as_text=True)
    assert html.count('<span class="tick" aria-hidden="true">✓</span>') == 6
    assert "See your leads; create and change leads</span>" in html
    assert "<code>leads:read</code> <code>leads:write</code>" in html


@pytest.mark.parametrize(("params", "status", "message", "step"), [
    ({"client_id": "cli_unknown"}, 400, "not registered with FlowEstate",
     RESTART + " the app. If it happens again, tell that app’s support"),
    ({"redirect_uri": "https://zapier.com/elsewhere"}, 400, "not registered for Zapier",
     RESTART + " Zapier. If it happens again, tell Zapier’s support"),
])
def test_request_errors_say_what_to_do_next(client, demo, params, status, message, step):
    response = client.get(authorize_url(demo, **params))
    html = response.get_data(as_text=True)
    assert response.status_code == status and "Location" not in response.headers
    assert message in html and step in html
    assert 'class="button primary" href="/settings/connected-apps"' in html


def test_disabled_app_page_says_to_try_later(app, client, demo):
    with app.app_context():
        client_row(demo).enabled = False
        db.session.commit()
    response = client.get(authorize_url(demo))
    assert response.status_code == 400
    assert "Close this window and try again later" in response.get_data(as_text=True)


def test_no_organization_page_offers_the_owner_and_another_account(app, client, demo):
    with app.app_context():
        org_row(demo).suspended = True
        db.session.commit()
    flask_sign_in(client, demo)
    url = authorize_url(demo)
    response = client.get(url)
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Ask your organization’s owner to invite you" in html
    assert ">Sign in as someone else</button>" in html
    logout = client.post("/logout", data={"csrf_token": csrf_token(html), "next": url})
    assert logout.headers["Location"] == "/login?next=" + quote(url, safe="/?")


def test_expired_consent_form_leads_back_to_the_same_request(app, client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo)
    response = client.post(url, data={"decision": "allow",
                                      "organization": demo["organization"]["id"]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "This form has expired" in html
    assert ">Show the request again</a>" in html
    assert f'href="{url.replace("&", "&amp;")}"' in html


def test_expired_sign_in_form_leads_back_to_sign_in(client, demo):
    url = authorize_url(demo)
    response = client.post("/login", data={"next": url, "email": demo["user"]["email"],
                                           "password": demo["user"]["password"]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "This form has expired" in html
    assert ">Go back to sign in</a>" in html
    assert 'href="/login?next=%2Foauth%2Fauthorize%3F' in html


def test_too_many_sign_in_attempts_say_when_to_try_again(app, client, demo, monkeypatch):
    from idp.signin import login_limits
    monkeypatch.setattr(login_limits, "refusal", lambda attempt: "email")
    monkeypatch.setattr(login_limits, "retry_after", lambda refused: "60")
    url = authorize_url(demo)
    page = client.get("/login?next=" + quote(url, safe=""))
    response = client.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "next": url,
        "email": demo["user"]["email"], "password": "whatever"})
    html = response.get_data(as_text=True)
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert "Wait a minute and try again" in html and "Forgot your password?" in html
    assert "Sign in to connect Zapier to FlowEstate" in html
    with app.app_context():
        assert accounts.find_user(demo["user"]["email"]) is not None
