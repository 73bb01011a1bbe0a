"""Settings -> API Keys through the Flask test client: create, validate, act, isolate, leak."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from idp.core.clock import utcnow
from idp.infra.extensions import db
from tests.helpers import csrf_token
from tests.settings_support import RAW_KEY
from tests.settings_support import add_key
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import database_text
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import key_count
from tests.settings_support import key_row
from tests.settings_support import key_row_id
from tests.settings_support import post_form
from tests.settings_support import world

PAGE = "/settings/api-keys"


def create(client, **fields):
    """Submit the create form with the page's CSRF token."""
    data = {"name": "Lead sync", "scopes": ["leads:read"], "expires_on": ""}
    data.update(fields)
    return post_form(client, PAGE, PAGE, data)


@pytest.fixture
def acme(app):
    """Acme Realty, its owner and one existing key named "Zapier lead sync"."""
    built = world(app)
    add_key(app, built["org"], "Zapier lead sync")
    return built


@pytest.fixture
def owner(app, client, acme):
    """Acme's owner, signed in."""
    enter(client, app, acme["owner"])
    return acme["owner"]


def test_page_offers_every_scope_with_its_words(client, owner, app):
    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert '<label for="name">Name</label>' in html and ">Create API key</button>" in html
    assert '<label for="expires_on">Expires on' in html
    for scope, words in app.config["IDP_SCOPES"].items():
        box = "scope-" + scope.replace(":", "-")
        assert f'<label for="{box}"><code>{scope}</code></label>' in html
        assert f'id="{box}-words">{words}</span>' in html


def test_create_shows_the_key_once_and_it_works(app, client, owner, acme):
    tomorrow = (utcnow() + timedelta(days=1)).date()
    response = create(client, name="  Lead sync  ", scopes=["leads:read", "contacts:write"],
                      expires_on=tomorrow.isoformat())
    html = response.get_data(as_text=True)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert "It will not be shown again" in html
    raw = RAW_KEY.search(html).group(0)
    assert response.headers.get("Location") is None and raw not in str(response.headers)

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["api_key"]["name"] == "Lead sync"
    assert me.get_json()["scopes"] == ["contacts:write", "leads:read"]
    assert me.get_json()["expires_at"] == f"{tomorrow.isoformat()}T00:00:00Z"

    listing = client.get(PAGE).get_data(as_text=True)
    assert raw not in listing and not RAW_KEY.search(listing)
    assert f"fe_k_…{raw[-4:]}" in listing and "by " + owner in listing
    [event] = [e for e in events(app, "api_key_created") if e.actor == owner]
    assert event.org_public_id == acme["org"]
    assert event.ip == "127.0.0.1" and event.detail["name"] == "Lead sync"


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": ""}, "Give the key a name."),
    ({"name": "   "}, "Give the key a name."),
    ({"name": "x" * 101}, "Use at most 100 characters for the name."),
    ({"name": "Zapier lead sync"}, "This organization already has a key with that name"),
    ({"scopes": []}, "Choose at least one scope."),
    ({"scopes": ["leads:read", "admin:all"]}, "&#39;admin:all&#39; is not a valid choice"),
    ({"expires_on": "2020-01-01"}, "Choose a date after today, or leave it empty."),
    ({"expires_on": "today"}, "Not a valid date value."),
    ({"expires_on": "2026-13-45"}, "Not a valid date value."),
])
def test_invalid_input_keeps_what_was_typed(app, client, owner, fields, message):
    if fields.get("expires_on") == "today":
        fields = {"expires_on": utcnow().date().isoformat()}
        message = "Choose a date after today, or leave it empty."
    before, audit_before = key_count(app), len(events(app))
    typed = {"name": "Website forms", "scopes": ["contacts:read", "leads:write"],
             "expires_on": "2099-05-01", **fields}
    response = create(client, **typed)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html and 'role="alert"' in html
    assert not RAW_KEY.search(html)
    if typed["name"].strip():
        assert f'value="{typed["name"].strip()}"' in html
    for scope in typed["scopes"]:
        if scope in app.config["IDP_SCOPES"]:
            box = "scope-" + scope.replace(":", "-")
            assert f'id="{box}" name="scopes" value="{scope}"\n                 checked' in html
    assert f'value="{typed["expires_on"]}"' in html
    assert key_count(app) == before and len(events(app)) == audit_before


