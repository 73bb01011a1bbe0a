"""/oauth/authorize (SPEC §5.2): the error page, redirects back, consent and its choices."""

import logging
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import Connection
from idp.store.models import Organization
from idp.web import headers
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.oauth_helpers import ISSUER
from tests.oauth_helpers import add_org
from tests.oauth_helpers import authorize_url
from tests.oauth_helpers import client_row
from tests.oauth_helpers import consent
from tests.oauth_helpers import exchange
from tests.oauth_helpers import me
from tests.oauth_helpers import org_row
from tests.oauth_helpers import token_request

ZAPIER = "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"
MAKE = "https://www.make.com/oauth/cb/app"

#: Near misses of a registered redirect URI; each must be refused with a page (RFC 6749 §3.1.2).
NEAR_MISSES = [
    ("extra query", "zapier", ZAPIER + "?next=https://evil.com"),
    ("path params", "zapier", ZAPIER[:-1] + ";jsessionid=1/"),
    ("userinfo", "zapier", "https://evil@zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"),
    ("userinfo host swap", "zapier", "https://zapier.com@evil.com/dashboard/auth/oauth/return/"),
    ("fragment", "zapier", ZAPIER + "#frag"),
    ("missing slash", "zapier", ZAPIER[:-1]),
    ("extra slash", "zapier", ZAPIER + "/"),
    ("host case", "zapier", ZAPIER.replace("zapier.com", "Zapier.com")),
    ("path case", "zapier", ZAPIER.replace("App123456CLIAPI", "app123456cliapi")),
    ("other port", "zapier", ZAPIER.replace("zapier.com", "zapier.com:8443")),
    ("default port spelled", "zapier", ZAPIER.replace("zapier.com", "zapier.com:443")),
    ("other host", "zapier", ZAPIER.replace("zapier.com", "evil.com")),
    ("subdomain", "zapier", ZAPIER.replace("zapier.com", "evil.zapier.com")),
    ("http", "zapier", ZAPIER.replace("https:", "http:")),
    ("dot segment", "zapier", ZAPIER + "../../evil/"),
    ("encoded", "zapier", ZAPIER.replace("App", "%41pp")),
    ("empty", "zapier", ""),
    ("make trailing slash", "make", MAKE + "/"),
    ("make other zone", "make", "https://eu3.make.com/oauth/cb/app"),
    ("other client's uri", "make", ZAPIER),
]


