"""Limits of authenticated OAuth requests: per connection, per resource server (SPEC §10).

Counted only once the caller has authenticated and the request has named what it acts on,
so a stranger who knows a connector's public client_id spends nobody's quota (his failed
authentication is counted per address, by idp.infra.throttle.refuse_failing):

* token requests per connection: the refresh token's connection, or the connection that an
  authorization code was issued for (one code per consent, so per code and per connection are
  the same count; the code's later refreshes share it). Counted by a grant extension before
  the grant issues anything;
* revocation per connection of the presented token; a token we do not know changes nothing
  and is counted only by the per-client aggregate, when that is on;
* ``IDP_CLIENT_RATE_LIMIT``: an optional aggregate per authenticated client, off by default,
  since one connector speaks for all of its customers (size it for a whole connector);
* introspection per authenticated resource server (``IDP_INTROSPECTION_RATE_LIMIT``).
"""

import time

from authlib.oauth2 import OAuth2Error
from flask import current_app

from idp.infra import throttle

#: Counter namespace of authenticated token and revocation requests, per connection.
CONNECTION_SCOPE = "oauth-connection"
#: Counter namespace of the optional per-client aggregate.
CLIENT_SCOPE = "oauth-client"
#: Counter namespace of introspection, per resource server.
RESOURCE_SERVER_SCOPE = "introspection"


class RateLimited(OAuth2Error):
    """429 ``rate_limited`` with Retry-After and X-RateLimit-* (RFC 6585 §4)."""

    error = "rate_limited"
    status_code = 429

    def __init__(self, usage):
        """Refuse for the breached ``usage``."""
        super().__init__(description=throttle.MESSAGE)
        self.usage = usage

    def get_headers(self):
        """JSON headers, no-store, and when to retry."""
        extra = {"Cache-Control": "no-store", **self.usage.headers(time.time())}
        return super().get_headers() + list(extra.items())


def _enforce(setting: str, scope: str, key: str) -> None:
    """Count one request of ``key`` under ``app.config[setting]``; raise when over it."""
    limit_value = current_app.config[setting]
    if not limit_value:
        return
    usage = throttle.count(limit_value, scope, key)
    if usage is not None and not usage.allowed:
        raise RateLimited(usage)


def count_connection(connection_pk: int | None, client_pk: int) -> None:
    """Count an authenticated client's request for one of its connections (None: unknown)."""
    _enforce("IDP_CLIENT_RATE_LIMIT", CLIENT_SCOPE, str(client_pk))
    if connection_pk is not None:
        _enforce("IDP_TOKEN_RATE_LIMIT", CONNECTION_SCOPE, str(connection_pk))


def count_resource_server(public_id: str) -> None:
    """Count one introspection of an authenticated resource server."""
    _enforce("IDP_INTROSPECTION_RATE_LIMIT", RESOURCE_SERVER_SCOPE, public_id)


def _before_token_response(grant) -> None:
    """Authlib hook: the grant has authenticated the client and found its code or token."""
    request = grant.request
    found = request.refresh_token or request.authorization_code
    count_connection(getattr(found, "connection_id", None), request.client.id)


class ConnectionLimit:
    """Grant extension: count each token request against its connection before issuing."""

    def __call__(self, grant):
        """Register the counting hook on this request's grant."""
        grant.register_hook("before_create_token_response", _before_token_response)
