"""Request limits of the IdP's own endpoints, counted without Flask-Limiter's decorator.

Every limit is keyed on who is authenticated, never on an identifier the caller merely
claims (SPEC §10 as changed on 2026-11-28; the table is in docs/SECURITY.md, "Rate limits"):

* failed client or resource-server authentication (token, revocation, introspection) is
  counted per source address (:func:`idp.infra.ratelimit.address_key`, IPv6 by /64), and an
  address over ``IDP_AUTH_FAILURE_RATE_LIMIT`` has its failures answered 429, while its
  authenticated requests still pass (:func:`refuse_failing`);
* authenticated token and revocation requests are counted per connection, from inside the
  grant or endpoint that found it (idp/oauth/limits.py); introspection per resource server;
* sign-in failures per (email, address), per address and per account (idp/signin/login_limits.py).

All are counted straight in the storage Flask-Limiter was configured with
(``RATELIMIT_STORAGE_URI``), with a fixed window, by :func:`idp.infra.ratelimit.count`.
Flask-Limiter's per-request hook, which exists for default and application-wide limits that
this app does not configure, is removed, because evaluating it cost about a tenth of an
introspection (docs/PERFORMANCE.md).

What each limit does while the shared counter store (Redis) cannot be reached (OPERATIONS.md,
"When something fails"):

* fail open, not counted at all: the limits of :func:`count` (token,
  revocation and introspection, the per-credential API limit). A refused refresh or
  introspection during a counter outage would be an outage of every connector; these limits
  protect capacity, not secrets (every credential they guard carries 128 to 256 random bits),
  so briefly unlimited traffic is the lesser harm. :func:`idp.infra.ratelimit.count` stops asking a
  failed store for a few seconds, so an outage costs one timeout now and then, not one per
  request.
* counted per process: sign-in, through :func:`count_strict` and :func:`peek_strict`, which
  fall back to this process's own counters. Passwords are guessable, so brute-force
  protection must not vanish; with N processes an attacker gets at most N times the
  configured attempts.
"""

import time
from functools import wraps

from flask import current_app
from flask import jsonify
from flask import request
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from idp.infra import metrics
from idp.infra import ratelimit
from idp.infra.extensions import limiter

#: What the OAuth endpoints say with their 429 (the limit is the caller's, not a credential's).
MESSAGE = "Too many requests; wait before retrying."
#: Counter namespace of failed client and resource-server authentication, per address.
AUTH_FAILURE_SCOPE = "auth-failure"


def _strategy(local: bool = False) -> FixedWindowRateLimiter:
    """A fixed window over the shared store, or over this process's own counters."""
    storage = limiter.storage
    if local or isinstance(storage, MemoryStorage):
        # memory://: this process's own counters (see ratelimit.LocalCounters for why).
        storage = current_app.extensions["idp.local_counters"]
    return FixedWindowRateLimiter(storage)


def _prefix() -> str:
    """The key prefix that keeps apps sharing one Redis apart."""
    return current_app.config.get("RATELIMIT_KEY_PREFIX", "")


def count(limit_value: str, scope: str, key: str) -> ratelimit.Usage | None:
    """Count one request of ``key`` under ``limit_value``; None when not counted."""
    if not limiter.enabled:
        return None
    return _noted(scope, ratelimit.count(_strategy(), limit_value, key, _prefix(), scope=scope))


def count_strict(limit_value: str, scope: str, key: str) -> ratelimit.Usage | None:
    """:func:`count`, in this process's counters while the shared store is down."""
    if not limiter.enabled:
        return None
    usage = ratelimit.count(_strategy(), limit_value, key, _prefix(), scope=scope)
    if usage is None:
        usage = ratelimit.count(_strategy(local=True), limit_value, key, _prefix(), scope=scope)
    return _noted(scope, usage)


def peek_strict(limit_value: str, scope: str, key: str) -> ratelimit.Usage | None:
    """:func:`peek`, in this process's counters while the shared store is down."""
    if not limiter.enabled:
        return None
    usage = ratelimit.peek(_strategy(), limit_value, key, _prefix(), scope=scope)
    if usage is None:
        usage = ratelimit.peek(_strategy(local=True), limit_value, key, _prefix(), scope=scope)
    return _noted(scope, usage) if usage is not None and not usage.allowed else None


def _noted(scope: str, usage: ratelimit.Usage | None) -> ratelimit.Usage | None:
    """Tell the metrics which limit a breached ``usage`` is, so a 429 is counted under it."""
    if usage is not None and not usage.allowed:
        metrics.note_limit(scope)
    return usage


def source() -> str:
    """The caller's counted source: its address after ProxyFix, IPv6 by /64."""
    return ratelimit.address_key(request.remote_addr)


def too_many(usage: ratelimit.Usage, now: float):
    """The OAuth endpoints' 429: RFC 6749-style JSON with Retry-After and X-RateLimit-*."""
    response = jsonify(error="rate_limited", error_description=MESSAGE)
    response.status_code = 429
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(usage.headers(now))
    return response


def refuse_failing(view):
    """Decorator for client-authenticated endpoints: every 401 (a failed client or
    resource-server authentication) is counted against the address that sent it, and past
    the limit that address's failures are answered 429.

    A request that authenticates is never refused here, whatever its address has done:
    Zapier and Make call from shared egress addresses that anyone can send requests from
    (a webhook step of their own), so refusing an address before checking the secret would
    let a stranger stop every customer's refresh again, only through the connector's door.
    Checking first costs one indexed lookup per flooding request; secrets carry 256 random
    bits, so the counter exists to slow and surface a flood, not to stop guessing.
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        return unless_failing(view(*args, **kwargs), request.remote_addr)

    return wrapper


def unless_failing(response, address: str | None):
    """``response``; but a 401 is counted against ``address``, and past the limit it becomes
    the 429 (:func:`refuse_failing`, also the lean path's introspection)."""
    if response.status_code != 401:
        return response
    usage = count(current_app.config["IDP_AUTH_FAILURE_RATE_LIMIT"], AUTH_FAILURE_SCOPE,
                  ratelimit.address_key(address))
    if usage is not None and not usage.allowed:
        return too_many(usage, time.time())
    return response


def init_app(app) -> None:
    """Give the app its in-process counters and drop Flask-Limiter's per-request hooks (call
    after ``limiter.init_app``).

    Flask-Limiter decorates no view here: it is kept for its configured storage. The
    before-request hook would only apply default or application-wide limits, the
    after-request one only add headers (off in idp/infra/config.py) and settle conditional
    deductions, and the teardown only clears state kept on the request context, which ends
    with the request anyway; idp/infra/config.py sets none of those limits.
    """
    app.extensions["idp.local_counters"] = ratelimit.LocalCounters()
    for hooks in (app.before_request_funcs, app.after_request_funcs,
                  app.teardown_request_funcs):
        hooks[None] = [hook for hook in hooks.get(None, []) if not _bound_to_limiter(hook)]


def _bound_to_limiter(hook) -> bool:
    """Whether a registered hook is a method of Flask-Limiter (also through a partial)."""
    function = getattr(hook, "func", hook)
    owner = getattr(function, "__self__", None)
    if owner is None and getattr(hook, "args", None):
        owner = hook.args[0]
    return owner is limiter
