"""The one place the web layer commits: a unit of work around a request's changes.

Views open it; the store and the OAuth hooks below them read, lock and write but never
commit, so a request's changes land together or not at all.
"""

from contextlib import contextmanager

from idp.infra.extensions import db
from idp.store.database import begin_write


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
