"""Request limits of the IdP's own hot endpoints, counted without Flask-Limiter's decorator.

The per-credential API limit, and the per-client (token, revocation) and per-resource-server
(introspection) limits, are counted straight in the storage Flask-Limiter was configured with
(``RATELIMIT_STORAGE_URI``), with a fixed window, by :func:`idp.ratelimit.count`. Flask-Limiter
itself counts only the views it decorates (sign-in, whose limit must keep counting in-process
while Redis is down), from the decorator: its per-request hook, which exists for default and
application-wide limits that this app does not configure, is removed, because evaluating it
cost about a tenth of an introspection (docs/PERFORMANCE.md).

What each limit does while the shared counter store (Redis) cannot be reached (OPERATIONS.md,
"When something fails"):

* fail open, not counted at all: every limit counted here (token and revocation endpoints,
  introspection, the per-credential API limit). A refused refresh or introspection during a
  counter outage would be an outage of every connector; these limits protect capacity, not
  secrets (every credential they guard carries 128 to 256 random bits), so briefly unlimited
  traffic is the lesser harm. :func:`idp.ratelimit.count` stops asking a failed store for a
  few seconds, so an outage costs one timeout now and then, not one per request.
* counted per process: sign-in, through Flask-Limiter's in-memory fallback (idp/config.py).
  Passwords are guessable, so brute-force protection must not vanish; with N processes an
  attacker gets at most N times the configured attempts.
"""

import time
from functools import wraps

from flask import current_app
from flask import jsonify
from flask import request
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from idp import ratelimit
from idp.extensions import limiter

#: What the OAuth endpoints say with their 429 (the limit is the caller's, not a credential's).
MESSAGE = "Too many requests; wait before retrying."


def count(limit_value: str, scope: str, key: str) -> ratelimit.Usage | None:
    """Count one request of ``key`` under ``limit_value``; None when not counted."""
    if not limiter.enabled:
        return None
    storage = limiter.storage
    if isinstance(storage, MemoryStorage):
        # memory://: this process's own counters (see ratelimit.LocalCounters for why).
        storage = current_app.extensions["idp.local_counters"]
    strategy = FixedWindowRateLimiter(storage)
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
    return ratelimit.count(strategy, limit_value, key, prefix, scope=scope)


def too_many(usage: ratelimit.Usage, now: float):
    """The OAuth endpoints' 429: RFC 6749-style JSON with Retry-After and X-RateLimit-*."""
    response = jsonify(error="rate_limited", error_description=MESSAGE)
    response.status_code = 429
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(usage.headers(now))
    return response


def limit(setting: str, key_func):
    """Decorator: count each request per ``key_func()`` under ``app.config[setting]``."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            usage = count(current_app.config[setting], request.endpoint, key_func())
            if usage is not None and not usage.allowed:
                return too_many(usage, time.time())
            return view(*args, **kwargs)

        return wrapper

    return decorate


def init_app(app) -> None:
    """Give the app its in-process counters and drop Flask-Limiter's per-request hooks (call
    after ``limiter.init_app``).

    Decorated views are counted by the decorator itself. The before-request hook would only
    apply default or application-wide limits, the after-request one only add headers (off in
    idp/config.py) and settle conditional deductions, and the teardown only clears state kept
    on the request context, which ends with the request anyway; idp/config.py sets none of
    those limits.
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
