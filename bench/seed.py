"""Fill a migrated database with a realistic data set by bulk Core inserts of digests.

Only the credentials a load plan presents are made as real raw values (kept in memory for the
plans, never written to the database); every other row carries the digest of nothing anyone
holds, which costs the same to store and to index.
"""

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Iterable
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from itertools import chain
from itertools import islice

from argon2 import PasswordHasher
from sqlalchemy import JSON
from sqlalchemy import DateTime
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine

from bench import rows
from bench.dataset import ZAPIER_REDIRECT
from bench.dataset import Seeded
from bench.dataset import Shape
from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import AuthorizationCode
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import RefreshToken
from idp.store.models import ResourceServer
from idp.store.models import User

#: Rows per executemany call: large enough to amortise calls, small enough for memory.
BATCH = 10_000
#: The text form SQLAlchemy gives a DATETIME in SQLite.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
#: Every table the data set fills, parents first.
MODELS = (Organization, User, Membership, Client, ResourceServer, Connection, AccessToken,
          RefreshToken, ApiKey, AuthorizationCode)


def make_engine(url: str) -> Engine:
    """An engine for bulk loading: on SQLite, no journal and no fsync while the file is built."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fast(dbapi_connection, _record):
            """Seeding starts over when it fails, so it needs neither journal nor fsync."""
            dbapi_connection.isolation_level = None
            # Leaving WAL needs the only connection to the file; with another one open
            # (a test's app), loading in WAL is merely slower.
            with contextlib.suppress(sqlite3.OperationalError):
                dbapi_connection.execute("PRAGMA journal_mode=OFF")
            dbapi_connection.execute("PRAGMA synchronous=OFF")
            # A cache that holds the digest indexes keeps random inserts off the disk.
            dbapi_connection.execute("PRAGMA cache_size=-2000000")

    return engine


@lru_cache(maxsize=65536)
def sqlite_datetime(value: datetime) -> str:
    """A DATETIME in SQLAlchemy's SQLite text form; cached, as a data set reuses few instants."""
    return value.strftime(SQLITE_DATETIME)


def converters(model, names: list[str], dialect: str) -> list:
    """Per column, the function that turns a Python value into what the driver should get."""
    out = []
    for name in names:
        kind = model.__table__.columns[name].type
        if isinstance(kind, JSON):
            out.append(lambda v: None if v is None else json.dumps(v))
        elif isinstance(kind, DateTime) and dialect == "sqlite":
            out.append(lambda v: None if v is None else sqlite_datetime(v))
        else:
            out.append(None)
    return out


def insert(conn: DbConnection, model, items: Iterable[dict]) -> int:
    """Bulk-insert dict rows into a model's table in one transaction; returns how many.

    The driver does the work: COPY on PostgreSQL, executemany of plain tuples on SQLite. Both
    skip SQLAlchemy's per-value processing, which costs more than the database for a million
    rows; values are converted exactly as SQLAlchemy would store them.
    """
    items = iter(items)
    first = next(items, None)
    if first is None:
        return 0
    names = list(first)
    convert = converters(model, names, conn.dialect.name)
    rows = (
        [v if c is None else c(v) for v, c in zip(item.values(), convert, strict=True)]
        for item in chain([first], items)
    )
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        return _copy(driver, model.__tablename__, names, rows)
    return _executemany(driver, model.__tablename__, names, rows)


def _copy(driver, table: str, names: list[str], rows: Iterator[list]) -> int:
    """PostgreSQL: one COPY per table."""
    count = 0
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    driver.commit()
    return count


def _executemany(driver, table: str, names: list[str], rows: Iterator[list]) -> int:
    """SQLite: executemany in batches inside one transaction."""
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    count = 0
    cursor = driver.cursor()
    try:
        cursor.execute("BEGIN")
        while batch := list(islice(rows, BATCH)):
            cursor.executemany(sql, batch)
            count += len(batch)
        cursor.execute("COMMIT")
    finally:
        cursor.close()
    return count


def fill(conn: DbConnection, shape: Shape, now: datetime) -> Seeded:
    """Insert the whole data set; returns the raw credentials the load plans will present."""
    seeded = Seeded(
        size=shape.size, rs_id=cs.new_public_id("rs_"),
        rs_secret=cs.new_client_secret(cs.RESOURCE_SECRET_PREFIX),
        client_id=cs.new_public_id("cli_"), client_secret=cs.new_client_secret(),
        redirect_uri=ZAPIER_REDIRECT, code_verifier=secrets.token_urlsafe(48),
    )
    password_hash = PasswordHasher().hash(secrets.token_urlsafe(16))
    insert(conn, Organization, rows.organizations(shape, now))
    insert(conn, User, rows.users(shape, now, password_hash))
    insert(conn, Membership, rows.memberships(shape))
    insert(conn, Client, rows.clients(seeded, now))
    insert(conn, ResourceServer, rows.resource_servers(seeded, now))
    insert(conn, Connection, rows.connections(shape, now))
    insert(conn, AccessToken, rows.access_tokens(shape, now, seeded.access_tokens))
    insert(conn, RefreshToken, rows.refresh_history(shape, now))
    insert(conn, RefreshToken, rows.refresh_pool(shape, now, seeded.refresh_pool))
    insert(conn, ApiKey, rows.api_keys(shape, now, seeded.api_keys))
    insert(conn, AuthorizationCode, rows.codes(shape, now, seeded))
    return seeded


def seed(url: str, shape: Shape, now: datetime | None = None) -> Seeded:
    """Seed a freshly migrated database; returns the raw credentials of the samples and pools."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            seeded = fill(conn, shape, now or utcnow())
            if engine.dialect.name == "postgresql":
                reset_sequences(conn)
                # Autovacuum would gather statistics soon after a load this size; do it now.
                conn.execute(text("ANALYZE"))
            else:
                # Back to the journal mode the IdP itself sets on every connection.
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.commit()
            seeded.counts = table_counts(conn)
    finally:
        engine.dispose()
    return seeded


def reset_sequences(conn: DbConnection) -> None:
    """Explicit ids bypass PostgreSQL's sequences; move each past the highest id."""
    for model in MODELS:
        name = model.__tablename__
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
        ))


def table_counts(conn: DbConnection) -> dict[str, int]:
    """Rows per table, for the report."""
    return {
        m.__tablename__: conn.execute(select(func.count()).select_from(m.__table__)).scalar_one()
        for m in MODELS
    }