def assert_error_page(response, status=400):
    """An HTML error page, never a redirect."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(("case", "key", "uri"), NEAR_MISSES, ids=[c[0] for c in NEAR_MISSES])
def test_redirect_uri_must_match_exactly(client, demo, case, key, uri):
    url = authorize_url(demo, key, redirect_uri=uri)
    anonymous = client.get(url)
    assert_error_page(anonymous)
    assert "return address" in anonymous.get_data(as_text=True)
    flask_sign_in(client, demo)
    signed_in = client.get(url)
    assert_error_page(signed_in)
    assert "return address" in signed_in.get_data(as_text=True)


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("client_id", ["cli_unknown", "", None, "x" * 65])
def test_unknown_or_missing_client_is_an_error_page(client, demo, signed_in, client_id):
    if signed_in:
        flask_sign_in(client, demo)
    assert_error_page(client.get(authorize_url(demo, client_id=client_id)))


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_disabled_client_is_an_error_page(app, client, demo, signed_in):
    with app.app_context():
        client_row(demo).enabled = False
        db.session.commit()
    if signed_in:
        flask_sign_in(client, demo)
    response = client.get(authorize_url(demo))
    assert_error_page(response)
    assert "disabled" in response.get_data(as_text=True)


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_client_with_several_uris_must_name_one(client, demo, signed_in):
    if signed_in:
        flask_sign_in(client, demo)
    assert_error_page(client.get(authorize_url(demo, "make", redirect_uri=None)))


def test_repeated_redirect_uri_is_an_error_page(client, demo):
    url = authorize_url(demo) + "&redirect_uri=https%3A%2F%2Fevil.com%2F"
    assert_error_page(client.get(url))


@pytest.mark.parametrize("key", ["zapier", "make"])
def test_every_registered_uri_is_accepted(client, demo, key):
    flask_sign_in(client, demo)
    for uri in demo["clients"][key]["redirect_uris"]:
        page = client.get(authorize_url(demo, key, redirect_uri=uri))
        assert page.status_code == 200 and "Allow" in page.get_data(as_text=True)


def test_single_uri_client_may_omit_redirect_uri(client, demo):
    flask_sign_in(client, demo)
    response = consent(client, authorize_url(demo, redirect_uri=None), demo["organization"]["id"])
    assert response.status_code == 302
    assert response.headers["Location"].startswith(ZAPIER + "?")


def test_anonymous_request_goes_to_sign_in_and_back(client, demo):
    url = authorize_url(demo)
    response = client.get(url)
    assert response.status_code == 302
    login = urlsplit(response.headers["Location"])
    assert login.path == "/login"
    page = client.get(response.headers["Location"])
    posted = client.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": demo["user"]["email"],
        "password": demo["user"]["password"],
        "next": query_of(response.headers["Location"])["next"],
    })
    assert posted.status_code == 302
    assert posted.headers["Location"] == url
    assert "Allow" in client.get(url).get_data(as_text=True)


def test_consent_page_names_client_scopes_and_org(client, demo):
    flask_sign_in(client, demo)
    page = client.get(authorize_url(demo, scope="leads:read contacts:write"))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Zapier" in html and demo["organization"]["name"] in html
    assert "See your leads" in html and "Create and change contacts" in html
    assert "leads:write" not in html
    assert ">Allow<" in html and ">Deny<" in html
    assert page.headers.get("Cross-Origin-Opener-Policy") != "same-origin"


def _redirect_query(response, uri=ZAPIER) -> dict:
    """The query of a redirect back to the client, checked to go to ``uri``."""
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    assert location.startswith(uri + "?"), location
    return query_of(location)


@pytest.mark.parametrize(("params", "error"), [
    ({"scope": "leads:read admin:everything"}, "invalid_scope"),
    ({"code_challenge": "a" * 43, "code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "a" * 43}, "invalid_request"),
    ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request"),
    ({"code_challenge_method": "S256"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": None}, "unsupported_response_type"),
])
def test_other_request_errors_redirect_with_state_and_iss(client, demo, params, error):
    flask_sign_in(client, demo)
    query = _redirect_query(client.get(authorize_url(demo, state="s t+/=", **params)))
    assert query["error"] == error
    assert query["state"] == "s t+/=" and query["iss"] == ISSUER
    assert "code" not in query


def test_repeated_scope_redirects_invalid_request(client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo, scope="leads:read") + "&scope=contacts:read"
    query = _redirect_query(client.get(url))
    assert query["error"] == "invalid_request" and query["iss"] == ISSUER
    assert query["state"] == "st-123"


def test_scope_outside_client_allowance_is_invalid_scope(app, client, demo):
    with app.app_context():
        client_row(demo).allowed_scopes = "contacts:read leads:read"
        client_row(demo).default_scopes = "leads:read"
        db.session.commit()
    flask_sign_in(client, demo)
    query = _redirect_query(client.get(authorize_url(demo, scope="leads:read leads:write")))
    assert (query["error"], query["state"], query["iss"]) == ("invalid_scope", "st-123", ISSUER)


def _granted_scope(client, demo, **params) -> str:
    """Allow an authorization with ``params`` and return the scope of the issued token."""
    verifier, challenge = pkce_pair()
    url = authorize_url(demo, code_challenge=challenge, code_challenge_method="S256", **params)
    code = _redirect_query(consent(client, url, demo["organization"]["id"]))["code"]
    body = exchange(client, demo, code, verifier).get_json()
    return body["scope"]


def test_comma_separated_scope_is_accepted(client, demo):
    flask_sign_in(client, demo)
    assert _granted_scope(client, demo, scope="leads:read,contacts:read") == (
        "contacts:read leads:read")
    assert _granted_scope(client, demo, scope="tasks:read, tasks:write") == "tasks:read tasks:write"


def test_no_scope_means_client_defaults(app, client, demo):
    with app.app_context():
        client_row(demo).default_scopes = "leads:read tasks:read"
        db.session.commit()
    flask_sign_in(client, demo)
    assert _granted_scope(client, demo) == "leads:read tasks:read"


def test_deny_redirects_access_denied(app, client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo, state="deny-state")
    query = _redirect_query(consent(client, url, demo["organization"]["id"], decision="deny"))
    assert (query["error"], query["state"], query["iss"]) == ("access_denied", "deny-state", ISSUER)
    assert "code" not in query
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []


def test_allow_redirects_with_code_state_and_iss(client, demo):
    flask_sign_in(client, demo)
    query = _redirect_query(consent(client, authorize_url(demo), demo["organization"]["id"]))
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "st-123" and query["iss"] == ISSUER
    assert len(query["code"]) >= 43


def test_several_orgs_offer_a_choice_and_bind_the_chosen_one(app, client, demo):
    other = add_org(app, demo, "Beta Homes")
    flask_sign_in(client, demo)
    html = client.get(authorize_url(demo)).get_data(as_text=True)
    assert '<label for="organization">' in html
    assert "Acme Realty" in html and "Beta Homes" in html
    verifier, challenge = pkce_pair()
    url = authorize_url(demo, code_challenge=challenge, code_challenge_method="S256")
    code = _redirect_query(consent(client, url, other))["code"]
    body = exchange(client, demo, code, verifier).get_json()
    assert me(client, body["access_token"]).get_json()["organization"]["id"] == other


def test_consent_for_an_org_not_offered_is_refused(app, client, demo):
    add_org(app, demo, "Beta Homes")
    outsider = None
    with app.app_context():
        outsider = accounts.create_org("Not Mine").public_id
        db.session.commit()
    flask_sign_in(client, demo)
    response = consent(client, authorize_url(demo), outsider)
    assert_error_page(response)
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []


def test_consent_without_csrf_is_refused(app, client, demo):
    flask_sign_in(client, demo)
    response = client.post(authorize_url(demo), data={
        "decision": "allow", "organization": demo["organization"]["id"]})
    assert_error_page(response)
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []


@pytest.mark.parametrize("why", ["suspended", "allowlist"])
def test_no_eligible_org_is_an_error_page(app, client, demo, why):
    with app.app_context():
        if why == "suspended":
            org_row(demo).suspended = True
        else:
            elsewhere = accounts.create_org("Elsewhere")
            db.session.flush()
            client_row(demo).org_allowlist = [elsewhere.id]
        db.session.commit()
    flask_sign_in(client, demo)
    response = client.get(authorize_url(demo))
    assert_error_page(response, 403)
    assert "None of your organizations" in response.get_data(as_text=True)


def test_allowlist_limits_the_choice(app, client, demo):
    other = add_org(app, demo, "Beta Homes")
    with app.app_context():
        beta = db.session.scalar(select(Organization).where(Organization.public_id == other))
        client_row(demo).org_allowlist = [beta.id]
        db.session.commit()
    flask_sign_in(client, demo)
    html = client.get(authorize_url(demo)).get_data(as_text=True)
    assert "Beta Homes" in html and "Acme Realty" not in html


def test_token_endpoint_uses_the_default_redirect_when_none_was_named(client, demo):
    flask_sign_in(client, demo)
    verifier, challenge = pkce_pair()
    url = authorize_url(demo, redirect_uri=None, code_challenge=challenge,
                        code_challenge_method="S256")
    code = _redirect_query(consent(client, url, demo["organization"]["id"]))["code"]
    response = token_request(client, demo, {
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier})
    assert response.status_code == 200, response.get_json()


def test_plain_http_behind_a_proxy_is_not_sent_to_the_client(client, demo, caplog, monkeypatch):
    # A non-loopback http URL is what a TLS proxy without IDP_PROXY_HOPS makes the app see:
    # the operator's fault, so a 503 page and a hint in the log, nothing back to the client.
    monkeypatch.setattr(headers._Hint, "logged", False)
    caplog.set_level(logging.ERROR, logger="idp.web.headers")
    host = "http://idp.example.com"
    page = client.get("/login", base_url=host)
    signed_in = client.post("/login", base_url=host, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": demo["user"]["email"],
        "password": demo["user"]["password"]})
    assert signed_in.status_code == 302
    response = client.get(authorize_url(demo), base_url=host)
    assert_error_page(response, 503)
    assert "https" in response.get_data(as_text=True)
    hints = [r.getMessage() for r in caplog.records if "IDP_PROXY_HOPS" in r.getMessage()]
    assert len(hints) == 1 and "/oauth/authorize" in hints[0], hints
