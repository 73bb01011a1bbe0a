"""HTTP Basic client credentials as bytes: not UTF-8 is invalid_client; percent-encoding works.

RFC 6749 §2.3.1 form-encodes the client id and secret before Basic (RFC 7617 §2.1 names UTF-8),
so a header whose bytes are not UTF-8 names no client: 401 ``invalid_client`` with a Basic
challenge (RFC 6749 §5.2), on every endpoint that reads Basic credentials.
"""

import base64
from urllib.parse import quote

import pytest

from tests.oauth_helpers import connect
from tests.prod_support import add_credentials

#: Raw Basic values whose bytes are not UTF-8; ``{id}`` and ``{secret}`` are real ones.
NOT_UTF8 = {
    "client id": b"\xff\xfe:{secret}",
    "secret": b"{id}:\xc3\x28",
    "latin-1 id": b"caf\xe9:{secret}",
    "no colon": b"\x80\x81\x82",
}
ENDPOINTS = ("/oauth/token", "/oauth/revoke", "/oauth/introspect")


def _raw_basic(raw: bytes) -> dict:
    """A Basic header carrying exactly these bytes."""
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def _percent_encoded(text: str) -> str:
    """Every character percent-encoded, as an RFC 6749 §2.3.1 client may send it."""
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))


@pytest.fixture
def world(app, demo):
    """The demo with a resource server's credentials."""
    return {**demo, **add_credentials(app, demo)}


def _credentials(world, path: str) -> tuple[str, str]:
    """The valid id and secret of whoever may call ``path``."""
    if path == "/oauth/introspect":
        return world["resource_server"]
    zapier = world["clients"]["zapier"]
    return zapier["client_id"], zapier["client_secret"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("case", list(NOT_UTF8))
def test_basic_credentials_that_are_not_utf8_are_401_invalid_client(client, world, path, case):
    client_id, secret = _credentials(world, path)
    raw = NOT_UTF8[case].replace(b"{id}", client_id.encode()).replace(
        b"{secret}", secret.encode())
    response = client.post(path, data={"grant_type": "refresh_token",
                                       "refresh_token": "fe_rt_" + "a" * 43,
                                       "token": world["api_key"]},
                           headers=_raw_basic(raw))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"


def _percent_basic(client_id: str, secret: str) -> dict:
    """Basic credentials with every character of both parts percent-encoded."""
    raw = f"{_percent_encoded(client_id)}:{_percent_encoded(secret)}"
    return _raw_basic(raw.encode("ascii"))


def test_percent_encoded_basic_credentials_refresh(client, world):
    first = connect(client, world)
    zapier = world["clients"]["zapier"]
    response = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
    }, headers=_percent_basic(zapier["client_id"], zapier["client_secret"]))
    assert response.status_code == 200, response.get_json()


def test_percent_encoded_basic_credentials_revoke_and_introspect(client, world):
    first = connect(client, world)
    zapier = world["clients"]["zapier"]
    revoked = client.post("/oauth/revoke", data={"token": first["refresh_token"]},
                          headers=_percent_basic(zapier["client_id"], zapier["client_secret"]))
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    judged = client.post("/oauth/introspect", data={"token": first["access_token"]},
                         headers=_percent_basic(*world["resource_server"]))
    assert judged.status_code == 200
    assert judged.get_json()["denial"]["reason"] == "token_revoked"


def test_percent_encoded_bytes_that_are_not_utf8_are_401_invalid_client(client, world):
    zapier = world["clients"]["zapier"]
    header = _raw_basic(f"{quote(zapier['client_id'])}:%FF%FE".encode("ascii"))
    response = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": "fe_rt_" + "a" * 43},
                           headers=header)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
