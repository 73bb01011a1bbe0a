"""One place that turns failures into the right response for each kind of endpoint."""

import logging
import time
from urllib.parse import urlencode

from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge

from idp.core.bearer import RETRY_AFTER_UNAVAILABLE
from idp.infra import current
from idp.infra import logs
from idp.infra import metrics
from idp.infra.extensions import db
from idp.infra.extensions import limiter

log = logging.getLogger(__name__)

#: The one page under /oauth/: people see it (sign-in, consent), so its errors are pages.
AUTHORIZE_PAGE = "/oauth/authorize"


def wants_json() -> bool:
    """API, OAuth and health endpoints answer JSON; pages answer HTML (SPEC §5, 2026-11-28)."""
    path = current.path()
    if path == AUTHORIZE_PAGE:
        return False
    # The OpenAPI document is for machines too, and describes its own errors as JSON.
    return path.startswith(("/api/", "/oauth/", "/.well-known/", "/ssf/", "/healthz", "/readyz",
                            "/openapi.yaml"))


def api_error(status: int, code: str, reason: str, message: str, headers=None):
    """The JSON error body of SPEC §4."""
    response = jsonify(error={"code": code, "reason": reason, "message": message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


#: RFC 8936 poll answers its errors as ``{"err", "description"}`` (§2.4.4), not as OAuth does.
POLL_PATH = "/ssf/poll/"


def _oauth_json(status: int, error: str, description: str, headers=None):
    """RFC 6749 §5.2 style body for the OAuth and stream-management endpoints; RFC 8936's on
    the poll endpoint."""
    if current.path().startswith(POLL_PATH):
        response = jsonify(err=error, description=description)
    else:
        response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _page(status: int, title: str, message: str, headers=None, **context):
    """The HTML error page; ``context`` may name the next step (``next_url``, ``next_label``)."""
    page = render_template("error.html", title=title, message=message, **context)
    return page, status, headers or {}


def _limit_headers() -> dict:
    """Retry-After and X-RateLimit-* of the limit that was hit (SPEC §10).

    Set here, on the 429 only: Flask-Limiter's own header injection would also stamp every
    other answer of a limited endpoint, overwriting a fault's short Retry-After with the
    limit's whole window.
    """
    current = limiter.current_limit
    if current is None:
        return {"Retry-After": "60"}
    try:
        reset_at, remaining = current.reset_at, current.remaining
    except Exception:  # the counter store failed after counting; the window is a safe bound
        return {"Retry-After": str(current.limit.get_expiry())}
    # reset_at is rounded up to a whole second; never promise more than one window.
    wait = min(current.limit.get_expiry(), max(1, reset_at - int(time.time())))
    return {
        "Retry-After": str(wait),
        "X-RateLimit-Limit": str(current.limit.amount),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset_at),
    }


def rate_limited(error: RateLimitExceeded):
    """429 with Retry-After and the X-RateLimit-* headers of the breached limit."""
    message = "Too many requests; wait before retrying."
    headers = _limit_headers()
    if current.path().startswith("/api/"):
        return api_error(429, "RATE_LIMITED", "rate_limited", message, headers)
    if wants_json():
        return _oauth_json(429, "rate_limited", message, headers)
    return _page(429, "Too many attempts", "Too many attempts. Wait a minute and try again.",
                 headers)


def database_unavailable(error):
    """A passing database fault is 503 + Retry-After, never a 4xx a connector would act on."""
    log.warning("database unavailable: %s", type(error).__name__)
    metrics.database_fault(error)
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone; the pool discards it on its own
        log.debug("rollback after a database fault failed too")
    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    message = "The service is briefly unavailable; retry shortly."
    if current.path().startswith("/api/"):
        return api_error(503, "UNAVAILABLE", "temporarily_unavailable", message, headers)
    if wants_json():
        return _oauth_json(503, "temporarily_unavailable", message, headers)
    return _page(503, "Briefly unavailable", message, headers)


def unprocessable_value(error: DataError):
    """A value the database refuses (a NUL character, an over-long string): 400, not 503.

    Unlike a passing fault the same request fails the same way every time, so promising
    success on retry would be wrong. PostgreSQL refuses such values; SQLite mostly stores them.
    """
    log.warning("request value refused by the database: %s", type(error.orig).__name__)
    try:
        db.session.rollback()
    except Exception:  # nothing was written; a failed rollback leaves nothing behind
        log.debug("rollback after a refused value failed")
    message = "The request holds a value that cannot be processed."
    if current.path().startswith("/api/"):
        return api_error(400, "BAD_REQUEST", "invalid_request", message)
    if wants_json():
        return _oauth_json(400, "invalid_request", message)
    return _page(400, "This request cannot be processed", message)


def body_too_large(error: RequestEntityTooLarge):
    """413 in the shape of the endpoint (RFC 9110 §15.5.14: Content Too Large)."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    message = f"The request body is larger than {limit} bytes."
    if current.path().startswith("/api/"):
        return api_error(413, "CONTENT_TOO_LARGE", "content_too_large", message)
    if wants_json():
        # RFC 6749 §5.2 has no code for an oversized request; it is a malformed one for us.
        return _oauth_json(413, "invalid_request", message)
    return _page(413, "This request is too large",
                 "What was sent is larger than this site accepts. Go back and try again.")


def csrf_failed(error: CSRFError):
    """A form posted without a valid CSRF token; sign-in and consent offer the way back."""
    # Imported here: blueprints are imported inside create_app only (STYLE.md).
    from idp.web.auth import safe_next

    if request.path == AUTHORIZE_PAGE:
        # The consent form posts to the authorization request's own URL: showing it again
        # (a GET) gives a fresh form for the same request.
        return _page(400, "This form has expired",
                     "The page was open too long, or your session changed. Show the request "
                     "again and choose once more.",
                     next_url=request.full_path, next_label="Show the request again")
    if request.path == "/login":
        target = request.form.get("next")
        return _page(400, "This form has expired",
                     "The sign-in page was open too long. Go back to sign in and try again.",
                     next_url="/login" + (f"?{urlencode({'next': safe_next(target)})}"
                                          if target else ""),
                     next_label="Go back to sign in")
    return _page(400, "This form has expired", "Go back, reload the page and try again.")


#: Each HTTP error on JSON paths: the SPEC §4 code and reason on /api/*, the RFC 6749 error
#: elsewhere, and the sentence a client developer reads. RFC 6749 has no code for a path that
#: does not exist, so 404 says so plainly; a wrong method or media type is a malformed request
#: to an endpoint that does exist (§5.2 invalid_request, as the 413 above); 500 is §4.1.2.1's
#: server_error.
HTTP_ERRORS = {
    400: ("BAD_REQUEST", "invalid_request", "invalid_request", "The request is malformed."),
    404: ("NOT_FOUND", "not_found", "not_found", "There is no endpoint at this path."),
    405: ("METHOD_NOT_ALLOWED", "method_not_allowed", "invalid_request",
          "This endpoint does not accept this method; the Allow header lists those it does."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "unsupported_media_type", "invalid_request",
          "Send the parameters as application/x-www-form-urlencoded."),
    500: ("INTERNAL_ERROR", "internal_error", "server_error",
          "An unexpected error occurred; retry later, and quote the X-Request-ID if it persists."),
}
#: What people read on an error page; the page itself offers the next step.
PAGES = {
    400: ("This request cannot be processed",
          "Something in it was not as expected. Go back and try again."),
    404: ("Page not found", "There is no page at this address; the link may be old or mistyped."),
    405: ("This page cannot be opened this way",
          "The address exists but does not take this kind of request; an old link or bookmark "
          "may have sent you here."),
    500: ("Something went wrong on our side",
          "This page could not be shown. Try again in a moment; if it keeps happening, give "
          "FlowEstate support the reference below."),
}
def http_error(error: HTTPException):
    """404, 405, 415 and any other HTTP error in the shape of its endpoint; 405 keeps ``Allow``.

    Werkzeug's own answer is an HTML page, which a connector or a script cannot read.
    """
    status = error.code or 500
    headers = {}
    if getattr(error, "valid_methods", None):
        # RFC 9110 §15.5.6: a 405 must list the methods the resource does accept.
        headers["Allow"] = ", ".join(error.valid_methods)
    if wants_json():
        fallback = error.name.upper().replace(" ", "_").replace("'", "")
        code, reason, oauth, message = HTTP_ERRORS.get(status, (
            fallback, fallback.lower(), "invalid_request" if status < 500 else "server_error",
            error.description))
        if current.path().startswith("/api/"):
            return api_error(status, code, reason, message, headers)
        return _oauth_json(status, oauth, message, headers)
    title, message = PAGES.get(status, (error.name, error.description))
    reference = logs.request_id() if status >= 500 else None
    return _page(status, title, message, headers, reference=reference)


#: Each failure answered here, with its handler. HTTPException also answers an unexpected
#: exception's 500, after its traceback was logged (never shown).
HANDLERS = (
    (RateLimitExceeded, rate_limited),
    (DBAPIError, database_unavailable),
    (DataError, unprocessable_value),
    (PoolTimeout, database_unavailable),
    (CSRFError, csrf_failed),
    (RequestEntityTooLarge, body_too_large),
    (HTTPException, http_error),
)


def handler_for(error: Exception):
    """The handler of ``error`` chosen as Flask chooses (the most specific class), or None;
    for the lean path (idp/web/lean.py), which answers outside Flask's dispatch."""
    handlers = dict(HANDLERS)
    for cls in type(error).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def init_app(app):
    """Register the handlers."""
    for cls, handler in HANDLERS:
        app.register_error_handler(cls, handler)
