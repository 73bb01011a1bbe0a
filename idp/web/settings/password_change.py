"""Settings → Password: change it, the current one first; every other session ends."""

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin.passwords import PasswordPolicyError
from idp.signin.passwords import check_password_policy
from idp.store import accounts
from idp.store import audit
from idp.store import user_sessions
from idp.web.account_forms import PasswordChangeForm
from idp.web.sessions import current_user
from idp.web.settings.apps import install
from idp.web.unit_of_work import changes

bp = Blueprint("password_change", __name__, url_prefix="/settings")
install(bp)


@bp.route("/password", methods=["GET", "POST"])
def password():
    """Change the password: the current one first; every other session ends on success."""
    form = PasswordChangeForm()
    user = current_user()
    if form.validate_on_submit():
        if not accounts.check_password(user, form.current.data):
            form.current.errors.append("That is not your current password.")
        else:
            try:
                check_password_policy(form.new.data, user.email)
            except PasswordPolicyError as refused:
                form.new.errors.append(str(refused))
            else:
                with changes():
                    now = utcnow()
                    user.password_hash = accounts.hash_password(form.new.data)
                    ended = user_sessions.end(db.session, user.id, now, keep=session.record_id)
                    audit.record(db.session, "password_changed", now, actor=user.email,
                                 subject=user.public_id, ip=request.remote_addr,
                                 sessions_ended=ended)
                flash("Your password is changed. Every other session is signed out."
                      if ended else "Your password is changed.")
                return redirect(url_for("password_change.password"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("settings/password.html", form=form), status
