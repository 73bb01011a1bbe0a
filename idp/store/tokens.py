"""Token storage: issue access/refresh pairs, end connections. No Flask request inside."""

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import insert
from sqlalchemy import update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.clock import epoch
from idp.infra import metrics
from idp.store import audit
from idp.store.models import AccessToken
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import RefreshToken


@dataclass(frozen=True)
class Lifetimes:
    """Seconds each credential lives for one client (SPEC §3; per-client overrides)."""

    code: int
    access: int
    refresh: int
    grace: int


def lifetimes(client: Client, config: dict) -> Lifetimes:
    """Resolve a client's lifetimes against the configured defaults."""
    return Lifetimes(
        code=client.code_ttl or config["IDP_CODE_TTL"],
        access=client.access_token_ttl or config["IDP_ACCESS_TOKEN_TTL"],
        refresh=client.refresh_token_ttl or config["IDP_REFRESH_TOKEN_TTL"],
        grace=config["IDP_REFRESH_GRACE_SECONDS"],
    )


@dataclass(frozen=True)
class Pair:
    """A new access and refresh token, made before any database work."""

    #: The RFC 6749 §5.1 body (raw tokens included) plus absolute expiry times.
    body: dict
    access_row: dict
    refresh_row: dict


#: Inserts built once (PERFORMANCE.md §1); Core, not ORM units of work, on the refresh path.
_INSERT_ACCESS = insert(AccessToken.__table__)
_INSERT_REFRESH = insert(RefreshToken.__table__).returning(RefreshToken.__table__.c.id)


def new_pair(life: Lifetimes, access_scope: str, refresh_scope: str, now: datetime) -> Pair:
    """Mint raw tokens and their rows' values; nothing is stored yet."""
    access = cs.new_access_token()
    refresh = cs.new_refresh_token()
    access_expires = now + timedelta(seconds=life.access)
    refresh_expires = now + timedelta(seconds=life.refresh)
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": life.access,
        "refresh_token": refresh,
        "refresh_expires_in": life.refresh,
        "scope": access_scope,
        # Absolute times let a grace-window replay report the remaining lifetimes exactly.
        "_access_exp": epoch(access_expires),
        "_refresh_exp": epoch(refresh_expires),
    }
    return Pair(
        body=body,
        access_row={"digest": cs.digest(access), "scope": access_scope, "issued_at": now,
                    "expires_at": access_expires},
        refresh_row={"digest": cs.digest(refresh), "scope": refresh_scope, "issued_at": now,
                     "expires_at": refresh_expires},
    )


def store_pair(connection: DbConnection, connection_id: int, pair: Pair) -> int:
    """Insert both tokens of ``pair`` for a connection; return the refresh token's row id."""
    connection.execute(_INSERT_ACCESS, {**pair.access_row, "connection_id": connection_id})
    return connection.execute(
        _INSERT_REFRESH, {**pair.refresh_row, "connection_id": connection_id}
    ).scalar_one()


def issue_pair(
    session: Session,
    connection: Connection,
    life: Lifetimes,
    access_scope: str,
    refresh_scope: str,
    now: datetime,
) -> tuple[dict, int]:
    """Create an access and a refresh token for a connection, in the session's transaction.

    Returns the RFC 6749 §5.1 body (with bookkeeping fields; see :func:`public_body`) and the
    refresh token's row id.
    """
    pair = new_pair(life, access_scope, refresh_scope, now)
    return pair.body, store_pair(session.connection(), connection.id, pair)


def public_body(body: dict, now: datetime) -> dict:
    """Strip bookkeeping fields and state lifetimes as seconds left from ``now``."""
    out = {k: v for k, v in body.items() if not k.startswith("_")}
    out["expires_in"] = max(0, body["_access_exp"] - epoch(now))
    out["refresh_expires_in"] = max(0, body["_refresh_exp"] - epoch(now))
    return out


def end_connection(
    session: Session,
    connection: Connection,
    reason: str,
    now: datetime,
    *,
    actor: str | None = None,
    ip: str | None = None,
) -> bool:
    """End a connection and so every token of it; True if this call ended it.

    The conditional UPDATE makes two racing enders record one event, not two.
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
    return True
