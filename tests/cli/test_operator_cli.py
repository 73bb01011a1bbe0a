"""Operator commands: list/show, connection end, set-password, client update, input checks."""

import json

import pytest

from idp.infra.extensions import db
from idp.store import accounts
from idp.store import resource_servers
from tests.settings_support import PASSWORD
from tests.settings_support import add_connection
from tests.settings_support import add_key
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import connection_row
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import world

STRONG = "plum-ladder-quietly-47"


@pytest.fixture
def cli(app):
    """Run ``flask`` commands against the test app, with optional standard input."""
    runner = app.test_cli_runner()

    def run(*args, input=None):
        # Plain click commands get their app context from the real ``flask`` entry point.
        with app.app_context():
            return runner.invoke(args=list(args), input=input)

    return run


@pytest.fixture
def acme(app):
    """Acme Realty (owner, member), Harbor Homes (admin), the connectors, two connections."""
    built = world(app)
    built["harbor"] = add_org(app, "Harbor Homes")
    built["member"] = add_person(app, "morgan@acme-realty.example", {built["org"]: "member"})
    built["admin"] = add_person(app, "hana@harbor.example", {built["harbor"]: "admin"})
    built["zapier"] = add_connection(app, built["owner"], built["org"])
    built["make"] = add_connection(app, built["member"], built["org"], client_name="Make")
    return built


def ok(result) -> str:
    """What a command that succeeded printed (log lines go to standard error)."""
    assert result.exit_code == 0, result.output
    return result.stdout


def listed(result) -> list[dict]:
    """The JSON array a ``--json`` list printed."""
    return json.loads(ok(result))


def refused(result, message: str, code: int = 2) -> None:
    """The command failed with ``code`` and said ``message``."""
    assert result.exit_code == code, result.output
    assert message in result.output, result.output


def me(client, access: str):
    """GET /api/v1/me with an access token."""
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})


# Organizations, users, members


def test_org_list_and_show(app, cli, acme):
    ok(cli("suspend-org", acme["harbor"]))
    rows = listed(cli("org", "list", "--json"))
    assert [(r["id"], r["name"], r["suspended"]) for r in rows] == [
        (acme["org"], "Acme Realty", False), (acme["harbor"], "Harbor Homes", True)]
    assert listed(cli("org", "list", "--suspended", "--json"))[0]["id"] == acme["harbor"]
    assert f"{acme['org']}\tAcme Realty\tno\t" in ok(cli("org", "list", "--active"))
    shown = json.loads(ok(cli("org", "show", acme["org"])))
    assert [(m["email"], m["role"]) for m in shown["members"]] == [
        ("morgan@acme-realty.example", "member"), ("owner@acme-realty.example", "owner")]
    assert shown["live_connections"] == 2 and shown["api_keys"] == 0


def test_user_list_and_show_never_print_a_password_hash(app, cli, acme):
    everyone = ok(cli("user", "list"))
    assert "hana@harbor.example" in everyone and "$argon2" not in everyone
    rows = listed(cli("user", "list", "--org", acme["org"], "--json"))
    assert [r["email"] for r in rows] == ["morgan@acme-realty.example",
                                          "owner@acme-realty.example"]
    shown = json.loads(ok(cli("user", "show", acme["owner"])))
    assert shown["memberships"] == [{"org": acme["org"], "org_name": "Acme Realty",
                                     "role": "owner"}]
    assert shown["live_connections"] == 1 and "password_hash" not in shown
    assert json.loads(ok(cli("user", "show", shown["id"])))["email"] == acme["owner"]


def test_an_email_that_starts_like_a_user_id_is_still_an_email(app, cli, acme):
    email = add_person(app, "usr_jo@acme-realty.example", {acme["org"]: "member"})
    assert json.loads(ok(cli("user", "show", email)))["email"] == email
    assert [r["email"] for r in listed(cli("member", "list", "--user", email, "--json"))] == [
        email]
    assert f"removed {email}" in ok(cli("remove-member", email, acme["org"]))


def test_member_list_filters(cli, acme):
    rows = listed(cli("member", "list", "--json"))
    assert {(r["email"], r["org"], r["role"]) for r in rows} == {
        (acme["owner"], acme["org"], "owner"), (acme["member"], acme["org"], "member"),
        (acme["admin"], acme["harbor"], "admin")}
    assert [r["email"] for r in listed(cli("member", "list", "--org", acme["harbor"],
                                           "--json"))] == [acme["admin"]]
    assert [r["org"] for r in listed(cli("member", "list", "--user", acme["member"],
                                         "--json"))] == [acme["org"]]
    assert [r["email"] for r in listed(cli("member", "list", "--role", "owner",
                                           "--json"))] == [acme["owner"]]


