"""Flow 1: create an API key in the browser, use it, disable, enable and revoke it."""

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.support import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

KEY = re.compile(r"fe_k_[0-9a-f]{32}")


def me(server, key):
    """Call /api/v1/me with an API key; return (status, reason or None)."""
    response = requests.get(server.url + "/api/v1/me",
                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return response.status_code, response.json().get("error", {}).get("reason")


def test_key_lifecycle_in_the_browser(browser, served_idp, demo):
    server = served_idp
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  permissions=["clipboard-read", "clipboard-write"],
                                  ignore_https_errors=True)
    page = context.new_page()
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
            path="/settings/api-keys")
    page.get_by_label("Name").fill("Lead sync script")
    page.get_by_label("leads:read").check()
    page.get_by_label("contacts:write").check()
    with page.expect_response(server.url + "/settings/api-keys") as created:
        page.get_by_role("button", name="Create API key").click()
    assert created.value.status == 201
    assert created.value.headers["cache-control"] == "no-store"
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    raw = page.get_by_label("API key “Lead sync script”").input_value()
    assert KEY.fullmatch(raw)

    # The copy button exists only with JavaScript and puts the exact key on the clipboard.
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("The key is copied to your clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == raw

    assert me(server, raw) == (200, None)
    body = requests.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {raw}"},
                        timeout=10).json()
    assert body["api_key"]["name"] == "Lead sync script"
    assert body["scopes"] == ["contacts:write", "leads:read"]

    page.get_by_role("link", name="Done").click()
    page.wait_for_url(server.url + "/settings/api-keys")
    assert raw not in page.content() and not KEY.search(page.content())
    page.reload()
    assert raw not in page.content()
    row = page.get_by_role("row", name=re.compile("Lead sync script"))
    assert f"fe_k_…{raw[-4:]}" in row.inner_text()
    assert "Active" in row.inner_text() and demo["user"]["email"] in row.inner_text()
    assert "127.0.0.1" in row.inner_text()  # last used, from where

    row.get_by_role("button", name="Disable").click()
    assert "Disabled" in page.get_by_role("row", name=re.compile("Lead sync script")).inner_text()
    assert me(server, raw) == (403, "key_inactive")

    page.get_by_role("row", name=re.compile("Lead sync script")).get_by_role(
        "button", name="Enable").click()
    assert "Active" in page.get_by_role("row", name=re.compile("Lead sync script")).inner_text()
    assert me(server, raw) == (200, None)

    page.get_by_role("row", name=re.compile("Lead sync script")).get_by_role(
        "link", name="Revoke").click()
    assert page.get_by_role("heading", level=1).inner_text() == (
        "Revoke the key “Lead sync script”?")
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url(server.url + "/settings/api-keys")
    assert page.get_by_role("status").inner_text().strip() == (
        "The key 'Lead sync script' is revoked and can no longer be used.")
    assert page.get_by_role("row", name=re.compile("Lead sync script")).count() == 0
    assert me(server, raw) == (401, "unknown_token")
    assert raw not in server.log()
    context.close()


def test_everything_works_without_javascript(browser, served_idp, demo):
    server = served_idp
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  java_script_enabled=False, ignore_https_errors=True)
    page = context.new_page()
    sign_in(page, server.url, demo["user"]["email"], demo["user"]["password"],
            path="/settings/api-keys")
    page.get_by_label("Name").fill("No script")
    page.get_by_label("tasks:read").check()
    page.get_by_role("button", name="Create API key").click()
    raw = page.get_by_label("API key “No script”").input_value()
    assert KEY.fullmatch(raw)
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    expect(page.locator("[data-copy-target]")).to_be_hidden()  # an enhancement only
    assert me(server, raw) == (200, None)

    page.get_by_role("link", name="Done").click()
    row = page.get_by_role("row", name=re.compile("No script"))
    row.get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke key").click()
    assert me(server, raw) == (401, "unknown_token")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(server.url + "/login")
    page.goto(server.url + "/settings/api-keys")
    assert page.url.startswith(server.url + "/login?next=")
    context.close()
