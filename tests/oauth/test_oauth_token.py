"""/oauth/token client authentication, request errors and database faults (SPEC §5.3)."""

from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import clients
from tests.helpers import token_request
from tests.oauth_helpers import basic
from tests.oauth_helpers import client_row
from tests.oauth_helpers import connect
from tests.oauth_helpers import exchange
from tests.oauth_helpers import me
from tests.oauth_helpers import new_code
from tests.oauth_helpers import oauth_error
from tests.oauth_helpers import refresh


def _post(client, data, headers=None):
    """POST a raw form to the token endpoint."""
    return client.post("/oauth/token", data=data, headers=headers or {})


def test_basic_and_body_authentication_both_work(client, demo):
    first = connect(client, demo)
    zapier = demo["clients"]["zapier"]
    by_basic = _post(client, {"grant_type": "refresh_token",
                              "refresh_token": first["refresh_token"]},
                     basic(zapier["client_id"], zapier["client_secret"]))
    assert by_basic.status_code == 200, by_basic.get_json()
    by_body = refresh(client, demo, by_basic.get_json()["refresh_token"])
    assert by_body.status_code == 200, by_body.get_json()


def _auth_cases(demo):
    """(case, form credentials, headers) that must all be 401 invalid_client."""
    zapier = demo["clients"]["zapier"]
    make = demo["clients"]["make"]
    cid, secret = zapier["client_id"], zapier["client_secret"]
    return {
        "wrong secret in body": ({"client_id": cid, "client_secret": secret + "x"}, {}),
        "wrong secret in basic": ({}, basic(cid, secret + "x")),
        "other client's secret": ({"client_id": cid, "client_secret": make["client_secret"]}, {}),
        "unknown client in body": ({"client_id": "cli_nope", "client_secret": secret}, {}),
        "unknown client in basic": ({}, basic("cli_nope", secret)),
        "overlong client id": ({"client_id": "c" * 500, "client_secret": secret}, {}),
        "no secret": ({"client_id": cid}, {}),
        "no credentials": ({}, {}),
        "bearer only": ({}, {"Authorization": "Bearer fe_at_" + "a" * 43}),
        "basic garbage": ({}, {"Authorization": "Basic !!!"}),
        "empty secret": ({"client_id": cid, "client_secret": ""}, {}),
    }


CASES = [
    "wrong secret in body", "wrong secret in basic", "other client's secret",
    "unknown client in body", "unknown client in basic", "overlong client id", "no secret",
    "no credentials", "bearer only", "basic garbage", "empty secret",
]


@pytest.mark.parametrize("grant", ["refresh_token", "authorization_code"])
@pytest.mark.parametrize("case", CASES)
def test_bad_client_authentication_is_401_invalid_client(client, demo, case, grant):
    form, headers = _auth_cases(demo)[case]
    data = {"grant_type": grant, "refresh_token": "fe_rt_" + "a" * 43, "code": "abc",
            "redirect_uri": demo["clients"]["zapier"]["redirect_uris"][0], **form}
    response = _post(client, data, headers)
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"


def test_failed_client_authentication_does_not_spend_the_code(client, demo):
    code, verifier = new_code(client, demo)
    zapier = demo["clients"]["zapier"]
    wrong = _post(client, {"grant_type": "authorization_code", "code": code,
                           "redirect_uri": zapier["redirect_uris"][0],
                           "code_verifier": verifier, "client_id": zapier["client_id"],
                           "client_secret": "fe_cs_wrong"})
    assert wrong.status_code == 401
    assert exchange(client, demo, code, verifier).status_code == 200


def test_stray_bearer_header_is_ignored_with_body_credentials(client, demo):
    first = connect(client, demo)
    response = token_request(client, demo, {"grant_type": "refresh_token",
                                            "refresh_token": first["refresh_token"]},
                             headers={"Authorization": "Bearer " + first["access_token"]})
    assert response.status_code == 200, response.get_json()
    # Even a dead, garbage or foreign bearer does not matter.
    for stale in ("fe_at_" + "x" * 43, "garbage", first["refresh_token"]):
        again = token_request(client, demo, {
            "grant_type": "refresh_token", "refresh_token": response.get_json()["refresh_token"]},
            headers={"Authorization": "Bearer " + stale})
        assert again.status_code == 200, again.get_json()
        response = again


def _rotate(app, demo, overlap: int) -> str:
    """Rotate the Zapier secret; return the new raw secret."""
    with app.app_context():
        secret = clients.rotate_secret(client_row(demo), overlap)
        db.session.commit()
        return secret


def _with_secret(client, demo, refresh_token, secret):
    """Refresh with an explicit client secret in the body."""
    return _post(client, {"grant_type": "refresh_token", "refresh_token": refresh_token,
                          "client_id": demo["clients"]["zapier"]["client_id"],
                          "client_secret": secret})


