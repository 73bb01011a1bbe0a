"""Headers that keep pages from being framed, sniffed, leaked or injected into; plain-http OAuth."""

import logging
import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from flask import current_app
from flask import jsonify
from flask import request
from sqlalchemy import select

from idp.core.secrets import plausible_client_id
from idp.infra import current
from idp.infra.extensions import db
from idp.store.models import Client

log = logging.getLogger(__name__)

#: The Content-Security-Policy of every response; no inline script or style anywhere.
POLICY = (
    ("default-src", "'self'"),
    ("script-src", "'self'"),
    ("style-src", "'self'"),
    ("img-src", "'self' data:"),
    ("object-src", "'none'"),
    ("frame-ancestors", "'none'"),
    ("base-uri", "'none'"),
)
#: Headers every response carries (views may set their own first).
FIXED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Our forms must send a Referer to our own origin: over https Flask-WTF refuses a form
    # whose Referer is missing or from another origin (WTF_CSRF_SSL_STRICT). Other origins
    # still get none, so nothing of our URLs reaches them (docs/SECURITY.md, "CSRF and the
    # Referer").
    "Referrer-Policy": "same-origin",
}
#: Pages that may send the browser on to a connector's registered return address.
AUTHORIZATION_PAGES = ("oauth.authorize", "auth.login")
#: Seconds a client should wait after the IdP refused a request it saw as plain http.
RETRY_AFTER_INSECURE = 60
#: A host name as it may appear in a CSP source expression.
_HOST = re.compile(r"[A-Za-z0-9.-]+")


def origin_of(uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URI, or None if it cannot be a CSP source."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if not _HOST.fullmatch(parts.hostname):
        return None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def _authorization_client_id() -> str | None:
    """The client_id of the authorization request this page belongs to, if any."""
    if request.endpoint == "oauth.authorize":
        return request.args.get("client_id")
    target = request.values.get("next") or ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path != "/oauth/authorize":
        return None
    values = parse_qs(parts.query).get("client_id")
    return values[0] if values else None


def form_targets() -> list[str]:
    """Origins a form on this page may be redirected to besides this site.

    Chromium applies ``form-action`` to every redirect that follows a form submission, so the
    consent form (and sign-in on the way to it) must allow the client's registered return
    addresses: Allow and Deny both answer with a redirect there (RFC 6749 §4.1.2).
    """
    if request.endpoint not in AUTHORIZATION_PAGES:
        return []
    client_id = _authorization_client_id()
    if not plausible_client_id(client_id):
        return []
    uris = db.session.scalar(
        select(Client.redirect_uris).where(Client.public_id == client_id, Client.enabled.is_(True))
    )
    origins = {origin_of(uri) for uri in uris or []}
    return sorted(o for o in origins if o)


def content_security_policy(extra_form_targets=()) -> str:
    """The policy string, with ``form-action`` widened to the given origins."""
    directives = [f"{name} {value}" for name, value in POLICY]
    directives.append(" ".join(["form-action", "'self'", *extra_form_targets]))
    return "; ".join(directives)


#: The policy of every response but the sign-in and consent forms (built once).
DEFAULT_POLICY = content_security_policy()


def add_headers(response):
    """Attach the security headers; a view's own values win."""
    if "Content-Security-Policy" not in response.headers:
        # Only a rendered sign-in or consent form needs more; error answers never look it up.
        page = response.status_code in (200, 401) and response.mimetype == "text/html"
        targets = form_targets() if page else ()
        if targets:
            response.headers["Content-Security-Policy"] = content_security_policy(targets)
    if request.endpoint in AUTHORIZATION_PAGES:
        # Sign-in and consent pages hold a CSRF token, a person's email and organizations: a
        # shared or back-button cache must never replay them (RFC 9111 §5.2.2.5).
        response.headers.setdefault("Cache-Control", "no-store")
    return add_fixed_headers(response)


def add_fixed_headers(response):
    """The headers of every answer that is not a sign-in or consent form (the lean path's
    answers take exactly these); a value already set wins."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
    for name, value in FIXED_HEADERS.items():
        headers.setdefault(name, value)
    if not current_app.config["IDP_DEVELOPMENT"]:
        # Production runs on https only (idp.infra.config_checks refuses anything else).
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


class _Hint:
    """Whether this process has already logged the IDP_PROXY_HOPS hint."""

    logged = False


def log_proxy_hint() -> None:
    """Log, once per process, that an OAuth request arrived as plain http and why."""
    if _Hint.logged:
        return
    _Hint.logged = True
    forwarded = (current.environ() or {}).get("HTTP_X_FORWARDED_PROTO")
    log.error(
        "OAuth request to %s arrived as plain http (X-Forwarded-Proto: %s, IDP_PROXY_HOPS=%s);"
        " behind a TLS proxy set IDP_PROXY_HOPS to the number of proxies and have the "
        "proxy send X-Forwarded-Proto (docs/OPERATIONS.md)",
        current.path(), forwarded or "absent", current_app.config["IDP_PROXY_HOPS"],
    )


def insecure_transport(error: InsecureTransportError):
    """An OAuth request seen as plain http: 503 with a JSON body, and a hint in the log once.

    Authlib refuses OAuth requests on http to a host that is not loopback (RFC 6749 §3.2
    requires TLS), before any of our code runs. Behind a TLS proxy that means the IdP was not
    told to believe the proxy's ``X-Forwarded-Proto``; the app cannot tell that apart from a
    real plain-http caller, so it cannot refuse to start. A 503 rather than a 4xx: connectors
    end a connection on a 4xx from a refresh, and this is the operator's to fix, not theirs.
    """
    log_proxy_hint()
    response = jsonify(error="temporarily_unavailable",
                       error_description="This server cannot tell that the request came over "
                                         "https; its operator must fix the proxy settings.")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_INSECURE)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app):
    """Add the headers to every response of the app; answer plain-http OAuth requests."""
    app.after_request(add_headers)
    app.register_error_handler(InsecureTransportError, insecure_transport)