def test_a_name_taken_while_the_form_was_open_is_still_refused(app, client, owner, monkeypatch):
    # The page's own check ran before another admin took the name: create_key catches it.
    from idp.web.settings import api_keys
    monkeypatch.setattr(api_keys, "valid", lambda form, membership: form.validate_on_submit())
    response = create(client, name="Zapier lead sync")
    assert response.status_code == 400
    assert "already has a key named" in response.get_data(as_text=True)


@pytest.mark.parametrize(("action", "active_after", "event"), [
    ("disable", False, "api_key_disabled"),
    ("enable", True, "api_key_enabled"),
])
def test_disable_and_enable_take_effect_at_once(app, client, owner, acme, action, active_after,
                                                 event):
    key_id, raw = add_key(app, acme["org"], "Export", active=not active_after)
    response = post_form(client, PAGE, f"{PAGE}/{key_id}/{action}")
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    assert key_row(app, key_id).active is active_after
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == (200 if active_after else 403)
    [record] = events(app, event)
    assert (record.actor, record.subject, record.ip) == (owner, key_id, "127.0.0.1")
    assert ("Active" if active_after else "Disabled") in client.get(PAGE).get_data(as_text=True)


def test_revoke_asks_first_then_deletes(app, client, owner, acme):
    key_id, raw = add_key(app, acme["org"], "Old importer")
    confirm = client.get(f"{PAGE}/{key_id}/revoke")
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Revoke the key “Old importer”?" in html
    assert f'action="{PAGE}/{key_id}/revoke"' in html and f"fe_k_…{raw[-4:]}" in html
    assert key_row(app, key_id) is not None  # looking at the question changes nothing

    response = post_form(client, PAGE, f"{PAGE}/{key_id}/revoke")
    assert response.status_code == 302
    assert key_row(app, key_id) is None
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 401 and me.get_json()["error"]["reason"] == "unknown_token"
    [record] = events(app, "api_key_revoked")
    assert (record.actor, record.subject) == (owner, key_id)
    assert 'data-label="Name">Old importer<' not in client.get(PAGE).get_data(as_text=True)


def test_statuses_on_the_list(app, client, owner, acme):
    org = acme["org"]
    add_key(app, org, "Paused", active=False)
    add_key(app, org, "Lapsed", expires_at=utcnow() - timedelta(minutes=1))
    html = client.get(PAGE).get_data(as_text=True)
    assert 'badge-disabled">Disabled<' in html and 'badge-expired">Expired<' in html
    assert 'badge-active">Active<' in html  # Zapier lead sync


@pytest.mark.parametrize("role", ["member"])
def test_members_get_a_polite_403(app, client, acme, role):
    email = add_person(app, "morgan@acme-realty.example", {acme["org"]: role})
    key_id, _ = add_key(app, acme["org"], "Secret integration")
    enter(client, app, email)
    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "API keys are managed by owners and admins" in html
    assert "Secret integration" not in html and "Zapier lead sync" not in html
    before = key_count(app)
    token_page = "/settings/connected-apps"
    assert post_form(client, token_page, PAGE, {"name": "Mine", "scopes": ["leads:read"]}
                     ).status_code == 403
    assert key_count(app) == before
    for action in ("disable", "enable", "revoke"):
        assert post_form(client, token_page, f"{PAGE}/{key_id}/{action}").status_code == 404
    assert client.get(f"{PAGE}/{key_id}/revoke").status_code == 404
    assert key_row(app, key_id).active is True


def test_someone_without_an_organization_gets_403(app, client):
    enter(client, app, add_person(app, "loner@example.com", {}))
    page = client.get(PAGE)
    assert page.status_code == 403
    assert "not a member of any organization" in page.get_data(as_text=True)


@pytest.mark.parametrize(("method", "action"), [
    ("post", "disable"), ("post", "enable"), ("post", "revoke"), ("get", "revoke"),
])
def test_another_orgs_key_is_not_found_and_nothing_changes(app, client, owner, method, action):
    other = add_org(app, "Rival Realty")
    key_id, raw = add_key(app, other, "Their key")
    before = len(events(app))
    if method == "post":
        response = post_form(client, PAGE, f"{PAGE}/{key_id}/{action}")
    else:
        response = client.get(f"{PAGE}/{key_id}/{action}")
    assert response.status_code == 404
    assert "Their key" not in response.get_data(as_text=True)
    assert key_row(app, key_id).active is True and len(events(app)) == before
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code == 200


