"""/oauth/revoke (RFC 7009, SPEC §5.4): either token ends its connection; others change nothing."""

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import clients
from idp.store.models import Connection
from tests.oauth_helpers import basic
from tests.oauth_helpers import client_row
from tests.oauth_helpers import connect
from tests.oauth_helpers import ended_connection_events
from tests.oauth_helpers import me
from tests.oauth_helpers import oauth_error
from tests.oauth_helpers import reason
from tests.oauth_helpers import refresh


def _revoke(client, demo, token, client_key="zapier", hint=None, use_basic=False):
    """POST to /oauth/revoke with the client's credentials."""
    creds = demo["clients"][client_key]
    data = {"token": token}
    if hint is not None:
        data["token_type_hint"] = hint
    headers = {}
    if use_basic:
        headers = basic(creds["client_id"], creds["client_secret"])
    else:
        data.update(client_id=creds["client_id"], client_secret=creds["client_secret"])
    return client.post("/oauth/revoke", data=data, headers=headers)


def _assert_dead(client, demo, body):
    """Both tokens of an ended connection are refused."""
    api = me(client, body["access_token"])
    assert api.status_code == 401 and reason(api) == "token_revoked"
    again = refresh(client, demo, body["refresh_token"])
    assert again.status_code == 400 and oauth_error(again) == "invalid_grant"


def _assert_alive(client, demo, body):
    """Both tokens still work; returns the refreshed body."""
    assert me(client, body["access_token"]).status_code == 200
    response = refresh(client, demo, body["refresh_token"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize(("which", "hint", "use_basic"), [
    ("access_token", None, False),
    ("refresh_token", None, True),
    ("access_token", "refresh_token", True),
    ("refresh_token", "access_token", False),
    # RFC 7009 §2.1: a hint the server does not know is ignored.
    ("refresh_token", "bogus_hint", False),
    ("access_token", "api_key", True),
])
def test_revoking_either_token_ends_the_connection(app, client, demo, which, hint, use_basic):
    body = connect(client, demo)
    response = _revoke(client, demo, body[which], hint=hint, use_basic=use_basic)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    _assert_dead(client, demo, body)
    with app.app_context():
        events = ended_connection_events("revoked_by_client")
        assert events.count("connection_ended") == 1


def test_revoking_twice_is_harmless(client, demo):
    body = connect(client, demo)
    assert _revoke(client, demo, body["refresh_token"]).status_code == 200
    assert _revoke(client, demo, body["refresh_token"]).status_code == 200
    _assert_dead(client, demo, body)


def test_revoking_a_rotated_refresh_token_ends_the_connection(client, demo):
    first = connect(client, demo)
    second = refresh(client, demo, first["refresh_token"]).get_json()
    assert _revoke(client, demo, first["refresh_token"]).status_code == 200
    _assert_dead(client, demo, second)


@pytest.mark.parametrize("token", [
    "fe_at_" + "a" * 43, "fe_rt_" + "b" * 43, "something-else", "fe_k_" + "0" * 32, "x" * 3000,
])
def test_unknown_token_is_200_and_changes_nothing(app, client, demo, token):
    body = connect(client, demo)
    response = _revoke(client, demo, token)
    assert response.status_code == 200
    _assert_alive(client, demo, body)
    with app.app_context():
        assert db.session.scalar(select(Connection.ended_at)) is None


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_other_clients_token_is_200_and_changes_nothing(client, demo, which):
    body = connect(client, demo, "zapier")
    response = _revoke(client, demo, body[which], "make")
    assert response.status_code == 200
    _assert_alive(client, demo, body)


@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token_type_hint": "access_token"}])
def test_missing_token_is_400_invalid_request(client, demo, data):
    zapier = demo["clients"]["zapier"]
    response = client.post("/oauth/revoke", data={
        **data, "client_id": zapier["client_id"], "client_secret": zapier["client_secret"]})
    assert response.status_code == 400 and oauth_error(response) == "invalid_request"


@pytest.mark.parametrize("case", ["wrong secret", "unknown client", "no credentials", "bearer"])
def test_bad_client_auth_is_401_and_changes_nothing(client, demo, case):
    body = connect(client, demo)
    zapier = demo["clients"]["zapier"]
    data = {"token": body["refresh_token"]}
    headers = {}
    if case == "wrong secret":
        data.update(client_id=zapier["client_id"], client_secret="fe_cs_wrong")
    elif case == "unknown client":
        headers = basic("cli_nope", zapier["client_secret"])
    elif case == "bearer":
        headers = {"Authorization": "Bearer " + body["access_token"]}
    response = client.post("/oauth/revoke", data=data, headers=headers)
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
    _assert_alive(client, demo, body)


def test_revocation_by_a_disabled_client_is_401(app, client, demo):
    body = connect(client, demo)
    with app.app_context():
        clients.set_enabled(client_row(demo), False, issuer=app.config["IDP_ISSUER"])
        db.session.commit()
    response = _revoke(client, demo, body["refresh_token"])
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