def test_member_show(cli, acme):
    shown = json.loads(ok(cli("member", "show", acme["member"], acme["org"])))
    assert (shown["email"], shown["org"], shown["role"], shown["live_connections"]) == (
        acme["member"], acme["org"], "member", 1)


def test_remove_member_removes_and_refuses_a_second_time(cli, acme):
    assert "removed" in ok(cli("remove-member", acme["member"], acme["org"]))
    refused(cli("remove-member", acme["member"], acme["org"]), "is not a member of")


# Connections


def test_connection_list_filters(cli, acme):
    every = listed(cli("connection", "list", "--json"))
    assert [c["id"] for c in every] == [acme["make"]["id"], acme["zapier"]["id"]]
    assert every[1]["client_name"] == "Zapier" and every[1]["state"] == "live"
    assert acme["zapier"]["access"] not in json.dumps(every)
    by_user = listed(cli("connection", "list", "--user", acme["member"], "--json"))
    assert [c["id"] for c in by_user] == [acme["make"]["id"]]
    zapier = next(c["client"] for c in every if c["client_name"] == "Zapier")
    assert [c["id"] for c in listed(cli("connection", "list", "--client", zapier,
                                        "--json"))] == [acme["zapier"]["id"]]
    assert listed(cli("connection", "list", "--org", acme["harbor"], "--json")) == []
    assert len(listed(cli("connection", "list", "--limit", "1", "--json"))) == 1
    text = ok(cli("connection", "list", "--org", acme["org"]))
    assert acme["zapier"]["id"] in text and "Zapier" in text and acme["owner"] in text


def test_connection_end_works_as_disconnect(app, client, cli, acme):
    connection = acme["zapier"]
    assert me(client, connection["access"]).status_code == 200
    assert ok(cli("connection", "end", connection["id"])).strip() == f"{connection['id']} ended"
    response = me(client, connection["access"])
    assert response.status_code == 401
    assert response.get_json()["error"]["reason"] == "token_revoked"
    assert connection_row(app, connection["id"]).end_reason == "operator"
    ended = events(app, "connection_ended")
    assert [(e.subject, e.actor, e.org_public_id) for e in ended] == [
        (connection["id"], "cli", acme["org"])]
    assert [c["id"] for c in listed(cli("connection", "list", "--active", "--json"))] == [
        acme["make"]["id"]]
    assert [c["id"] for c in listed(cli("connection", "list", "--ended", "--json"))] == [
        connection["id"]]
    shown = json.loads(ok(cli("connection", "show", connection["id"])))
    assert shown["state"] == "ended" and shown["end_reason"] == "operator"
    assert shown["unexpired_access_tokens"] == 0
    refused(cli("connection", "end", connection["id"]), "already ended")


def test_connection_show_counts_live_tokens(cli, acme):
    shown = json.loads(ok(cli("connection", "show", acme["make"]["id"])))
    assert shown["client_name"] == "Make"
    assert sorted(shown["scope"]) == ["contacts:read", "leads:read"]
    assert shown["unexpired_access_tokens"] == 1
    assert acme["make"]["access"] not in json.dumps(shown)


# set-password


def test_set_password_prompts_twice_and_signs_out_everywhere(app, client, cli, acme):
    raw = enter(client, app, acme["owner"])
    assert client.get("/settings/connected-apps").status_code == 200
    result = cli("set-password", acme["owner"], input=f"{STRONG}\n{STRONG}\n")
    assert "password set for owner@acme-realty.example; 1 session signed out" in ok(result)
    assert STRONG not in result.output
    with app.app_context():
        user = accounts.find_user(acme["owner"])
        assert accounts.check_password(user, STRONG)
        assert not accounts.check_password(user, PASSWORD)
    assert raw and client.get("/settings/connected-apps").status_code == 302
    [event] = events(app, "password_set")
    assert event.subject.startswith("usr_") and STRONG not in json.dumps(event.detail)


def test_set_password_takes_no_password_argument(cli, acme):
    refused(cli("set-password", acme["owner"], STRONG), "unexpected extra argument")


def test_set_password_needs_the_same_password_twice(app, cli, acme):
    result = cli("set-password", acme["owner"], input=f"{STRONG}\n{STRONG}x\n")
    assert result.exit_code != 0 and "do not match" in result.output
    with app.app_context():
        assert accounts.check_password(accounts.find_user(acme["owner"]), PASSWORD)


#: (password typed twice, what the refusal says)
WEAK_PASSWORDS = {
    "short": ("Sh0rt-pass", "at least 12 characters"),
    "common": ("qwerty123456", "common passwords"),
    "common in capitals": ("QWERTY123456", "common passwords"),
    "one character": ("aaaaaaaaaaaaaaaa", "repeat one character"),
    "spaces": (" " * 14, "only spaces"),
    "the email": ("owner@acme-realty.example", "email address"),
}


