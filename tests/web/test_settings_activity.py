"""Settings -> Activity: an organization's audit trail, for its owners and admins only."""

import re

import pytest

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import audit
from tests.settings_support import RAW_KEY
from tests.settings_support import add_connection
from tests.settings_support import add_key
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import enter
from tests.settings_support import post_form
from tests.settings_support import world

PAGE = "/settings/activity"


@pytest.fixture
def acme(app):
    """Acme Realty (owner, admin, member), Harbor Homes, a key and a connection in Acme."""
    built = world(app)
    built["admin"] = add_person(app, "ada@acme-realty.example", {built["org"]: "admin"})
    built["member"] = add_person(app, "morgan@acme-realty.example", {built["org"]: "member"})
    built["harbor"] = add_org(app, "Harbor Homes")
    built["key"], built["raw"] = add_key(app, built["org"], "Zapier lead sync")
    built["connection"] = add_connection(app, built["member"], built["org"])
    return built


def rows(html: str) -> list[str]:
    """The text of each event row."""
    bodies = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1], re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", body).split()) for body in bodies]


def test_owners_see_who_did_what_when_and_from_where(app, client, acme):
    enter(client, app, acme["owner"])
    connections = "/settings/connected-apps"
    post_form(client, connections, f"{connections}/{acme['connection']['id']}/disconnect",
              environ_base={"REMOTE_ADDR": "203.0.113.5"})
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert html.count("<h1") == 1 and ">Activity</h1>" in html
    assert '<label for="activity-kind">' in html and 'id="activity-kind"' in html
    assert '<th scope="col">When</th>' in html and '<th scope="col">From</th>' in html
    first, second = rows(html)
    assert "Connection ended" in first and "Zapier, connected by morgan@acme-realty.example" \
        in first
    assert "owner@acme-realty.example" in first and "203.0.113.5" in first
    assert "Reason: disconnected" in first
    assert "API key created" in second and "API key “Zapier lead sync”" in second
    assert "An operator" in second
    assert RAW_KEY.search(html) is None and acme["raw"] not in html
    assert f'href="{PAGE}"' in html and 'aria-current="page">Activity' in html


def test_the_kind_filter_shows_one_kind(app, client, acme):
    enter(client, app, acme["admin"])
    html = client.get(PAGE, query_string={"kind": "connection_ended"}).get_data(as_text=True)
    assert "Nothing has happened in Acme Realty yet of this kind." in html
    html = client.get(PAGE, query_string={"kind": "api_key_created"}).get_data(as_text=True)
    assert len(rows(html)) == 1
    assert '<option value="api_key_created" selected>' in html
    # An unknown kind (typed into the URL) shows everything rather than an error.
    assert len(rows(client.get(PAGE, query_string={"kind": "nope"}).get_data(as_text=True))) == 1


def test_only_this_organizations_events_are_shown(app, client, acme):
    add_key(app, acme["harbor"], "Harbor key")
    with app.app_context():
        audit.record(db.session, "client_disabled", utcnow(), actor="cli", subject="cli_x")
        db.session.commit()
    enter(client, app, acme["owner"])
    html = client.get(PAGE).get_data(as_text=True)
    assert "Harbor key" not in html and "cli_x" not in html
    assert len(rows(html)) == 1


def test_pages_of_fifty_newest_first(app, client, acme):
    with app.app_context():
        for number in range(60):
            audit.record(db.session, "api_key_disabled", utcnow(), org=acme["org"],
                         actor=f"person{number:02}@acme-realty.example", subject="key_x")
        db.session.commit()
    enter(client, app, acme["owner"])
    first = client.get(PAGE).get_data(as_text=True)
    assert len(rows(first)) == 50 and "Older events" in first and "Newer events" not in first
    second = client.get(PAGE, query_string={"page": 2}).get_data(as_text=True)
    assert len(rows(second)) == 11 and "Newer events" in second and "Older events" not in second
    assert "API key created" in rows(second)[-1]
    beyond = client.get(PAGE, query_string={"page": 99}).get_data(as_text=True)
    assert "No more events." in beyond
    assert client.get(PAGE, query_string={"page": "x"}).status_code == 200


def test_members_get_403_and_no_link(app, client, acme):
    enter(client, app, acme["member"])
    response = client.get(PAGE)
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "Activity is for owners and admins" in html and "Zapier lead sync" not in html
    assert f'href="{PAGE}"' not in html
    assert f'href="{PAGE}"' not in client.get("/settings/connected-apps").get_data(as_text=True)


def test_people_without_an_organization_get_403(app, client, acme):
    enter(client, app, add_person(app, "solo@example.com", {}))
    assert client.get(PAGE).status_code == 403


def test_signed_out_people_are_sent_to_sign_in(client, acme):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
