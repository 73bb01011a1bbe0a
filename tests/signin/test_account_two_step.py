"""Two-step sign-in: TOTP enrolment and codes, replay, limits, recovery codes, the org rule."""

from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import Organization
from idp.store.models import RecoveryCode
from idp.store.models import TotpCredential
from tests.helpers import csrf_token
from tests.helpers import pkce_pair
from tests.settings_support import PASSWORD
from tests.settings_support import add_person
from tests.settings_support import database_text
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world
from tests.two_step_support import SECURITY
from tests.two_step_support import SETUP
from tests.two_step_support import TWO_STEP
from tests.two_step_support import code_at
from tests.two_step_support import enrol
from tests.two_step_support import password_step
from tests.two_step_support import second_step
from tests.two_step_support import start_setup

SETTINGS = "/settings/connected-apps"


@pytest.fixture
def acme(app):
    """Acme Realty, its owner signed in with an authenticator app set up."""
    built = world(app)
    client = app.test_client()
    enter(client, app, built["owner"])
    built["secret"], built["codes"] = enrol(client)
    return built


def test_setup_is_not_in_force_until_confirmed(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    start_setup(client)
    wrong = post_form(client, SETUP, SETUP, {"code": "000000"})
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.get_data(as_text=True)
    # Unconfirmed: the password alone still signs in.
    fresh = app.test_client()
    response = password_step(fresh, acme["owner"])
    assert response.status_code == 302 and response.headers["Location"] == SETTINGS


def test_enrolment_shows_codes_once_and_stores_no_secret(app, acme):
    assert events(app, "two_step_enabled")[0].actor == acme["owner"]
    stored = database_text(app)
    assert acme["secret"].encode() not in stored
    for code in acme["codes"]:
        assert code.encode() not in stored and code.replace("-", "").encode() not in stored
    client = app.test_client()
    enter(client, app, acme["owner"])
    page = client.get(SECURITY).get_data(as_text=True)
    assert "10 unused recovery codes" in page
    assert acme["secret"] not in page
    # The setup page no longer shows the secret once it is confirmed.
    assert client.get(SETUP).status_code == 303


def test_password_then_code_signs_in(app, acme, clock):
    client = app.test_client()
    response = password_step(client, acme["owner"], next_url="/settings/api-keys")
    assert response.status_code == 303 and response.headers["Location"] == TWO_STEP
    # Half signed in is not signed in.
    assert client.get(SETTINGS).status_code == 302
    clock.shift(30)
    response = second_step(client, code_at(acme["secret"]))
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/api-keys"
    assert client.get(SETTINGS).status_code == 200


def test_a_code_is_not_accepted_twice(app, acme, clock):
    clock.shift(30)
    code = code_at(acme["secret"])
    first = app.test_client()
    password_step(first, acme["owner"])
    assert second_step(first, code).status_code == 303
    second = app.test_client()
    password_step(second, acme["owner"])
    response = second_step(second, code)
    assert response.status_code == 401
    assert "already used" in response.get_data(as_text=True)
    # An older code of the window is refused too once a newer one was taken.
    assert second_step(second, code_at(acme["secret"], -1)).status_code == 401


def test_the_enrolment_code_cannot_sign_in(app, acme):
    client = app.test_client()
    password_step(client, acme["owner"])
    assert second_step(client, code_at(acme["secret"])).status_code == 401


def test_wrong_codes_are_counted_and_limited(make_app):
    app = make_app(IDP_TWO_STEP_RATE_LIMIT="3 per minute")
    acme = world(app)
    owner = app.test_client()
    enter(owner, app, acme["owner"])
    secret, _ = enrol(owner)
    client = app.test_client()
    password_step(client, acme["owner"])
    assert [second_step(client, "123456").status_code for _ in range(3)] == [401, 401, 401]
    blocked = second_step(client, code_at(secret, 1))
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert len(events(app, "two_step_failed")) == 3
    # Another browser is no way around it: the count is the account's.
    other = app.test_client()
    password_step(other, acme["owner"])
    assert second_step(other, code_at(secret, 1)).status_code == 429


def test_recovery_code_works_once(app, acme):
    code = acme["codes"][3]
    client = app.test_client()
    password_step(client, acme["owner"])
    response = second_step(client, code.upper())
    assert response.status_code == 303
    assert "You signed in with a recovery code; 9 left." in client.get(
        SETTINGS).get_data(as_text=True)
    assert [e.detail["left"] for e in events(app, "recovery_code_used")] == [9]
    again = app.test_client()
    password_step(again, acme["owner"])
    assert second_step(again, code).status_code == 401


def test_new_recovery_codes_void_the_old(app, acme):
    client = app.test_client()
    enter(client, app, acme["owner"])
    response = post_form(client, SECURITY, SECURITY + "/recovery-codes", {"password": PASSWORD})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.query(RecoveryCode).count() == 10
    fresh = app.test_client()
    password_step(fresh, acme["owner"])
    assert second_step(fresh, acme["codes"][0]).status_code == 401


@pytest.mark.parametrize(("data", "reason", "counted"), [
    ({}, "Enter your current password.", []),
    ({"password": ""}, "Enter your current password.", []),
    ({"password": "not my password"}, "That was not your current password.", ["recovery_codes"]),
])
def test_renewing_recovery_codes_needs_the_password(app, acme, data, reason, counted):
    client = app.test_client()
    enter(client, app, acme["owner"])
    with app.app_context():
        before = sorted(db.session.scalars(select(RecoveryCode.digest)))
    response = post_form(client, SECURITY, SECURITY + "/recovery-codes", data)
    assert response.status_code == 303 and response.headers["Location"] == SECURITY
    assert (f"Your recovery codes are unchanged. {reason}"
            in client.get(SECURITY).get_data(as_text=True))
    with app.app_context():
        assert sorted(db.session.scalars(select(RecoveryCode.digest))) == before
    assert events(app, "recovery_codes_renewed") == []
    assert [e.detail["action"] for e in events(app, "reauth_failed")] == counted


def test_pending_note_expires(app, acme, clock):
    client = app.test_client()
    password_step(client, acme["owner"])
    clock.shift(301)
    response = client.get(TWO_STEP)
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_second_step_without_password_goes_to_sign_in(client):
    response = client.get(TWO_STEP)
    assert response.status_code == 302 and response.headers["Location"] == "/login"


@pytest.mark.parametrize("path", [SECURITY + "/totp", SECURITY + "/recovery-codes",
                                  SECURITY + "/totp/remove", SECURITY + "/organization", SETUP])
def test_security_forms_need_csrf(app, acme, path):
    client = app.test_client()
    enter(client, app, acme["owner"])
    response = client.post(path, data={"code": "123456", "password": PASSWORD, "require": "y"})
    assert response.status_code == 400


def test_second_step_needs_csrf(app, acme):
    client = app.test_client()
    password_step(client, acme["owner"])
    assert client.post(TWO_STEP, data={"code": code_at(acme["secret"], 1)}).status_code == 400


def test_removing_the_app_needs_the_password(app, acme):
    client = app.test_client()
    enter(client, app, acme["owner"])
    response = post_form(client, SECURITY, SECURITY + "/totp/remove",
                         {"password": "not my password"})
    assert response.status_code == 303 and response.headers["Location"] == SECURITY
    with app.app_context():
        assert db.session.query(TotpCredential).count() == 1
    assert [e.detail["action"] for e in events(app, "reauth_failed")] == ["remove_totp"]
    post_form(client, SECURITY, SECURITY + "/totp/remove", {"password": PASSWORD})
    with app.app_context():
        assert db.session.query(TotpCredential).count() == 0
        assert db.session.query(RecoveryCode).count() == 0
    assert events(app, "two_step_disabled")[0].actor == acme["owner"]


def test_secret_opens_under_a_fallback_key(make_app, app, acme, clock):
    rotated = make_app(SECRET_KEY="a-new-secret-key-0123456789-abcdefghijkl",
                       SECRET_KEY_FALLBACKS=[app.config["SECRET_KEY"]])
    client = rotated.test_client()
    password_step(client, acme["owner"])
    clock.shift(30)
    assert second_step(client, code_at(acme["secret"])).status_code == 303


def consent_url(acme, app_name="Zapier") -> str:
    """An authorization request of the Zapier client."""
    zapier = acme["clients"][app_name]
    return "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": zapier["client_id"],
        "redirect_uri": zapier["redirect_uri"], "scope": "leads:read", "state": "s1",
        "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"})


