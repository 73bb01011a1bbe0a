"""Liveness and readiness probes (SPEC §7)."""

from flask import Blueprint
from flask import jsonify
from sqlalchemy import text

from idp.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers; a fault becomes 503 through the shared handler."""
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    return jsonify(status="ready")
