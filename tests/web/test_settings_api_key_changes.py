"""Settings -> API Keys, after creation: roll with an overlap, rename, re-scope, expiry presets."""

from datetime import datetime
from datetime import time
from datetime import timedelta

import pytest

from idp.core.clock import utcnow
from tests.settings_support import RAW_KEY
from tests.settings_support import add_key
from tests.settings_support import add_org
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import key_row
from tests.settings_support import key_row_id
from tests.settings_support import post_form
from tests.settings_support import world

PAGE = "/settings/api-keys"


@pytest.fixture
def acme(app):
    """Acme Realty with its owner signed in elsewhere, and the key "Zapier lead sync"."""
    built = world(app)
    built["key_id"], built["raw"] = add_key(app, built["org"], "Zapier lead sync")
    return built


@pytest.fixture
def owner(app, client, acme):
    """Acme's owner, signed in."""
    enter(client, app, acme["owner"])
    return acme["owner"]


def me(client, raw):
    """Status and reason of /api/v1/me with this key."""
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    return response.status_code, (response.get_json().get("error") or {}).get("reason")


def roll(client, key_id, overlap):
    """Submit the Roll page with the chosen overlap (seconds)."""
    return post_form(client, f"{PAGE}/{key_id}/roll", f"{PAGE}/{key_id}/roll",
                     {"overlap": str(overlap)})


def test_roll_shows_a_new_key_once_and_the_old_one_works_for_the_overlap(
        app, client, owner, acme, clock):
    old = acme["raw"]
    page = client.get(f"{PAGE}/{acme['key_id']}/roll")
    assert page.status_code == 200 and "Keep the current key working for" in page.text
    response = roll(client, acme["key_id"], 3600)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert "API key rolled" in response.text and "It will not be shown again" in response.text
    new = RAW_KEY.search(response.text).group(0)
    assert new != old and old not in response.text
    assert f"fe_k_…{old[-4:]}" in response.text and "keeps working until" in response.text

    assert me(client, new) == (200, None) and me(client, old) == (200, None)
    listing = client.get(PAGE).text
    assert f"fe_k_…{new[-4:]}" in listing and f"Old key <code>fe_k_…{old[-4:]}</code>" in listing
    assert not RAW_KEY.search(listing)
    [event] = events(app, "api_key_rolled")
    assert (event.actor, event.subject, event.ip) == (owner, acme["key_id"], "127.0.0.1")
    assert event.detail["overlap_seconds"] == 3600

    clock.shift(3599)
    assert me(client, old) == (200, None)
    clock.shift(2)
    # Past the overlap the old secret belongs to no key: unknown, like a revoked key.
    assert me(client, old) == (401, "unknown_token")
    assert me(client, new) == (200, None)
    assert "Old key <code>" not in client.get(PAGE).text


def test_roll_with_no_overlap_stops_the_old_key_at_once(app, client, owner, acme):
    response = roll(client, acme["key_id"], 0)
    assert response.status_code == 201 and "Stopped now" in response.text
    assert me(client, acme["raw"]) == (401, "unknown_token")
    assert me(client, RAW_KEY.search(response.text).group(0)) == (200, None)


def test_rolling_again_keeps_only_the_latest_old_key(app, client, owner, acme):
    first = RAW_KEY.search(roll(client, acme["key_id"], 86400).text).group(0)
    assert "still works until" in client.get(f"{PAGE}/{acme['key_id']}/roll").text
    second = RAW_KEY.search(roll(client, acme["key_id"], 86400).text).group(0)
    assert me(client, acme["raw"]) == (401, "unknown_token")
    assert me(client, first) == (200, None) and me(client, second) == (200, None)


def test_the_old_key_obeys_disable_like_the_new_one(app, client, owner, acme):
    roll(client, acme["key_id"], 86400)
    post_form(client, PAGE, f"{PAGE}/{acme['key_id']}/disable")
    assert me(client, acme["raw"]) == (403, "key_inactive")


@pytest.mark.parametrize("overlap", ["", "60", "forever"])
def test_roll_refuses_an_overlap_not_offered(app, client, owner, acme, overlap):
    response = roll(client, acme["key_id"], overlap)
    assert response.status_code == 400
    assert not RAW_KEY.search(response.text) and events(app, "api_key_rolled") == []
    assert me(client, acme["raw"]) == (200, None)


def test_edit_renames_and_rescopes_at_once_and_is_audited(app, client, owner, acme):
    page = client.get(f"{PAGE}/{acme['key_id']}/edit")
    assert page.status_code == 200 and 'value="Zapier lead sync"' in page.text
    assert 'value="leads:read"\n                 checked' in page.text
    response = post_form(client, f"{PAGE}/{acme['key_id']}/edit", f"{PAGE}/{acme['key_id']}/edit",
                         {"name": " Zapier contacts ", "scopes": ["contacts:read", "leads:write"]})
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    body = client.get("/api/v1/me", headers={"Authorization": f"Bearer {acme['raw']}"}).get_json()
    assert body["api_key"]["name"] == "Zapier contacts"
    assert body["scopes"] == ["contacts:read", "leads:write"]
    [event] = events(app, "api_key_updated")
    assert (event.actor, event.subject) == (owner, acme["key_id"])
    assert event.detail == {"name": ["Zapier lead sync", "Zapier contacts"],
                            "scopes": ["leads:read", "contacts:read leads:write"]}


