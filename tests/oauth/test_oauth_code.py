"""Authorization codes at /oauth/token: single use, replay, expiry, redirect_uri and PKCE."""

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp.infra.extensions import db
from tests.helpers import flask_connect
from tests.helpers import flask_sign_in
from tests.helpers import query_of
from tests.oauth_helpers import client_row
from tests.oauth_helpers import ended_connection_events
from tests.oauth_helpers import exchange
from tests.oauth_helpers import me
from tests.oauth_helpers import new_code
from tests.oauth_helpers import oauth_error
from tests.oauth_helpers import org_row
from tests.oauth_helpers import reason
from tests.oauth_helpers import refresh

ZAPIER = "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"


def test_code_response_shape(client, demo):
    code, verifier = new_code(client, demo, scope="leads:read")
    response = exchange(client, demo, code, verifier)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token",
                         "refresh_expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["scope"] == "leads:read"
    assert body["expires_in"] == 3600 and body["refresh_expires_in"] == 90 * 24 * 3600
    assert me(client, body["access_token"]).status_code == 200


def test_replayed_code_fails_and_ends_the_connection(app, client, demo):
    code, verifier = new_code(client, demo)
    first = exchange(client, demo, code, verifier).get_json()
    again = exchange(client, demo, code, verifier)
    assert again.status_code == 400 and oauth_error(again) == "invalid_grant"
    dead = me(client, first["access_token"])
    assert dead.status_code == 401 and reason(dead) == "token_revoked"
    stale = refresh(client, demo, first["refresh_token"])
    assert stale.status_code == 400 and oauth_error(stale) == "invalid_grant"
    with app.app_context():
        assert "connection_ended" in ended_connection_events("code_replay")


def test_expired_code_is_invalid_grant(client, demo, clock):
    code, verifier = new_code(client, demo)
    clock.shift(61)
    response = exchange(client, demo, code, verifier)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_code_just_inside_its_lifetime_works(client, demo, clock):
    code, verifier = new_code(client, demo)
    clock.shift(55)
    assert exchange(client, demo, code, verifier).status_code == 200


def test_code_lifetime_follows_the_setting(make_app, demo, clock):
    short = make_app(IDP_CODE_TTL=5)
    client = short.test_client()
    code, verifier = new_code(client, demo)
    clock.shift(6)
    response = exchange(client, demo, code, verifier)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


@pytest.mark.parametrize("redirect_uri", [
    ZAPIER + "x", ZAPIER[:-1], "https://www.make.com/oauth/cb/app", "",
])
def test_wrong_redirect_uri_is_invalid_grant(client, demo, redirect_uri):
    code, verifier = new_code(client, demo)
    response = exchange(client, demo, code, verifier, redirect_uri=redirect_uri)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    # A wrong attempt does not spend the code (it was never valid for that request).
    assert exchange(client, demo, code, verifier).status_code == 200


def test_redirect_uri_named_at_authorize_is_required(client, demo):
    code, verifier = new_code(client, demo)
    response = exchange(client, demo, code, verifier, redirect_uri=None)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def _verifier_cases(verifier):
    """(case, verifier sent, status, error) for RFC 7636 §4.5/§4.6 failures."""
    return [
        ("wrong", "A" * 43, 400, "invalid_grant"),
        ("other valid verifier", verifier[:-1] + ("a" if verifier[-1] != "a" else "b"), 400,
         "invalid_grant"),
        ("missing", None, 400, "invalid_request"),
        ("empty", "", 400, "invalid_request"),
        ("42 chars", verifier[:42], 400, "invalid_request"),
        ("129 chars", "a" * 129, 400, "invalid_request"),
        ("bad characters", "a" * 42 + "!", 400, "invalid_request"),
        ("the challenge itself", None, 400, "invalid_grant"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _verifier_cases("x" * 43)])
def test_pkce_verifier_failures(client, demo, case):
    code, verifier = new_code(client, demo)
    cases = {c[0]: c[1:] for c in _verifier_cases(verifier)}
    sent, status, error = cases[case]
    if case == "the challenge itself":
        # Echoing the challenge is what a `plain` client would do; it must not pass as S256.
        sent = create_s256_code_challenge(verifier)
    response = exchange(client, demo, code, verifier, code_verifier=sent)
    assert response.status_code == status and oauth_error(response) == error, response.get_json()


def test_verifier_without_challenge_is_refused(app, client, demo):
    with app.app_context():  # a client registered before require_pkce existed
        client_row(demo).require_pkce = False
        db.session.commit()
    flask_sign_in(client, demo)
    code = query_of(flask_connect(client, demo).headers["Location"])["code"]
    response = exchange(client, demo, code, "a" * 43)
    assert response.status_code == 400 and oauth_error(response) == "invalid_request"
    # A confidential client may still redeem a code issued without PKCE.
    assert exchange(client, demo, code, None).status_code == 200


def test_code_of_another_client_is_invalid_grant(client, demo):
    code, verifier = new_code(client, demo, "zapier")
    response = exchange(client, demo, code, verifier, "make",
                        redirect_uri=demo["clients"]["zapier"]["redirect_uris"][0])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    # The other client's attempt neither spends nor kills the code.
    assert exchange(client, demo, code, verifier, "zapier").status_code == 200


@pytest.mark.parametrize("code", ["", "nope", "x" * 5000])
def test_unknown_code_is_invalid_grant(client, demo, code):
    response = exchange(client, demo, code, "a" * 43)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_missing_code_is_invalid_request(client, demo):
    response = exchange(client, demo, None, "a" * 43)
    assert response.status_code == 400 and oauth_error(response) == "invalid_request"


def test_org_suspended_before_redemption_is_invalid_grant(app, client, demo):
    code, verifier = new_code(client, demo)
    with app.app_context():
        org_row(demo).suspended = True
        db.session.commit()
    response = exchange(client, demo, code, verifier)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
