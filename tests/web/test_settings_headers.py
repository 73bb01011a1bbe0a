"""idp.web.headers: CSP, framing, sniffing, referrer headers; form-action for connector returns."""

from urllib.parse import urlencode

import pytest

from idp.web.headers import content_security_policy
from idp.web.headers import origin_of
from tests.helpers import pkce_pair
from tests.settings_support import MAKE_RETURN
from tests.settings_support import enter
from tests.settings_support import world


@pytest.fixture
def acme(app):
    """Acme Realty, its owner and the two connectors."""
    return world(app)


def authorize_path(acme, name="Zapier", **extra) -> str:
    """An authorization request for one of the connectors."""
    creds = acme["clients"][name]
    params = {"response_type": "code", "client_id": creds["client_id"],
              "redirect_uri": creds["redirect_uri"], "state": "s",
              "code_challenge": pkce_pair()[1], "code_challenge_method": "S256", **extra}
    return "/oauth/authorize?" + urlencode(params)


def directives(response) -> dict:
    """The CSP of a response as {directive: [sources]}."""
    policy = response.headers["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in policy.split("; ")}


def test_every_page_gets_the_strict_headers(client):
    response = client.get("/login")
    csp = directives(response)
    assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    # Zapier and Make open sign-in and consent in a popup and watch it: no opener isolation.
    assert "Cross-Origin-Opener-Policy" not in response.headers
    assert "Strict-Transport-Security" not in response.headers  # development runs on http


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/me", "/static/app.css", "/nowhere"])
def test_other_responses_carry_them_too(client, path):
    with client.get(path) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert directives(response)["form-action"] == ["'self'"]


def test_consent_page_may_send_the_browser_to_the_clients_return_origin(app, client, acme):
    enter(client, app, acme["owner"])
    response = client.get(authorize_path(acme))
    assert response.status_code == 200 and ">Allow</button>" in response.get_data(as_text=True)
    assert directives(response)["form-action"] == ["'self'", "https://zapier.com"]
    assert "Cross-Origin-Opener-Policy" not in response.headers


def test_each_registered_origin_of_the_client_is_allowed(app, client, acme):
    from sqlalchemy import select

    from idp.infra.extensions import db
    from idp.store.models import Client

    with app.app_context():
        make = db.session.scalar(select(Client).where(Client.name == "Make"))
        make.redirect_uris = [MAKE_RETURN, "https://eu1.make.com/oauth/cb/app",
                              "https://www.integromat.com/oauth/cb/app"]
        db.session.commit()
    enter(client, app, acme["owner"])
    response = client.get(authorize_path(acme, "Make"))
    assert response.status_code == 200
    assert directives(response)["form-action"] == [
        "'self'", "https://eu1.make.com", "https://www.integromat.com", "https://www.make.com"]


def test_sign_in_on_the_way_to_consent_allows_the_same_origin(client, acme):
    target = authorize_path(acme)
    response = client.get("/login?" + urlencode({"next": target}))
    assert directives(response)["form-action"] == ["'self'", "https://zapier.com"]


@pytest.mark.parametrize("next_", [
    "/settings/api-keys", "https://evil.example/oauth/authorize?client_id=x",
    "/oauth/authorize?client_id=cli_unknown", "/oauth/authorize",
])
def test_other_sign_ins_stay_on_self(client, acme, next_):
    response = client.get("/login?" + urlencode({"next": next_}))
    assert directives(response)["form-action"] == ["'self'"]


def test_unknown_or_disabled_client_pages_stay_on_self(app, client, acme):
    enter(client, app, acme["owner"])
    response = client.get("/oauth/authorize?response_type=code&client_id=cli_nope")
    assert response.status_code == 400
    assert directives(response)["form-action"] == ["'self'"]


def test_production_adds_hsts(make_app):
    app = make_app(IDP_ISSUER="https://idp.flowestate.example", IDP_DEVELOPMENT=False,
                   IDP_ALLOW_SQLITE=True)
    response = app.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize(("uri", "origin"), [
    ("https://zapier.com/dashboard/auth/oauth/return/App1CLIAPI/", "https://zapier.com"),
    ("https://eu1.make.com/oauth/cb/app", "https://eu1.make.com"),
    ("http://127.0.0.1:8080/cb?x=1", "http://127.0.0.1:8080"),
    ("https://Zapier.com/", "https://zapier.com"),
    ("javascript:alert(1)", None),
    ("https://exa mple.com/", None),
    ("https://example.com;script-src *", None),
    ("https://example.com:99999/", None),
    ("custom-scheme://callback", None),
    ("", None),
])
def test_origin_of(uri, origin):
    assert origin_of(uri) == origin


def test_policy_string():
    assert content_security_policy(["https://zapier.com"]).endswith(
        "; form-action 'self' https://zapier.com")