@pytest.mark.parametrize("case", list(WEAK_PASSWORDS))
def test_set_password_refuses_a_weak_password(app, cli, acme, case):
    password, message = WEAK_PASSWORDS[case]
    refused(cli("set-password", acme["owner"], input=f"{password}\n{password}\n"), message)
    with app.app_context():
        assert accounts.check_password(accounts.find_user(acme["owner"]), PASSWORD)


# Validation of create-org and create-user


def test_create_org_refuses_a_name_taken_in_any_case(cli, acme):
    refused(cli("create-org", "ACME realty "), "'ACME realty' is taken: organization org_")
    refused(cli("create-org", "   "), "needs a name")
    assert ok(cli("create-org", "Acme Realty West")).startswith("org_")


def test_create_user_takes_no_password_option(cli):
    refused(cli("create-user", "x@example.com", "--name", "X", "--password", STRONG),
            "No such option")


def test_create_user_accepts_a_valid_email_and_password(app, cli):
    result = cli("create-user", " New.Person@Example.COM ", "--name", "New Person",
                 input=f"{STRONG}\n{STRONG}\n")
    assert ok(result).strip().splitlines()[-1].startswith("usr_")
    with app.app_context():
        assert accounts.find_user("new.person@example.com") is not None


#: (email, password, what the refusal says)
BAD_USERS = {
    "not an email": ("not-an-email", STRONG, "needs one @"),
    "no domain dot": ("a@localhost", STRONG, "domain after the @"),
    "space inside": ("a b@example.com", STRONG, "part before the @"),
    "two ats": ("a@b@example.com", STRONG, "part before the @"),
    "bad label": ("a@-example.com", STRONG, "domain after the @"),
    "numeric tld": ("a@example.123", STRONG, "domain after the @"),
    "too long": ("a" * 65 + "@example.com", STRONG, "too long"),
    "one-character password": ("x@example.com", "p", "at least 12 characters"),
    "common password": ("x@example.com", "password1234", "common passwords"),
    "taken": ("owner@acme-realty.example", STRONG, "already exists"),
}


@pytest.mark.parametrize("case", list(BAD_USERS))
def test_create_user_refuses_bad_input(app, cli, acme, case):
    email, password, message = BAD_USERS[case]
    refused(cli("create-user", email, "--name", "X", input=f"{password}\n{password}\n"),
            message)


# client update


def client_id(cli, name="Zapier") -> str:
    """The client_id of a client made by the world."""
    return next(c["client_id"] for c in listed(cli("client", "list", "--json"))
                if c["name"] == name)


def test_client_update_changes_every_setting_given(app, cli, acme):
    zapier = client_id(cli)
    result = json.loads(ok(cli(
        "client", "update", zapier, "--name", "Zapier (EU)",
        "--redirect-uri", "https://zapier.com/dashboard/auth/oauth/return/App1CLIAPI/",
        "--redirect-uri", "https://zapier.com/dashboard/auth/oauth/return/App2CLIAPI/",
        "--scopes", "leads:read leads:write", "--default-scopes", "leads:read",
        "--org", acme["org"], "--code-ttl", "30", "--access-token-ttl", "7200",
        "--refresh-token-ttl", "86400", "--no-require-pkce")))
    assert result["name"] == "Zapier (EU)"
    assert len(result["redirect_uris"]) == 2
    assert result["allowed_scopes"] == ["leads:read", "leads:write"]
    assert result["default_scopes"] == ["leads:read"]
    assert result["org_allowlist"] == [acme["org"]]
    assert (result["code_ttl"], result["access_token_ttl"], result["refresh_token_ttl"]) == (
        30, 7200, 86400)
    assert result["require_pkce"] is False
    assert "client_secret" not in json.dumps(result) and "digest" not in json.dumps(result)
    [event] = events(app, "client_updated")
    assert event.subject == zapier and set(event.detail["changed"]) == {
        "name", "redirect_uris", "allowed_scopes", "default_scopes", "org_allowlist",
        "code_ttl", "access_token_ttl", "refresh_token_ttl", "require_pkce"}
    again = json.loads(ok(cli("client", "update", zapier, "--any-org", "--code-ttl", "default",
                              "--require-pkce")))
    assert again["org_allowlist"] == [] and again["code_ttl"] is None
    assert again["effective_lifetimes"]["code_ttl"] == app.config["IDP_CODE_TTL"]
    assert again["changed"] == ["org_allowlist", "code_ttl", "require_pkce"]


def test_an_allowlist_update_unbinds_existing_connections(client, cli, acme):
    ok(cli("client", "update", client_id(cli), "--org", acme["harbor"]))
    response = me(client, acme["zapier"]["access"])
    assert response.status_code == 403
    assert response.get_json()["error"]["reason"] == "org_unbound"


