"""The kit's Flask adapter (SPEC §11): protect another Flask service's views with the IdP.

A service such as the FlowEstate API registers as a resource server (``flask resource-server
create`` on the IdP) and wraps its views::

    protector = ResourceProtector("https://id.flowestate.example/oauth/introspect",
                                  client_id, client_secret, limiter=limiter)

    @app.get("/api/v1/leads")
    @protector.require_scopes("leads:read")
    def leads():
        org_id = g.credential.org_id   # the only source of the organization
        ...

Each request's bearer is judged by :class:`~flowestate_kit.judge.Judge` (introspection over
HTTP, bounded caches, the unknown-bearer limit per caller) and answered exactly as SPEC §4
says, with the same JSON and headers the IdP itself sends: the answers come from
:mod:`flowestate_kit.answers`, the module the IdP's own guard words them from. When the IdP
gives no usable answer the view answers 503 with ``Retry-After`` and nothing is cached; a
caller over its unknown-bearer limit is answered 429 ``rate_limited`` before the IdP is asked.

With a revocation stream (``stream=Receiver(...)`` or ``ssf_configuration_url=...``, see
:mod:`flowestate_kit.ssf`) each event evicts the verdicts it names and a healthy stream lets
active verdicts be cached up to ``stream_ttl``; ``protector.stream_status()`` is its health.
A push stream's endpoint is mounted by :meth:`ResourceProtector.init_app`.
"""

import logging
import time
from functools import wraps

from flask import current_app
from flask import g
from flask import has_app_context
from flask import jsonify
from flask import make_response
from flask import request

from flowestate_kit import counting
from flowestate_kit.answers import Denial
from flowestate_kit.answers import denial_parts
from flowestate_kit.answers import scope_denial
from flowestate_kit.answers import unavailable_parts
from flowestate_kit.judge import Bearer
from flowestate_kit.judge import CallerLimited
from flowestate_kit.judge import IdpUnavailable
from flowestate_kit.judge import Judge

__all__ = ["Bearer", "ResourceProtector", "caller_address"]

log = logging.getLogger(__name__)


def caller_address() -> str:
    """The default caller key: the request's address, IPv6 by /64."""
    return counting.address_key(request.remote_addr)


def json_response(status: int, body: dict, headers: dict):
    """A JSON response with extra headers."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


class ResourceProtector(Judge):
    """A :class:`Judge` with Flask decorators; the bearer of a protected view is on ``g``."""

    def __init__(self, introspection_url: str, client_id: str, client_secret: str, *,
                 limiter=None, rate_limit="600 per minute", caller_key=caller_address,
                 **options):
        """Configure the IdP endpoint and credentials, the rate limits and the Judge options.

        ``limiter`` is the service's Flask-Limiter instance; when given, every protected view
        counts requests per credential against ``rate_limit`` (a string such as
        ``"600 per minute"``, or a callable returning one) in that limiter's storage, and the
        unknown bearers of each ``caller_key()`` are counted there too (in this process when
        there is no limiter or its store is down). ``options`` are :class:`Judge`'s.
        """
        super().__init__(introspection_url, client_id, client_secret,
                         shared_counters=self._shared_counters, **options)
        self.limiter = limiter
        self.rate_limit = rate_limit
        self.caller_key = caller_key

    def init_app(self, app) -> None:
        """Serve a push stream's endpoint in front of ``app`` (nothing to do otherwise)."""
        stream = self.stream
        if stream is not None and getattr(stream, "push_path", None) is not None:
            app.wsgi_app = stream.push_endpoint(app.wsgi_app)

    def _shared_counters(self):
        """The service limiter's strategy and key prefix while its store is healthy, else None."""
        limiter = self.limiter
        if limiter is None or not limiter.enabled:
            return None
        if limiter.limiter.storage is not limiter.storage:
            return None  # the limiter fell back to memory: its shared store is down
        prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "") if has_app_context() else ""
        return limiter.limiter, prefix

    def _count(self, bearer: Bearer) -> counting.Usage | None:
        """Count this request against the credential's limit in the service's limiter."""
        shared = self._shared_counters()
        if shared is None:
            return None  # no limiter, or shared counters down: not counted (as in the IdP)
        strategy, prefix = shared
        value = self.rate_limit() if callable(self.rate_limit) else self.rate_limit
        return counting.count(strategy, value, bearer.rate_key, prefix)

    def protect(self, *scopes: str, rate_limit: bool = True):
        """Decorator: the view runs only for an active bearer holding every one of ``scopes``.

        The bearer is on ``g.credential`` (a :class:`Bearer`). The order is the IdP's:
        authenticate, count against the rate limit, then check scopes.
        """

        def decorate(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                try:
                    verdict = self.judge(request.headers.get("Authorization"),
                                         caller=self.caller_key())
                except IdpUnavailable as error:
                    log.warning("bearer not judged: %s", error)
                    return json_response(*unavailable_parts())
                except CallerLimited as refused:
                    return json_response(*counting.rate_limited_parts(refused.usage,
                                                                      time.time()))
                if isinstance(verdict, Denial):
                    return json_response(*denial_parts(verdict))
                g.credential = verdict
                usage = self._count(verdict) if rate_limit else None
                now = time.time()
                if usage is not None and not usage.allowed:
                    return json_response(*counting.rate_limited_parts(usage, now))
                refusal = scope_denial(verdict.scopes, scopes)
                if refusal is not None:
                    response = json_response(*denial_parts(refusal))
                else:
                    response = make_response(view(*args, **kwargs))
                if usage is not None:
                    response.headers.update(usage.headers(now))
                return response

            return wrapper

        return decorate

    def require_scopes(self, *scopes: str):
        """Decorator: :meth:`protect` with the scopes an endpoint needs."""
        return self.protect(*scopes)
