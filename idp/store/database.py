"""Engine settings per database: locking that keeps rotation correct, and pool hygiene."""

import logging
import time
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import SQLAlchemyError

from idp.infra import metrics
from idp.infra.extensions import db
from idp.store import dbclock

log = logging.getLogger(__name__)

#: Execution option that asks for a transaction holding the write lock from its start.
WRITE_INTENT = "idp_write_intent"
#: Execution option (SQLite) that runs each statement on its own, without BEGIN.
NO_BEGIN = "idp_no_begin"


def engine_options(config: dict) -> dict:
    """SQLAlchemy engine options for the configured database URL.

    Statement parameters are hidden from logs and error messages on every database: they hold
    digests and sealed blobs, and an error message is the kind of text that ends up in a log.
    """
    url = config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        # The driver's own BEGIN handling is switched off in _sqlite_connect; 5 s busy wait.
        return {
            "hide_parameters": True,
            "connect_args": {"timeout": config["IDP_DB_LOCK_TIMEOUT_MS"] / 1000},
        }
    return {
        "hide_parameters": True,
        # No ping on every checkout: install() pings connections that sat idle instead.
        "pool_pre_ping": False,
        "pool_size": config["IDP_DB_POOL_SIZE"],
        "max_overflow": config["IDP_DB_MAX_OVERFLOW"],
        "pool_timeout": config["IDP_DB_POOL_TIMEOUT"],
        "pool_recycle": 1800,
        "connect_args": {
            # A row lock that is not granted quickly is a passing fault (503), not a hang.
            "options": f"-c lock_timeout={config['IDP_DB_LOCK_TIMEOUT_MS']}",
            "connect_timeout": 5,
        },
    }


#: A pooled connection unused for this many seconds is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Replace a dropped connection (restart, failover) before use, pinging only idle ones.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip more for every API
    call, about half the database time of an introspection (docs/PERFORMANCE.md). A database
    restart takes seconds, so only connections idle for longer than
    ``PING_AFTER_IDLE_SECONDS`` can have been dropped unnoticed; a busy pool reuses its
    connections within milliseconds and skips the ping. A connection the database dropped
    while in use fails that one request with a 503 (and SQLAlchemy then recycles the pool),
    as it also would with ``pool_pre_ping``. Raising DisconnectionError from the checkout
    event makes the pool discard the connection and hand out a fresh one (SQLAlchemy's
    documented pessimistic disconnect handling).
    """

    @event.listens_for(engine, "checkin")
    def _note_idle(_dbapi_connection, record):
        record.info["idp_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        since = record.info.get("idp_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("idle connection failed its ping") from error


def install(engine: Engine) -> None:
    """Attach per-dialect listeners to a freshly created engine."""
    if engine.dialect.name != "sqlite":
        _ping_idle_connections(engine)
        # After the ping, so a dropped connection is replaced before the clock is read on it.
        dbclock.install(engine)
        return

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        """Take over transaction control from pysqlite; WAL lets readers run beside a writer."""
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        """BEGIN IMMEDIATE for writers that read-then-write, so two never interleave."""
        options = conn.get_execution_options()
        if options.get(NO_BEGIN):
            return
        if options.get(WRITE_INTENT):
            with metrics.LockWait("sqlite_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


@contextmanager
def reading(engine: Engine):
    """A pooled connection for a request whose database work is one SELECT at a time.

    Each statement sees a consistent snapshot on its own, so the credential checks of every
    API call need no transaction around their single lookup: skipping BEGIN and ROLLBACK saves
    two statements per request on SQLite and two round trips on PostgreSQL
    (docs/PERFORMANCE.md). The connection goes back to the pool when the block ends.
    """
    if engine.dialect.name == "sqlite":
        options = {NO_BEGIN: True}
    else:
        options = {"isolation_level": "AUTOCOMMIT"}
    with engine.connect().execution_options(**options) as conn:
        yield conn


def read_then_write(session) -> None:
    """Let the session read without a transaction until :func:`write_now` (SQLite).

    For a request that reads first and writes only at its end: the reads run as single
    statements, so taking the write lock later needs no rollback of a read transaction (which
    would also expire every loaded object and hand the connection back to the pool).
    """
    session.connection(execution_options={NO_BEGIN: True})


def write_now(session) -> None:
    """Take the write lock for the writes that follow (SQLite), keeping what was read.

    After :func:`read_then_write` this is one ``BEGIN IMMEDIATE`` on the same connection;
    otherwise it is :func:`begin_write`. On PostgreSQL nothing is needed: each statement sees
    the latest commits and the writes take their own row locks.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        return
    if conn.get_execution_options().get(NO_BEGIN):
        with metrics.LockWait("sqlite_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        begin_write(session)


def begin_write(session) -> None:
    """Start the session's transaction with the write lock held (SQLite) before any read.

    On PostgreSQL the option is ignored and callers take row locks (SELECT ... FOR UPDATE).
    """
    session.rollback()
    session.connection(execution_options={WRITE_INTENT: True})


def _release_session(_exc=None) -> None:
    """Close the request's session; never let a vanished database fail a finished request.

    When the database goes away between a request's last query and its end, the rollback
    in Flask-SQLAlchemy's own teardown raises, and the answer already made (say a 200) would
    become a bare 500 from the WSGI server. The failed close has invalidated the connection,
    so a second close succeeds and the pool slot is freed.
    """
    try:
        db.session.remove()
    except SQLAlchemyError as error:
        log.warning("closing the database session failed: %s", type(error).__name__)
        try:
            db.session.remove()
        except SQLAlchemyError:
            log.warning("closing the database session failed twice; dropping it")
            db.session.registry.clear()


def init_app(app) -> None:
    """Register the session release; it runs before Flask-SQLAlchemy's (teardowns run in
    reverse order of registration), which then finds nothing left to close."""
    dbclock.configure(app.config["IDP_CLOCK_OFFSET_LIMIT"])
    app.teardown_appcontext(_release_session)
