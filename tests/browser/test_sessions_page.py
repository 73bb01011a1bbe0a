"""Signed-in sessions in the browser: one person in two browsers ends the other's session."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import DESKTOP
from tests.browser.support import PHONE
from tests.browser.support import axe_serious
from tests.browser.support import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

#: Two browsers told apart the way the page names them.
LAPTOP_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
PHONE_AGENT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
               "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def accessible(page) -> None:
    """No serious or critical axe-core finding at either width."""
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        assert axe_serious(page) == [], page.url
    page.set_viewport_size(DESKTOP)


def signed_out(page, server) -> bool:
    """Whether the browser's session is gone (settings send it to sign in)."""
    page.goto(server.url + "/settings/connected-apps")
    return "/login" in page.url


def test_sign_out_another_browser_then_everywhere_else(browser, served_idp, demo):
    server, user = served_idp, demo["user"]
    # bypass_csp lets axe-core's script in, as in test_accessibility.py.
    laptop = browser.new_context(viewport=DESKTOP, user_agent=LAPTOP_AGENT,
                                 ignore_https_errors=True, bypass_csp=True)
    phone = browser.new_context(viewport=PHONE, user_agent=PHONE_AGENT, ignore_https_errors=True)
    try:
        on_phone, on_laptop = phone.new_page(), laptop.new_page()
        sign_in(on_phone, server.url, user["email"], user["password"])
        sign_in(on_laptop, server.url, user["email"], user["password"],
                path="/settings/sessions")
        expect(on_laptop.get_by_role("heading", level=1)).to_have_text("Signed-in sessions")
        this_one = on_laptop.get_by_role("heading", name=re.compile("Firefox on Linux"))
        expect(this_one).to_contain_text("This session")
        expect(on_laptop.get_by_role("heading", name="Safari on iPhone")).to_be_visible()
        accessible(on_laptop)

        on_laptop.get_by_role("link", name=re.compile(r"^Sign out Safari on iPhone")).click()
        accessible(on_laptop)
        confirm = on_laptop.get_by_role("region", name="Sign out Safari on iPhone?")
        confirm.get_by_role("button", name="Sign out", exact=True).click()
        expect(on_laptop.get_by_text("Safari on iPhone (")).to_contain_text("is signed out")
        expect(on_laptop.get_by_role("heading", name="Safari on iPhone")).to_have_count(0)
        assert signed_out(on_phone, server)

        sign_in(on_phone, server.url, user["email"], user["password"])
        on_laptop.reload()
        on_laptop.get_by_role("link", name="Sign out everywhere else").click()
        on_laptop.get_by_role("button", name="Sign out everywhere else").click()
        expect(on_laptop.get_by_text("Every other session is signed out.")).to_be_visible()
        assert signed_out(on_phone, server)
        assert not signed_out(on_laptop, server)
    finally:
        laptop.close()
        phone.close()
