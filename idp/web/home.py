"""Where the bare addresses people type lead: the settings pages (which ask to sign in first)."""

from flask import Blueprint
from flask import redirect
from flask import url_for

bp = Blueprint("home", __name__)


@bp.get("/")
@bp.get("/settings")
@bp.get("/settings/")
def index():
    """Connected Apps is the first settings page; signed out, it sends people to sign in."""
    return redirect(url_for("settings.connected_apps"))
