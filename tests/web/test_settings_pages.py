"""Every page's structure without a browser: one h1, landmarks, labels, nothing inline or external.

The browser tests run axe-core on the same pages; these checks also run on PostgreSQL in CI.
"""

from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from idp.infra.extensions import db
from tests.helpers import csrf_token
from tests.helpers import pkce_pair
from tests.passkey_support import SoftPasskey
from tests.settings_support import PASSWORD
from tests.settings_support import add_connection
from tests.settings_support import add_key
from tests.settings_support import add_membership
from tests.settings_support import add_org
from tests.settings_support import add_person
from tests.settings_support import enter
from tests.settings_support import post_form
from tests.settings_support import world
from tests.two_step_support import SECURITY
from tests.two_step_support import SETUP
from tests.two_step_support import enrol
from tests.two_step_support import start_setup


class Page(HTMLParser):
    """Collect what the checks need from one HTML page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.inline_script = False
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        """Remember every element with its attributes."""
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        """Leave a script element."""
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        """Script bodies are inline code, which the CSP forbids."""
        if self._in_script and data.strip():
            self.inline_script = True

    def all(self, tag: str) -> list[dict]:
        """Attributes of every ``tag`` element."""
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture
def pages(app, client):
    """Render each page the way people reach it; return {name: (status, html)}."""
    acme = world(app)
    key_id, _ = add_key(app, acme["org"], "Zapier lead sync")
    member = add_person(app, "morgan@acme-realty.example", {acme["org"]: "member"})
    connection = add_connection(app, acme["owner"], acme["org"])
    out = {}

    def keep(name, response):
        out[name] = (response.status_code, response.get_data(as_text=True))

    keep("sign-in", client.get("/login"))
    enter(client, app, acme["owner"])
    zapier = acme["clients"]["Zapier"]
    keep("consent", client.get("/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": zapier["client_id"],
        "redirect_uri": zapier["redirect_uri"], "state": "s",
        "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"})))
    keep("error", client.get("/oauth/authorize?response_type=code&client_id=cli_nope"))
    keep("connected-apps", client.get("/settings/connected-apps"))
    keep("disconnect-confirm",
         client.get(f"/settings/connected-apps/{connection['id']}/disconnect"))
    keep("api-keys", client.get("/settings/api-keys"))
    keep("api-keys-invalid", post_form(client, "/settings/api-keys", "/settings/api-keys",
                                       {"name": "", "expires_on": "2001-01-01"}))
    keep("api-key-created", post_form(client, "/settings/api-keys", "/settings/api-keys",
                                      {"name": "New", "scopes": ["leads:read"]}))
    keep("revoke-confirm", client.get(f"/settings/api-keys/{key_id}/revoke"))
    keep("not-found", client.get("/settings/api-keys/key_nope/revoke"))
    enter(client, app, member)
    keep("forbidden", client.get("/settings/api-keys"))
    return out


EXPECTED = {
    "sign-in": 200, "consent": 200, "error": 400, "connected-apps": 200,
    "disconnect-confirm": 200, "api-keys": 200, "api-keys-invalid": 400, "api-key-created": 201,
    "revoke-confirm": 200, "not-found": 404, "forbidden": 403,
}


def test_every_page_is_well_formed_for_people_and_tools(pages):
    assert set(pages) == set(EXPECTED)
    for name, (status, html) in pages.items():
        assert status == EXPECTED[name], name
        page = Page(html)
        assert len(page.all("h1")) == 1, f"{name}: exactly one h1"
        assert len(page.all("main")) == 1 and page.all("header"), f"{name}: landmarks"
        assert page.all("html")[0].get("lang") == "en", name
        labels = {attrs.get("for") for attrs in page.all("label")}
        fields = [a for a in page.all("input") if a.get("type") != "hidden"] + page.all("select")
        unlabeled = [a.get("name") for a in fields if a.get("id") not in labels]
        assert unlabeled == [], f"{name}: inputs without <label for>: {unlabeled}"
        ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
        assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
        assert not page.inline_script, f"{name}: inline script"
        assert not any("style" in attrs for _, attrs in page.tags), f"{name}: inline style"
        assert not any(k.startswith("on") for _, a in page.tags for k in a), f"{name}: handler"
        for tag, attribute in (("script", "src"), ("link", "href"), ("img", "src")):
            for attrs in page.all(tag):
                assert attrs[attribute].startswith("/"), f"{name}: external {attrs[attribute]}"
        for form in page.all("form"):
            if form.get("method") == "post":
                assert 'name="csrf_token"' in html, name


@pytest.mark.parametrize(("name", "nav"), [("connected-apps", True), ("api-keys", True),
                                           ("forbidden", True), ("sign-in", False),
                                           ("consent", False)])
def test_settings_pages_have_navigation_and_sign_out(pages, name, nav):
    page = Page(pages[name][1])
    navs = [a for a in page.all("nav") if a.get("aria-label") == "Settings"]
    assert bool(navs) is nav
    if nav:
        hrefs = [a.get("href") for a in page.all("a")]
        assert "/settings/connected-apps" in hrefs and "/settings/api-keys" in hrefs
        assert {"method": "post", "action": "/logout"} in page.all("form")
        assert "aria-current" in pages[name][1]


#: What the CSRF refusal page says (idp/web/errors.py, csrf_failed).
FORM_EXPIRED = "This form has expired"
#: Fewer distinct forms than this means the walk lost its way, not that the pages lost forms.
MIN_FORMS = 18


class Forms(HTMLParser):
    """Every POST form of a page and the links it offers: what a person could submit or open."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self.links: list[str] = []
        self._fields: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        """Open a form, note a field as the browser would send it, or keep a link."""
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self._fields = []
            self.forms.append((attrs.get("action", ""), self._fields))
        elif tag == "option" and self._select is not None:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif self._fields is None or "name" not in attrs:
            return
        elif tag == "input" and (attrs.get("type") not in ("checkbox", "radio")
                                 or "checked" in attrs):
            self._fields.append((attrs["name"], attrs.get("value") or ""))
        elif tag == "select":
            self._select, self._options = attrs["name"], []

    def handle_endtag(self, tag):
        """Close a form, or send a select's chosen option (its first one by default)."""
        if tag == "form":
            self._fields = None
        elif tag == "select" and self._select is not None and self._fields is not None:
            chosen = [value for value, selected in self._options if selected]
            self._fields.append((self._select, (chosen or [v for v, _ in self._options])[0]))
            self._select = None


