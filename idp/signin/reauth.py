"""The current password, asked again before a change a stolen session must not make.

Removing the authenticator app, renewing recovery codes and adding a passkey each need the
password typed again: a copied session cookie alone must not turn protection off or plant a
lasting second factor. A wrong password is counted as a failed sign-in of the account by the
counters of the sign-in form (idp/signin/login_limits.py), so guesses here and there share one
budget,
and is an audit event (``reauth_failed``). A correct one leaves a mark in the server-side
session that lasts :data:`FRESH_SECONDS`: the passkey ceremony spans two requests after it.
"""

import calendar

from flask import request
from flask import session

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin import login_limits
from idp.store import accounts
from idp.store import audit
from idp.store.database import begin_write
from idp.store.models import User

#: The session key of the mark: when the password was last confirmed (epoch seconds).
MARK = "reauth_at"
#: How long a confirmed password lets a passkey be added.
FRESH_SECONDS = 300
WRONG = "That was not your current password."
EMPTY = "Enter your current password."
TOO_MANY = "Too many wrong passwords. Wait a few minutes and try again."


class Refused(Exception):
    """The password was not confirmed: the message to show, the status and extra headers."""

    def __init__(self, message: str, status: int, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _now_seconds() -> int:
    """The clock as whole seconds (the session data is JSON)."""
    return calendar.timegm(utcnow().utctimetuple())


def confirm(user: User, password: str | None, action: str) -> None:
    """Check the current password and mark the session; raise Refused when it is not it.

    A wrong password leaves its audit event written, not committed: the caller commits on
    Refused, so the failure is kept although the change is refused.
    """
    judged = login_limits.attempt(user.email, user)
    # Judged before any password work, like the sign-in form.
    usage = login_limits.refusal(judged)
    if usage is not None:
        raise Refused(TOO_MANY, 429, {"Retry-After": login_limits.retry_after(usage)})
    if not password:
        # Nothing was guessed, so nothing is counted: a click before typing.
        raise Refused(EMPTY, 403)
    if not accounts.check_password(user, password):
        login_limits.failed(judged)
        # Recorded under the write lock; the caller commits it with the refusal.
        begin_write(db.session)
        audit.record(db.session, "reauth_failed", utcnow(), actor=user.email,
                     subject=user.public_id, ip=request.remote_addr, action=action)
        raise Refused(WRONG, 403)
    session[MARK] = _now_seconds()


def recent() -> bool:
    """Whether this session confirmed the password within the last FRESH_SECONDS."""
    at = session.get(MARK)
    if not isinstance(at, int):
        return False
    if not 0 <= _now_seconds() - at <= FRESH_SECONDS:
        session.pop(MARK, None)
        return False
    return True


def spend() -> None:
    """Forget the mark once the change it allowed is made."""
    session.pop(MARK, None)
