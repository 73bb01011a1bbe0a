"""The OAuth connection, the unit of every kill (docs/connection-lifecycle.md).

Created pending when the person allows, activated when its code is first redeemed, judged by
its standing on every refresh, ended for one of four reasons, listed on Connected Apps. These
functions read, lock and write in the caller's transaction; they never commit and never decide
an HTTP answer (the core judges a standing, the hooks and views answer).
"""

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.ssf_events import END_REASON_KINDS
from idp.infra import metrics
from idp.store import audit
from idp.store import outbox
from idp.store.models import AccessToken
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import RefreshToken

#: Join condition: the membership that keeps a connection's user in its organization (a
#: connection whose user has left answers org_unbound; refresh judges the same way).
CONNECTION_MEMBERSHIP = and_(
    Membership.user_id == Connection.user_id, Membership.org_id == Connection.org_id
)


def create_connection(
    session: Session, *, user, membership: Membership, client, scope: str, label: str | None,
    now: datetime, ip: str | None,
) -> Connection:
    """A pending connection of ``user`` in ``membership``'s organization, and its audit row."""
    connection = Connection(
        public_id=cs.new_public_id("con_"), user_id=user.id, org_id=membership.org_id,
        client_id=client.id, scope=scope, created_at=now, label=label,
    )
    session.add(connection)
    session.flush()
    audit.record(session, "connection_created", now, org=membership.organization.public_id,
                 actor=user.email, subject=connection.public_id, ip=ip,
                 client=client.public_id, scope=connection.scope)
    return connection


def activate_connection(connection: Connection, now: datetime) -> None:
    """Mark the connection active: its code was redeemed, so Connected Apps lists it."""
    connection.activated_at = now


class Standing(NamedTuple):
    """What decides whether a connection may still act, named as the core's
    ``connection_denial`` takes it: ``connection_denial(**standing._asdict())``."""

    ended: bool
    client_enabled: bool
    suspended: bool
    member: bool
    allowlist: list
    org_pk: int


#: A connection's standing in one query: its end, its client, its organization, the membership
#: that binds its user there (built once: PERFORMANCE.md §1).
_STANDING = (
    select(
        Connection.ended_at,
        Client.enabled,
        Organization.suspended,
        Membership.id,
        Client.org_allowlist,
        Connection.org_id,
    )
    .join(Client, Client.id == Connection.client_id)
    .join(Organization, Organization.id == Connection.org_id)
    .outerjoin(Membership, CONNECTION_MEMBERSHIP)
    .where(Connection.id == bindparam("connection_pk"))
)


def connection_standing(session: Session, connection_pk: int) -> Standing:
    """Load the standing of one connection, as the caller's transaction sees it now."""
    ended_at, enabled, suspended, membership, allowlist, org_pk = session.execute(
        _STANDING, {"connection_pk": connection_pk}
    ).one()
    return Standing(
        ended=ended_at is not None, client_enabled=enabled, suspended=suspended,
        member=membership is not None, allowlist=allowlist or [], org_pk=org_pk,
    )


def end_connection(
    session: Session,
    connection: Connection,
    reason: str,
    now: datetime,
    *,
    issuer: str,
    actor: str | None = None,
    ip: str | None = None,
    initiating_entity: str | None = None,
) -> bool:
    """End a connection and so every token of it; True if this call ended it.

    The conditional UPDATE makes two racing enders record one change, not two: one audit row
    and one session-revoked event (``issuer`` is the IdP's, for the event). ``reason`` is the
    connection's ``end_reason``; ``initiating_entity`` overrides who the event says started
    it (CAEP 1.0 §2).
    """
    result = session.execute(
        update(Connection)
        .where(Connection.id == connection.id, Connection.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    # Sealed successors are useless once the connection is over; drop them at once.
    session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.connection_id == connection.id,
            RefreshToken.sealed_successor.isnot(None),
        )
        .values(sealed_successor=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    metrics.connection_ended(reason)
    session.expire(connection)
    audit.record(
        session, "connection_ended", now, org=connection.organization.public_id,
        actor=actor, subject=connection.public_id, ip=ip, reason=reason,
        client=connection.client.public_id,
    )
    kind, initiator = END_REASON_KINDS[reason]
    outbox.emit(
        session, kind, now, issuer=issuer, initiating_entity=initiating_entity or initiator,
        connection=connection.public_id, user=connection.user.public_id,
        org=connection.organization.public_id, client=connection.client.public_id,
    )
    return True


def listed_connections(session: Session, user_pk: int, managed_org_pks: list[int]):
    """Live, activated connections of the user, and of every organization they manage, newest
    first (a pending connection is an abandoned popup until its code is redeemed)."""
    query = (
        select(Connection)
        .where(Connection.ended_at.is_(None), Connection.activated_at.isnot(None))
        .where(or_(Connection.user_id == user_pk, Connection.org_id.in_(managed_org_pks)))
        .order_by(Connection.created_at.desc())
    )
    return list(session.scalars(query))


def connection_of_token(session: Session, raw: str, *, refresh_first: bool) -> Connection | None:
    """The connection that issued an access or refresh token, found by the token's digest."""
    models = [RefreshToken, AccessToken] if refresh_first else [AccessToken, RefreshToken]
    digest = cs.digest(raw)
    for model in models:
        connection = session.scalar(
            select(Connection)
            .join(model, model.connection_id == Connection.id)
            .where(model.digest == digest)
        )
        if connection is not None:
            return connection
    return None
