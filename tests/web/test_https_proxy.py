"""Production behind one TLS-terminating proxy hop: forms pass the CSRF check over https, and
OAuth requests that look like plain http get a clear answer instead of a 500."""

import logging
import re
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest

from idp.web import headers as security
from tests.helpers import authorize_params
from tests.helpers import csrf_token
from tests.helpers import pkce_pair
from tests.helpers import query_of

HOST = "idp.flowestate.example"
ORIGIN = f"https://{HOST}"
#: What the proxy adds to every request it forwards (deploy/nginx.conf).
PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
META_RE = re.compile(r'<meta name="referrer" content="([^"]+)">')


@pytest.fixture
def production(make_app):
    """The IdP in production mode behind one proxy hop (IDP_PROXY_HOPS=1)."""
    return make_app(IDP_ISSUER=ORIGIN, IDP_DEVELOPMENT=False, IDP_ALLOW_SQLITE=True,
                    IDP_PROXY_HOPS=1, SESSION_COOKIE_SECURE=True)


@pytest.fixture
def browser_like(production):
    """A test client whose requests arrive as the proxy forwards them."""
    return production.test_client()


def referrer_policy(page) -> str:
    """The policy a browser applies to a page: a ``<meta name="referrer">`` wins over the header."""
    meta = META_RE.search(page.get_data(as_text=True))
    return meta.group(1) if meta else page.headers.get("Referrer-Policy", "")


def browser_headers(page, page_url: str, target_url: str) -> dict:
    """Referer and Origin a browser sends when a form on ``page`` posts to ``target_url``.

    Only the policies our pages have used are modelled (Referrer Policy §3 and Fetch's
    "serializing a request origin"): ``no-referrer`` sends no Referer and ``Origin: null``;
    ``same-origin`` sends the full page URL to its own origin and nothing to others.
    """
    policy = referrer_policy(page)
    page_origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_url))
    same = page_origin == "{0.scheme}://{0.netloc}".format(urlsplit(target_url))
    if policy == "no-referrer":
        return {"Origin": "null"}
    if policy == "same-origin":
        return {"Referer": page_url, "Origin": page_origin} if same else {"Origin": "null"}
    raise AssertionError(f"unmodelled Referrer-Policy {policy!r}")


def _get(client, path, **headers):
    """GET through the proxy."""
    return client.get(path, base_url=f"http://{HOST}", headers={**PROXIED, **headers})


def _post(client, path, data, **headers):
    """POST through the proxy."""
    return client.post(path, base_url=f"http://{HOST}", data=data,
                       headers={**PROXIED, **headers})


def test_break1_forms_work_over_https_behind_proxy(browser_like, demo):
    page = _get(browser_like, "/login")
    assert page.status_code == 200
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)),
            "email": demo["user"]["email"], "password": demo["user"]["password"]}
    sent = browser_headers(page, ORIGIN + "/login", ORIGIN + "/login")
    response = _post(browser_like, "/login", form, **sent)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"] == "/settings/connected-apps"


def test_consent_and_sign_out_work_over_https_behind_proxy(browser_like, demo):
    page = _get(browser_like, "/login")
    _post(browser_like, "/login", {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "email": demo["user"]["email"], "password": demo["user"]["password"],
    }, **browser_headers(page, ORIGIN + "/login", ORIGIN + "/login"))
    path = "/oauth/authorize?" + urlencode(authorize_params(demo["clients"]["zapier"],
                                                           challenge=pkce_pair()[1]))
    consent = _get(browser_like, path)
    assert consent.status_code == 200 and "Allow" in consent.get_data(as_text=True)
    allowed = _post(browser_like, path, {
        "csrf_token": csrf_token(consent.get_data(as_text=True)), "decision": "allow",
        "organization": demo["organization"]["id"],
    }, **browser_headers(consent, ORIGIN + path, ORIGIN + path))
    assert allowed.status_code == 302, allowed.get_data(as_text=True)[:500]
    assert query_of(allowed.headers["Location"])["iss"] == ORIGIN
    settings = _get(browser_like, "/settings/connected-apps")
    signed_out = _post(browser_like, "/logout", {
        "csrf_token": csrf_token(settings.get_data(as_text=True)),
    }, **browser_headers(settings, ORIGIN + "/settings/connected-apps", ORIGIN + "/logout"))
    assert signed_out.status_code == 302, signed_out.get_data(as_text=True)[:500]


@pytest.mark.parametrize("referer", [
    "https://attacker.example/login",
    f"http://{HOST}/login",  # the same host over plain http is another origin
    f"https://{HOST}:8443/login",
])
def test_a_form_from_another_origin_is_refused_over_https(browser_like, demo, referer):
    page = _get(browser_like, "/login")
    response = _post(browser_like, "/login", {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "email": demo["user"]["email"], "password": demo["user"]["password"],
    }, Referer=referer)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)


def test_a_form_without_referer_is_refused_over_https(browser_like, demo):
    page = _get(browser_like, "/login")
    response = _post(browser_like, "/login", {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "email": demo["user"]["email"], "password": demo["user"]["password"],
    })
    assert response.status_code == 400


def test_a_same_origin_referer_without_csrf_token_is_refused(browser_like, demo):
    _get(browser_like, "/login")
    response = _post(browser_like, "/login", {
        "email": demo["user"]["email"], "password": demo["user"]["password"],
    }, Referer=ORIGIN + "/login")
    assert response.status_code == 400


def test_other_origins_still_get_no_referer(browser_like):
    page = _get(browser_like, "/login")
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert referrer_policy(page) == "same-origin"
    assert browser_headers(page, ORIGIN + "/login", "https://zapier.com/") == {"Origin": "null"}


@pytest.fixture
def unproxied(make_app, monkeypatch):
    """Production mode behind a TLS proxy whose hop the IdP was not told about."""
    monkeypatch.setattr(security._Hint, "logged", False)
    return make_app(IDP_ISSUER=ORIGIN, IDP_DEVELOPMENT=False, IDP_ALLOW_SQLITE=True,
                    IDP_PROXY_HOPS=0).test_client()


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_oauth_endpoints_without_proxy_hops_answer_503_with_a_hint(unproxied, caplog, path):
    caplog.set_level(logging.ERROR, logger="idp.web.headers")
    for _ in range(2):
        response = _post(unproxied, path, {"grant_type": "refresh_token",
                                           "refresh_token": "fe_rt_" + "x" * 43,
                                           "client_id": "cli_x", "client_secret": "s3cret"})
        assert response.status_code == 503
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"] == "60"
        assert response.headers["Cache-Control"] == "no-store"
    hints = [r.getMessage() for r in caplog.records if "IDP_PROXY_HOPS" in r.getMessage()]
    assert len(hints) == 1, hints
    assert "X-Forwarded-Proto: https" in hints[0] and "IDP_PROXY_HOPS=0" in hints[0]
    assert "s3cret" not in caplog.text and "x" * 43 not in caplog.text


def test_the_same_endpoints_work_once_the_hop_is_configured(browser_like):
    response = _post(browser_like, "/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": "fe_rt_" + "x" * 43,
        "client_id": "cli_x", "client_secret": "s3cret"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"

