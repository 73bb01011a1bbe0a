"""Liveness and readiness probes (SPEC §7)."""

from flask import Blueprint
from flask import jsonify
from sqlalchemy import text

from idp.extensions import db

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
    return jsonify(status="ready", schema=revision)
