"""The purge's rules for tokens (idp/store/purge.py runs them in batches).

Each rule is a model and the condition under which its rows may go (or, for a clean-up, the
values they get); nothing here commits.
"""

from datetime import datetime
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.store.models import AccessToken
from idp.store.models import RefreshToken

#: How long an expired access token is kept, so it is still reported as expired.
EXPIRED_ACCESS_KEEP = timedelta(days=1)


def spent_access(now: datetime, ended_connections):
    """Access tokens expired for more than a day, or of a connection among ``ended_connections``
    (a subquery of ids)."""
    return AccessToken, or_(
        AccessToken.expires_at <= now - EXPIRED_ACCESS_KEEP,
        AccessToken.connection_id.in_(ended_connections),
    )


def spent_refresh(now: datetime, ended_connections):
    """Refresh tokens past their own expiry (rotated or not), or of an ended connection."""
    return RefreshToken, or_(
        RefreshToken.expires_at <= now,
        RefreshToken.connection_id.in_(ended_connections),
    )


def stale_seals(grace_before: datetime):
    """Sealed successors whose grace window is over: the seal is cleared."""
    stale = RefreshToken.sealed_successor.isnot(None) & (RefreshToken.rotated_at < grace_before)
    return RefreshToken, stale, {"sealed_successor": None}


def unlink_successors(session: Session, ids: list[int]) -> None:
    """Before refresh tokens ``ids`` are deleted: a kept token may still name one of them as
    its successor (after a lifetime change); the pointer is bookkeeping only, so it is cleared
    rather than blocking the delete."""
    session.execute(
        update(RefreshToken).where(RefreshToken.successor_id.in_(ids))
        .values(successor_id=None).execution_options(synchronize_session=False)
    )
