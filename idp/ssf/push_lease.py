"""How a push worker holds a stream: its settings, the lease, and what posting under it needs.

A stream is leased in a short committed transaction (idp/store/ssf_push.py), so no lock is
held while a receiver is slow; the lease is extended before every request and given back
after the stream was served, or left to run out when the worker cannot give it back.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.ssf import stream_delivery
from idp.store import ssf_push
from idp.store.database import begin_write
from idp.store.models.ssf import SsfStream

# The push worker's one logger, as before it was split: log settings and files name it.
log = logging.getLogger("idp.ssf.push")

#: Added to a lease beyond two request timeouts (connecting, then the answer): the short
#: transactions around one request, a database lock wait included.
LEASE_MARGIN_SECONDS = 10.0


@dataclass(frozen=True)
class Settings:
    """The push settings (docs/ssf.md, "Configuration"), read once per pass."""

    #: Seconds to connect, and again to wait for the answer (``IDP_SSF_PUSH_TIMEOUT``).
    timeout: float
    #: The longest pause between tries of a failing stream (``IDP_SSF_PUSH_BACKOFF_MAX``).
    backoff_max: float

    @classmethod
    def from_config(cls, config) -> "Settings":
        """The settings of the app's config."""
        return cls(timeout=float(config["IDP_SSF_PUSH_TIMEOUT"]),
                   backoff_max=float(config["IDP_SSF_PUSH_BACKOFF_MAX"]))

    @property
    def lease(self) -> timedelta:
        """How long a lease lasts. It is extended before every request, so it only has to
        outlast one request and the transactions around it."""
        return timedelta(seconds=2 * self.timeout + LEASE_MARGIN_SECONDS)


@dataclass
class Lease:
    """A stream this worker holds, with what posting to it needs."""

    stream_id: int
    public_id: str
    endpoint_url: str | None
    #: The opened Authorization header, or None when the stream has none.
    authorization: str | None
    #: The ``lease_until`` this worker last set: also its claim to the stream.
    until: datetime
    #: Why nothing can be posted to the stream at all, or None.
    unusable: str | None = None


@dataclass(frozen=True)
class Item:
    """One signed delivery, ready to post under a lease."""

    delivery_id: int
    jti: str
    stream_seq: int
    attempt: int
    token: str


def take(session: Session, config, settings: Settings, now_fn, served) -> Lease | None:
    """Lease a due stream not served yet in this pass, with what posting to it needs."""
    now = now_fn()
    until = now + settings.lease
    stream_id = ssf_push.take(session, now, until, skip=served)
    if stream_id is None:
        session.rollback()
        return None
    stream = session.get(SsfStream, stream_id)
    lease = Lease(stream_id=stream_id, public_id=stream.public_id,
                  endpoint_url=stream.endpoint_url,
                  authorization=stream_delivery.push_authorization(stream, config), until=until)
    if stream.sealed_authorization and lease.authorization is None:
        lease.unusable = "its Authorization header does not open with SECRET_KEY"
    elif not lease.endpoint_url:
        lease.unusable = "it has no endpoint_url"
    session.commit()
    return lease


def release(session: Session, lease: Lease) -> None:
    """Give the stream back for the next pass; a worker that cannot lets its lease run out."""
    try:
        begin_write(session)
        ssf_push.release(session, lease.stream_id, lease.until)
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        log.warning("ssf push: stream %s not released (%s); its lease runs out instead",
                    lease.public_id, type(error).__name__)
