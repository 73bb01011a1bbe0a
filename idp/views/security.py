"""Settings → Password and Settings → Security: password change, two-step sign-in, passkeys."""

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from idp import accounts
from idp import audit
from idp import sessions
from idp.account_forms import PasswordChangeForm
from idp.core.clock import utcnow
from idp.database import begin_write
from idp.extensions import db
from idp.passwords import PasswordPolicyError
from idp.passwords import check_password_policy
from idp.views.settings import install

bp = Blueprint("security", __name__, url_prefix="/settings")
install(bp)


@bp.route("/password", methods=["GET", "POST"])
def password():
    """Change the password: the current one first; every other session ends on success."""
    form = PasswordChangeForm()
    user = accounts.current_user()
    if form.validate_on_submit():
        if not accounts.check_password(user, form.current.data):
            form.current.errors.append("That is not your current password.")
        else:
            try:
                check_password_policy(form.new.data, user.email)
            except PasswordPolicyError as refused:
                form.new.errors.append(str(refused))
            else:
                begin_write(db.session)
                now = utcnow()
                user.password_hash = accounts.hash_password(form.new.data)
                ended = sessions.end(db.session, user.id, now, keep=session.record_id)
                audit.record(db.session, "password_changed", now, actor=user.email,
                             subject=user.public_id, ip=request.remote_addr, sessions_ended=ended)
                db.session.commit()
                flash("Your password is changed. Every other session is signed out."
                      if ended else "Your password is changed.")
                return redirect(url_for("security.password"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("account/password.html", form=form), status
