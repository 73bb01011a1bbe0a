"""Every page passes axe-core (no serious or critical issue) at desktop and phone width.

The same walk saves the screenshots the README shows (docs/screenshots/).
"""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store.models import Organization
from tests.browser.support import DESKTOP
from tests.browser.support import PHONE
from tests.browser.support import axe_serious
from tests.browser.support import screenshot
from tests.browser.support import sign_in
from tests.helpers import authorize_params
from tests.helpers import http_connect
from tests.helpers import pkce_pair

pytestmark = [pytest.mark.browser, pytest.mark.live]

MEMBER = {"email": "morgan@acme-realty.example", "password": "member-password-42"}


def seed(app, demo):
    """A second org, a plain member, keys in every state."""
    with app.app_context():
        org = db.session.scalar(select(Organization).where(Organization.public_id ==
                                                           demo["organization"]["id"]))
        owner = accounts.find_user(demo["user"]["email"])
        other = accounts.create_org("Harbor Homes")
        accounts.set_membership(owner, other, "admin")
        member = accounts.create_user(MEMBER["email"], "Morgan Member", MEMBER["password"])
        db.session.flush()
        accounts.set_membership(member, org, "member")
        catalogue = app.config["IDP_SCOPES"]
        keys = {}
        for name, scopes in (("Zapier lead sync", ["leads:read", "leads:write"]),
                             ("Nightly export", ["contacts:read", "properties:read"]),
                             ("Old importer", ["tasks:write"])):
            keys[name], _ = api_keys.create_key(org, name, scopes, catalogue, created_by=owner,
                                               expires_at=utcnow() + timedelta(days=30),
                                               actor=owner.email)
        keys["Nightly export"].active = False
        keys["Old importer"].expires_at = utcnow() - timedelta(days=1)
        db.session.commit()
        return keys["Zapier lead sync"].public_id


def connect(server, demo, user, scope):
    """A live connection made over plain HTTP by ``user`` (code redeemed, token used)."""
    zapier = demo["clients"]["zapier"]
    verifier, challenge = pkce_pair()
    with requests.Session() as http:
        query = http_connect(server.url, {**demo, "user": user}, session=http, scope=scope,
                             challenge=challenge)
    tokens = requests.post(server.url + "/oauth/token", data={
        "grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
        "redirect_uri": zapier["redirect_uris"][0], "client_id": zapier["client_id"],
        "client_secret": zapier["client_secret"]}, timeout=10).json()
    requests.get(server.url + "/api/v1/me", timeout=10,
                 headers={"Authorization": "Bearer " + tokens["access_token"]})


def check(page, name, problems):
    """axe at both widths, one h1, the landmarks; screenshots at both widths."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        found = axe_serious(page)
        if found:
            problems[f"{name} ({label})"] = found
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            problems[f"{name} ({label})"] = [f"scrolls sideways by {overflow}px"]
        screenshot(page, f"{name}-{label}")
    assert page.locator("h1").count() == 1, f"{name}: not exactly one h1"
    assert page.locator("main").count() == 1 and page.locator("header").count() >= 1, name
    unlabeled = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(
        el => !el.id || !document.querySelector(`label[for="${el.id}"]`)).map(el => el.name)""")
    assert unlabeled == [], f"{name}: inputs without <label for>: {unlabeled}"
    page.set_viewport_size(DESKTOP)


def focus_ring_on(page, button: str) -> str:
    """Tab to a button as a keyboard user would; return its focus outline style."""
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == button:
            return page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    raise AssertionError(f"Tab never reached {button!r}")


