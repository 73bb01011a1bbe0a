"""Signed-in sessions kept on the server: the cookie holds a random id, the database its digest.

A visitor who has not signed in keeps Flask's signed cookie (it holds nothing but a CSRF token
and a flash or two, and honours ``SECRET_KEY_FALLBACKS``). Signing in replaces it with a random
``fe_ses_`` id whose SHA-256 digest finds a ``user_sessions`` row holding the user, the data
and the lifetimes, so signing out ends the session for every copy of the cookie
(docs/SECURITY.md, "Sessions").
"""

import logging
import re
from datetime import datetime
from datetime import timedelta

from flask import g
from flask import session as current_session
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import session_json_serializer
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store.database import reading
from idp.store.models import User
from idp.store.models import UserSession
from idp.store.user_sessions import SESSION_PREFIX
from idp.store.user_sessions import live

log = logging.getLogger(__name__)

#: A session id carries 256 random bits as 43 url-safe base64 characters.
SESSION_ID_PATTERN = re.compile(SESSION_PREFIX + r"[A-Za-z0-9_-]{43}")
#: last_seen_at is written at most this often, not on every page view.
TOUCH_SECONDS = 60


class ServerSession(SecureCookieSession):
    """Flask's session dict plus the record it belongs to (``sid`` is None until sign-in)."""

    #: The raw id from the cookie; only the cookie and this request ever hold it.
    sid: str | None = None
    record_id: int | None = None
    public_id: str | None = None
    user_id: int | None = None
    #: The data as loaded, serialized, to write only what changed.
    loaded: str = ""
    #: True when last_seen_at is old enough to be written again.
    touch: bool = False
    #: True when the cookie must be set (the session began in this request).
    new: bool = False
    expires_at: datetime | None = None
    #: True when the database could not be asked; the cookie is kept untouched.
    unavailable: bool = False

    def attach(self, record: UserSession, raw: str) -> None:
        """Become the session of a record made in this request (sign-in)."""
        self.clear()
        self.sid, self.record_id, self.public_id = raw, record.id, record.public_id
        self.user_id, self.expires_at = record.user_id, record.expires_at
        self.loaded, self.new = record.data, True

    def detach(self) -> None:
        """Become an empty visitor session (sign-out); the cookie is dropped."""
        self.clear()
        self.sid = self.record_id = self.public_id = self.user_id = None
        self.new = self.touch = False
        self.modified = True


def current_user() -> User | None:
    """The signed-in user of this request, looked up once; only a live session record counts."""
    if "idp_user" not in g:
        user_id = current_session.user_id
        g.idp_user = db.session.get(User, user_id) if user_id else None
    return g.idp_user


def attach(user: User, record: UserSession, raw: str) -> None:
    """Make a committed session record this browser's session (nothing survives from before)."""
    current_session.attach(record, raw)
    g.idp_user = user


def detach() -> None:
    """Forget the session in this browser (after its record was ended, when signed in)."""
    current_session.detach()
    g.idp_user = None


#: (pattern, name) pairs tried in order: Edge and Opera also say Chrome, Chrome also Safari.
_BROWSERS = (
    (r"Edg(e|A|iOS)?/", "Edge"), (r"OPR/|Opera", "Opera"), (r"Firefox/|FxiOS/", "Firefox"),
    (r"Chrome/|CriOS/|Chromium/", "Chrome"), (r"Safari/", "Safari"),
)
_SYSTEMS = (
    (r"iPhone", "iPhone"), (r"iPad", "iPad"), (r"Android", "Android"), (r"Windows", "Windows"),
    (r"Mac OS X|Macintosh", "macOS"), (r"CrOS", "ChromeOS"), (r"Linux", "Linux"),
)


def describe_browser(user_agent: str | None) -> str:
    """A user agent as people name it ("Firefox on Linux"); the raw string when unknown."""
    agent = user_agent or ""
    browser = next((name for pattern, name in _BROWSERS if re.search(pattern, agent)), None)
    system = next((name for pattern, name in _SYSTEMS if re.search(pattern, agent)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or agent[:60] or "Unknown browser"


class ServerSessions(SecureCookieSessionInterface):
    """Flask's session interface: signed cookies for visitors, records for signed-in people."""

    # API, introspection and token calls carry no cookie: they get an empty session at once,
    # without a signer or a database lookup (docs/PERFORMANCE.md). A signed-in page view costs
    # one indexed lookup without a transaction, and a write only when the data changed or
    # last_seen_at is a minute old.
    session_class = ServerSession

    def open_session(self, app, request):
        """The record the cookie's id names, a visitor's signed cookie, or an empty session."""
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        if not value.startswith(SESSION_PREFIX):
            return super().open_session(app, request)
        return self._open_record(app, value)

    def _open_record(self, app, raw: str) -> ServerSession:
        """Load a live record by the digest of ``raw``; a refused id leaves an empty session."""
        refused = self.session_class()
        # Modified, so that an empty session deletes the dead cookie (Flask's save_session).
        refused.modified = True
        if not SESSION_ID_PATTERN.fullmatch(raw):
            return refused
        now = utcnow()
        columns = (UserSession.id, UserSession.public_id, UserSession.user_id, UserSession.data,
                   UserSession.last_seen_at, UserSession.expires_at)
        try:
            # A unique-index lookup of a digest: nothing to compare in constant time.
            with reading(db.engine) as conn:
                row = conn.execute(
                    select(*columns).where(UserSession.digest == cs.digest(raw),
                                           live(now, app.config))
                ).first()
        except SQLAlchemyError as error:
            log.warning("session lookup failed: %s", type(error).__name__)
            unavailable = self.session_class()
            unavailable.unavailable = True
            return unavailable
        if row is None:
            return refused
        session = self.session_class(session_json_serializer.loads(row.data))
        session.sid, session.record_id, session.public_id = raw, row.id, row.public_id
        session.user_id, session.expires_at, session.loaded = row.user_id, row.expires_at, row.data
        session.touch = now - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS)
        return session

    def save_session(self, app, session, response):
        """Write what changed to the record and set the cookie once; visitors as Flask does."""
        if session.unavailable:
            return
        if session.sid is None:
            super().save_session(app, session, response)
            return
        if session.accessed:
            response.vary.add("Cookie")
        data = session_json_serializer.dumps(dict(session)) if session.modified else session.loaded
        if data != session.loaded or session.touch:
            self._write(session, data)
        if session.new:
            response.set_cookie(
                self.get_cookie_name(app), session.sid, expires=session.expires_at,
                httponly=self.get_cookie_httponly(app), domain=self.get_cookie_domain(app),
                path=self.get_cookie_path(app), secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app),
                partitioned=self.get_cookie_partitioned(app),
            )

    def _write(self, session: ServerSession, data: str) -> None:
        """Store the data and the time seen; never revive a session ended meanwhile."""
        try:
            # The request's own work is committed or abandoned by now; dropping its
            # transaction frees any SQLite write lock that this write would wait for.
            db.session.rollback()
            with db.engine.begin() as conn:
                conn.execute(
                    update(UserSession)
                    .where(UserSession.id == session.record_id, UserSession.ended_at.is_(None))
                    .values(data=data, last_seen_at=utcnow())
                )
        except SQLAlchemyError as error:
            # The answer is made; a lost touch or flash is better than turning it into a 500.
            log.warning("session write failed: %s", type(error).__name__)
