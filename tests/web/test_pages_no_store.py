"""Sign-in and consent pages, and their error answers, are never cached (Cache-Control: no-store).

They carry a CSRF token, the person's email and organizations; a shared cache or the back
button of a shared computer must not replay them.
"""

import pytest

from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.oauth_helpers import authorize_url


def _assert_no_store(response, status: int):
    """The expected status, and a page no cache may keep."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.headers["Cache-Control"] == "no-store"


def test_sign_in_page(client):
    _assert_no_store(client.get("/login"), 200)


@pytest.mark.parametrize("case, status", [
    ("wrong password", 401), ("empty fields", 200), ("no csrf token", 400),
])
def test_sign_in_error_re_renders(client, demo, case, status):
    data = {"email": demo["user"]["email"], "password": "wrong-password"}
    if case == "empty fields":
        data = {"email": "", "password": ""}
    if case != "no csrf token":
        data["csrf_token"] = csrf_token(client.get("/login").get_data(as_text=True))
    _assert_no_store(client.post("/login", data=data), status)


def test_consent_page(client, demo):
    flask_sign_in(client, demo)
    page = client.get(authorize_url(demo))
    _assert_no_store(page, 200)
    assert "Allow" in page.get_data(as_text=True)


@pytest.mark.parametrize("case, status", [
    ("unknown client", 400), ("unregistered redirect_uri", 400), ("no csrf token", 400),
])
def test_consent_error_pages(client, demo, case, status):
    flask_sign_in(client, demo)
    if case == "unknown client":
        response = client.get(authorize_url(demo, client_id="cli_nope"))
    elif case == "unregistered redirect_uri":
        response = client.get(authorize_url(demo, redirect_uri="https://evil.example/cb"))
    else:
        response = client.post(authorize_url(demo), data={
            "decision": "allow", "organization": demo["organization"]["id"]})
    _assert_no_store(response, status)


def test_other_pages_keep_their_own_caching(client):
    assert "Cache-Control" not in client.get("/healthz").headers
