"""Password change, reset by email (a real SMTP server catches the mail), the policy."""

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import PasswordReset
from tests.helpers import csrf_token
from tests.mail_support import SmtpServer
from tests.mail_support import reset_token
from tests.settings_support import PASSWORD
from tests.settings_support import database_text
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world

NEW = "a brand new passphrase 77"
CHANGE = "/settings/password"
FORGOT = "/password/forgot"
RESET = "/password/reset"
SETTINGS = "/settings/connected-apps"


@pytest.fixture
def smtp():
    """A real SMTP server on a free loopback port."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailing(make_app, smtp):
    """The IdP sending through the test's SMTP server, with Acme's owner."""
    app = make_app(IDP_SMTP_URL=smtp.url, IDP_MAIL_FROM="FlowEstate <idp@flowestate.test>")
    return app, world(app), smtp.inbox


def password_ok(app, email: str, password: str) -> bool:
    """Whether ``password`` is now the account's password."""
    with app.app_context():
        return accounts.check_password(accounts.find_user(email), password)


def signed_in(client) -> bool:
    """Whether the client's session opens a settings page."""
    return client.get(SETTINGS).status_code == 200


def change(client, **fields):
    """POST the change form with the page's CSRF token."""
    data = {"current": PASSWORD, "new": NEW, "confirm": NEW, **fields}
    return post_form(client, CHANGE, CHANGE, data)


def test_change_needs_current_password_and_ends_other_sessions(app):
    acme = world(app)
    mine, other = app.test_client(), app.test_client()
    enter(mine, app, acme["owner"])
    enter(other, app, acme["owner"])
    response = change(mine)
    assert response.status_code == 303
    assert response.headers["Location"] == CHANGE
    assert password_ok(app, acme["owner"], NEW)
    assert signed_in(mine) and not signed_in(other)
    [event] = events(app, "password_changed")
    assert event.actor == acme["owner"] and event.detail == {"sessions_ended": 1}
    assert NEW not in str(event.detail)


@pytest.mark.parametrize(("fields", "message"), [
    ({"current": "wrong password 123"}, "That is not your current password."),
    ({"new": "short", "confirm": "short"}, "at least 12 characters"),
    ({"new": "password1234", "confirm": "password1234"}, "list of common passwords"),
    ({"new": "owner@acme-realty.example", "confirm": "owner@acme-realty.example"},
     "must not be the email"),
    ({"confirm": "something else entirely"}, "The two new passwords differ."),
])
def test_change_refusals(app, fields, message):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    response = change(client, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert password_ok(app, acme["owner"], PASSWORD)
    assert events(app, "password_changed") == []


def test_change_needs_sign_in_and_csrf(app):
    acme = world(app)
    client = app.test_client()
    assert client.get(CHANGE).status_code == 302
    enter(client, app, acme["owner"])
    response = client.post(CHANGE, data={"current": PASSWORD, "new": NEW, "confirm": NEW})
    assert response.status_code == 400
    assert password_ok(app, acme["owner"], PASSWORD)


def request_reset(client, email: str):
    """Ask for a reset link as the forgot page does."""
    return post_form(client, FORGOT, FORGOT, {"email": email})


def open_link(client, token: str):
    """Open the mailed link: the token moves to a cookie and the URL loses it."""
    response = client.get(f"{RESET}?token={token}")
    assert response.status_code == 303
    assert response.headers["Location"] == RESET
    return response


def choose(client, password=NEW, confirm=None):
    """POST the reset form."""
    page = client.get(RESET)
    assert page.status_code == 200, page.status_code
    return client.post(RESET, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                    "new": password, "confirm": confirm or password})


def test_reset_by_email_end_to_end(mailing):
    app, acme, inbox = mailing
    signed = app.test_client()
    enter(signed, app, acme["owner"])
    client = app.test_client()
    response = request_reset(client, acme["owner"].upper())
    assert response.status_code == 200
    mail = inbox.next()
    assert mail["To"] == acme["owner"]
    assert mail["From"] == "FlowEstate <idp@flowestate.test>"
    token = reset_token(mail)
    assert mail.get_content().count("http://127.0.0.1:5000/password/reset?token=") == 1
    open_link(client, token)
    page = client.get(RESET)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert token not in page.get_data(as_text=True)
    response = choose(client)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert password_ok(app, acme["owner"], NEW)
    assert not signed_in(signed)
    assert [e.event for e in events(app) if e.event.startswith("password_reset")] == [
        "password_reset_requested", "password_reset"]
    # Only the digest is stored; the raw token is nowhere in the database.
    assert token.encode() not in database_text(app)


