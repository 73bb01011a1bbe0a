"""Settings → Signed-in sessions: where one is signed in, and signing out elsewhere (SPEC §6)."""

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import audit
from idp.store import user_sessions
from idp.store.models import UserSession
from idp.web import auth
from idp.web import sessions
from idp.web.forms import EmptyForm
from idp.web.sessions import current_user
from idp.web.settings.apps import install
from idp.web.unit_of_work import changes

bp = Blueprint("sessions", __name__, url_prefix="/settings/sessions")
install(bp)


def _live_sessions() -> list[UserSession]:
    """The signed-in user's live sessions, this one first."""
    rows = user_sessions.listing(db.session, current_user().id, utcnow(), current_app.config)
    return sorted(rows, key=lambda row: row.id != session.record_id)


def _other_session(public_id: str) -> UserSession:
    """One of the user's live sessions, or 404 (someone else's, ended, unknown)."""
    found = next((row for row in _live_sessions() if row.public_id == public_id), None)
    if found is None:
        abort(404)
    return found


@bp.get("")
def index():
    """Every live session of the user: browser, address, started, last seen."""
    rows = _live_sessions()
    return render_template("settings/sessions.html", rows=rows,
                           describe=sessions.describe_browser, this=session.record_id,
                           others=len(rows) - 1, form=EmptyForm())


@bp.get("/<public_id>/sign-out")
def confirm_sign_out(public_id):
    """Ask before signing one session out; works without JavaScript."""
    row = _other_session(public_id)
    return render_template("settings/confirm_session_sign_out.html", row=row,
                           this=session.record_id, describe=sessions.describe_browser,
                           form=EmptyForm(),
                           action=url_for("sessions.sign_out", public_id=public_id))


@bp.post("/<public_id>/sign-out")
def sign_out(public_id):
    """End one session at once; ending this one is signing out."""
    if session.record_id is not None and public_id == session.public_id:
        auth.sign_out()
        return redirect(url_for("auth.login"))
    # Read-then-write: on SQLite hold the write lock before reading (idp/web/settings/apps.py).
    with changes():
        row = _other_session(public_id)
        user = current_user()
        now = utcnow()
        user_sessions.end(db.session, user.id, now, only=row.id)
        audit.record(db.session, "session_ended", now, actor=user.email, subject=row.public_id,
                     ip=request.remote_addr)
    flash(f"{sessions.describe_browser(row.user_agent)} ({row.ip or 'unknown address'}) "
          "is signed out.")
    return redirect(url_for("sessions.index"))


@bp.get("/sign-out-others")
def confirm_sign_out_others():
    """Ask before signing out every other session."""
    return render_template("settings/confirm_session_sign_out.html", row=None,
                           this=session.record_id, others=len(_live_sessions()) - 1,
                           form=EmptyForm(),
                           action=url_for("sessions.sign_out_others"))


@bp.post("/sign-out-others")
def sign_out_others():
    """End every session of the user but this one."""
    with changes():
        user = current_user()
        now = utcnow()
        ended = user_sessions.end(db.session, user.id, now, keep=session.record_id)
        audit.record(db.session, "other_sessions_ended", now, actor=user.email,
                     subject=session.public_id, ip=request.remote_addr, count=ended)
    flash("Every other session is signed out." if ended else "There were no other sessions.")
    return redirect(url_for("sessions.index"))
