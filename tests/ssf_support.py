"""What the Shared Signals tests share: a receiver's credentials, streams, events, SET checks."""

import base64
from typing import NamedTuple

from joserfc import jwt
from joserfc.jwk import KeySet

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH
from tests.factories import AppFactory

__all__ = ["POLL", "PUSH", "ServedWorld", "basic", "decode", "emit", "new_stream", "receiver",
           "served_world"]


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 7617)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def receiver(factory, name: str = "Leads API") -> dict:
    """A resource server: its client_id, secret and Basic header (``auth``)."""
    server = factory.resource_server(name)
    return {**server, "auth": basic(server["client_id"], server["client_secret"])}


class ServedWorld(NamedTuple):
    """What a test against a served IdP sets up beside it."""

    #: An app on the served IdP's database and issuer: the operator's commands run here.
    operator: object
    #: A registered resource server's client_id, and its (client_id, secret) for requests.
    client_id: str
    auth: tuple
    #: An organization's API key: its id and raw value.
    key_id: str
    raw_key: str


def served_world(make_app, url: str) -> ServedWorld:
    """A resource server and an API key made beside the IdP served at ``url``."""
    operator = make_app(IDP_ISSUER=url)
    factory = AppFactory(operator)
    server = factory.resource_server("Leads API")
    key_id, raw_key = factory.key(factory.org())
    return ServedWorld(operator, server["client_id"],
                       (server["client_id"], server["client_secret"]), key_id, raw_key)


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