@pytest.mark.parametrize("action", ["disable", "enable", "revoke"])
def test_unknown_key_ids_are_not_found(client, owner, action):
    assert post_form(client, PAGE, f"{PAGE}/key_nope/{action}").status_code == 404


@pytest.mark.parametrize("action", ["", "/{key}/disable", "/{key}/enable", "/{key}/revoke"])
def test_posts_without_csrf_token_are_refused(app, client, owner, acme, action):
    key_id, _ = add_key(app, acme["org"], "Guarded", active=True)
    before, audit_before = key_count(app), len(events(app))
    response = client.post(PAGE + action.format(key=key_id),
                           data={"name": "Sneaky", "scopes": ["leads:read"]})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert key_count(app) == before and len(events(app)) == audit_before
    assert key_row(app, key_id).active is True


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/settings/api-keys"


def test_the_raw_key_never_shows_again_nor_reaches_logs_or_the_database(
        app, client, owner, acme, caplog):
    caplog.set_level(logging.DEBUG)
    html = create(client, name="Leak check").get_data(as_text=True)
    raw = RAW_KEY.search(html).group(0)
    key_id = key_row_id(app, "Leak check")
    later = [
        client.get(PAGE), client.get(f"{PAGE}/{key_id}/revoke"),
        client.get("/settings/connected-apps"),
        post_form(client, PAGE, f"{PAGE}/{key_id}/disable", follow_redirects=True),
        post_form(client, PAGE, f"{PAGE}/{key_id}/enable", follow_redirects=True),
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"}),
    ]
    secret_part = raw.removeprefix("fe_k_")[:-4]
    for response in later:
        body = response.get_data(as_text=True)
        assert raw not in body and secret_part not in body
    session_cookie = client.get_cookie("fe_idp_session")
    assert session_cookie is not None and raw not in session_cookie.value
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert raw not in logged and secret_part not in logged
    stored = database_text(app)
    assert raw.encode() not in stored and secret_part.encode() not in stored


class WriteAfterFirstKeyRead:
    """Another request's committed write, slipped in right after a view first reads api_keys.

    An API call recording "last used" does exactly that beside a click on this page. On SQLite a
    transaction that has read cannot write once another writer committed (the view would answer
    503), unless the view took the write lock first, in which case the intruder has to wait.
    """

    def __init__(self, app):
        """Listen on the app's engine with a second engine for the intruding write."""
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        options = {"connect_args": {"timeout": 0.2}} if url.startswith("sqlite") else {}
        self.other = create_engine(url, **options)
        self.done = False
        with app.app_context():
            self.engine = db.engine
        event.listen(self.engine, "after_cursor_execute", self.after)

    def after(self, conn, cursor, statement, parameters, context, executemany):
        """Commit an unrelated change from elsewhere after the first read of keys."""
        if self.done or not statement.lstrip().upper().startswith("SELECT"):
            return
        if "FROM api_keys" not in statement:
            return
        self.done = True
        try:
            with self.other.begin() as other:
                other.execute(text("UPDATE organizations SET name = name || '.'"))
        except OperationalError:
            pass  # the view holds the write lock: the intruder waits its turn instead

    def close(self):
        """Stop intruding."""
        event.remove(self.engine, "after_cursor_execute", self.after)
        self.other.dispose()


@pytest.mark.parametrize("action", ["create", "disable", "enable", "revoke"])
def test_a_concurrent_write_does_not_turn_a_click_into_503(app, client, owner, acme, action):
    key_id, _ = add_key(app, acme["org"], "Busy key")
    page = client.get(PAGE).get_data(as_text=True)
    intruder = WriteAfterFirstKeyRead(app)
    try:
        if action == "create":
            response = client.post(PAGE, data={"csrf_token": csrf_token(page), "name": "New",
                                               "scopes": ["leads:read"]})
        else:
            response = client.post(f"{PAGE}/{key_id}/{action}",
                                   data={"csrf_token": csrf_token(page)})
    finally:
        intruder.close()
    assert intruder.done
    assert response.status_code == (201 if action == "create" else 302)
