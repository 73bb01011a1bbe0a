"""Refusals made before any work, on every endpoint: a body too large, or one unreadable as a form.

The answers themselves (413, 415) are shaped by idp/web/errors.py like every other error.
"""

from flask import current_app
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import UnsupportedMediaType


def refuse_large_body():
    """Refuse a declared body over MAX_CONTENT_LENGTH before any work, on every endpoint.

    Werkzeug refuses it only when the body is read, so an endpoint that reads none (GET
    /api/v1/me) would otherwise answer as if it were not there. A chunked body without a length
    is still refused by Werkzeug as soon as a read passes the limit.
    """
    check_length(request)


def check_length(req) -> None:
    """Raise RequestEntityTooLarge when ``req`` declares a body over MAX_CONTENT_LENGTH."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and (req.content_length or 0) > limit:
        raise RequestEntityTooLarge()


#: Endpoints that read their parameters from a form (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1).
FORM_ENDPOINTS = ("oauth.token", "oauth.revoke", "oauth.introspect")
#: Bodies they read. multipart is not what the RFCs name, but Werkzeug reads it as a form and
#: some HTTP libraries send it: it worked before the 415 rule, so it keeps working.
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def refuse_unreadable_body():
    """415 for a body an OAuth endpoint cannot read as a form (a JSON one, say), before any work.

    Such a request never succeeded: Authlib reads only form (and query) parameters, so it was
    told "grant_type is required" about a body that holds one. A request without a body is
    left to Authlib, which names the missing parameter, whatever its Content-Type says.
    """
    if request.endpoint in FORM_ENDPOINTS:
        check_form(request)


def check_form(req) -> None:
    """Raise UnsupportedMediaType when ``req`` carries a body that is not a form."""
    if req.mimetype in FORM_MEDIA_TYPES:
        return
    chunked = "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if req.content_length or chunked:
        raise UnsupportedMediaType()


def init_app(app):
    """Run both checks before every request."""
    app.before_request(refuse_large_body)
    app.before_request(refuse_unreadable_body)
