"""The organization switcher: only the user's own orgs, CSRF-protected, kept in the session."""

import pytest

from tests.settings_support import add_key
from tests.settings_support import add_membership
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import enter
from tests.settings_support import post_form
from tests.settings_support import world

SWITCH = "/settings/organization"
KEYS = "/settings/api-keys"


@pytest.fixture
def acme(app):
    """Acme (owner) plus Harbor Homes where the same person is admin, and a stranger's org."""
    built = world(app)
    built["harbor"] = add_org(app, "Harbor Homes")
    built["rival"] = add_org(app, "Rival Realty")
    add_membership(app, built["owner"], built["harbor"], "admin")
    add_key(app, built["org"], "Acme integration")
    add_key(app, built["harbor"], "Harbor integration")
    add_key(app, built["rival"], "Rival integration")
    return built


def switch(client, org_id, next_=KEYS):
    """POST the switcher with the CSRF token of the API Keys page."""
    return post_form(client, KEYS, SWITCH, {"organization": org_id, "next": next_})


def test_switcher_lists_only_the_users_orgs(app, client, acme):
    enter(client, app, acme["owner"])
    html = client.get(KEYS).get_data(as_text=True)
    assert '<label for="org-switch">Organization</label>' in html
    assert f'value="{acme["org"]}"' in html and f'value="{acme["harbor"]}"' in html
    assert acme["rival"] not in html
    # Acme comes first by name and is the current organization until the user switches.
    assert "Acme integration" in html and "Harbor integration" not in html


def test_no_switcher_with_a_single_org(app, client):
    built = world(app)
    enter(client, app, built["owner"])
    html = client.get(KEYS).get_data(as_text=True)
    assert 'id="org-switch"' not in html and "Acme Realty" in html


def test_switching_changes_what_api_keys_shows(app, client, acme):
    enter(client, app, acme["owner"])
    response = switch(client, acme["harbor"])
    assert response.status_code == 302 and response.headers["Location"] == KEYS
    html = client.get(KEYS).get_data(as_text=True)
    assert "You are now working in Harbor Homes." in html
    assert "Harbor integration" in html and "Acme integration" not in html
    created = post_form(client, KEYS, KEYS, {"name": "Made in Harbor", "scopes": ["leads:read"]})
    assert created.status_code == 201 and "Harbor Homes" in created.get_data(as_text=True)


@pytest.mark.parametrize("target", ["rival", "unknown", "empty"])
def test_switching_to_an_org_the_user_is_not_in_is_not_found(app, client, acme, target):
    enter(client, app, acme["owner"])
    org_id = {"rival": acme["rival"], "unknown": "org_nope", "empty": ""}[target]
    response = switch(client, org_id)
    assert response.status_code == 404
    html = client.get(KEYS).get_data(as_text=True)
    assert "Acme integration" in html and "Rival integration" not in html


def test_switching_without_csrf_token_is_refused(app, client, acme):
    enter(client, app, acme["owner"])
    response = client.post(SWITCH, data={"organization": acme["harbor"], "next": KEYS})
    assert response.status_code == 400
    assert "Acme integration" in client.get(KEYS).get_data(as_text=True)


@pytest.mark.parametrize("next_", ["https://evil.example/", "//evil.example/x", ""])
def test_switching_only_returns_to_a_local_page(app, client, acme, next_):
    enter(client, app, acme["owner"])
    response = switch(client, acme["harbor"], next_)
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/connected-apps"


def test_a_member_of_the_chosen_org_gets_the_403_page(app, client, acme):
    member = add_person(app, "morgan@acme-realty.example",
                        {acme["org"]: "member", acme["harbor"]: "owner"})
    enter(client, app, member)
    assert client.get(KEYS).status_code == 403  # Acme first: a member there
    assert switch(client, acme["harbor"]).status_code == 302
    assert "Harbor integration" in client.get(KEYS).get_data(as_text=True)
