"""Password reset links: single use, short-lived, stored as SHA-256 digests (SPEC §6).

The raw token (``fe_pr_`` + 256 random bits) exists only in the mail and in the short-lived
cookie the reset page keeps it in; the ``password_resets`` row holds its digest, found by a
unique index, so a copy of the database yields no working link.
"""

import secrets
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store.models import PasswordReset
from idp.store.models import User

TOKEN_PREFIX = "fe_pr_"
#: Longest token accepted before any lookup; real ones are 49 characters.
MAX_TOKEN_LENGTH = 64


def new_token() -> str:
    """A fresh raw reset token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue(db_session: Session, user: User, now: datetime, ttl: int) -> str:
    """Store the digest of a new reset token for ``user``; return the raw token."""
    raw = new_token()
    db_session.add(PasswordReset(digest=cs.digest(raw), user_id=user.id, created_at=now,
                                 expires_at=now + timedelta(seconds=ttl)))
    return raw


def find(db_session: Session, raw: str | None, now: datetime) -> PasswordReset | None:
    """The unused, unexpired reset a raw token names, or None."""
    if not raw or len(raw) > MAX_TOKEN_LENGTH or not raw.startswith(TOKEN_PREFIX):
        return None
    # A unique-index lookup of a digest: nothing to compare in constant time.
    return db_session.scalar(select(PasswordReset).where(
        PasswordReset.digest == cs.digest(raw), PasswordReset.used_at.is_(None),
        PasswordReset.expires_at > now))


def consume(db_session: Session, reset: PasswordReset, now: datetime) -> bool:
    """Mark this reset and every other open one of its user used; False if it already was.

    A conditional UPDATE, so two tabs submitting the same link cannot both succeed.
    """
    taken = db_session.execute(
        update(PasswordReset).where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return False
    db_session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == reset.user_id, PasswordReset.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    return True
