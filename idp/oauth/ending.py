"""Ending a connection from an OAuth hook, so that it stays ended whatever the answer.

A replayed code and a reused refresh token are refused with ``invalid_grant``, and the token
endpoint rolls back what a refused request wrote; the end of the connection must survive that.
The hooks never commit: they note here that a connection was ended, and the view's unit of work
commits a refusal that carries the note (idp/web/consent.py).
"""

from flask import current_app
from flask import g
from flask import request

from idp.infra.extensions import db
from idp.store.connections import end_connection
from idp.store.models import Connection

#: Attribute of ``flask.g`` set once a hook of this request has ended a connection.
_ENDED = "idp_connection_ended"


def client_ip() -> str | None:
    """The caller's address for audit rows (after ProxyFix, when configured)."""
    return request.remote_addr


def end(connection: Connection, reason: str, now, *, actor: str | None = None) -> bool:
    """End the connection in the request's transaction and note that it must be committed;
    True if this call ended it."""
    ended = end_connection(db.session, connection, reason, now, actor=actor, ip=client_ip(),
                           issuer=current_app.config["IDP_ISSUER"])
    # Even when another request ended it first: the seals this call dropped go too.
    setattr(g, _ENDED, True)
    return ended


def ended_here() -> bool:
    """Whether a hook of this request ended a connection (commit even a refusal)."""
    return g.get(_ENDED, False)
