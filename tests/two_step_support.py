"""Builders for two-step tests: enrol an authenticator app through the pages, sign in."""

import calendar
import re

import pyotp

from idp.core.clock import utcnow
from tests.helpers import csrf_token
from tests.settings_support import PASSWORD
from tests.settings_support import post_form

SECURITY = "/settings/security"
SETUP = "/settings/security/totp/setup"
TWO_STEP = "/login/two-step"
SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')
CODES_RE = re.compile(r"<code>([0-9a-f]{5}(?:-[0-9a-f]{5}){3})</code>")


def code_at(secret: str, shift_steps: int = 0) -> str:
    """The TOTP code of the IdP's clock (which tests may move), ``shift_steps`` later."""
    now = calendar.timegm(utcnow().utctimetuple())
    return pyotp.TOTP(secret).at(now + 30 * shift_steps)


def start_setup(client) -> str:
    """Begin enrolment on the security page; the secret the setup page shows."""
    response = post_form(client, SECURITY, SECURITY + "/totp")
    assert response.status_code == 303, response.status_code
    page = client.get(SETUP)
    assert page.status_code == 200
    return SECRET_RE.search(page.get_data(as_text=True)).group(1).replace(" ", "")


def enrol(client) -> tuple[str, list[str]]:
    """Set up an authenticator app; (secret, recovery codes)."""
    secret = start_setup(client)
    response = post_form(client, SETUP, SETUP, {"code": code_at(secret)})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    codes = CODES_RE.findall(response.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def password_step(client, email: str, password: str = PASSWORD, next_url: str = ""):
    """The first step of sign-in, through the real form."""
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                       "email": email, "password": password, "next": next_url})


def second_step(client, code: str):
    """POST a code to the second step with its page's CSRF token."""
    page = client.get(TWO_STEP)
    return client.post(TWO_STEP, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                       "code": code})