def test_reset_link_works_once(mailing):
    app, acme, inbox = mailing
    client = app.test_client()
    request_reset(client, acme["owner"])
    token = reset_token(inbox.next())
    open_link(client, token)
    assert choose(client).status_code == 303
    again = app.test_client()
    open_link(again, token)
    assert again.get(RESET).status_code == 410
    assert password_ok(app, acme["owner"], NEW)


def test_a_newer_reset_voids_older_links_once_used(mailing):
    app, acme, inbox = mailing
    client = app.test_client()
    request_reset(client, acme["owner"])
    request_reset(client, acme["owner"])
    first, second = reset_token(inbox.next()), reset_token(inbox.next())
    open_link(client, second)
    assert choose(client).status_code == 303
    other = app.test_client()
    open_link(other, first)
    assert other.get(RESET).status_code == 410


def test_reset_link_expires(mailing, clock):
    app, acme, inbox = mailing
    client = app.test_client()
    request_reset(client, acme["owner"])
    token = reset_token(inbox.next())
    clock.shift(app.config["IDP_PASSWORD_RESET_TTL"] + 1)
    open_link(client, token)
    response = client.get(RESET)
    assert response.status_code == 410
    assert "Send a new link" in response.get_data(as_text=True)


@pytest.mark.parametrize("token", ["", "nonsense", "fe_pr_" + "A" * 43, "fe_pr_" + "x" * 400])
def test_unknown_reset_tokens(app, token):
    client = app.test_client()
    client.get(f"{RESET}?token={token}")
    assert client.get(RESET).status_code == 410
    assert post_form(client, FORGOT, RESET, {"new": NEW, "confirm": NEW}).status_code == 410


def test_reset_form_needs_csrf_and_policy(mailing):
    app, acme, inbox = mailing
    client = app.test_client()
    request_reset(client, acme["owner"])
    open_link(client, reset_token(inbox.next()))
    assert client.post(RESET, data={"new": NEW, "confirm": NEW}).status_code == 400
    response = choose(client, "password1234")
    assert response.status_code == 400
    assert "common passwords" in response.get_data(as_text=True)
    assert password_ok(app, acme["owner"], PASSWORD)
    # The link is still good after a refused password.
    assert choose(client).status_code == 303


def test_forgot_answers_the_same_for_unknown_emails(mailing):
    app, acme, inbox = mailing
    known = request_reset(app.test_client(), acme["owner"])
    unknown = request_reset(app.test_client(), "nobody@acme-realty.example")
    strip = lambda r: r.get_data(as_text=True).replace(acme["owner"], "X").replace(  # noqa: E731
        "nobody@acme-realty.example", "X")
    assert known.status_code == unknown.status_code == 200
    assert strip(known) == strip(unknown)
    inbox.next()
    assert inbox.empty()
    with app.app_context():
        assert len(db.session.scalars(select(PasswordReset)).all()) == 1


def test_forgot_needs_csrf(mailing):
    app, acme, inbox = mailing
    response = app.test_client().post(FORGOT, data={"email": acme["owner"]})
    assert response.status_code == 400
    assert inbox.empty()


def test_forgot_is_limited_per_email_silently(make_app, smtp):
    app = make_app(IDP_SMTP_URL=smtp.url, IDP_RESET_EMAIL_RATE_LIMIT="2 per hour")
    acme = world(app)
    answers = [request_reset(app.test_client(), acme["owner"]) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    smtp.inbox.next()
    smtp.inbox.next()
    assert smtp.inbox.empty()


def test_forgot_is_limited_per_address(make_app, smtp):
    app = make_app(IDP_SMTP_URL=smtp.url, IDP_RESET_ADDRESS_RATE_LIMIT="2 per minute")
    world(app)
    client = app.test_client()
    codes = [request_reset(client, f"person{i}@example.com").status_code for i in range(3)]
    assert codes == [200, 200, 429]
    response = request_reset(client, "another@example.com")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_development_without_smtp_logs_the_mail(make_app, tmp_path, caplog):
    app = make_app()
    app.instance_path = str(tmp_path / "instance")
    acme = world(app)
    with caplog.at_level(logging.INFO, logger="idp.infra.mail"):
        request_reset(app.test_client(), acme["owner"])
    assert "development mail" in caplog.text
    [kept] = (Path(app.instance_path) / "mail").glob("*.txt")
    assert "/password/reset?token=fe_pr_" in kept.read_text()


def test_production_without_smtp_never_logs_the_link(app, caplog):
    acme = world(app)
    app.config["IDP_DEVELOPMENT"] = False
    with caplog.at_level(logging.DEBUG):
        assert request_reset(app.test_client(), acme["owner"]).status_code == 200
    assert "fe_pr_" not in caplog.text
    assert "IDP_SMTP_URL is not set" in caplog.text


def test_login_page_links_to_forgot(client):
    assert 'href="/password/forgot"' in client.get("/login").get_data(as_text=True)
