"""The one place the web layer commits: a unit of work around a request's changes.

Views open it; the store and the OAuth hooks below them read, lock and write but never
commit, so a request's changes land together or not at all.
"""

import logging
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.core.credentials import Credential
from idp.infra.extensions import db
from idp.store import last_used
from idp.store.database import begin_write

log = logging.getLogger(__name__)


@contextmanager
def changes(*, lock_first: bool = True):
    """Run the block as one write transaction: committed when it ends, else rolled back.

    ``lock_first`` takes the write lock before the first read (SQLite; PostgreSQL callers take
    row locks), for blocks that read what they are about to change.
    """
    if lock_first:
        begin_write(db.session)
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        # Also when the commit itself fails (a constraint, a lost connection): the session is
        # left clean for the page that answers the failure.
        db.session.rollback()
        raise


def commit() -> None:
    """Commit what the request has written so far (for flows whose writes are not one block,
    such as a refusal that must still record what it saw)."""
    db.session.commit()


def record_use(session: Session, credential: Credential, now: datetime, interval_seconds: int,
               ip: str | None = None) -> bool:
    """Write a credential's last use in its own short transaction; True if a row was written.

    Costs nothing but the in-process claim when no write is due (idp/store/last_used.py), and
    never fails the request it serves: a use that cannot be written now is written again after
    the interval.
    """
    if not last_used.claim(credential, now, interval_seconds):
        return False
    try:
        # End the read transaction first: on SQLite a reader upgraded to a writer fails at
        # once when another process wrote meanwhile, while a fresh transaction just waits.
        session.commit()
        written = last_used.write(session, credential, now, interval_seconds, ip)
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        log.warning("could not record last use of %s: %s", credential.rate_key,
                    type(error).__name__)
        return False
    return written
