"""Resource servers: the FlowEstate services allowed to call introspection (SPEC §1, §5.5)."""

from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import audit
from idp.store import outbox
from idp.store.models import ResourceServer

#: Longest name accepted (the column's width).
MAX_NAME_LENGTH = 200


class ResourceServerError(ValueError):
    """A request about resource servers that cannot be accepted; the message is for people."""


def create(name: str, *, actor: str = "cli") -> tuple[ResourceServer, str]:
    """Register a service; returns the row and its raw secret (shown once, stored as a digest)."""
    name = (name or "").strip()
    if not name:
        raise ResourceServerError("Give the resource server a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise ResourceServerError(f"Use at most {MAX_NAME_LENGTH} characters for the name.")
    secret = cs.new_client_secret(cs.RESOURCE_SECRET_PREFIX)
    now = utcnow()
    server = ResourceServer(
        public_id=cs.new_public_id("rs_"), name=name, secret_digest=cs.digest(secret),
        enabled=True, created_at=now,
    )
    db.session.add(server)
    audit.record(db.session, "resource_server_created", now, actor=actor,
                 subject=server.public_id, name=name)
    return server, secret


def get(public_id: str) -> ResourceServer:
    """The resource server with this id, or a ResourceServerError."""
    server = db.session.scalar(select(ResourceServer).where(ResourceServer.public_id == public_id))
    if server is None:
        raise ResourceServerError(f"No resource server {public_id!r}.")
    return server


def find_by_name(name: str) -> ResourceServer | None:
    """The first resource server registered under this name, or None."""
    return db.session.scalar(
        select(ResourceServer).where(ResourceServer.name == name).order_by(ResourceServer.id)
    )


def listing() -> list[ResourceServer]:
    """Every resource server, oldest first."""
    return list(db.session.scalars(select(ResourceServer).order_by(ResourceServer.id)))


def set_enabled(server: ResourceServer, enabled: bool, *, issuer: str,
                actor: str = "cli") -> None:
    """Disable a service (introspection answers 401 within 5 s) or enable it again.

    Disabling an enabled one is told to its streams (``resource_server_disabled``, as
    ``issuer``): a kit that is this server drops everything it cached.
    """
    now = utcnow()
    if server.enabled and not enabled:
        outbox.emit(db.session, "resource_server_disabled", now, issuer=issuer,
                    resource_server=server.public_id)
    server.enabled = enabled
    audit.record(db.session,
                 "resource_server_enabled" if enabled else "resource_server_disabled",
                 now, actor=actor, subject=server.public_id)


def rotate_secret(server: ResourceServer, *, actor: str = "cli") -> str:
    """Replace the secret at once and return the new one (shown once)."""
    secret = cs.new_client_secret(cs.RESOURCE_SECRET_PREFIX)
    server.secret_digest = cs.digest(secret)
    audit.record(db.session, "resource_server_secret_rotated", utcnow(), actor=actor,
                 subject=server.public_id)
    return secret
