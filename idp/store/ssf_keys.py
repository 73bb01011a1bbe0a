"""SET signing-key rows: the newest live key, retiring, listing, and who still waits on each.

The cryptography (making, sealing and opening keys) lives in idp/ssf/keys.py; this module
only reads and writes rows. Which retired keys the purge removes is the outbox's rule
(``idp.store.outbox.retired_keys``).
"""

from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfKey


def newest_live(session: Session) -> SsfKey | None:
    """The key that signs now: the newest one not retired, or None before the first."""
    return session.scalar(
        select(SsfKey).where(SsfKey.retired_at.is_(None)).order_by(SsfKey.id.desc()).limit(1)
    )


def add(session: Session, *, kid: str, sealed_private: bytes, public_jwk: dict,
        now: datetime) -> SsfKey:
    """Store a new live key (flushed, not committed)."""
    row = SsfKey(kid=kid, created_at=now, sealed_private=sealed_private, public_jwk=public_jwk,
                 retired_at=None)
    session.add(row)
    session.flush()
    return row


def retire_live(session: Session, now: datetime) -> int:
    """Retire every live key (normally one; two if two processes made the first at once)."""
    return session.execute(
        update(SsfKey).where(SsfKey.retired_at.is_(None)).values(retired_at=now)
        .execution_options(synchronize_session="fetch")
    ).rowcount


def published(session: Session) -> list[SsfKey]:
    """Every key the JWKS shows: live and retired ones the purge has not removed, newest first."""
    return list(session.scalars(select(SsfKey).order_by(SsfKey.id.desc())))


def unacknowledged_by_kid(session: Session) -> dict[str, int]:
    """How many unacknowledged deliveries each kid signed last (for ``flask ssf keys``)."""
    rows = session.execute(
        select(SsfDelivery.signed_kid, func.count(SsfDelivery.id))
        .where(SsfDelivery.signed_kid.isnot(None), SsfDelivery.acked_at.is_(None))
        .group_by(SsfDelivery.signed_kid)
    )
    return {kid: count for kid, count in rows}
