"""Signed-in session records: begun at sign-in, ended at sign-out, listed in Settings.

The browser's side (the cookie, Flask's session interface) is idp/web/sessions.py; this module
only reads and writes ``user_sessions`` rows, and its callers commit.
"""

import secrets
from datetime import datetime
from datetime import timedelta

from flask.sessions import session_json_serializer
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store.models import User
from idp.store.models import UserSession

SESSION_PREFIX = "fe_ses_"
#: Longest user agent kept; enough to name the browser and system.
USER_AGENT_LENGTH = 200


def new_session_id() -> str:
    """A fresh raw session id (the cookie's value)."""
    return SESSION_PREFIX + secrets.token_urlsafe(32)


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


def purgeable(now: datetime, idle_before: datetime):
    """The purge's rule for session records: ended, past their end, or idle too long."""
    return UserSession, or_(
        UserSession.ended_at.isnot(None),
        UserSession.expires_at <= now,
        UserSession.last_seen_at <= idle_before,
    )