def test_edit_without_changes_records_nothing(app, client, owner, acme):
    response = post_form(client, f"{PAGE}/{acme['key_id']}/edit", f"{PAGE}/{acme['key_id']}/edit",
                         {"name": "Zapier lead sync", "scopes": ["leads:read"]})
    assert response.status_code == 302 and events(app, "api_key_updated") == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": ""}, "Give the key a name."),
    ({"name": "x" * 101}, "Use at most 100 characters for the name."),
    ({"name": "Taken"}, "already has a key named"),
    ({"scopes": []}, "Choose at least one scope."),
    ({"scopes": ["admin:all"]}, "&#39;admin:all&#39; is not a valid choice"),
])
def test_edit_refuses_bad_input(app, client, owner, acme, fields, message):
    add_key(app, acme["org"], "Taken")
    data = {"name": "Renamed", "scopes": ["leads:read"], **fields}
    response = post_form(client, f"{PAGE}/{acme['key_id']}/edit", f"{PAGE}/{acme['key_id']}/edit",
                         data)
    assert response.status_code == 400 and message in response.text
    assert key_row(app, acme["key_id"]).name == "Zapier lead sync"
    assert events(app, "api_key_updated") == []


@pytest.mark.parametrize(("choice", "days"), [("30", 30), ("90", 90), ("365", 365)])
def test_expiry_presets_count_from_now(app, client, owner, choice, days):
    before = utcnow().replace(microsecond=0)
    response = post_form(client, PAGE, PAGE, {"name": "Preset", "scopes": ["leads:read"],
                                              "expires": choice, "expires_on": ""})
    assert response.status_code == 201
    expires = key_row(app, key_row_id(app, "Preset")).expires_at
    assert before + timedelta(days=days) <= expires <= utcnow() + timedelta(days=days)
    assert "never expires" not in response.text


def test_never_is_a_choice_with_a_warning(app, client, owner):
    page = client.get(PAGE).text
    assert 'id="expires-90" name="expires" value="90"\n                 checked' in page
    assert 'aria-describedby="never-warning"' in page
    assert "works until\n        someone revokes" in page
    response = post_form(client, PAGE, PAGE, {"name": "Forever", "scopes": ["leads:read"],
                                              "expires": "never"})
    assert response.status_code == 201 and "This key never expires" in response.text
    assert key_row(app, key_row_id(app, "Forever")).expires_at is None


def test_a_custom_date_stops_the_key_at_midnight_utc(app, client, owner):
    day = (utcnow() + timedelta(days=10)).date()
    response = post_form(client, PAGE, PAGE, {"name": "Custom", "scopes": ["leads:read"],
                                              "expires": "custom", "expires_on": day.isoformat()})
    assert response.status_code == 201
    assert key_row(app, key_row_id(app, "Custom")).expires_at == datetime.combine(day, time.min)


@pytest.mark.parametrize(("fields", "message"), [
    ({"expires": "custom", "expires_on": ""}, "Choose the date the key stops working."),
    ({"expires": "30", "expires_on": "2099-01-01"}, "Choose “On a date” to use this date"),
    ({"expires": "45"}, "Not a valid choice"),
])
def test_expiry_choices_that_do_not_add_up_are_refused(app, client, owner, fields, message):
    response = post_form(client, PAGE, PAGE, {"name": "Odd", "scopes": ["leads:read"], **fields})
    assert response.status_code == 400 and message in response.text
    assert key_row_id(app, "Odd") is None


def test_an_expired_key_offers_no_disable_and_refuses_it(app, client, owner, acme):
    key_id, _ = add_key(app, acme["org"], "Lapsed", expires_at=utcnow() - timedelta(minutes=1))
    html = client.get(PAGE).text
    row = html[html.index('data-label="Name">Lapsed'):]
    row = row[:row.index("</tr>")]
    assert "Revoke" in row and "Disable" not in row and "Enable" not in row and "Roll" not in row
    for action, status in (("disable", 409), ("enable", 409), ("roll", 409)):
        response = post_form(client, PAGE, f"{PAGE}/{key_id}/{action}", {"overlap": "0"})
        assert response.status_code == status
        assert "An expired key cannot be" in response.text and "Revoke it" in response.text
    assert client.get(f"{PAGE}/{key_id}/roll").status_code == 409
    assert key_row(app, key_id).active is True
    assert events(app, "api_key_disabled") == [] and events(app, "api_key_rolled") == []


@pytest.mark.parametrize("action", ["roll", "edit"])
def test_new_forms_refuse_a_missing_csrf_token(app, client, owner, acme, action):
    response = client.post(f"{PAGE}/{acme['key_id']}/{action}",
                           data={"overlap": "0", "name": "Sneaky", "scopes": ["leads:read"]})
    assert response.status_code == 400 and "This form has expired" in response.text
    assert me(client, acme["raw"]) == (200, None)
    assert key_row(app, acme["key_id"]).name == "Zapier lead sync"


@pytest.mark.parametrize(("method", "action"), [
    ("get", "roll"), ("post", "roll"), ("get", "edit"), ("post", "edit"),
])
def test_another_orgs_key_cannot_be_rolled_or_edited(app, client, owner, method, action):
    other = add_org(app, "Rival Realty")
    key_id, raw = add_key(app, other, "Their key")
    if method == "post":
        response = post_form(client, PAGE, f"{PAGE}/{key_id}/{action}",
                             {"overlap": "0", "name": "Mine now", "scopes": ["leads:read"]})
    else:
        response = client.get(f"{PAGE}/{key_id}/{action}")
    assert response.status_code == 404
    assert me(client, raw) == (200, None) and key_row(app, key_id).name == "Their key"