def test_every_page_is_accessible(browser, app, live_server, demo):
    server = live_server
    key_id = seed(app, demo)
    connect(server, demo, demo["user"], "leads:read leads:write contacts:read")
    connect(server, demo, MEMBER, "properties:read tasks:read")
    problems = {}
    # Injected axe-core is an inline script to the page's CSP; bypass it for this pass only.
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()

    page.goto(server.url + "/login")
    check(page, "sign-in", problems)
    assert focus_ring_on(page, "Sign in") == "solid"

    consent = "/oauth/authorize?" + urlencode(authorize_params(
        demo["clients"]["make"], scope="leads:read contacts:write", challenge=pkce_pair()[1]))
    page.goto(server.url + "/login?" + urlencode({"next": consent}))
    assert page.get_by_role("heading", level=1).inner_text() == (
        "Sign in to connect Make to FlowEstate")
    check(page, "sign-in-for-app", problems)
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"], path=consent)
    assert page.get_by_role("button", name="Allow").is_visible()
    check(page, "consent", problems)
    every_scope = "/oauth/authorize?" + urlencode(authorize_params(
        demo["clients"]["make"], scope=" ".join(app.config["IDP_SCOPES"]),
        challenge=pkce_pair()[1]) | {"connection_label": "Sales team's Make"})
    page.goto(server.url + every_scope)
    check(page, "consent-every-scope", problems)

    page.goto(server.url + "/oauth/authorize?response_type=code&client_id=nope")
    check(page, "error", problems)

    page.goto(server.url + "/settings/connected-apps")
    assert page.locator("li.connection").count() == 2
    check(page, "connected-apps", problems)
    page.locator("li.connection").first.get_by_role("link", name="Disconnect").click()
    check(page, "disconnect-confirm", problems)

    page.goto(server.url + "/settings/api-keys")
    check(page, "api-keys", problems)
    page.get_by_label("Name").fill("Zapier lead sync")
    page.get_by_role("button", name="Create API key").click()
    assert page.get_by_text("already has a key with that name").is_visible()
    assert page.get_by_text("Choose at least one scope.").is_visible()
    check(page, "api-keys-invalid", problems)

    page.get_by_label("Name").fill("Website forms")
    page.get_by_label("leads:write").check()
    page.get_by_role("button", name="Create API key").click()
    check(page, "api-key-created", problems)

    page.goto(server.url + f"/settings/api-keys/{key_id}/revoke")
    check(page, "revoke-confirm", problems)

    page.goto(server.url + f"/settings/api-keys/{key_id}/edit")
    check(page, "api-key-edit", problems)
    page.goto(server.url + f"/settings/api-keys/{key_id}/roll")
    check(page, "api-key-roll", problems)
    page.get_by_label("1 day").check()
    page.get_by_role("button", name="Roll key").click()
    assert page.get_by_role("heading", level=1).inner_text() == "API key rolled"
    check(page, "api-key-rolled", problems)
    page.goto(server.url + "/settings/api-keys")
    check(page, "api-keys-overlap", problems)

    page.goto(server.url + "/settings/activity")
    assert page.locator("tbody tr").count() >= 3
    check(page, "activity", problems)
    context.close()

    member = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = member.new_page()
    sign_in(page, server.url, MEMBER["email"], MEMBER["password"], path="/settings/api-keys")
    assert page.get_by_role("heading", level=1).inner_text() == (
        "API keys are managed by owners and admins")
    check(page, "forbidden", problems)
    member.close()

    assert problems == {}


def test_account_pages_are_accessible(browser, app, live_server, demo):
    from tests.browser.test_account_flows import enrol_totp
    from tests.browser.test_account_flows import totp_code

    server = live_server
    with app.app_context():
        from idp.signin import resets
        raw = resets.issue(db.session, accounts.find_user(demo["user"]["email"]), utcnow(), 600)
        db.session.commit()
    problems = {}
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + "/password/forgot")
    check(page, "forgot-password", problems)
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_role("button", name="Send reset link").click()
    check(page, "forgot-password-sent", problems)
    page.goto(server.url + f"/password/reset?token={raw}")
    check(page, "reset-password", problems)
    page.get_by_role("button", name="Change password").click()
    check(page, "reset-password-invalid", problems)
    page.goto(server.url + "/password/reset?token=fe_pr_unknown")
    check(page, "reset-link-expired", problems)

    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"])
    page.goto(server.url + "/settings/password")
    check(page, "password", problems)
    page.get_by_role("button", name="Change password").click()
    check(page, "password-invalid", problems)
    page.goto(server.url + "/settings/security")
    check(page, "security", problems)
    page.get_by_role("button", name="Set up authenticator app").click()
    check(page, "totp-setup", problems)
    page.goto(server.url + "/settings/security")
    secret, _ = enrol_totp(page, server.url)
    check(page, "recovery-codes", problems)
    page.goto(server.url + "/settings/security")
    check(page, "security-on", problems)
    context.close()

    second = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = second.new_page()
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"])
    check(page, "two-step", problems)
    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Verify").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Connected Apps"
    second.close()

    assert problems == {}
