"""Protect a view of this app with the credential core (SPEC §4, §10), in-process.

The bearer is judged by ``idp.store.credentials.authenticate`` (one lookup, then the core's
§4 rules) on a read connection; this module only turns the verdict into a response.
"""

import time
from functools import wraps
from typing import NamedTuple

from flask import current_app
from flask import g
from flask import jsonify
from flask import make_response
from flask import request

from idp.core.bearer import Denial
from idp.core.bearer import denial_parts
from idp.core.bearer import www_authenticate
from idp.core.clock import utcnow
from idp.core.credentials import Credential
from idp.core.credentials import require_scopes
from idp.infra import ratelimit
from idp.infra import throttle
from idp.infra.extensions import db
from idp.store.credentials import authenticate
from idp.store.database import reading
from idp.web.unit_of_work import record_use

__all__ = [
    "Admitted", "admit", "denial_response", "guarded", "json_response", "require_bearer",
    "respond",
    "www_authenticate",
]


def json_response(status: int, body: dict, headers: dict):
    """A JSON response with extra headers."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


def denial_response(denial: Denial):
    """The §4 JSON error for a denial, with its WWW-Authenticate header when it has one."""
    return json_response(*denial_parts(denial))


def count_request(credential: Credential) -> ratelimit.Usage | None:
    """Count this request against the credential's own limit (IDP_API_RATE_LIMIT)."""
    return throttle.count(current_app.config["IDP_API_RATE_LIMIT"], ratelimit.SCOPE,
                          credential.rate_key)


class Admitted(NamedTuple):
    """A bearer that passed: its credential, its counted usage (None: not counted) and when."""

    credential: Credential
    usage: ratelimit.Usage | None
    now: float


def admit(authorization: str | None, address: str | None, rate_limit: bool = True):
    """Judge, count and note the use of a bearer: :class:`Admitted`, or the refusal to send.

    The order matters: authentication first, so unknown tokens never spend a real
    credential's quota; then the rate limit, so a credential that hammers an endpoint it may
    not use still meets its limit (the scopes come after, in :func:`respond`). Shared by the
    decorator below and the lean path (idp/web/lean.py), which needs only an app context.
    """
    with reading(db.engine) as conn:
        result = authenticate(conn, authorization, utcnow())
    if isinstance(result, Denial):
        return denial_response(result)
    usage = count_request(result) if rate_limit else None
    now = time.time()
    if usage is not None and not usage.allowed:
        return json_response(*ratelimit.rate_limited_parts(usage, now))
    record_use(db.session, result, utcnow(), current_app.config["IDP_LAST_USED_INTERVAL"],
               address)
    return Admitted(result, usage, now)


def respond(admitted: Admitted, scopes, call_view):
    """Scope check, then the view; the rate-limit headers go on whatever answers.

    The last step of the in-process guard (SPEC §4, §10).
    """
    denial = require_scopes(admitted.credential, *scopes)
    response = denial_response(denial) if denial else make_response(call_view())
    if admitted.usage is not None:
        response.headers.update(admitted.usage.headers(admitted.now))
    return response


def guarded(authorization: str | None, address: str | None, scopes, rate_limit: bool,
            call_view):
    """:func:`admit`, then :func:`respond` with the credential in ``g.credential`` (the
    decorator's whole work, and the lean path's for a guarded view)."""
    admitted = admit(authorization, address, rate_limit)
    if not isinstance(admitted, Admitted):
        return admitted
    g.credential = admitted.credential
    return respond(admitted, scopes, call_view)


def require_bearer(*scopes: str, rate_limit: bool = True):
    """Decorator: judge the bearer, count it, check scopes; the credential is ``g.credential``
    (:func:`admit`, then :func:`respond`)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            return guarded(request.headers.get("Authorization"), request.remote_addr, scopes,
                           rate_limit, lambda: view(*args, **kwargs))

        #: The rules this view is guarded by, for the lean path that answers it first.
        wrapper.bearer_rules = (scopes, rate_limit)
        return wrapper

    return decorate
