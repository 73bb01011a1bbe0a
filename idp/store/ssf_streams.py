"""Stream rows of the Shared Signals transmitter: found only through the resource server that
owns them, counted, and removed with what they carry.

Validation and the stream configuration live in idp/ssf/ (stream_settings.py,
stream_documents.py); nothing here commits.
"""

from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.store.models import ResourceServer
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfStream


def server(session: Session, server_public_id: str) -> ResourceServer | None:
    """The resource server with this client_id."""
    return session.scalar(select(ResourceServer)
                          .where(ResourceServer.public_id == server_public_id))


def _owned(server_public_id: str):
    """Streams of the resource server with this client_id."""
    return (select(SsfStream)
            .join(ResourceServer, ResourceServer.id == SsfStream.resource_server_id)
            .where(ResourceServer.public_id == server_public_id))


def find(session: Session, server_public_id: str, stream_public_id: str) -> SsfStream | None:
    """The stream with this id if this resource server owns it; None for another's, so an
    answer never tells whether a stream of someone else exists."""
    return session.scalar(_owned(server_public_id).where(SsfStream.public_id == stream_public_id))


def of_server(session: Session, server_public_id: str) -> list[SsfStream]:
    """Every stream of one resource server, oldest first."""
    return list(session.scalars(_owned(server_public_id).order_by(SsfStream.id)))


def count_of_server(session: Session, resource_server_id: int) -> int:
    """How many streams a resource server has."""
    return session.scalar(select(func.count(SsfStream.id))
                          .where(SsfStream.resource_server_id == resource_server_id))


def remove(session: Session, stream: SsfStream) -> None:
    """Delete a stream with its deliveries and its own events (verification, stream-updated).

    Deleted explicitly rather than left to ``ON DELETE CASCADE``, so the outcome does not
    depend on the database enforcing foreign keys.
    """
    session.execute(delete(SsfDelivery).where(SsfDelivery.stream_id == stream.id)
                    .execution_options(synchronize_session=False))
    session.execute(delete(SsfEvent).where(SsfEvent.stream_id == stream.id)
                    .execution_options(synchronize_session=False))
    session.delete(stream)
    session.flush()


def due(conn, stream_public_id: str) -> bool:
    """Whether a poll of this stream may find something now: it is enabled and it has an
    unacknowledged delivery, or some committed event waits to be sequenced. True also when the
    stream is gone, so the poll looks again and answers that.

    One cheap read, run between the looks of a long poll so that waiting takes no write lock.
    """
    stream = conn.execute(select(SsfStream.id, SsfStream.status)
                          .where(SsfStream.public_id == stream_public_id)).first()
    if stream is None:
        return True
    if stream.status != "enabled":
        return False
    waiting = exists(select(SsfDelivery.id).where(SsfDelivery.stream_id == stream.id,
                                                  SsfDelivery.acked_at.is_(None)))
    unsequenced = exists(select(SsfEvent.id).where(SsfEvent.seq.is_(None)))
    return bool(conn.scalar(select(or_(waiting, unsequenced))))


def overview(session: Session) -> list[SsfStream]:
    """Every stream with its resource server, for the operators' listing."""
    return list(session.scalars(select(SsfStream).join(SsfStream.resource_server)
                                .order_by(SsfStream.id)))