#: (arguments after the client id, exit code, what the refusal says)
BAD_UPDATES = {
    "nothing": ([], 2, "Nothing to change"),
    "blank name": (["--name", "  "], 2, "name of 1 to 200"),
    "http redirect": (["--redirect-uri", "http://example.com/cb"], 2, "must use https"),
    "fragment": (["--redirect-uri", "https://example.com/cb#x"], 2, "fragment"),
    "unknown scope": (["--scopes", "leads:fly"], 2, "Unknown scopes"),
    "no scope": (["--scopes", " "], 2, "at least one allowed scope"),
    "defaults outside": (["--scopes", "leads:read", "--default-scopes", "tasks:read"], 2,
                         "not among the allowed"),
    "narrowed under defaults": (["--scopes", "leads:read"], 2, "not among the allowed"),
    "zero ttl": (["--code-ttl", "0"], 2, "at least 1 second"),
    "word ttl": (["--access-token-ttl", "soon"], 2, "not a number of seconds"),
    "unknown org": (["--org", "org_nope"], 2, "No organization"),
    "org and any": (["--org", "ORG", "--any-org"], 2, "not both"),
}


@pytest.mark.parametrize("case", list(BAD_UPDATES))
def test_client_update_refuses_bad_input(app, cli, acme, case):
    args, code, message = BAD_UPDATES[case]
    zapier = client_id(cli)
    refused(cli("client", "update", zapier, *[acme["org"] if a == "ORG" else a for a in args]),
            message, code)
    assert events(app, "client_updated") == []


def test_client_list_filters_and_create_refuses_a_zero_lifetime(cli, acme):
    zapier = client_id(cli)
    ok(cli("client", "disable", zapier))
    assert [c["client_id"] for c in listed(cli("client", "list", "--disabled", "--json"))] == [
        zapier]
    assert zapier not in ok(cli("client", "list", "--enabled"))
    refused(cli("client", "create", "--name", "X", "--redirect-uri", "https://example.com/cb",
                "--code-ttl", "0"), "--code-ttl")


# Unknown things are errors, never a silent success


#: (command, the refusal)
UNKNOWN = {
    "org show": (["org", "show", "org_nope"], "No organization 'org_nope'"),
    "user show": (["user", "show", "ghost@x.example"], "No user 'ghost@x.example'"),
    "user list --org": (["user", "list", "--org", "org_nope"], "No organization"),
    "member list --user": (["member", "list", "--user", "ghost@x.example"], "No user"),
    "member list --org": (["member", "list", "--org", "org_nope"], "No organization"),
    "member show user": (["member", "show", "ghost@x.example", "ORG"], "No user"),
    "member show org": (["member", "show", "owner@acme-realty.example", "org_nope"],
                        "No organization"),
    "member show outsider": (["member", "show", "hana@harbor.example", "ORG"],
                             "is not a member of"),
    "remove-member user": (["remove-member", "ghost@x.example", "ORG"], "No user"),
    "remove-member org": (["remove-member", "owner@acme-realty.example", "org_nope"],
                          "No organization"),
    "connection show": (["connection", "show", "con_nope"], "No connection 'con_nope'"),
    "connection end": (["connection", "end", "con_nope"], "No connection 'con_nope'"),
    "connection list --client": (["connection", "list", "--client", "cli_nope"], "No client"),
    "connection list both": (["connection", "list", "--active", "--ended"], "not both"),
    "set-password": (["set-password", "ghost@x.example"], "No user"),
    "client update": (["client", "update", "cli_nope", "--name", "X"], "No client"),
}


@pytest.mark.parametrize("case", list(UNKNOWN))
def test_unknown_things_are_errors(cli, acme, case):
    args, message = UNKNOWN[case]
    result = cli(*[acme["org"] if a == "ORG" else a for a in args], input="")
    refused(result, message)


#: Every list command, with the arguments it needs ("ORG": the Acme organization).
LISTS = {
    "org": ["org", "list"],
    "user": ["user", "list"],
    "member": ["member", "list"],
    "client": ["client", "list"],
    "connection": ["connection", "list"],
    "audit": ["audit", "list"],
    "api-key": ["api-key", "list", "--org", "ORG"],
    "resource-server": ["resource-server", "list"],
}


@pytest.mark.parametrize("case", list(LISTS))
def test_every_list_prints_json(app, cli, acme, case):
    add_key(app, acme["org"], "Script")
    with app.app_context():
        resource_servers.create("Leads API")
        db.session.commit()
    rows = listed(cli(*[acme["org"] if a == "ORG" else a for a in LISTS[case]], "--json"))
    assert isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
    assert "fe_k_" not in json.dumps(rows) and "digest" not in json.dumps(rows)
