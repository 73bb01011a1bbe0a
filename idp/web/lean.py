"""The lean read path: ``GET /api/v1/me`` and ``POST /oauth/introspect`` answered before Flask.

These two reads are most of the IdP's traffic, and Flask's dispatch (request context, session,
URL matching, hooks) and Authlib's request wrapping cost more than the lookup they serve
(docs/PERFORMANCE.md, "The lean read path"). This WSGI layer, mounted inside ProxyFix, answers
them in an app context only, through the very functions the Flask views call: the guard's
:func:`~idp.web.guard.guarded` and the view's own body for ``/api/v1/me``;
:func:`idp.oauth.introspection.introspect`, Authlib's error wording,
:func:`idp.web.consent.introspected` and :func:`idp.infra.throttle.unless_failing` for
introspection; the body rules of idp/web/body_limits.py, the error handlers of
idp/web/errors.py, the security headers, the request id and the metrics. Nothing here decides
an answer of its own.

Everything else goes to Flask unchanged: other paths and methods (OPTIONS, a 405), requests
that carry a cookie (Flask's session handling may answer one with Set-Cookie), an app with
``TRUSTED_HOSTS``, and every request while ``IDP_LEAN_PATH`` is off.
"""

import logging

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from werkzeug.exceptions import InternalServerError

from idp.infra import current
from idp.infra import logs
from idp.infra import metrics
from idp.infra import throttle
from idp.oauth.introspection import introspect
from idp.oauth.server import server
from idp.web import api
from idp.web import body_limits
from idp.web import errors
from idp.web import guard
from idp.web import headers
from idp.web.consent import introspected

log = logging.getLogger(__name__)


def _me(request):
    """``/api/v1/me``: the guard's steps and the view's body, with the view's own rules."""
    scopes, rate_limit = api.me.bearer_rules
    return guard.guarded(request.headers.get("Authorization"), request.remote_addr, scopes,
                         rate_limit, api.me.__wrapped__)


def _introspect(request):
    """``/oauth/introspect``: the endpoint's steps in the order the Flask view takes them."""
    body_limits.check_form(request)
    InsecureTransportError.check(request.url)  # Authlib's own check of every OAuth request
    authorization = server()
    try:
        response = authorization.handle_response(
            *introspect(request.headers, request.form, request.environ))
    except OAuth2Error as error:
        response = authorization.handle_error_response(None, error)
    return throttle.unless_failing(introspected(response), request.remote_addr)


#: Path -> (the Flask endpoint it stands for, the methods answered here, the answer).
ROUTES = {
    "/api/v1/me": ("api.me", ("GET", "HEAD"), _me),
    "/oauth/introspect": ("oauth.introspect", ("POST",), _introspect),
}


class Lean:
    """WSGI middleware answering :data:`ROUTES` and passing everything else to ``wsgi_app``."""

    def __init__(self, app, wsgi_app):
        """Wrap ``wsgi_app`` (Flask's own) of ``app``; the app finds it as ``idp.lean``."""
        self.app = app
        self.wsgi_app = wsgi_app
        #: Requests answered here (the tests check that the lean path answered).
        self.answered = 0
        app.extensions["idp.lean"] = self

    def __call__(self, environ, start_response):
        """Answer a lean route, or hand the request to Flask."""
        route = ROUTES.get(environ.get("PATH_INFO"))
        if route is None or environ.get("REQUEST_METHOD") not in route[1] or \
                not self._applies(environ):
            return self.wsgi_app(environ, start_response)
        response = self._answer(route[0], route[2], environ)
        self.answered += 1
        return response(environ, start_response)

    def _applies(self, environ) -> bool:
        """Whether this request may skip Flask (see the module's docstring)."""
        config = self.app.config
        return (config["IDP_LEAN_PATH"] and "HTTP_COOKIE" not in environ
                and config.get("TRUSTED_HOSTS") is None)

    def _answer(self, endpoint: str, view, environ):
        """The answer, with what Flask's after-request hooks add, in their order."""
        with self.app.app_context(), current.serving(environ):
            request = self.app.request_class(environ)
            try:
                body_limits.check_length(request)
                response = view(request)
            except Exception as error:  # answered as Flask's handlers answer it
                response = self._failure(error)
            metrics.observe(endpoint, response, environ)
            headers.add_fixed_headers(response)
            response.headers[logs.REQUEST_ID_HEADER] = logs.request_id_of(environ)
        return response

    def _failure(self, error: Exception):
        """The response Flask's error handling would give for ``error``."""
        if isinstance(error, InsecureTransportError):
            return headers.insecure_transport(error)
        handler = errors.handler_for(error)
        if handler is None:
            propagate = self.app.config["PROPAGATE_EXCEPTIONS"]
            if propagate is None:
                propagate = self.app.testing or self.app.debug
            if propagate:
                raise error
            self.app.logger.error("Exception on %s [%s]", current.path(),
                                  current.environ()["REQUEST_METHOD"], exc_info=error)
            error, handler = InternalServerError(original_exception=error), errors.http_error
        return self.app.make_response(handler(error))
