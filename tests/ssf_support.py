"""What the Shared Signals tests share: a receiver's credentials, streams, events, SET checks."""

import base64

from joserfc import jwt
from joserfc.jwk import KeySet

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH

__all__ = ["POLL", "PUSH", "basic", "decode", "emit", "new_stream", "receiver"]


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 7617)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def receiver(factory, name: str = "Leads API") -> dict:
    """A resource server: its client_id, secret and Basic header (``auth``)."""
    server = factory.resource_server(name)
    return {**server, "auth": basic(server["client_id"], server["client_secret"])}


def new_stream(client, rs: dict, **body) -> dict:
    """Create a stream (poll unless ``delivery`` says otherwise); its configuration."""
    response = client.post("/ssf/streams", json=body, headers=rs["auth"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def emit(app, kind: str = "api_key_revoked", **ids) -> str:
    """Commit one change's event (an API key revoked unless told otherwise); its public id."""
    ids = ids or {"api_key": "key_0123456789abcdef0123"}
    with app.app_context():
        event = outbox.emit(db.session, kind, utcnow(), issuer=app.config["IDP_ISSUER"], **ids)
        db.session.commit()
        return event.public_id


def decode(token: str, jwks: dict):
    """A SET verified against a JWKS document with joserfc (ES256 only): header and claims."""
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
