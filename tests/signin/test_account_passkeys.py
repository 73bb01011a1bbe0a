"""Passkeys: registration, as the second step, as a sign-in without a password; refusals."""

import json

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import Passkey
from tests.helpers import csrf_token
from tests.passkey_support import SoftPasskey
from tests.passkey_support import b64
from tests.settings_support import PASSWORD
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world
from tests.two_step_support import SECURITY
from tests.two_step_support import TWO_STEP
from tests.two_step_support import password_step

ORIGIN = "http://127.0.0.1:5000"
SETTINGS = "/settings/connected-apps"


def token_of(client, path: str) -> str:
    """The CSRF token of a page."""
    return csrf_token(client.get(path).get_data(as_text=True))


def confirm(client, token: str, password: str = PASSWORD):
    """Confirm the current password, as the page's script does before the ceremony."""
    return client.post(SECURITY + "/passkeys/confirm", headers={"X-CSRFToken": token},
                       data={"csrf_token": token, "password": password})


def add_passkey(client, passkey: SoftPasskey, name="Work laptop", **answer):
    """Run the registration ceremony through the settings page."""
    token = token_of(client, SECURITY)
    assert confirm(client, token).status_code == 204
    options = client.post(SECURITY + "/passkeys/options", headers={"X-CSRFToken": token})
    assert options.status_code == 200
    return client.post(SECURITY + "/passkeys", data={
        "csrf_token": token, "name": name,
        "credential": passkey.register(options.get_json(), **answer)})


def use_passkey(client, passkey: SoftPasskey, page="/login", **answer):
    """Run the sign-in ceremony from ``page``."""
    token = token_of(client, page)
    options = client.post("/login/passkey/options", headers={"X-CSRFToken": token})
    assert options.status_code == 200
    return client.post("/login/passkey", data={
        "csrf_token": token, "credential": passkey.sign_in(options.get_json(), **answer),
        "next": "/settings/api-keys"}), options.get_json()


@pytest.fixture
def acme(app):
    """Acme's owner with a registered passkey."""
    built = world(app)
    client = app.test_client()
    enter(client, app, built["owner"])
    built["passkey"] = SoftPasskey("127.0.0.1", ORIGIN)
    response = add_passkey(client, built["passkey"])
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert "Save your recovery codes" in response.get_data(as_text=True)
    return built


def test_registration_stores_only_public_material(app, acme):
    with app.app_context():
        [row] = db.session.scalars(select(Passkey)).all()
        assert row.name == "Work laptop" and row.sign_count == 1
    assert events(app, "passkey_added")[0].actor == acme["owner"]


