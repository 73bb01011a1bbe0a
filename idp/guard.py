"""Protect a view of this app with the credential core (SPEC §4), in-process."""

from functools import wraps

from flask import g
from flask import request

from idp.core.clock import utcnow
from idp.core.credentials import Denial
from idp.core.credentials import authenticate
from idp.core.credentials import require_scopes
from idp.errors import api_error
from idp.extensions import db


def www_authenticate(denial: Denial) -> str:
    """RFC 6750 §3 challenge for a denial."""
    value = 'Bearer realm="FlowEstate"'
    if denial.reason == "insufficient_scope":
        return value + f', error="insufficient_scope", scope="{" ".join(denial.needed)}"'
    if denial.presented:
        return value + ', error="invalid_token"'
    return value


def denial_response(denial: Denial):
    """The §4 JSON error for a denial, with its WWW-Authenticate header when it has one."""
    headers = {}
    if denial.status == 401 or denial.reason == "insufficient_scope":
        headers["WWW-Authenticate"] = www_authenticate(denial)
    return api_error(denial.status, denial.code, denial.reason, denial.message, headers)


def require_bearer(*scopes: str):
    """Decorator: judge the bearer with the core, then the scopes; put it on ``g.credential``."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            result = authenticate(db.session, request.headers.get("Authorization"), utcnow())
            if isinstance(result, Denial):
                return denial_response(result)
            denial = require_scopes(result, *scopes)
            if denial:
                return denial_response(denial)
            g.credential = result
            return view(*args, **kwargs)

        return wrapper

    return decorate
