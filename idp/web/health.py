"""Liveness and readiness probes (SPEC §7)."""

from flask import Blueprint
from flask import current_app
from flask import jsonify
from sqlalchemy import text

from idp.infra.extensions import db
from idp.store import dbclock

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up; says nothing about its dependencies, so it never flaps with them."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers and holds a migrated schema; a fault is 503 via the shared handler.

    Redis is left out on purpose: rate limits carry on without it (idp/counters.py), and a
    load balancer that pulled every instance whenever Redis blinked would turn a counter outage
    into a full one.
    """
    revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    db.session.rollback()
    reading = dbclock.measure(db.engine)
    if reading is None:
        # SQLite is single-host: the host's clock is the one every decision uses.
        return jsonify(status="ready", schema=revision, clock="host")
    return _clock_verdict(revision, reading.host_offset)


def _clock_verdict(revision: str, offset: float):
    """Ready unless this host's wall clock is further from the database's than the limit.

    Decisions use the database's clock whatever the host's says (idp/store/dbclock.py), but a host
    that far off is unwell (a VM resumed from pause, a broken time sync) and still stamps what
    the database does not judge: logs, cookies' expiry, rate-limit windows. Taking it out of
    the balancer makes the drift visible before it bites (docs/OPERATIONS.md, "One clock").
    """
    limit = current_app.config["IDP_CLOCK_OFFSET_LIMIT"]
    ready = abs(offset) <= limit
    # Milliseconds are all a probe needs; adding 0.0 turns a rounded -0.0 into 0.0.
    response = jsonify(status="ready" if ready else "clock_offset", schema=revision,
                       clock="database", clock_offset_seconds=round(offset, 3) + 0.0,
                       clock_offset_limit_seconds=limit)
    if not ready:
        response.status_code = 503
    return response
