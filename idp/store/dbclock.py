"""Read the database's clock, so that every host judges time by the same one.

Several hosts share one PostgreSQL database, and every decision compares a time stored there
with "now": the refresh grace window, expiries, last-used intervals, the purge's cut-offs.
Each host's own clock would make each host judge differently (docs/OPERATIONS.md, "One
clock"). So a process reads ``clock_timestamp()`` and anchors :mod:`idp.core.clock` on it:
``utcnow()`` is then that reading carried forward by the host's monotonic clock, which no
wall-clock step moves, and costs no query.

The reading is refreshed lazily, on the checkout of a pooled connection once the last one is
older than ``REMEASURE_SECONDS``: one round trip every half minute per process, made before
the request's own statements, so never while a lock is held, and never on a hot path's every
call (docs/PERFORMANCE.md). SQLite is single-host: its host clock is the one clock.
"""

import logging
import math
import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine

from idp.core import clock
from idp.infra import metrics

log = logging.getLogger(__name__)

#: Seconds a reading is used before the next checkout reads the database's clock again: the
#: monotonic clock drifts from it by parts per million, and the database's clock may be stepped.
REMEASURE_SECONDS = 30.0
#: Seconds before a failed reading is tried again (the database is down; requests answer 503).
RETRY_SECONDS = 5.0
#: Default largest offset of a host's wall clock from the database's before /readyz fails.
DEFAULT_LIMIT_SECONDS = 2.0
#: ``clock_timestamp()``, not ``now()``: now() is when the transaction began, not the moment
#: of the reading. In UTC and without a zone, as every time is stored (idp.core.clock).
QUERY = "SELECT clock_timestamp() AT TIME ZONE 'UTC'"

_lock = threading.Lock()
#: ``clock.monotonic()`` after which the next checkout reads the clock; at once at first.
_next_due = -math.inf
#: Host offsets beyond this many seconds are logged as warnings (IDP_CLOCK_OFFSET_LIMIT).
_limit = DEFAULT_LIMIT_SECONDS


def configure(limit_seconds: float) -> None:
    """Set the offset beyond which a reading is logged as a warning."""
    global _limit
    _limit = limit_seconds


def due() -> bool:
    """True when the next checkout should read the database's clock."""
    return clock.monotonic() >= _next_due


def forget() -> None:
    """Make the next checkout read the clock again (tests)."""
    global _next_due
    _next_due = -math.inf


def read(dbapi_connection) -> clock.Anchor:
    """Read the database's clock over an idle DB-API connection, pinned to the round trip's middle.

    Autocommit for the one statement, as SQLAlchemy's own ping does on psycopg, so that no
    transaction is left open and no ROLLBACK costs a second round trip.
    """
    restore = not dbapi_connection.autocommit
    if restore:
        dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        wall_before, sent = clock.host_now(), clock.monotonic()
        cursor.execute(QUERY)
        database = cursor.fetchone()[0]
        received, wall_after = clock.monotonic(), clock.host_now()
    finally:
        cursor.close()
        if restore and not dbapi_connection.closed:
            dbapi_connection.autocommit = False
    wall = wall_before + (wall_after - wall_before) / 2
    return clock.Anchor(database=database, monotonic=(sent + received) / 2,
                        host_offset=(wall - database).total_seconds())


def settle(reading: clock.Anchor) -> None:
    """Judge time by ``reading`` from now on; warn when this host's wall clock is far off."""
    global _next_due
    clock.anchor(reading)
    _next_due = reading.monotonic + REMEASURE_SECONDS
    metrics.set_clock_offset(reading.host_offset)
    if abs(reading.host_offset) > _limit:
        log.warning("this host's clock is %+.3f s off the database's (limit %g s): decisions "
                    "use the database's clock, but fix this host's time sync (NTP)",
                    reading.host_offset, _limit)


def measure(engine: Engine) -> clock.Anchor | None:
    """Read the database's clock now and use it; None on SQLite, whose host clock is the one."""
    if engine.dialect.name == "sqlite":
        return None
    with engine.connect() as conn:
        reading = read(conn.connection.dbapi_connection)
    settle(reading)
    return reading


def _read_if_due(dbapi_connection, _record, _proxy) -> None:
    """On checkout: refresh the reading when it is old; one thread at a time, others go on."""
    global _next_due
    if not due() or not _lock.acquire(blocking=False):
        return
    try:
        _next_due = clock.monotonic() + RETRY_SECONDS
        try:
            reading = read(dbapi_connection)
        except Exception as error:
            # The request's own statement meets the same fault and answers 503; the last
            # reading stays in use meanwhile.
            log.warning("could not read the database's clock: %s", type(error).__name__)
            return
        settle(reading)
    finally:
        _lock.release()


def _first_reading(engine: Engine) -> None:
    """The reading taken when time is asked for before any checkout; a failure is logged."""
    try:
        measure(engine)
    except Exception as error:
        # Nothing is lost: the host's clock serves until the next checkout reads the database's.
        log.warning("could not read the database's clock: %s", type(error).__name__)


def install(engine: Engine) -> None:
    """Read the database's clock on checkouts of this engine's connections (PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return
    event.listen(engine, "checkout", _read_if_due)
    clock.on_first_use(lambda: _first_reading(engine))
