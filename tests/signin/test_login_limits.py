"""Break 3 of issue 11: sign-in limits count failures only, and never lock an owner out.

The IdP runs with the shipped limits behind one proxy hop; addresses come from
X-Forwarded-For. Each test runs on this process's counters and on the shared Redis.
"""

import pytest

from idp.infra.config import ConfigError
from idp.infra.config import build_config
from idp.infra.config_checks import check_config
from idp.infra.extensions import db
from idp.signin import login_limits
from idp.store import accounts
from tests.helpers import csrf_token
from tests.limit_support import STORES
from tests.limit_support import from_address
from tests.limit_support import production_app

OWNER_ADDRESS = "198.51.100.7"


@pytest.fixture(params=STORES)
def prod(request, make_app, demo):
    """The IdP with shipped limits, on each counter store."""
    return production_app(make_app, request.param)


def sign_in(client, email: str, password: str, address: str):
    """One sign-in attempt from ``address`` with a fresh form."""
    page = client.get("/login", **from_address(address))
    return client.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": email,
        "password": password}, **from_address(address))


def known_browser(app, demo):
    """The owner's browser after one sign-in (then signed out): it carries the device cookie."""
    owner = app.test_client()
    assert sign_in(owner, demo["user"]["email"], demo["user"]["password"],
                   OWNER_ADDRESS).status_code == 302
    owner.delete_cookie("fe_idp_session")
    assert owner.get_cookie(login_limits.DEVICE_COOKIE, path="/login") is not None
    return owner


def test_break3_the_owner_signs_in_after_strangers_fail_from_ten_addresses(prod, demo):
    owner = known_browser(prod, demo)
    stranger = prod.test_client()
    for n in range(1, 11):
        response = sign_in(stranger, demo["user"]["email"], f"guess-{n}", f"203.0.113.{n}")
        assert response.status_code == 401
    slowed = sign_in(stranger, demo["user"]["email"], "guess-11", "203.0.113.11")
    assert slowed.status_code == 429, "the account's slowdown holds strangers back"
    assert 0 < int(slowed.headers["Retry-After"]) <= 60
    response = sign_in(owner, demo["user"]["email"], demo["user"]["password"], OWNER_ADDRESS)
    assert response.status_code == 302, "the owner's known browser is not locked out"


def test_break3_the_hourly_account_cap_holds_and_never_locks_the_owner(make_app, demo):
    app = production_app(make_app, "memory",
                         IDP_LOGIN_ACCOUNT_RATE_LIMIT="1000 per minute;100 per hour")
    owner = known_browser(app, demo)
    stranger = app.test_client()
    for n in range(100):
        address = f"10.{n // 250}.{n % 250}.1"
        assert sign_in(stranger, demo["user"]["email"], "guess", address).status_code == 401
    capped = sign_in(stranger, demo["user"]["email"], demo["user"]["password"], "10.99.0.1")
    assert capped.status_code == 429, "the 101st failure of the hour is refused, right or not"
    assert 60 < int(capped.headers["Retry-After"]) <= 3600
    new_browser = app.test_client()
    assert sign_in(new_browser, demo["user"]["email"], demo["user"]["password"],
                   OWNER_ADDRESS).status_code == 429, "a browser the account never used waits"
    assert sign_in(owner, demo["user"]["email"], demo["user"]["password"],
                   OWNER_ADDRESS).status_code == 302


def test_break3_ten_colleagues_behind_one_address_all_sign_in_within_a_minute(prod, demo):
    with prod.app_context():
        for n in range(10):
            accounts.create_user(f"agent{n}@acme-realty.example", f"Agent {n}", f"password-{n}")
        db.session.commit()
    for n in range(10):
        colleague = prod.test_client()
        email = f"agent{n}@acme-realty.example"
        assert sign_in(colleague, email, "typo", "192.0.2.50").status_code == 401
        assert sign_in(colleague, email, f"password-{n}", "192.0.2.50").status_code == 302


def test_break3_one_email_from_one_address_is_limited_tightly(prod, demo):
    client = prod.test_client()
    email = demo["user"]["email"]
    for _ in range(5):
        assert sign_in(client, email, "wrong", "203.0.113.9").status_code == 401
    refused = sign_in(client, email, demo["user"]["password"], "203.0.113.9")
    assert refused.status_code == 429, "refused before the password is checked"
    assert "Too many failed sign-in attempts" in refused.get_data(as_text=True)
    elsewhere = prod.test_client()
    assert sign_in(elsewhere, email, demo["user"]["password"], "198.51.100.8").status_code == 302


