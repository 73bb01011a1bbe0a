"""A value the database refuses is the request's fault: 4xx, never the 503 of a passing fault.

PostgreSQL refuses a NUL character in any string; a 503 would tell a connector to retry a
request that can never succeed. Schemathesis found this with a NUL in a form's client_id.
"""

import base64

import pytest
from sqlalchemy.exc import DataError

from idp.cli.demo import seed_demo
from tests.prod_support import add_credentials

NUL = "ab\x00cd"


def _basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
def world(app):
    """The demo and its operator credentials."""
    with app.app_context():
        demo = seed_demo()
    demo.update(add_credentials(app, demo))
    return demo


def test_nul_characters_never_look_like_a_passing_fault(app, client, world):
    calls = {
        "token, client_id in the body": lambda: client.post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": "fe_rt_" + "a" * 43,
            "client_id": NUL, "client_secret": "x"}),
        "token, client_id in Basic": lambda: client.post(
            "/oauth/token", data={"grant_type": "refresh_token"}, headers=_basic(NUL, "x")),
        "revoke": lambda: client.post("/oauth/revoke", data={"token": "t", "client_id": NUL,
                                                             "client_secret": "x"}),
        "introspect, resource server id": lambda: client.post(
            "/oauth/introspect", data={"token": "t"}, headers=_basic(NUL, "x")),
    }
    for name, call in calls.items():
        response = call()
        assert response.status_code in (400, 401), (name, response.get_data(as_text=True))
        assert response.get_json()["error"] in ("invalid_request", "invalid_client"), name
    judged = client.post("/oauth/introspect", data={"token": NUL},
                         headers=_basic(*world["resource_server"]))
    assert judged.status_code == 200
    assert judged.get_json()["denial"]["reason"] == "malformed_authorization"


def test_sign_in_with_a_nul_character_is_refused_not_unavailable(app, client, world):
    app.config["WTF_CSRF_ENABLED"] = False
    response = client.post("/login", data={"email": "a\x00@example.com", "password": "x"})
    assert response.status_code in (400, 401)


@pytest.mark.parametrize("path, shape", [
    ("/oauth/token-refused", "oauth"), ("/api/v1/_refused", "api"), ("/_refused", "page"),
])
def test_a_refused_value_is_400_in_the_shape_of_its_endpoint(app, path, shape):
    def refuse():
        """Fail the way PostgreSQL fails on a NUL character."""
        raise DataError("SELECT 1", {}, ValueError("NUL characters are not allowed"))

    app.add_url_rule(path, path, refuse)
    response = app.test_client().get(path)
    assert response.status_code == 400
    assert "Retry-After" not in response.headers
    if shape == "oauth":
        assert response.get_json()["error"] == "invalid_request"
    elif shape == "api":
        assert response.get_json()["error"]["reason"] == "invalid_request"
    else:
        assert "cannot be processed" in response.get_data(as_text=True)
