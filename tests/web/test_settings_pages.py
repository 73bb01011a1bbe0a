"""Every page's structure without a browser: one h1, landmarks, labels, nothing inline or external.

The browser tests run axe-core on the same pages; these checks also run on PostgreSQL in CI.
"""

from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from tests.helpers import pkce_pair
from tests.settings_support import add_connection
from tests.settings_support import add_key
from tests.settings_support import add_person
from tests.settings_support import enter
from tests.settings_support import post_form
from tests.settings_support import world


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
