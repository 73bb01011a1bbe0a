"""The connect flow end to end through the Flask test client."""

from tests.helpers import flask_connect
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.helpers import token_request


def test_connect_refresh_revoke(client, demo):
    flask_sign_in(client, demo)
    verifier, challenge = pkce_pair()
    response = flask_connect(client, demo, challenge=challenge)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["state"] == "st-123" and query["iss"] == "http://127.0.0.1:5000"
    zapier = demo["clients"]["zapier"]
    tokens = token_request(client, demo, {
        "grant_type": "authorization_code", "code": query["code"],
        "redirect_uri": zapier["redirect_uris"][0], "code_verifier": verifier,
    })
    assert tokens.status_code == 200, tokens.get_json()
    body = tokens.get_json()
    assert body["access_token"].startswith("fe_at_") and body["refresh_token"].startswith("fe_rt_")
    me = client.get("/api/v1/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 200, me.get_json()
    refreshed = token_request(client, demo, {"grant_type": "refresh_token",
                                             "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_json()
    again = token_request(client, demo, {"grant_type": "refresh_token",
                                         "refresh_token": body["refresh_token"]})
    assert again.get_json()["refresh_token"] == refreshed.get_json()["refresh_token"]
    revoked = client.post("/oauth/revoke", data={
        "token": refreshed.get_json()["refresh_token"], "client_id": zapier["client_id"],
        "client_secret": zapier["client_secret"]})
    assert revoked.status_code == 200
    dead = token_request(client, demo, {"grant_type": "refresh_token",
                                        "refresh_token": refreshed.get_json()["refresh_token"]})
    assert dead.status_code == 400 and dead.get_json()["error"] == "invalid_grant"
    me = client.get("/api/v1/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 401 and me.get_json()["error"]["reason"] == "token_revoked"
