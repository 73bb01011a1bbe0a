"""Sign-in failure limits without a targeted lockout (SPEC §10 as changed on 2026-11-28).

Only failures count; a correct password is never counted against anyone. An attempt from a
browser the account has not signed in from is judged by three counters:

* per (email, address), tightly (``IDP_LOGIN_PAIR_RATE_LIMIT``): one guesser at one account;
* per address, moderately (``IDP_LOGIN_ADDRESS_RATE_LIMIT``): one guesser at many accounts,
  loose enough for an office behind one address;
* per account across addresses (``IDP_LOGIN_ACCOUNT_RATE_LIMIT``): a slowdown per minute and
  a cap of at most 100 failures an hour (OWASP ASVS L2), against guessing from many addresses.

A browser that has signed in to the account before carries a signed "known device" cookie
naming it (OWASP's device-cookie scheme). For that account such a browser is judged by its
own counter only (at the pair limit), so a stranger's failures from anywhere, the victim's
office included, never lock the owner out of a browser they have used; a stolen device cookie
buys no more guesses than one (email, address) pair.

Counters are keyed by an HMAC of the typed email under ``SECRET_KEY`` (a password typed
into the email field is never stored readable) and by the address (IPv6 by /64). While the
shared store is down they are counted in this process (idp.infra.throttle, ``*_strict``).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import current_app
from flask import request
from itsdangerous import BadData
from itsdangerous import URLSafeTimedSerializer

from idp.infra import ratelimit
from idp.infra import throttle

#: The known-device cookie: which accounts have signed in from this browser.
DEVICE_COOKIE = "fe_idp_device"
#: How long a browser stays known after its last successful sign-in.
DEVICE_MAX_AGE = 90 * 24 * 3600
#: Accounts remembered per browser, newest first (a shared family or front-desk computer).
DEVICE_ACCOUNTS = 5
_DEVICE_SALT = "idp.known-device"


@dataclass(frozen=True)
class Attempt:
    """The counters one sign-in attempt is judged by: (setting, scope, key) triples."""

    counters: tuple[tuple[str, str, str], ...]


def _serializer() -> URLSafeTimedSerializer:
    """Signs the device cookie with SECRET_KEY (older keys still verify during a rotation)."""
    keys = [*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.secret_key]
    return URLSafeTimedSerializer(keys, salt=_DEVICE_SALT)


def _known_accounts() -> list[list[str]]:
    """The [user public id, device nonce] pairs of a valid device cookie, else none."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        entries = _serializer().loads(raw, max_age=DEVICE_MAX_AGE)
    except BadData:
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries
            if isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)]


def _email_key(email: str) -> str:
    """A keyed digest of the normalized email: counters never hold what was typed."""
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else key
    normalized = (email or "").strip().lower().encode()
    return hmac.new(key, b"login:" + normalized, hashlib.sha256).hexdigest()[:40]


def attempt(email: str, user) -> Attempt:
    """The counters that judge an attempt for ``email`` (``user``: its account, or None)."""
    if user is not None:
        for public_id, nonce in _known_accounts():
            if hmac.compare_digest(public_id, user.public_id):
                device = hashlib.sha256(nonce.encode()).hexdigest()[:40]
                return Attempt((("IDP_LOGIN_PAIR_RATE_LIMIT", "login-device", device),))
    address = throttle.source()
    email_key = _email_key(email)
    return Attempt((
        ("IDP_LOGIN_PAIR_RATE_LIMIT", "login-pair", f"{email_key}:{address}"),
        ("IDP_LOGIN_ADDRESS_RATE_LIMIT", "login-address", address),
        ("IDP_LOGIN_ACCOUNT_RATE_LIMIT", "login-account", email_key),
    ))


def refusal(judged: Attempt) -> ratelimit.Usage | None:
    """The breached counter of an attempt, checked before any password work; else None."""
    for setting, scope, key in judged.counters:
        usage = throttle.peek_strict(current_app.config[setting], scope, key)
        if usage is not None:
            return usage
    return None


def failed(judged: Attempt) -> None:
    """Count one failed attempt in each of its counters."""
    for setting, scope, key in judged.counters:
        throttle.count_strict(current_app.config[setting], scope, key)


def remember_device(response, user) -> None:
    """Mark this browser as known to ``user`` (a fresh nonce resets its failure counter)."""
    others = [e for e in _known_accounts() if e[0] != user.public_id]
    entries = [[user.public_id, secrets.token_urlsafe(16)], *others][:DEVICE_ACCOUNTS]
    response.set_cookie(
        DEVICE_COOKIE, _serializer().dumps(entries), max_age=DEVICE_MAX_AGE,
        path="/login", secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True,
        samesite="Lax",
    )


def retry_after(usage: ratelimit.Usage) -> str:
    """Seconds until the breached window ends, at least one."""
    return usage.headers(time.time()).get("Retry-After", "60")
