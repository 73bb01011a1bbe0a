"""Settings -> Connected Apps through the Flask test client: list, confirm, disconnect, isolate."""

import pytest

from tests.settings_support import add_connection
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import connection_row
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world

PAGE = "/settings/connected-apps"


@pytest.fixture
def acme(app):
    """Acme Realty with its owner, a plain member, and the connectors."""
    built = world(app)
    built["member"] = add_person(app, "morgan@acme-realty.example", {built["org"]: "member"})
    return built


def disconnect_url(connection) -> str:
    """The confirmation page and the POST target of one connection."""
    return f"{PAGE}/{connection['id']}/disconnect"


def me(client, connection):
    """Status and reason of /api/v1/me with the connection's access token."""
    response = client.get("/api/v1/me",
                          headers={"Authorization": "Bearer " + connection["access"]})
    return response.status_code, (response.get_json().get("error") or {}).get("reason")


def refresh(client, acme, connection, name="Zapier"):
    """Status and error of a refresh with the connection's refresh token."""
    creds = acme["clients"][name]
    response = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": connection["refresh"],
        "client_id": creds["client_id"], "client_secret": creds["client_secret"]})
    return response.status_code, response.get_json().get("error")


def test_own_connections_in_plain_words(app, client, acme):
    mine = add_connection(app, acme["owner"], acme["org"], scope="leads:read contacts:write")
    assert me(client, mine) == (200, None)  # records last use and where from
    enter(client, app, acme["owner"])
    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "<h3>Zapier</h3>" in html and "Acme Realty" in html
    assert "See your leads" in html and "Create and change contacts" in html
    assert "leads:read" not in html  # people read words, not scope strings
    assert "Connected on" in html and "</time> from 127.0.0.1<" in html
    assert f'href="{disconnect_url(mine)}"' in html
    assert "Other people" not in html


def test_unused_connection_says_so(app, client, acme):
    add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["owner"])
    assert "Not used yet" in client.get(PAGE).get_data(as_text=True)


def test_managers_see_everyone_in_their_orgs_members_only_their_own(app, client, acme):
    theirs = add_connection(app, acme["member"], acme["org"], client_name="Make")
    mine = add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["owner"])
    html = client.get(PAGE).get_data(as_text=True)
    assert "Other people's connections in organizations you manage" in html
    assert "connected by morgan@acme-realty.example" in html
    assert disconnect_url(theirs) in html and disconnect_url(mine) in html

    enter(client, app, acme["member"])
    html = client.get(PAGE).get_data(as_text=True)
    assert disconnect_url(theirs) in html and disconnect_url(mine) not in html
    assert "Other people" not in html


def test_disconnect_asks_then_ends_the_connection_at_once(app, client, acme):
    mine = add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["owner"])
    confirm = client.get(disconnect_url(mine))
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Disconnect Zapier?" in html
    assert f'action="{disconnect_url(mine)}"' in html and ">Disconnect</button>" in html
    assert me(client, mine) == (200, None)  # looking at the question changes nothing

    response = post_form(client, PAGE, disconnect_url(mine))
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    assert connection_row(app, mine["id"]).end_reason == "disconnected"
    assert me(client, mine) == (401, "token_revoked")
    assert refresh(client, acme, mine) == (400, "invalid_grant")
    [event] = events(app, "connection_ended")
    assert (event.actor, event.subject, event.ip) == (acme["owner"], mine["id"], "127.0.0.1")
    after = client.get(PAGE).get_data(as_text=True)
    assert "Zapier is disconnected from Acme Realty." in after
    assert disconnect_url(mine) not in after


def test_a_manager_ends_someone_elses_connection_and_is_named(app, client, acme):
    theirs = add_connection(app, acme["member"], acme["org"])
    enter(client, app, acme["owner"])
    assert "connected by morgan@acme-realty.example" in client.get(
        disconnect_url(theirs)).get_data(as_text=True)
    assert post_form(client, PAGE, disconnect_url(theirs)).status_code == 302
    assert me(client, theirs) == (401, "token_revoked")
    [event] = events(app, "connection_ended")
    assert event.actor == acme["owner"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_orgs_connection_is_not_found_and_stays(app, client, acme, method):
    rival = add_org(app, "Rival Realty")
    stranger = add_person(app, "sam@rival.example", {rival: "owner"})
    theirs = add_connection(app, stranger, rival)
    enter(client, app, acme["owner"])
    if method == "post":
        response = post_form(client, PAGE, disconnect_url(theirs))
    else:
        response = client.get(disconnect_url(theirs))
    assert response.status_code == 404
    assert "sam@rival.example" not in response.get_data(as_text=True)
    assert connection_row(app, theirs["id"]).ended_at is None
    assert me(client, theirs) == (200, None)
    assert events(app, "connection_ended") == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_member_cannot_end_a_colleagues_connection(app, client, acme, method):
    owners = add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["member"])
    if method == "post":
        response = post_form(client, PAGE, disconnect_url(owners))
    else:
        response = client.get(disconnect_url(owners))
    assert response.status_code == 404
    assert me(client, owners) == (200, None)


def test_ended_and_unknown_connections_are_not_found(app, client, acme):
    mine = add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["owner"])
    assert post_form(client, PAGE, disconnect_url(mine)).status_code == 302
    assert post_form(client, PAGE, disconnect_url(mine)).status_code == 404
    assert client.get(disconnect_url({"id": "con_nope"})).status_code == 404
    assert len(events(app, "connection_ended")) == 1


def test_disconnect_without_csrf_token_is_refused(app, client, acme):
    mine = add_connection(app, acme["owner"], acme["org"])
    enter(client, app, acme["owner"])
    response = client.post(disconnect_url(mine))
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert me(client, mine) == (200, None)


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/settings/connected-apps"