def test_previous_secret_works_during_overlap_and_not_after(app, client, demo, clock):
    first = connect(client, demo)
    old = demo["clients"]["zapier"]["client_secret"]
    new = _rotate(app, demo, 3600)
    during = _with_secret(client, demo, first["refresh_token"], old)
    assert during.status_code == 200, during.get_json()
    with_new = _with_secret(client, demo, during.get_json()["refresh_token"], new)
    assert with_new.status_code == 200
    clock.shift(3601)
    after = _with_secret(client, demo, with_new.get_json()["refresh_token"], old)
    assert after.status_code == 401 and oauth_error(after) == "invalid_client"
    assert _with_secret(client, demo, with_new.get_json()["refresh_token"], new).status_code == 200


def test_previous_secret_expired_by_row_edit(app, client, demo):
    first = connect(client, demo)
    old = demo["clients"]["zapier"]["client_secret"]
    _rotate(app, demo, 3600)
    with app.app_context():
        client_row(demo).previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    response = _with_secret(client, demo, first["refresh_token"], old)
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"


def test_rotation_without_overlap_refuses_the_old_secret_at_once(app, client, demo):
    first = connect(client, demo)
    old = demo["clients"]["zapier"]["client_secret"]
    new = _rotate(app, demo, 0)
    response = _with_secret(client, demo, first["refresh_token"], old)
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
    assert _with_secret(client, demo, first["refresh_token"], new).status_code == 200


def _disable(app, demo, enabled=False):
    """Switch the Zapier client off (or on)."""
    with app.app_context():
        clients.set_enabled(client_row(demo), enabled, issuer=app.config["IDP_ISSUER"])
        db.session.commit()


def test_disabled_client_cannot_redeem_a_code(app, client, demo):
    code, verifier = new_code(client, demo)
    _disable(app, demo)
    response = exchange(client, demo, code, verifier)
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"


def test_disabled_client_cannot_refresh_and_recovers_when_enabled(app, client, demo):
    first = connect(client, demo)
    _disable(app, demo)
    response = refresh(client, demo, first["refresh_token"])
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
    blocked = me(client, first["access_token"])
    assert blocked.status_code == 403 and blocked.get_json()["error"]["reason"] == "client_disabled"
    _disable(app, demo, enabled=True)
    assert refresh(client, demo, first["refresh_token"]).status_code == 200


@pytest.mark.parametrize(("data", "error"), [
    ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({"grant_type": "implicit"}, "unsupported_grant_type"),
    ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, "unsupported_grant_type"),
    ({}, "invalid_request"),
    ({"grant_type": ""}, "invalid_request"),
    ({"grant_type": "refresh_token"}, "invalid_request"),
    ({"grant_type": "authorization_code"}, "invalid_request"),
])
def test_request_errors(client, demo, data, error):
    zapier = demo["clients"]["zapier"]
    response = _post(client, {**data, "client_id": zapier["client_id"],
                              "client_secret": zapier["client_secret"]})
    assert response.status_code == 400 and oauth_error(response) == error, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"


def test_token_endpoint_never_redirects(client, demo):
    code, verifier = new_code(client, demo)
    zapier = demo["clients"]["zapier"]
    attempts = [
        _post(client, {"grant_type": "authorization_code", "code": code, "code_verifier": "x",
                       "redirect_uri": "https://evil.com/", "client_id": zapier["client_id"],
                       "client_secret": zapier["client_secret"]}),
        _post(client, {"grant_type": "authorization_code", "code": "bad",
                       "redirect_uri": zapier["redirect_uris"][0]}),
        _post(client, {"response_type": "code", "client_id": zapier["client_id"],
                       "redirect_uri": zapier["redirect_uris"][0], "state": "x"}),
        client.get("/oauth/token?grant_type=refresh_token"),
        client.post("/oauth/token", json={"grant_type": "refresh_token"}),
        client.post("/oauth/token/", data={"grant_type": "refresh_token"}),
    ]
    # Each refusal has its own exact status and OAuth error (RFC 6749 §5.2), never a redirect.
    expected = [(400, "invalid_grant"), (401, "invalid_client"), (400, "invalid_request"),
                (405, "invalid_request"), (415, "invalid_request"), (404, "not_found")]
    answers = [(r.status_code, r.get_json()["error"]) for r in attempts]
    assert answers == expected
    assert [r for r in attempts if "Location" in r.headers] == []


def test_database_fault_during_refresh_is_503_and_changes_nothing(app, client, demo):
    first = connect(client, demo)
    failures = []

    def fail_on_insert(conn, cursor, statement, parameters, context, executemany):
        """Fail the first access-token insert as a dropped connection would."""
        if statement.lstrip().upper().startswith("INSERT INTO ACCESS_TOKENS") and not failures:
            failures.append(statement)
            raise OperationalError(statement, parameters, Exception("server closed the connection"))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", fail_on_insert)
    try:
        faulted = refresh(client, demo, first["refresh_token"])
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_insert)
    assert failures, "the fault was never injected"
    assert faulted.status_code == 503
    assert faulted.headers["Retry-After"].isdigit()
    assert faulted.headers["Cache-Control"] == "no-store"
    assert oauth_error(faulted) == "temporarily_unavailable"
    retried = refresh(client, demo, first["refresh_token"])
    assert retried.status_code == 200, retried.get_json()
    # The retry rotated the token for the first time: it is the only successor.
    assert refresh(client, demo, retried.get_json()["refresh_token"]).status_code == 200
