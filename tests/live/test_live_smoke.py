"""A real gunicorn process answers health and metadata."""

import requests


def test_live_server_answers(live_server):
    assert requests.get(live_server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    meta = requests.get(live_server.url + "/.well-known/oauth-authorization-server", timeout=5)
    assert meta.json()["issuer"] == live_server.url
    assert requests.get(live_server.url + "/readyz", timeout=5).status_code == 200
