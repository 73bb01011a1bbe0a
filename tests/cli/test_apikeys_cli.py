"""The api-key and resource-server commands, and the demo seed's key and resource server."""

import json
import re
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import ApiKey
from idp.store.models import AuditEvent
from tests.oauth.test_introspection import basic


@pytest.fixture
def cli(app):
    """Run ``flask`` commands against the test app."""
    runner = app.test_cli_runner()

    def run(*args):
        # Plain click commands (create-org, seed-demo) get their app context from the real
        # ``flask`` entry point; the test runner needs one pushed.
        with app.app_context():
            return runner.invoke(args=list(args))

    return run


@pytest.fixture
def org(demo):
    """The demo organization's id."""
    return demo["organization"]["id"]


def created(result) -> dict:
    """The JSON a create command printed."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def me(client, raw):
    """GET /api/v1/me with a bearer."""
    return client.get("/api/v1/me", headers={"Authorization": "Bearer " + raw})


def test_create_prints_the_key_once_and_stores_a_digest(app, client, cli, org, demo):
    out = created(cli("api-key", "create", "--org", org, "--name", "Zapier",
                      "--scopes", "leads:read contacts:read", "--created-by",
                      demo["user"]["email"]))
    assert re.fullmatch(r"fe_k_[0-9a-f]{32}", out["api_key"])
    assert out["key_id"].startswith("key_") and out["scopes"] == "contacts:read leads:read"
    response = me(client, out["api_key"])
    assert response.status_code == 200
    assert response.get_json()["api_key"] == {"id": out["key_id"], "name": "Zapier"}
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == out["key_id"]))
        assert key.digest != out["api_key"] and key.last4 == out["api_key"][-4:]
        assert key.created_by.email == demo["user"]["email"]
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.subject == key.public_id))
        assert event.event == "api_key_created" and out["api_key"] not in json.dumps(event.detail)
    listing = cli("api-key", "list", "--org", org).output
    assert out["key_id"] in listing and out["api_key"] not in listing
    assert "fe_k_…" + out["api_key"][-4:] in listing


def test_commas_separate_scopes_too(cli, org):
    out = created(cli("api-key", "create", "--org", org, "--name", "Make",
                      "--scopes", "leads:read,tasks:write"))
    assert out["scopes"] == "leads:read tasks:write"


def test_expires_means_from_the_start_of_that_day(app, client, cli, org, clock):
    day = date.today() + timedelta(days=3)
    out = created(cli("api-key", "create", "--org", org, "--name", "Temp", "--scopes",
                      "leads:read", "--expires", day.isoformat()))
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == out["key_id"]))
        assert key.expires_at == datetime(day.year, day.month, day.day)
    assert me(client, out["api_key"]).status_code == 200
    clock.shift(4 * 24 * 3600)
    response = me(client, out["api_key"])
    assert response.status_code == 403 and response.get_json()["error"]["reason"] == "key_expired"
    assert "Expired" in cli("api-key", "list", "--org", org).output


#: "ORG" stands for the demo organization's id.
BAD_CREATES = {
    "unknown org": (["--org", "org_nope", "--name", "X", "--scopes", "leads:read"],
                    "No organization"),
    "no org": (["--name", "X", "--scopes", "leads:read"], "--org"),
    "unknown scope": (["--org", "ORG", "--name", "X", "--scopes", "leads:fly"],
                      "Unknown scopes"),
    "no scope": (["--org", "ORG", "--name", "X", "--scopes", ""], "at least one scope"),
    "blank name": (["--org", "ORG", "--name", "  ", "--scopes", "leads:read"], "name"),
    "duplicate name": (["--org", "ORG", "--name", "Demo key", "--scopes", "leads:read"],
                       "already has a key"),
    "past expiry": (["--org", "ORG", "--name", "X", "--scopes", "leads:read",
                     "--expires", "2020-01-01"], "future"),
    "bad date": (["--org", "ORG", "--name", "X", "--scopes", "leads:read",
                  "--expires", "01/02/2030"], "%Y-%m-%d"),
    "unknown creator": (["--org", "ORG", "--name", "X", "--scopes", "leads:read",
                         "--created-by", "nobody@example.com"], "No user"),
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
def test_create_refuses_bad_input_with_exit_code_2(cli, org, case):
    args, message = BAD_CREATES[case]
    result = cli("api-key", "create", *[org if a == "ORG" else a for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "fe_k_" not in result.output


def test_disable_enable_revoke(client, cli, org):
    out = created(cli("api-key", "create", "--org", org, "--name", "Script",
                      "--scopes", "leads:read"))
    raw, key_id = out["api_key"], out["key_id"]
    assert cli("api-key", "disable", key_id).exit_code == 0
    assert me(client, raw).get_json()["error"]["reason"] == "key_inactive"
    assert "Disabled" in cli("api-key", "list", "--org", org).output
    assert cli("api-key", "enable", key_id).exit_code == 0
    assert me(client, raw).status_code == 200
    assert cli("api-key", "revoke", key_id).exit_code == 0
    response = me(client, raw)
    assert response.status_code == 401 and response.get_json()["error"]["reason"] == \
        "unknown_token"
    assert key_id not in cli("api-key", "list", "--org", org).output


@pytest.mark.parametrize("action", ["disable", "enable", "revoke"])
def test_unknown_key_ids_are_usage_errors(cli, action):
    result = cli("api-key", action, "key_doesnotexist")
    assert result.exit_code == 2 and "No API key" in result.output


def test_list_shows_only_that_organizations_keys(cli, org, demo):
    other = cli("create-org", "Elsewhere").output.strip()
    out = created(cli("api-key", "create", "--org", other, "--name", "Theirs",
                      "--scopes", "leads:read"))
    assert out["key_id"] not in cli("api-key", "list", "--org", org).output
    assert out["key_id"] in cli("api-key", "list", "--org", other).output


def test_resource_server_lifecycle(client, cli, demo):
    out = created(cli("resource-server", "create", "--name", "Leads API"))
    assert re.fullmatch(r"rs_[0-9a-f]{20}", out["client_id"])
    assert out["client_secret"].startswith("fe_rs_") and len(out["client_secret"]) >= 49

    memo = client.application.extensions["idp.resource_server_memo"]

    def introspect(secret):
        # A successful check is remembered for up to 5 s per process (tested on its own in
        # test_oauth_resource_auth.py); here every call sees the database, as after that bound.
        memo.clear()
        return client.post("/oauth/introspect", data={"token": demo["api_key"]},
                           headers=basic(out["client_id"], secret)).status_code

    assert introspect(out["client_secret"]) == 200
    listing = cli("resource-server", "list").output
    assert out["client_id"] in listing and "enabled" in listing
    assert out["client_secret"] not in listing
    assert cli("resource-server", "disable", out["client_id"]).exit_code == 0
    assert introspect(out["client_secret"]) == 401
    assert cli("resource-server", "enable", out["client_id"]).exit_code == 0
    assert introspect(out["client_secret"]) == 200
    rotated = created(cli("resource-server", "rotate-secret", out["client_id"]))
    assert introspect(out["client_secret"]) == 401
    assert introspect(rotated["client_secret"]) == 200


@pytest.mark.parametrize("args, code", [(["create", "--name", " "], 2),
                                        (["disable", "rs_nope"], 2), (["enable", "rs_nope"], 2),
                                        (["rotate-secret", "rs_nope"], 2)])
def test_resource_server_usage_errors(cli, args, code):
    assert cli("resource-server", *args).exit_code == code


def test_seed_demo_twice_prints_fresh_working_credentials(client, cli):
    first = created(cli("seed-demo", "--json"))
    second = created(cli("seed-demo", "--json"))
    assert first["api_key"] != second["api_key"]
    assert second["resource_server"]["client_id"] == first["resource_server"]["client_id"]
    assert me(client, first["api_key"]).status_code == 401
    body = me(client, second["api_key"]).get_json()
    assert body["api_key"]["name"] == "Demo key"
    assert body["organization"]["id"] == second["organization"]["id"]
    assert len(body["scopes"]) == 12
    rs = second["resource_server"]
    old = first["resource_server"]
    data = {"token": second["api_key"]}
    assert client.post("/oauth/introspect", data=data,
                       headers=basic(rs["client_id"], rs["client_secret"])).status_code == 200
    assert client.post("/oauth/introspect", data=data,
                       headers=basic(old["client_id"], old["client_secret"])).status_code == 401
