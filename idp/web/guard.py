"""Protect a view of this app with the credential core (SPEC §4, §10), in-process.

The bearer is judged by ``idp.store.credentials.authenticate`` (one lookup, then the core's
§4 rules) on a read connection; this module only turns the verdict into a response.
"""

import time
from functools import wraps

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

__all__ = ["denial_response", "json_response", "require_bearer", "www_authenticate"]


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


def respond(credential: Credential, usage, now: float, scopes, call_view):
    """Scope check, then the view; the rate-limit headers go on whatever answers.

    The last step of the in-process guard (SPEC §4, §10).
    """
    denial = require_scopes(credential, *scopes)
    response = denial_response(denial) if denial else make_response(call_view())
    if usage is not None:
        response.headers.update(usage.headers(now))
    return response


def require_bearer(*scopes: str, rate_limit: bool = True):
    """Decorator: judge the bearer, count it, check scopes; the credential is ``g.credential``.

    The order matters: authentication first, so unknown tokens never spend a real
    credential's quota; then the rate limit, so a credential that hammers an endpoint it may
    not use still meets its limit; then the scopes the endpoint needs.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            with reading(db.engine) as conn:
                result = authenticate(conn, request.headers.get("Authorization"), utcnow())
            if isinstance(result, Denial):
                return denial_response(result)
            g.credential = result
            usage = count_request(result) if rate_limit else None
            now = time.time()
            if usage is not None and not usage.allowed:
                return json_response(*ratelimit.rate_limited_parts(usage, now))
            record_use(db.session, result, utcnow(), current_app.config["IDP_LAST_USED_INTERVAL"],
                       request.remote_addr)
            return respond(result, usage, now, scopes, lambda: view(*args, **kwargs))

        return wrapper

    return decorate
