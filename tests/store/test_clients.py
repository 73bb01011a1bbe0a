"""Connector client registration and secret rotation (idp/store/clients.py)."""

import pytest

from idp.core.scopes import DEFAULT_SCOPES
from idp.infra.extensions import db
from idp.store import clients

ALL = " ".join(DEFAULT_SCOPES)


@pytest.mark.parametrize("uri", [
    "https://zapier.com/dashboard/auth/oauth/return/App1CLIAPI/",
    "https://www.make.com/oauth/cb/app",
    "https://eu1.make.com:8443/oauth/cb/app?x=1",
    "http://127.0.0.1:8080/cb",
    "http://localhost/cb",
])
def test_acceptable_redirect_uris(app, uri):
    with app.app_context():
        client, secret = clients.create_client("Zap", [uri], ALL, None, DEFAULT_SCOPES)
        assert client.redirect_uris == [uri] and secret.startswith("fe_cs_")


@pytest.mark.parametrize("uri", [
    "http://zapier.com/cb", "https://zapier.com/cb#frag", "https://zapier.com/cb#",
    "/relative/cb", "zapier.com/cb", "https://user@zapier.com/cb", "https://a:b@zapier.com/cb",
    "javascript:alert(1)", "ftp://zapier.com/cb", "https:///cb", "https://zapier.com:99999/cb",
    "https://zapier.com/c b", "https://zapier.com/cb\n", "",
])
def test_unsafe_redirect_uris_are_refused(app, uri):
    with app.app_context(), pytest.raises(clients.ClientError):
        clients.create_client("Zap", ["https://ok.example/cb", uri], ALL, None, DEFAULT_SCOPES)


@pytest.mark.parametrize(("allowed", "defaults", "uris"), [
    ("leads:read admin", None, ["https://ok.example/cb"]),
    ("leads:read", "leads:write", ["https://ok.example/cb"]),
    ("leads:read", None, []),
])
def test_bad_registrations_are_refused(app, allowed, defaults, uris):
    with app.app_context(), pytest.raises(clients.ClientError):
        clients.create_client("Zap", uris, allowed, defaults, DEFAULT_SCOPES)


def test_secret_is_stored_as_a_digest_and_rotation_keeps_one_previous(app):
    with app.app_context():
        client, first = clients.create_client("Zap", ["https://ok.example/cb"], ALL, None,
                                              DEFAULT_SCOPES)
        db.session.commit()
        assert first not in (client.secret_digest, client.previous_secret_digest)
        second = clients.rotate_secret(client, 60)
        assert client.check_client_secret(first) and client.check_client_secret(second)
        third = clients.rotate_secret(client, 60)
        # Only the secret replaced last keeps its overlap.
        assert not client.check_client_secret(first)
        assert client.check_client_secret(second) and client.check_client_secret(third)
        clients.rotate_secret(client, 0)
        assert not client.check_client_secret(third)
        assert client.previous_secret_digest is None
