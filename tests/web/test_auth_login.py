"""Sign in and sign out (SPEC §6): no enumeration, CSRF, safe ``next``, limits, the session."""

import re

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import AuditEvent
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in

ERROR_RE = re.compile(r'role="alert">([^<]*)<')
DEFAULT_NEXT = "/settings/connected-apps"


def _login(client, email, password, next_=None, token=True, **kwargs):
    """POST the sign-in form (with a fresh CSRF token unless ``token`` is False)."""
    data = {"email": email, "password": password}
    if token:
        data["csrf_token"] = csrf_token(client.get("/login").get_data(as_text=True))
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data, **kwargs)


def _error_of(response) -> str:
    """The alert shown on a failed sign-in."""
    match = ERROR_RE.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:1000]
    return match.group(1)


def test_sign_in_page_has_labelled_fields(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert ">Sign in<" in html


def test_wrong_password_and_unknown_email_look_the_same(app, client, demo):
    wrong = _login(client, demo["user"]["email"], demo["user"]["password"] + "x")
    unknown = _login(client, "nobody@acme-realty.example", demo["user"]["password"])
    assert wrong.status_code == unknown.status_code == 401
    assert _error_of(wrong) == _error_of(unknown)
    assert "That email and password do not match" in _error_of(wrong)
    # Neither failure signs anyone in.
    assert client.get(DEFAULT_NEXT).status_code == 302
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "sign_in_failed")).all()
        assert sorted(events, key=lambda e: e.actor is None)[0].actor == demo["user"]["email"]
        assert [e.actor for e in events].count(None) == 1, "an unknown email is not recorded"


def test_a_password_typed_into_the_email_field_is_never_stored(app, client, demo):
    typed = "Tr0ub4dor&3-not-an-email"
    assert _login(client, typed, "anything").status_code == 401
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent)).all()
        stored = [(e.event, e.actor, e.subject, e.ip, str(e.detail)) for e in rows]
    assert stored and typed not in repr(stored) and typed.lower() not in repr(stored)


def test_email_is_matched_case_insensitively(client, demo):
    response = _login(client, "  " + demo["user"]["email"].upper(), demo["user"]["password"])
    assert response.status_code == 302


@pytest.mark.parametrize("data", [
    {"email": "", "password": "x"}, {"email": "a@b.example", "password": ""}, {},
])
def test_empty_fields_do_not_sign_in(client, demo, data):
    data = {**data, "csrf_token": csrf_token(client.get("/login").get_data(as_text=True))}
    response = client.post("/login", data=data)
    assert response.status_code == 200
    assert client.get(DEFAULT_NEXT).status_code == 302


def test_sign_in_without_csrf_is_400(client, demo):
    response = _login(client, demo["user"]["email"], demo["user"]["password"], token=False)
    assert response.status_code == 400
    assert client.get(DEFAULT_NEXT).status_code == 302


@pytest.mark.parametrize("target", [
    "https://evil.com", "https://evil.com/settings", "//evil.com", "//evil.com/x", "/\\evil.com",
    "\\\\evil.com", "/\\/evil.com", "http:evil.com", "javascript:alert(1)", "/\t/evil.com",
    "/\n/evil.com", " //evil.com", "evil.com", "///evil.com",
])
def test_next_to_another_host_is_ignored(client, demo, target):
    response = _login(client, demo["user"]["email"], demo["user"]["password"], next_=target)
    assert response.status_code == 302
    assert response.headers["Location"] == DEFAULT_NEXT


@pytest.mark.parametrize("target", [
    "/settings/connected-apps?tab=all", "/oauth/authorize?client_id=x&state=y",
])
def test_next_on_this_site_is_followed(client, demo, target):
    response = _login(client, demo["user"]["email"], demo["user"]["password"], next_=target)
    assert response.status_code == 302 and response.headers["Location"] == target


def test_next_from_the_query_is_carried_through_the_form(client, demo):
    html = client.get("/login?next=/settings/connected-apps%3Fa%3D1").get_data(as_text=True)
    assert 'name="next" type="hidden" value="/settings/connected-apps?a=1"' in html


def test_viewing_the_sign_in_page_is_not_limited(make_app):
    client = make_app(IDP_LOGIN_ADDRESS_RATE_LIMIT="1 per minute").test_client()
    for _ in range(6):
        assert client.get("/login").status_code == 200


def _session_cookie(response) -> str:
    """The Set-Cookie header of the session cookie."""
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("fe_idp_session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_flags(client, demo):
    response = _login(client, demo["user"]["email"], demo["user"]["password"])
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_session_is_renewed_at_sign_in(client, demo):
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "before sign-in"
        session["user"] = "usr_forged"
    # A signed visitor cookie never signs anyone in, whatever it holds.
    assert client.get(DEFAULT_NEXT).status_code == 302
    before = client.get_cookie("fe_idp_session").value
    assert _login(client, demo["user"]["email"], demo["user"]["password"]).status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session and "user" not in session
        assert session.sid is not None  # a fresh server-side record, not the visitor's cookie
    assert client.get_cookie("fe_idp_session").value != before


def test_sign_out_is_post_only_with_csrf(client, demo):
    flask_sign_in(client, demo)
    assert client.get("/logout").status_code == 405
    assert client.get(DEFAULT_NEXT).status_code == 200
    no_csrf = client.post("/logout")
    assert no_csrf.status_code == 400
    assert client.get(DEFAULT_NEXT).status_code == 200
    token = csrf_token(client.get("/login").get_data(as_text=True))
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get(DEFAULT_NEXT).status_code == 302
