"""Shared Signals (docs/ssf.md): the outbox of events, resource servers' streams, the deliveries
that carry each event to each stream, and the keys that sign them."""

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from idp.infra.extensions import db
from idp.store.models.columns import PUBLIC_ID
from idp.store.models.oauth import ResourceServer

#: RFC 8935 push and RFC 8936 poll, as a stream's ``delivery_method`` names them.
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
#: A stream's ``status`` values (SSF 1.0 §8.1.2); a disabled stream drops events.
STREAM_STATUSES = ("enabled", "paused", "disabled")


class SsfEvent(db.Model):
    """One change told to resource servers (``evt_…``), written in the change's transaction."""

    __tablename__ = "ssf_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    #: What changed, as idp/core/ssf_events.py names it (``api_key_revoked``, …).
    kind: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(300))
    #: The RFC 9493 ``sub_id`` of the SET.
    subject: Mapped[dict] = mapped_column(JSON)
    payload: Mapped[dict] = mapped_column(JSON)
    #: None: for every stream that asked for the type; set: for this stream only
    #: (verification, stream-updated).
    stream_id: Mapped[int | None] = mapped_column(
        ForeignKey("ssf_streams.id", ondelete="CASCADE"), index=True
    )
    #: The global order, given by the sequencer once the event is committed (None until then).
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class SsfState(db.Model):
    """The sequencer's single row (id 1): the last global ``seq`` given, and its lock."""

    __tablename__ = "ssf_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SsfStream(db.Model):
    """A resource server's event stream (``str_…``), pushed to or polled (SSF 1.0 §8.1.1)."""

    __tablename__ = "ssf_streams"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    resource_server_id: Mapped[int] = mapped_column(
        ForeignKey("resource_servers.id", ondelete="CASCADE"), index=True
    )
    aud: Mapped[str] = mapped_column(String(100))
    delivery_method: Mapped[str] = mapped_column(String(40))
    #: The receiver's URL (push) or our poll URL (poll).
    endpoint_url: Mapped[str | None] = mapped_column(Text)
    #: The push receiver's Authorization header, sealed under SECRET_KEY: never stored raw.
    sealed_authorization: Mapped[bytes | None] = mapped_column(LargeBinary)
    events_requested: Mapped[list] = mapped_column(JSON, default=list)
    events_delivered: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="enabled")
    status_reason: Mapped[str | None] = mapped_column(String(200))
    inactivity_timeout: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    #: The ``stream_seq`` of this stream's newest delivery (contiguous from 1).
    last_stream_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_delivery_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Consecutive push failures: the backoff grows with them.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: A push worker holds the stream until then, with no lock held during HTTP.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)

    resource_server: Mapped[ResourceServer] = relationship()


class SsfDelivery(db.Model):
    """One event for one stream, in the stream's order, until the receiver acknowledges it."""

    __tablename__ = "ssf_deliveries"
    __table_args__ = (
        UniqueConstraint("stream_id", "stream_seq", name="uq_ssf_deliveries_stream_seq"),
        Index("ix_ssf_deliveries_queue", "stream_id", "acked_at", "stream_seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("ssf_streams.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(
        ForeignKey("ssf_events.id", ondelete="CASCADE"), index=True
    )
    stream_seq: Mapped[int] = mapped_column(Integer)
    #: The SET's ``jti``: random, one per delivery.
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    #: The key that signed it when it was sent, so a rotated key stays published until acked.
    signed_kid: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: What the receiver refused it with (RFC 8935 §2.4, RFC 8936 ``setErrs``), kept once acked.
    error: Mapped[str | None] = mapped_column(Text)

    stream: Mapped[SsfStream] = relationship()
    event: Mapped[SsfEvent] = relationship()


class SsfKey(db.Model):
    """A P-256 key that signs SETs; its private half sealed under SECRET_KEY."""

    __tablename__ = "ssf_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    #: Set by a rotation: it signs nothing more and stays in the JWKS until its SETs are acked.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)