def test_options_name_this_site_and_user(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    assert confirm(client, token).status_code == 204
    options = client.post(SECURITY + "/passkeys/options", headers={"X-CSRFToken": token})
    body = options.get_json()
    assert body["rp"] == {"id": "127.0.0.1", "name": "FlowEstate"}
    assert body["user"]["name"] == acme["owner"]
    assert body["authenticatorSelection"]["userVerification"] == "required"


def test_passkey_is_a_second_step(app, acme):
    client = app.test_client()
    response = password_step(client, acme["owner"])
    assert response.headers["Location"] == TWO_STEP
    response, options = use_passkey(client, acme["passkey"], page=TWO_STEP)
    assert [c["id"] for c in options["allowCredentials"]] == [b64(acme["passkey"].credential_id)]
    assert response.status_code == 303
    assert client.get(SETTINGS).status_code == 200


def test_passkey_signs_in_without_password(app, acme):
    client = app.test_client()
    response, options = use_passkey(client, acme["passkey"])
    assert "allowCredentials" not in options or options["allowCredentials"] == []
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/api-keys"
    assert client.get(SETTINGS).status_code == 200


def test_unknown_passkey_is_refused(app, acme):
    stranger = SoftPasskey("127.0.0.1", ORIGIN)
    client = app.test_client()
    response, _ = use_passkey(client, stranger)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get(SETTINGS).status_code == 302


@pytest.mark.parametrize("passkey", [
    SoftPasskey("evil.example", ORIGIN), SoftPasskey("127.0.0.1", "https://evil.example")])
def test_registration_for_another_site_is_refused(app, passkey):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    response = add_passkey(client, passkey)
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


def test_registration_needs_user_verification(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    assert add_passkey(client, SoftPasskey("127.0.0.1", ORIGIN),
                       user_verified=False).status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


def test_a_challenge_is_spent_once(app, acme):
    client = app.test_client()
    token = token_of(client, "/login")
    options = client.post("/login/passkey/options", headers={"X-CSRFToken": token}).get_json()
    answer = acme["passkey"].sign_in(options)
    assert client.post("/login/passkey", data={"csrf_token": token, "credential": answer}
                       ).status_code == 303
    replay = app.test_client()
    token = token_of(replay, "/login")
    response = replay.post("/login/passkey", data={"csrf_token": token, "credential": answer})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert replay.get(SETTINGS).status_code == 302


def test_ceremonies_need_csrf(app, acme):
    client = app.test_client()
    assert client.post("/login/passkey/options").status_code == 400
    assert client.post("/login/passkey", data={"credential": "{}"}).status_code == 400
    enter(client, app, acme["owner"])
    assert client.post(SECURITY + "/passkeys/options").status_code == 400
    assert client.post(SECURITY + "/passkeys", data={"credential": "{}"}).status_code == 400


def test_garbage_answers_are_refused(app, acme):
    client = app.test_client()
    token = token_of(client, "/login")
    client.post("/login/passkey/options", headers={"X-CSRFToken": token})
    for answer in ("not json", json.dumps([1]), "x" * 20000):
        response = client.post("/login/passkey", data={"csrf_token": token, "credential": answer})
        assert response.status_code == 303 and response.headers["Location"] == "/login"


def test_removing_a_passkey(app, acme):
    client = app.test_client()
    enter(client, app, acme["owner"])
    with app.app_context():
        public_id = db.session.scalar(select(Passkey.public_id))
    token = token_of(client, SECURITY)
    assert client.post(f"{SECURITY}/passkeys/pk_nope/remove",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"{SECURITY}/passkeys/{public_id}/remove",
                       data={"csrf_token": token}).status_code == 303
    # No second step remains: the password alone signs in again.
    response = password_step(app.test_client(), acme["owner"])
    assert response.headers["Location"] == SETTINGS
    assert events(app, "passkey_removed")[0].subject == public_id


CONFIRM_FIRST = {"error": "reauthentication_required",
                 "message": "Confirm your current password first."}


def options_of(client, token: str):
    """Ask for registration options."""
    return client.post(SECURITY + "/passkeys/options", headers={"X-CSRFToken": token})


def passkey_rows(app) -> list[Passkey]:
    """Every stored passkey."""
    with app.app_context():
        return db.session.scalars(select(Passkey)).all()


def test_adding_a_passkey_needs_the_password_first(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    options = options_of(client, token)
    assert options.status_code == 403 and options.get_json() == CONFIRM_FIRST
    response = client.post(SECURITY + "/passkeys", data={
        "csrf_token": token, "name": "Planted", "credential": "{}"})
    assert response.status_code == 303 and response.headers["Location"] == SECURITY
    assert ("The passkey was not added. Confirm your current password first."
            in client.get(SECURITY).get_data(as_text=True))
    assert passkey_rows(app) == []


def test_a_wrong_password_is_refused_and_counted(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    for password, reason in (("", "Enter your current password."),
                             ("not my password", "That was not your current password.")):
        refused = confirm(client, token, password)
        assert refused.status_code == 403
        assert refused.get_json() == {"error": "reauthentication_required", "message": reason}
        assert options_of(client, token).status_code == 403
    # Only the wrong password is counted and audited; nothing was guessed with an empty one.
    assert [(e.actor, e.detail["action"]) for e in events(app, "reauth_failed")] == [
        (acme["owner"], "add_passkey")]
    # Counted as failed sign-ins of the account (10 a minute), sharing the sign-in form's budget.
    for _ in range(9):
        assert confirm(client, token, "not my password").status_code == 403
    limited = confirm(client, token)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.get_json()["message"] == (
        "Too many wrong passwords. Wait a few minutes and try again.")
    assert options_of(client, token).status_code == 403
    assert post_form(app.test_client(), "/login", "/login", {
        "email": acme["owner"], "password": PASSWORD}).status_code == 429


def test_the_confirmation_lasts_five_minutes(app, clock):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    assert confirm(client, token).status_code == 204
    clock.shift(300)
    assert options_of(client, token).status_code == 200
    clock.shift(1)
    expired = options_of(client, token)
    assert expired.status_code == 403 and expired.get_json() == CONFIRM_FIRST


def test_an_expired_confirmation_adds_no_passkey(app, clock):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    assert confirm(client, token).status_code == 204
    options = options_of(client, token)
    assert options.status_code == 200
    clock.shift(301)
    response = client.post(SECURITY + "/passkeys", data={
        "csrf_token": token, "name": "Late",
        "credential": SoftPasskey("127.0.0.1", ORIGIN).register(options.get_json())})
    assert response.status_code == 303 and response.headers["Location"] == SECURITY
    assert passkey_rows(app) == []


def test_one_confirmation_adds_one_passkey(app, acme):
    client = app.test_client()
    enter(client, app, acme["owner"])
    token = token_of(client, SECURITY)
    assert confirm(client, token).status_code == 204
    options = options_of(client, token)
    response = client.post(SECURITY + "/passkeys", data={
        "csrf_token": token, "name": "Second",
        "credential": SoftPasskey("127.0.0.1", ORIGIN).register(options.get_json())})
    assert response.status_code == 303
    assert [row.name for row in passkey_rows(app)] == ["Work laptop", "Second"]
    assert options_of(client, token).status_code == 403
