"""Per-client require_pkce (RFC 7636 §4.4.1): new and demo clients refuse a request without S256."""

import json

import pytest
from flask_migrate import upgrade
from sqlalchemy import select
from sqlalchemy import text

from idp.cli.demo import seed_demo
from idp.core.scopes import DEFAULT_SCOPES
from idp.infra.extensions import db
from idp.store import clients
from idp.store.models import Client
from idp.store.models import Connection
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.oauth_helpers import ISSUER
from tests.oauth_helpers import authorize_url
from tests.oauth_helpers import client_row
from tests.oauth_helpers import consent
from tests.oauth_helpers import exchange

#: The revision before require_pkce existed.
BEFORE_FLAG = "a3c9e1d27b40"


def connections(app) -> int:
    """How many connections exist."""
    with app.app_context():
        return len(db.session.scalars(select(Connection.id)).all())


@pytest.mark.parametrize("key", ["zapier", "make"])
@pytest.mark.parametrize("params", [
    {"code_challenge": None, "code_challenge_method": None},
    {"code_challenge": None, "code_challenge_method": "S256"},
    {"code_challenge": "a" * 43, "code_challenge_method": "plain"},
    {"code_challenge": "a" * 43, "code_challenge_method": None},
])
def test_demo_clients_refuse_a_request_without_s256(app, client, demo, key, params):
    flask_sign_in(client, demo)
    response = client.get(authorize_url(demo, key, state="s-1", **params))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(demo["clients"][key]["redirect_uris"][0] + "?")
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request" and query["state"] == "s-1"
    assert query["iss"] == ISSUER and "code" not in query
    assert connections(app) == 0


def test_the_redirect_uri_is_judged_first(client, demo):
    flask_sign_in(client, demo)
    url = authorize_url(demo, redirect_uri="https://evil.example/cb", code_challenge=None)
    response = client.get(url)
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_client_without_the_flag_may_skip_pkce(app, client, demo):
    with app.app_context():
        client_row(demo).require_pkce = False
        db.session.commit()
    flask_sign_in(client, demo)
    url = authorize_url(demo, code_challenge=None)
    response = consent(client, url, demo["organization"]["id"])
    assert response.status_code == 302
    code = query_of(response.headers["Location"])["code"]
    assert exchange(client, demo, code, None).status_code == 200


def test_with_s256_the_flow_completes(client, demo):
    flask_sign_in(client, demo)
    verifier, challenge = pkce_pair()
    response = consent(client, authorize_url(demo, "make", code_challenge=challenge,
                                             code_challenge_method="S256"),
                       demo["organization"]["id"])
    code = query_of(response.headers["Location"])["code"]
    assert exchange(client, demo, code, verifier, "make").status_code == 200


def test_new_clients_require_pkce_unless_told_otherwise(app):
    with app.app_context():
        strict, _ = clients.create_client("Zap", ["https://a.example/cb"], "leads:read", None,
                                          DEFAULT_SCOPES)
        lax, _ = clients.create_client("Old", ["https://b.example/cb"], "leads:read", None,
                                       DEFAULT_SCOPES, require_pkce=False)
        db.session.commit()
        assert strict.require_pkce is True and lax.require_pkce is False


@pytest.mark.parametrize(("flag", "expected"), [
    ([], True), (["--require-pkce"], True), (["--no-require-pkce"], False),
])
def test_cli_sets_the_flag_on_creation(app, flag, expected):
    runner = app.test_cli_runner()
    with app.app_context():
        created = runner.invoke(args=["client", "create", "--name", "Acme sync",
                                      "--redirect-uri", "https://sync.example/cb", *flag])
        assert created.exit_code == 0, created.output
        client_id = json.loads(created.stdout)["client_id"]
        shown = runner.invoke(args=["client", "show", client_id])
        assert json.loads(shown.output)["require_pkce"] is expected
        row = db.session.scalar(select(Client).where(Client.public_id == client_id))
        assert row.require_pkce is expected


def test_migration_keeps_existing_clients_working_and_seed_demo_turns_it_on(make_app, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    app = make_app(SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        upgrade(revision=BEFORE_FLAG)
        for name in ("Zapier", "Legacy"):
            db.session.execute(text(
                "INSERT INTO clients (public_id, name, secret_digest, redirect_uris, "
                "allowed_scopes, default_scopes, org_allowlist, enabled, created_at) VALUES "
                f"('cli_{name.lower()}', '{name}', '{'0' * 64}', "
                "'[\"https://zapier.com/dashboard/auth/oauth/return/App1CLIAPI/\"]', "
                "'leads:read', 'leads:read', '[]', 1, '2026-11-01 00:00:00')"))
        db.session.commit()
        upgrade()
        flags = dict(db.session.execute(select(Client.name, Client.require_pkce)).all())
        assert flags == {"Zapier": False, "Legacy": False}
        seed_demo()
        flags = dict(db.session.execute(select(Client.name, Client.require_pkce)).all())
        assert flags == {"Zapier": True, "Legacy": False, "Make": True}
