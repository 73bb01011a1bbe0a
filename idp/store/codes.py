"""Authorization codes (RFC 6749 §4.1.2): stored as digests, found under the write lock,
claimed once. Nothing here commits or decides an answer."""

from datetime import datetime
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store.database import begin_write
from idp.store.models import AuthorizationCode
from idp.store.models import Connection


def save_code(
    session: Session, raw: str, connection: Connection, *, client_pk: int, redirect_uri: str,
    redirect_uri_given: bool, challenge: str | None, challenge_method: str | None,
    now: datetime, ttl: int,
) -> None:
    """Store a new code's digest for a pending connection, with the connection's scope."""
    session.add(
        AuthorizationCode(
            digest=cs.digest(raw),
            connection_id=connection.id,
            client_id=client_pk,
            redirect_uri=redirect_uri,
            redirect_uri_given=redirect_uri_given,
            scope=connection.scope,
            code_challenge=challenge,
            code_challenge_method=challenge_method,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )


def find_code(session: Session, raw: str) -> AuthorizationCode | None:
    """The code with this value, read holding the write lock (SQLite) from this first read:
    the redemption that follows writes what it read."""
    begin_write(session)
    return session.scalar(
        select(AuthorizationCode).where(AuthorizationCode.digest == cs.digest(raw))
    )


def claim_code(session: Session, code_id: int, now: datetime) -> bool:
    """Mark the code used; False when another request redeemed it since it was read."""
    claimed = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id, AuthorizationCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def purgeable(now: datetime, ended_before: datetime, ended_connections):
    """The purge's rule for codes: unused ones once expired, used ones once expired for the
    retention period (a late replay still ends its connection, RFC 6749 §10.5), and every code
    of a connection among ``ended_connections`` (a subquery of ids)."""
    codes = AuthorizationCode
    return codes, or_(
        (codes.used_at.is_(None)) & (codes.expires_at <= now),
        codes.expires_at <= ended_before,
        codes.connection_id.in_(ended_connections),
    )
