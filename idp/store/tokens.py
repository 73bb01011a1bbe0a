"""Token pairs and refresh-token rotation storage (SPEC §5.3). No Flask request inside.

Lifetimes, minting and storing an access/refresh pair, and the statements a refresh runs: the
lookup by digest with its connection's standing, the row lock, the claim that rotates a token,
the seals a rotation leaves. Nothing here commits or decides an answer.
"""

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.clock import epoch
from idp.infra import metrics
from idp.store.connections import CONNECTION_MEMBERSHIP
from idp.store.database import begin_write
from idp.store.models import AccessToken
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
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


def store_pair(conn: DbConnection, connection_id: int, pair: Pair) -> int:
    """Insert both tokens of ``pair`` for a connection; return the refresh token's row id."""
    conn.execute(_INSERT_ACCESS, {**pair.access_row, "connection_id": connection_id})
    return conn.execute(
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


#: Everything a refresh judges about the presented token, in one indexed query and without a
#: lock: the rotation itself claims the row with a conditional UPDATE (docs/PERFORMANCE.md, item 6).
_REFRESH_BY_DIGEST = (
    select(
        RefreshToken.id,
        RefreshToken.scope,
        RefreshToken.expires_at,
        RefreshToken.rotated_at,
        Connection.id,
        Connection.client_id,
        Connection.org_id,
        Connection.ended_at,
        Organization.suspended,
        Membership.id,
    )
    .join(Connection, Connection.id == RefreshToken.connection_id)
    .join(Organization, Organization.id == Connection.org_id)
    .outerjoin(Membership, CONNECTION_MEMBERSHIP)
    .where(RefreshToken.digest == bindparam("digest"))
)
#: The claim: only the request that turns a live token of a live connection into a rotated
#: one may issue its pair (a Disconnect committed since the lookup makes the claim miss).
_CLAIM = (
    update(RefreshToken.__table__)
    .where(RefreshToken.__table__.c.id == bindparam("token_id"),
           RefreshToken.__table__.c.rotated_at.is_(None),
           exists().where(Connection.__table__.c.id == RefreshToken.__table__.c.connection_id,
                          Connection.__table__.c.ended_at.is_(None)))
    .values(rotated_at=bindparam("now"), successor_id=bindparam("successor_id"),
            sealed_successor=bindparam("sealed"))
)
#: Seals whose grace window has passed can never be opened legitimately again.
_DROP_OLD_SEALS = (
    update(RefreshToken.__table__)
    .where(RefreshToken.__table__.c.connection_id == bindparam("of_connection"),
           RefreshToken.__table__.c.sealed_successor.isnot(None),
           RefreshToken.__table__.c.rotated_at < bindparam("cutoff"))
    .values(sealed_successor=None)
)


@dataclass(frozen=True)
class PresentedToken:
    """A refresh token as looked up for a refresh, with its connection's standing."""

    id: int
    scope: str
    expires_at: datetime
    rotated_at: datetime | None
    connection_id: int
    client_pk: int
    org_pk: int
    ended: bool
    suspended: bool
    member: bool

    def check_client(self, client):
        """A refresh token works only for the client its connection belongs to."""
        return self.client_pk == client.id


def find_refresh_token(conn: DbConnection, raw: str) -> PresentedToken | None:
    """The refresh token with this value and what the refresh rules need; no lock taken."""
    row = conn.execute(_REFRESH_BY_DIGEST, {"digest": cs.digest(raw)}).first()
    if row is None:
        return None
    (token_id, scope, expires_at, rotated_at, connection_id, client_pk, org_pk, ended_at,
     suspended, membership) = row
    return PresentedToken(
        id=token_id, scope=scope, expires_at=expires_at, rotated_at=rotated_at,
        connection_id=connection_id, client_pk=client_pk, org_pk=org_pk,
        ended=ended_at is not None, suspended=suspended, member=membership is not None,
    )


def lock_refresh_token(session: Session, token_id: int) -> RefreshToken:
    """Read the token again holding the write lock (SQLite) and its row lock (PostgreSQL)."""
    begin_write(session)
    with metrics.LockWait("row"):
        return session.scalar(
            select(RefreshToken)
            .where(RefreshToken.id == token_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )


def rotate(conn: DbConnection, token_id: int, connection_id: int, pair: Pair, sealed: bytes,
           now: datetime, grace: int) -> bool:
    """Store the successor pair and claim the token; False (caller rolls back) if it was
    rotated, or its connection ended, since it was read. Runs inside the write transaction."""
    successor_id = store_pair(conn, connection_id, pair)
    # PostgreSQL: the claim waits here for the row lock of a concurrent rotation of the token.
    with metrics.LockWait("row"):
        claimed = conn.execute(
            _CLAIM,
            {"token_id": token_id, "now": now, "successor_id": successor_id, "sealed": sealed},
        ).rowcount
    if claimed != 1:
        return False
    conn.execute(
        _DROP_OLD_SEALS, {"of_connection": connection_id, "cutoff": now - timedelta(seconds=grace)}
    )
    return True


def newest_successor(session: Session, keys: tuple[str, ...], token: RefreshToken,
                     raw: str) -> dict | None:
    """Open a rotated token's sealed successor and follow the chain to the live one; None when
    a link of the chain cannot be opened.

    Each seal holds the next raw refresh token, which opens the next seal. If a successor was
    itself rotated (it is younger, so still within its own window), answering with the stale
    successor would hand the client a token that later counts as reuse; the newest one is safe.
    """
    sealed, opener = token.sealed_successor, raw
    while True:
        body = cs.unseal(keys, opener, sealed) if sealed else None
        if body is None:
            return None
        successor = session.scalar(
            select(RefreshToken).where(RefreshToken.digest == cs.digest(body["refresh_token"]))
        )
        if successor is None or successor.rotated_at is None:
            return body
        sealed, opener = successor.sealed_successor, body["refresh_token"]
