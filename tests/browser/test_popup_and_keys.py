"""Popup pages without dead ends, and the key changes people make in the browser."""

import re
from datetime import date
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import update

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import ApiKey
from tests.browser.support import DESKTOP
from tests.browser.support import PHONE
from tests.browser.support import axe_serious
from tests.browser.support import sign_in
from tests.helpers import authorize_params
from tests.helpers import http_connect
from tests.helpers import pkce_pair

pytestmark = [pytest.mark.browser, pytest.mark.live]

KEY = re.compile(r"fe_k_[0-9a-f]{32}")
#: Every scope of the catalogue, as a connector asking for everything would send it.
ALL_SCOPES = " ".join(f"{resource}:{mode}" for resource in (
    "leads", "contacts", "properties", "pipelines", "tasks", "webhooks")
    for mode in ("read", "write"))


def consent_path(demo, scope=ALL_SCOPES, **extra) -> str:
    """An authorization request of the demo Zapier client."""
    params = authorize_params(demo["clients"]["zapier"], scope=scope, challenge=pkce_pair()[1])
    return "/oauth/authorize?" + urlencode({**params, **extra})


def me(server, key):
    """Status and reason of /api/v1/me with an API key."""
    response = requests.get(server.url + "/api/v1/me", timeout=10,
                            headers={"Authorization": f"Bearer {key}"})
    return response.status_code, response.json().get("error", {}).get("reason")


def inside_viewport(page, name: str, size: dict) -> dict:
    """The button's box, asserted to lie wholly inside the viewport as first shown."""
    box = page.get_by_role("button", name=name, exact=True).bounding_box()
    assert box is not None, name
    assert page.evaluate("window.scrollY") == 0
    assert box["x"] >= 0 and box["y"] >= 0, (name, box)
    assert box["x"] + box["width"] <= size["width"], (name, box, size)
    assert box["y"] + box["height"] <= size["height"], (name, box, size)
    return box


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_allow_and_deny_show_without_scrolling_with_every_scope(browser, live_server, demo,
                                                                 size):
    context = browser.new_context(viewport=size)
    page = context.new_page()
    page.goto(live_server.url + consent_path(demo))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in to connect Zapier to FlowEstate")
    page.get_by_label("Email").fill(demo["user"]["email"])
    page.get_by_label("Password").fill(demo["user"]["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connect Zapier to FlowEstate")
    assert page.locator(".permissions.grouped li").count() == 6
    allow = inside_viewport(page, "Allow", size)
    deny = inside_viewport(page, "Deny", size)
    # In the page's own flow, not merely pinned over the list: nothing hides below them.
    natural = page.evaluate("""() => {
        const bar = document.querySelector('.consent-actions');
        return bar.offsetTop + bar.offsetHeight + bar.offsetParent.getBoundingClientRect().top;
    }""")
    assert natural <= size["height"], natural
    assert abs(allow["y"] - deny["y"]) < 2
    context.close()


def test_not_you_signs_out_and_returns_to_the_same_request(browser, app, live_server, demo):
    with app.app_context():
        org = accounts.find_user(demo["user"]["email"]).memberships[0].organization
        other = accounts.create_user("sam@acme-realty.example", "Sam", "sam-password-4242")
        db.session.flush()
        accounts.set_membership(other, org, "member")
        db.session.commit()
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    path = consent_path(demo, scope="leads:read", state="same-request")
    sign_in(page, live_server.url, demo["user"]["email"], demo["user"]["password"], path=path)
    expect(page.get_by_text(f"Signed in as {demo['user']['email']}.")).to_be_visible()
    page.get_by_role("button", name="Sign in as someone else").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in to connect Zapier to FlowEstate")
    page.get_by_label("Email").fill("sam@acme-realty.example")
    page.get_by_label("Password").fill("sam-password-4242")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("Signed in as sam@acme-realty.example.")).to_be_visible()
    assert "state=same-request" in page.url
    context.close()


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_error_pages_offer_a_next_step(browser, app, live_server, demo, size):
    with app.app_context():
        accounts.create_user("nobody@example.com", "No Body", "nobody-password-42")
        db.session.commit()
    # axe-core is injected as an inline script, which the pages' CSP refuses otherwise.
    context = browser.new_context(viewport=size, bypass_csp=True)
    page = context.new_page()
    problems = {}
    page.goto(live_server.url + "/oauth/authorize?response_type=code&client_id=nope")
    expect(page.get_by_text("Close this window and start the connection again")).to_be_visible()
    link = page.get_by_role("link", name="Go to your settings").bounding_box()
    assert link["y"] + link["height"] <= size["height"]
    problems["unknown client"] = axe_serious(page)
    page.goto(live_server.url + consent_path(demo, redirect_uri="https://zapier.com/other"))
    expect(page.get_by_text("If it happens again, tell Zapier’s support")).to_be_visible()
    problems["bad redirect"] = axe_serious(page)

    path = consent_path(demo, scope="leads:read")
    sign_in(page, live_server.url, "nobody@example.com", "nobody-password-42", path=path)
    expect(page.get_by_text("Ask your organization’s owner to invite you")).to_be_visible()
    problems["no organization"] = axe_serious(page)
    page.get_by_role("button", name="Sign in as someone else").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in to connect Zapier to FlowEstate")
    assert {name: found for name, found in problems.items() if found} == {}
    context.close()