def require(app, org_id: str, value=True) -> None:
    """Set an organization's two-step rule directly."""
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id == org_id))
        org.require_two_step = value
        db.session.commit()


def test_org_rule_sends_members_to_setup_and_back(app, clock):
    acme = world(app)
    member = add_person(app, "casey@acme-realty.example", {acme["org"]: "member"})
    require(app, acme["org"])
    client = app.test_client()
    enter(client, app, member)
    url = consent_url(acme)
    response = client.get(url)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/settings/security?next=")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Acme Realty requires two-step sign-in" in page
    secret, _ = enrol(client)
    clock.shift(30)
    # The recovery codes page leads back to the authorization, which now shows consent.
    assert client.get(url).status_code == 200


def test_org_rule_holds_on_allow(app):
    acme = world(app)
    member = add_person(app, "casey@acme-realty.example", {acme["org"]: "member"})
    client = app.test_client()
    enter(client, app, member)
    url = consent_url(acme)
    page = client.get(url)
    assert page.status_code == 200
    require(app, acme["org"])
    response = client.post(url, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                      "organization": acme["org"], "decision": "allow"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/settings/security?next=")


def test_only_owners_set_the_org_rule(app, acme):
    admin = add_person(app, "avery@acme-realty.example", {acme["org"]: "admin"})
    client = app.test_client()
    enter(client, app, admin)
    assert "require-two-step" not in client.get(SECURITY).get_data(as_text=True)
    assert post_form(client, SECURITY, SECURITY + "/organization",
                     {"require": "y"}).status_code == 404
    owner = app.test_client()
    enter(owner, app, acme["owner"])
    assert post_form(owner, SECURITY, SECURITY + "/organization",
                     {"require": "y"}).status_code == 303
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id == acme["org"]))
        assert org.require_two_step is True
    [event] = events(app, "org_two_step_required")
    assert event.org_public_id == acme["org"]


def test_owner_without_two_step_cannot_require_it(app):
    acme = world(app)
    client = app.test_client()
    enter(client, app, acme["owner"])
    post_form(client, SECURITY, SECURITY + "/organization", {"require": "y"})
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id == acme["org"]))
        assert org.require_two_step is False


def test_reset_keeps_two_step_in_force(app, acme):
    from tests.signin.test_account_password import NEW

    with app.app_context():
        from idp.core.clock import utcnow
        from idp.signin import resets
        from idp.store import accounts

        raw = resets.issue(db.session, accounts.find_user(acme["owner"]), utcnow(), 600)
        db.session.commit()
    client = app.test_client()
    client.get(f"/password/reset?token={raw}")
    page = client.get("/password/reset")
    client.post("/password/reset", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                         "new": NEW, "confirm": NEW})
    response = password_step(app.test_client(), acme["owner"], NEW)
    assert response.status_code == 303 and response.headers["Location"] == TWO_STEP