def test_break3_one_address_trying_many_emails_is_limited_moderately(prod, demo):
    client = prod.test_client()
    for n in range(20):
        response = sign_in(client, f"victim{n}@example.com", "wrong", "203.0.113.77")
        assert response.status_code == 401
    assert sign_in(client, "victim99@example.com", "wrong", "203.0.113.77").status_code == 429
    assert sign_in(client, demo["user"]["email"], demo["user"]["password"],
                   "203.0.113.77").status_code == 429
    other = prod.test_client()
    assert sign_in(other, "victim99@example.com", "wrong", "203.0.113.78").status_code == 401


def test_break3_an_ipv6_guesser_is_one_source_for_its_whole_64(prod, demo):
    client = prod.test_client()
    for n in range(20):
        response = sign_in(client, f"victim{n}@example.com", "wrong", f"2001:db8:1:2::{n:x}")
        assert response.status_code == 401
    refused = sign_in(client, "victim99@example.com", "wrong", "2001:db8:1:2:ffff::1")
    assert refused.status_code == 429
    neighbour = sign_in(client, "victim99@example.com", "wrong", "2001:db8:1:3::1")
    assert neighbour.status_code == 401


@pytest.mark.parametrize("cookie", ["garbage", "W1sidXNyX3giLCJuIl1d.forged.signature"])
def test_a_forged_device_cookie_earns_no_exemption(make_app, demo, cookie):
    app = production_app(make_app, "memory")
    stranger = app.test_client()
    stranger.set_cookie(login_limits.DEVICE_COOKIE, cookie, path="/login")
    for _ in range(5):
        assert sign_in(stranger, demo["user"]["email"], "x", "203.0.113.5").status_code == 401
    assert sign_in(stranger, demo["user"]["email"], "x", "203.0.113.5").status_code == 429


def test_a_known_browser_is_limited_by_its_own_counter(make_app, demo):
    """A stolen device cookie buys no more guesses than one (email, address) pair."""
    app = production_app(make_app, "memory")
    owner = known_browser(app, demo)
    for n in range(5):
        address = f"203.0.113.{n + 1}"
        assert sign_in(owner, demo["user"]["email"], "wrong", address).status_code == 401
    assert sign_in(owner, demo["user"]["email"], "wrong", "203.0.113.99").status_code == 429


def test_the_device_cookie_is_scoped_and_signed(make_app, demo):
    app = production_app(make_app, "memory")
    client = app.test_client()
    response = sign_in(client, demo["user"]["email"], demo["user"]["password"], OWNER_ADDRESS)
    cookie = next(c for c in response.headers.getlist("Set-Cookie")
                  if c.startswith(login_limits.DEVICE_COOKIE + "="))
    assert "Path=/login" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert demo["user"]["email"] not in cookie and demo["user"]["password"] not in cookie


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("IDP_LOGIN_ACCOUNT_RATE_LIMIT", "10 per minute", "must cap failed sign-ins at 100"),
    ("IDP_LOGIN_ACCOUNT_RATE_LIMIT", "101 per hour", "must cap failed sign-ins at 100"),
    ("IDP_LOGIN_ACCOUNT_RATE_LIMIT", "often", "IDP_LOGIN_ACCOUNT_RATE_LIMIT must be a rate"),
    ("IDP_LOGIN_PAIR_RATE_LIMIT", "5", "IDP_LOGIN_PAIR_RATE_LIMIT must be a rate"),
    ("IDP_LOGIN_ADDRESS_RATE_LIMIT", "x per y", "IDP_LOGIN_ADDRESS_RATE_LIMIT must be a rate"),
    ("IDP_AUTH_FAILURE_RATE_LIMIT", "lots", "IDP_AUTH_FAILURE_RATE_LIMIT must be a rate"),
    ("IDP_CLIENT_RATE_LIMIT", "per client", "IDP_CLIENT_RATE_LIMIT must be a rate"),
])
def test_limit_settings_are_checked(tmp_path, setting, value, message):
    config = build_config(str(tmp_path), environ={setting: value})
    with pytest.raises(ConfigError, match=message):
        check_config(config)


@pytest.mark.parametrize("value", ["100 per hour", "10 per minute;100 per hour", "50 per day"])
def test_an_hourly_cap_of_at_most_100_is_accepted(tmp_path, value):
    check_config(build_config(str(tmp_path), environ={"IDP_LOGIN_ACCOUNT_RATE_LIMIT": value}))
