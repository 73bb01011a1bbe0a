"""The audit trail: log lines once committed, folded sign-in failures, ``flask audit list``."""

import io
import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.infra.logs import make_handler
from idp.store import audit
from tests.helpers import csrf_token
from tests.settings_support import add_connection
from tests.settings_support import add_key
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world


@pytest.fixture
def cli(app):
    """Run ``flask`` commands; the tuple is (exit code, standard output, all output)."""
    runner = app.test_cli_runner()

    def run(*args):
        with app.app_context():
            result = runner.invoke(args=list(args))
        return result.exit_code, result.stdout, result.output

    return run


@pytest.fixture
def acme(app):
    """Acme Realty with its owner, the connectors, a key and a connection."""
    built = world(app)
    built["key"], built["raw"] = add_key(app, built["org"], "Script")
    built["connection"] = add_connection(app, built["owner"], built["org"])
    return built


@pytest.fixture
def audit_lines():
    """Every line the ``idp.audit`` logger writes, in the JSON format, as dicts."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    logger = logging.getLogger("idp.audit")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(previous)


# One log line per event, once committed


def test_an_event_is_logged_once_its_transaction_commits(app, audit_lines):
    with app.app_context():
        audit.record(db.session, "client_disabled", utcnow(), actor="cli", subject="cli_1",
                     ip="203.0.113.9")
        assert audit_lines() == [], "nothing is logged before the commit"
        db.session.commit()
    [line] = audit_lines()
    assert line["logger"] == "idp.audit" and line["level"] == "INFO"
    assert line["message"] == "audit client_disabled actor=cli subject=cli_1 ip=203.0.113.9"
    assert line["audit"]["event"] == "client_disabled"
    assert {k: line["audit"][k] for k in ("org", "actor", "subject", "ip", "detail")} == {
        "org": None, "actor": "cli", "subject": "cli_1", "ip": "203.0.113.9", "detail": {}}


def test_a_rolled_back_event_is_never_logged(app, audit_lines):
    with app.app_context():
        audit.record(db.session, "client_disabled", utcnow(), actor="cli", subject="cli_1")
        db.session.rollback()
        audit.record(db.session, "client_enabled", utcnow(), actor="cli", subject="cli_1")
        db.session.commit()
    assert [line["audit"]["event"] for line in audit_lines()] == ["client_enabled"]


def test_details_are_quoted_and_a_stray_secret_is_redacted(app, audit_lines):
    with app.app_context():
        audit.record(db.session, "connection_created", utcnow(), org="org_1", subject="con_1",
                     scope="leads:read contacts:read", token="fe_at_" + "x" * 43)
        db.session.commit()
    [line] = audit_lines()
    assert 'scope="leads:read contacts:read"' in line["message"]
    assert audit.log_line({"event": "client_updated", "detail": {"changed": ["name", "code_ttl"]}}
                          ) == "audit client_updated changed=name,code_ttl"
    assert "x" * 43 not in json.dumps(line)


def test_a_disconnect_is_logged_with_who_and_where(client, app, acme, audit_lines):
    enter(client, app, acme["owner"])
    page = "/settings/connected-apps"
    post_form(client, page, f"{page}/{acme['connection']['id']}/disconnect")
    [line] = [entry["audit"] for entry in audit_lines()]
    assert (line["event"], line["actor"], line["subject"], line["ip"]) == (
        "connection_ended", acme["owner"], acme["connection"]["id"], "127.0.0.1")
    assert line["detail"]["reason"] == "disconnected"


# Failed sign-ins: one row per account, address and hour


def fail_sign_in(client, email, address="127.0.0.1"):
    """One wrong password from ``address``."""
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    response = client.post("/login", environ_base={"REMOTE_ADDR": address}, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": email,
        "password": "not the password"})
    assert response.status_code == 401


def test_a_flood_of_failures_adds_one_row_per_account_and_address(app, client, acme, clock,
                                                                   audit_lines):
    for _ in range(5):
        fail_sign_in(client, acme["owner"])
    for _ in range(3):
        fail_sign_in(client, "nobody@example.com")
    fail_sign_in(client, acme["owner"], "198.51.100.7")
    rows = events(app, "sign_in_failed")
    assert sorted((r.actor or "", r.ip, r.detail["count"]) for r in rows) == [
        ("", "127.0.0.1", 3), (acme["owner"], "127.0.0.1", 5),
        (acme["owner"], "198.51.100.7", 1)]
    assert len(audit_lines()) == 9, "every attempt is still logged"
    assert audit_lines()[4]["audit"]["detail"]["count"] == 5
    clock.shift(3601)
    fail_sign_in(client, acme["owner"])
    counts = [r.detail["count"] for r in events(app, "sign_in_failed")
              if r.actor == acme["owner"] and r.ip == "127.0.0.1"]
    assert counts == [5, 1], "an hour on, a new row starts"


# flask audit list


def test_audit_list_prints_newest_first_with_every_field(cli, acme):
    code, out, _ = cli("audit", "list", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [e["event"] for e in entries][:2] == ["api_key_created", "client_created"]
    created = entries[0]
    assert created["org"] == acme["org"] and created["subject"] == acme["key"]
    assert created["detail"]["name"] == "Script" and acme["raw"] not in out
    code, text, _ = cli("audit", "list")
    first = text.splitlines()[0].split("\t")
    assert first[1:5] == ["api_key_created", acme["org"], "cli", acme["key"]]
    assert first[6] == "name=Script scopes=leads:read"


def test_audit_list_filters(app, cli, acme, clock):
    harbor = add_org(app, "Harbor Homes")
    add_person(app, "hana@harbor.example", {harbor: "admin"})
    add_key(app, harbor, "Other")
    connection = acme["connection"]["id"]
    with app.app_context():
        audit.record(db.session, "connection_ended", utcnow(), org=acme["org"],
                     subject=connection, reason="disconnected")
        db.session.commit()

    def listed(*args):
        code, out, output = cli("audit", "list", "--json", *args)
        assert code == 0, output
        return [(e["event"], e["org"], e["subject"]) for e in json.loads(out)]

    assert {org for _, org, _ in listed("--org", acme["org"])} == {acme["org"]}
    assert listed("--connection", connection) == [("connection_ended", acme["org"], connection)]
    assert [e for e, _, _ in listed("--kind", "api_key_created")] == ["api_key_created"] * 2
    assert len(listed("--kind", "api_key_created", "--kind", "client_created")) == 4
    assert len(listed("--limit", "2")) == 2
    clock.shift(2 * 3600)
    assert listed("--since", "1h") == []
    assert len(listed("--since", "3h")) == 5
    since = (utcnow() - timedelta(hours=3)).isoformat(timespec="seconds")
    assert len(listed("--since", since)) == 5
    assert len(listed("--since", since + "+00:00")) == 5
    assert listed("--since", "2999-01-01T00:00:00Z") == []


#: (arguments, what the refusal says)
BAD_LISTS = {
    "since garbage": (["--since", "yesterday"], "neither an ISO date"),
    "since unit": (["--since", "5y"], "neither an ISO date"),
    "unknown kind": (["--kind", "key_stolen"], "No event kind 'key_stolen'"),
    "unknown org": (["--org", "org_nope"], "No organization 'org_nope'"),
    "unknown connection": (["--connection", "con_nope"], "No connection 'con_nope'"),
    "zero limit": (["--limit", "0"], "--limit"),
}


@pytest.mark.parametrize("case", list(BAD_LISTS))
def test_audit_list_refuses_bad_filters(cli, acme, case):
    args, message = BAD_LISTS[case]
    code, out, output = cli("audit", "list", *args)
    assert code == 2 and message in output and out == ""


def test_the_kinds_an_organization_can_filter_on_are_all_described():
    assert set(audit.ORG_KINDS) <= set(audit.KINDS)


def test_every_kind_the_code_records_is_described():
    # The Activity page and ``audit list`` name events in plain words; a kind added without a
    # description would show as its raw name.
    recorded = set()
    for path in Path(audit.__file__).parents[1].rglob("*.py"):
        for call in re.findall(r"audit\.record\((.{0,160}?),\s*(?:now|utcnow\(\))",
                               path.read_text(encoding="utf-8"), re.S):
            recorded.update(re.findall(r'"([a-z]+(?:_[a-z0-9]+)+)"', call))
    assert len(recorded) > 20
    assert recorded - set(audit.KINDS) == set()
