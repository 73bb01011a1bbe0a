"""A receiver against a real gunicorn IdP: it finds the endpoints in the metadata, makes a
poll stream, long-polls with ``requests`` while an operator disables an API key, and checks
the SET it receives against the published keys, as a resource server would."""

import threading
import time

import pytest
import requests

from idp.core.ssf_events import access_paused
from tests.ssf_support import decode
from tests.ssf_support import served_world

pytestmark = pytest.mark.live


def test_a_receiver_long_polls_a_real_server_and_verifies_its_set(live_server, make_app):
    # Same database and issuer as the server: the operator's commands run beside it.
    operator, client_id, auth, key_id, _ = served_world(make_app, live_server.url)

    meta = requests.get(live_server.url + "/.well-known/ssf-configuration", timeout=5).json()
    created = requests.post(meta["configuration_endpoint"], json={}, auth=auth, timeout=5)
    assert created.status_code == 201
    poll_url = created.json()["delivery"]["endpoint_url"]
    assert poll_url == f"{live_server.url}/ssf/poll/{created.json()['stream_id']}"

    disable = threading.Timer(0.5, operator.test_cli_runner().invoke,
                              kwargs={"args": ["api-key", "disable", key_id]})
    started = time.monotonic()
    disable.start()
    try:
        answer = requests.post(poll_url, json={}, auth=auth, timeout=30)
    finally:
        disable.join()
    assert answer.status_code == 200
    # The long poll (10 s by default) ended when the change committed, not at its timeout.
    assert time.monotonic() - started < 8
    [(jti, token)] = answer.json()["sets"].items()

    claims = decode(token, requests.get(meta["jwks_uri"], timeout=5).json()).claims
    assert (claims["iss"], claims["aud"], claims["jti"], claims["stream_seq"]) == (
        live_server.url, client_id, jti, 1)
    assert claims["sub_id"] == {"format": "opaque", "id": key_id}
    assert claims["events"][access_paused(live_server.url)]["reason"] == "api_key_disabled"

    acked = requests.post(poll_url, json={"ack": [jti], "returnImmediately": True}, auth=auth,
                          timeout=5)
    assert acked.json() == {"sets": {}, "moreAvailable": False}
    refused = requests.post(poll_url, json={}, auth=(client_id, "wrong"), timeout=5)
    assert refused.status_code == 401 and refused.json()["err"] == "invalid_client"
