"""Signed-in sessions kept on the server: the cookie holds a random id, the database its digest.

A visitor who has not signed in keeps Flask's signed cookie (it holds nothing but a CSRF token
and a flash or two, and honours ``SECRET_KEY_FALLBACKS``). Signing in replaces it with a random
``fe_ses_`` id whose SHA-256 digest finds a ``user_sessions`` row holding the user, the data
and the lifetimes, so signing out ends the session for every copy of the cookie
(docs/SECURITY.md, "Sessions").
"""

import logging
import re
import secrets
from datetime import datetime
from datetime import timedelta

from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import session_json_serializer
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store.database import reading
from idp.store.models import User
from idp.store.models import UserSession

log = logging.getLogger(__name__)

SESSION_PREFIX = "fe_ses_"
#: A session id carries 256 random bits as 43 url-safe base64 characters.
SESSION_ID_PATTERN = re.compile(r"fe_ses_[A-Za-z0-9_-]{43}")
#: last_seen_at is written at most this often, not on every page view.
TOUCH_SECONDS = 60
#: Longest user agent kept; enough to name the browser and system.
USER_AGENT_LENGTH = 200


def new_session_id() -> str:
    """A fresh raw session id (the cookie's value)."""
    return SESSION_PREFIX + secrets.token_urlsafe(32)


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


def lifetimes(config: dict) -> tuple[timedelta, timedelta]:
    """The idle and absolute limits of a session."""
    return (timedelta(seconds=config["IDP_SESSION_IDLE_SECONDS"]),
            timedelta(seconds=config["IDP_SESSION_MAX_SECONDS"]))


def live(now: datetime, config: dict):
    """The condition a live session meets: not ended, not idle too long, before its end."""
    idle, _ = lifetimes(config)
    return (UserSession.ended_at.is_(None) & (UserSession.expires_at > now)
            & (UserSession.last_seen_at > now - idle))


def start(db_session: Session, user: User, now: datetime, config: dict,
          user_agent: str | None, ip: str | None) -> tuple[UserSession, str]:
    """Add a session record for the user; return it and the raw id for the cookie."""
    raw = new_session_id()
    _, longest = lifetimes(config)
    record = UserSession(
        public_id=cs.new_public_id("ses_"), digest=cs.digest(raw), user_id=user.id,
        data=session_json_serializer.dumps({}), created_at=now, last_seen_at=now,
        expires_at=now + longest, user_agent=(user_agent or "")[:USER_AGENT_LENGTH] or None,
        ip=ip,
    )
    db_session.add(record)
    db_session.flush()
    return record, raw


def end(db_session: Session, user_id: int, now: datetime, *, only: int | None = None,
        keep: int | None = None) -> int:
    """End the user's live sessions (``only`` one of them, or all but ``keep``); count them."""
    query = (update(UserSession)
             .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
             .values(ended_at=now).execution_options(synchronize_session=False))
    if only is not None:
        query = query.where(UserSession.id == only)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    return db_session.execute(query).rowcount


def listing(db_session: Session, user_id: int, now: datetime, config: dict) -> list[UserSession]:
    """The user's live sessions, most recently seen first."""
    return list(db_session.scalars(
        select(UserSession).where(UserSession.user_id == user_id, live(now, config))
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    ))


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