def walk(client, seeds: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Open every settings page reachable by links from ``seeds``; {form action: its fields}."""
    found, seen, queue = {}, set(), list(seeds)
    while queue and len(seen) < 100:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        if response.status_code != 200:
            continue
        page = Forms(response.get_data(as_text=True))
        for action, fields in page.forms:
            found.setdefault(action, fields)
        queue += [link for link in page.links if link.startswith("/settings/")]
    return found


def snapshot(app) -> dict:
    """Every row of every table, but what a page view itself touches (the session's data)."""
    volatile = {("user_sessions", "data"), ("user_sessions", "last_seen_at")}
    with app.app_context():
        tables = {}
        for table in db.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in volatile]
            rows = db.session.execute(select(*columns)).all()
            tables[table.name] = sorted(map(repr, rows))
        db.session.remove()
        return tables


@pytest.fixture
def settings_world(app):
    """An owner and an admin of Acme whose settings pages show every kind of form.

    The owner has a second organization (the switcher), keys enabled and disabled, a connection,
    a session elsewhere and an authenticator app half set up; the admin has one in force and a
    passkey, so the security page offers removing them and renewing recovery codes.
    """
    acme = world(app)
    owner, org = acme["owner"], acme["org"]
    add_membership(app, owner, add_org(app, "Harbor Homes"), "owner")
    add_key(app, org, "Zapier lead sync")
    add_key(app, org, "Old export", active=False)
    add_connection(app, owner, org)
    enter(app.test_client(), app, owner)
    admin = add_person(app, "riley@acme-realty.example", {org: "admin"})
    owner_client, admin_client = app.test_client(), app.test_client()
    enter(owner_client, app, owner)
    start_setup(owner_client)
    enter(admin_client, app, admin)
    enrol(admin_client)
    register_passkey(admin_client)
    return {owner: owner_client, admin: admin_client}


def register_passkey(client) -> None:
    """Add a passkey through the security page, as its script does."""
    token = csrf_token(client.get(SECURITY).get_data(as_text=True))
    confirmed = client.post(SECURITY + "/passkeys/confirm", headers={"X-CSRFToken": token},
                            data={"csrf_token": token, "password": PASSWORD})
    assert confirmed.status_code == 204
    options = client.post(SECURITY + "/passkeys/options", headers={"X-CSRFToken": token})
    credential = SoftPasskey("127.0.0.1", "http://127.0.0.1:5000").register(options.get_json())
    added = client.post(SECURITY + "/passkeys", data={"csrf_token": token, "name": "Laptop",
                                                      "credential": credential})
    assert added.status_code == 303
    assert "Passkey “Laptop” is added." in client.get(SECURITY).get_data(as_text=True)


def test_every_settings_form_is_refused_without_its_csrf_token(app, settings_world):
    forms = {}
    for email, client in settings_world.items():
        for action, fields in walk(client, ["/settings/connected-apps", SETUP]).items():
            forms.setdefault(action, (email, client, fields))
    assert len(forms) >= MIN_FORMS, sorted(forms)
    for action, (_, client, fields) in forms.items():
        before = snapshot(app)
        response = client.post(action, data=MultiDict([f for f in fields if f[0] != "csrf_token"]))
        assert response.status_code == 400, action
        assert FORM_EXPIRED in response.get_data(as_text=True), action
        assert snapshot(app) == before, f"{action} changed something without its token"
    # With the token the same post reaches the view (which may still refuse its fields, or end
    # the session it came from: then the person signs in again).
    for action, (email, client, fields) in forms.items():
        page = client.get("/settings/connected-apps")
        if page.status_code != 200:
            enter(client, app, email)
            page = client.get("/settings/connected-apps")
        token = csrf_token(page.get_data(as_text=True))
        data = MultiDict([(k, token if k == "csrf_token" else v) for k, v in fields])
        response = client.post(action, data=data)
        assert FORM_EXPIRED not in response.get_data(as_text=True), action
