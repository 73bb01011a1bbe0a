"""Account flows in Chromium: password change and reset by email, TOTP, recovery codes,
passkeys with the virtual authenticator, and an organization that requires two-step sign-in."""

import calendar
from urllib.parse import urlencode

import pyotp
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store.models import Organization
from tests.browser.support import sign_in
from tests.helpers import LiveServer
from tests.helpers import authorize_params
from tests.helpers import free_port
from tests.helpers import pkce_pair
from tests.mail_support import RESET_LINK
from tests.mail_support import SmtpServer
from tests.settings_support import PASSWORD
from tests.settings_support import add_person

pytestmark = [pytest.mark.browser, pytest.mark.live]

NEW = "sea-view terrace 2026"
MEMBER = "morgan@acme-realty.example"


def totp_code(secret: str, steps_ahead: int = 1) -> str:
    """A code of a coming step: the enrolment already spent the current one."""
    return pyotp.TOTP(secret).at(calendar.timegm(utcnow().utctimetuple()) + 30 * steps_ahead)


def sign_out(page) -> None:
    """The topbar's Sign out button."""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def enrol_totp(page, base: str) -> tuple[str, list[str]]:
    """Set up an authenticator app on Settings → Security; (secret, recovery codes)."""
    page.goto(base + "/settings/security")
    page.get_by_role("button", name="Set up authenticator app").click()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code").fill(totp_code(secret, 0))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    return secret, codes


def test_change_password(context, live_server, demo):
    page = context.new_page()
    base = live_server.url
    sign_in(page, base, demo["user"]["email"], demo["user"]["password"])
    page.get_by_role("link", name="Password").click()
    page.get_by_label("Current password").fill(demo["user"]["password"])
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("Confirm new password").fill(NEW)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password is changed.")).to_be_visible()
    sign_out(page)
    sign_in(page, base, demo["user"]["email"], NEW)
    expect(page.get_by_role("heading", level=1)).to_have_text("Connected Apps")


def test_reset_by_email(browser, database_url, tmp_path, demo):
    with SmtpServer() as smtp:
        server = LiveServer(database_url, tmp_path, extra_env={"IDP_SMTP_URL": smtp.url})
        server.start()
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(server.url + "/login")
            page.get_by_role("link", name="Forgot your password?").click()
            page.get_by_label("Email").fill(demo["user"]["email"])
            page.get_by_role("button", name="Send reset link").click()
            expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
            link = RESET_LINK.search(smtp.inbox.next().get_content()).group(0)
            page.goto(link)
            # The token moved to a cookie: the address bar no longer holds it.
            assert page.url == server.url + "/password/reset"
            page.get_by_label("New password", exact=True).fill(NEW)
            page.get_by_label("Confirm new password").fill(NEW)
            page.get_by_role("button", name="Change password").click()
            expect(page.get_by_text("Your password is changed")).to_be_visible()
            page.goto(link)
            expect(page.get_by_role("heading", name="This reset link no longer works")
                   ).to_be_visible()
            sign_in(page, server.url, demo["user"]["email"], NEW)
            expect(page.get_by_role("heading", level=1)).to_have_text("Connected Apps")
            context.close()
        finally:
            server.stop()


def test_totp_enrolment_sign_in_and_recovery_code(context, live_server, demo):
    page = context.new_page()
    base = live_server.url
    email, password = demo["user"]["email"], demo["user"]["password"]
    sign_in(page, base, email, password)
    secret, codes = enrol_totp(page, base)
    page.get_by_role("link", name="Done").click()
    sign_out(page)

    sign_in(page, base, email, password)
    expect(page.get_by_role("heading", name="Two-step sign-in")).to_be_visible()
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connected Apps")
    sign_out(page)

    sign_in(page, base, email, password)
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("You signed in with a recovery code; 9 left.")).to_be_visible()
    page.goto(base + "/settings/security")
    renewing = page.locator("form", has=page.get_by_role("button", name="Make new recovery codes"))
    renewing.get_by_label("Current password").fill(password)
    page.get_by_role("button", name="Make new recovery codes").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    fresh = page.locator(".recovery-codes code").all_inner_texts()
    sign_out(page)
    sign_in(page, base, email, password)
    # The used code, and one never used but replaced by the renewal: both refused.
    for code in codes[:2]:
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("alert")).to_contain_text("already used")
    page.get_by_label("Code").fill(fresh[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("You signed in with a recovery code; 9 left.")).to_be_visible()


def test_passkey_registration_and_sign_in(browser, database_url, tmp_path, demo):
    # WebAuthn wants a domain as relying party id (an IP address is refused) and a secure
    # context: http://localhost is one.
    port = free_port()
    base = f"http://localhost:{port}"
    server = LiveServer(database_url, tmp_path, port=port, extra_env={"IDP_ISSUER": base})
    server.start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True}})
        email, password = demo["user"]["email"], demo["user"]["password"]
        sign_in(page, base, email, password)
        page.goto(base + "/settings/security")
        adding = page.locator("form[data-passkey=register]")
        adding.get_by_label("Passkey name").fill("Test laptop")
        adding.get_by_label("Current password").fill("not my password")
        page.get_by_role("button", name="Add a passkey").click()
        expect(adding.get_by_role("status")).to_have_text("That was not your current password.")
        adding.get_by_label("Current password").fill(password)
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.get_by_text("Passkey “Test laptop” is added.")).to_be_visible()
        page.get_by_role("link", name="Done").click()
        expect(page.get_by_role("heading", name="Test laptop")).to_be_visible()
        sign_out(page)

        # As the second step after the password.
        sign_in(page, base, email, password)
        page.get_by_role("button", name="Use your passkey").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Connected Apps")
        sign_out(page)

        # Without a password at all.
        page.goto(base + "/login")
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Connected Apps")
        context.close()
    finally:
        server.stop()


def test_org_requires_two_step_before_consent(app, context, live_server, demo):
    add_person(app, MEMBER, {demo["organization"]["id"]: "member"})
    with app.app_context():
        org = db.session.scalar(select(Organization).where(
            Organization.public_id == demo["organization"]["id"]))
        org.require_two_step = True
        db.session.commit()
    page = context.new_page()
    base = live_server.url
    consent = "/oauth/authorize?" + urlencode(authorize_params(
        demo["clients"]["zapier"], scope="leads:read", challenge=pkce_pair()[1]))
    sign_in(page, base, MEMBER, PASSWORD, path=consent)
    expect(page.get_by_text(f"{demo['organization']['name']} requires two-step sign-in")
           ).to_be_visible()
    page.get_by_role("button", name="Set up authenticator app").click()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code").fill(totp_code(secret, 0))
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("link", name="Continue connecting the app").click()
    expect(page.get_by_role("button", name="Allow")).to_be_visible()