def test_roll_with_an_overlap_then_the_old_key_stops(browser, app, live_server, demo):
    server = live_server
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
            path="/settings/api-keys")
    page.get_by_label("Name").fill("Roll me")
    page.get_by_label("leads:read").check()
    page.get_by_role("button", name="Create API key").click()
    old = page.get_by_label("API key “Roll me”").input_value()
    page.get_by_role("link", name="Done").click()

    page.get_by_role("link", name="Roll Roll me", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Roll “Roll me”")
    page.get_by_label("1 hour").check()
    with page.expect_response(re.compile(r".*/roll$")) as rolled:
        page.get_by_role("button", name="Roll key").click()
    assert rolled.value.status == 201 and rolled.value.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", level=1)).to_have_text("API key rolled")
    new = page.get_by_label("API key “Roll me”").input_value()
    assert KEY.fullmatch(new) and new != old
    expect(page.get_by_text(f"fe_k_…{old[-4:]}")).to_be_visible()
    assert me(server, old) == (200, None) and me(server, new) == (200, None)

    page.get_by_role("link", name="Done").click()
    row = page.get_by_role("row", name=re.compile("Roll me"))
    assert f"Old key fe_k_…{old[-4:]} works until" in row.inner_text()

    # The hour passes: the live server judges by the database's time, so move the overlap's
    # end into the past rather than waiting an hour.
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.name == "Roll me")
                           .values(previous_revoke_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert me(server, old) == (401, "unknown_token")
    assert me(server, new) == (200, None)
    page.reload()
    assert "Old key" not in page.get_by_role("row", name=re.compile("Roll me")).inner_text()
    context.close()


def test_rename_rescope_and_expiry_presets(browser, live_server, demo):
    server = live_server
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
            path="/settings/api-keys")
    expect(page.get_by_label("In 90 days")).to_be_checked()
    page.get_by_label("Name").fill("Preset key")
    page.get_by_label("contacts:read").check()
    page.get_by_label("In 30 days").check()
    page.get_by_role("button", name="Create API key").click()
    raw = page.get_by_label("API key “Preset key”").input_value()
    expires = requests.get(server.url + "/api/v1/me", timeout=10,
                           headers={"Authorization": f"Bearer {raw}"}).json()["expires_at"]
    assert date.fromisoformat(expires[:10]) - utcnow().date() in (timedelta(days=30),
                                                                  timedelta(days=31))
    page.get_by_role("link", name="Done").click()

    page.get_by_role("row", name=re.compile("Preset key")).get_by_role("link",
                                                                       name="Edit").click()
    page.get_by_label("Name").fill("Renamed key")
    page.get_by_label("contacts:read").uncheck()
    page.get_by_label("tasks:write").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("The key 'Renamed key' is saved.")).to_be_visible()
    body = requests.get(server.url + "/api/v1/me", timeout=10,
                        headers={"Authorization": f"Bearer {raw}"}).json()
    assert body["api_key"]["name"] == "Renamed key" and body["scopes"] == ["tasks:write"]

    page.get_by_label("Name").fill("Forever key")
    page.get_by_label("leads:read").check()
    page.get_by_label("Never").check()
    expect(page.get_by_text("the key works until")).to_be_visible()
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_text("This key never expires")).to_be_visible()
    context.close()


def test_scope_chips_keep_their_tick_on_a_phone(browser, live_server, demo):
    zapier = demo["clients"]["zapier"]
    verifier, challenge = pkce_pair()
    with requests.Session() as http:
        query = http_connect(live_server.url, demo, session=http, scope=ALL_SCOPES,
                             challenge=challenge)
    tokens = requests.post(live_server.url + "/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
        "redirect_uri": zapier["redirect_uris"][0], "client_id": zapier["client_id"],
        "client_secret": zapier["client_secret"]})
    assert tokens.status_code == 200, tokens.text
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    sign_in(page, live_server.url, demo["user"]["email"], demo["user"]["password"])
    chips = page.locator("li.connection .permissions.compact li")
    assert chips.count() == 12
    for index in range(12):
        chip = chips.nth(index)
        tick = chip.locator(".tick").bounding_box()
        words = chip.locator("span:not(.tick)").bounding_box()
        whole = chip.bounding_box()
        # The tick sits on the first line of its own chip, just left of the words.
        assert abs(tick["y"] - words["y"]) < 4 and tick["x"] < words["x"], chip.inner_text()
        assert whole["x"] >= 0 and whole["x"] + whole["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    context.close()
