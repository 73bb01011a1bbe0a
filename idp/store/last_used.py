"""Remember when, and from where, an API key or a connection was last used (SPEC §6).

A write per API call would make every read a write, so a credential is written at most once
per ``IDP_LAST_USED_INTERVAL`` seconds: the lookup already told us the stored time, this
process remembers its own recent writes, and the UPDATE itself is conditional, so several
processes racing on one credential still write once.
"""

import logging
import threading
from collections import OrderedDict
from datetime import datetime
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.core.credentials import Credential
from idp.store.models import ApiKey
from idp.store.models import Connection

log = logging.getLogger(__name__)

#: How many credentials this process remembers; the oldest are forgotten first.
MAX_REMEMBERED = 10_000
#: Longest address stored (the column's width).
MAX_IP_LENGTH = 64

_lock = threading.Lock()
#: Public id of a credential -> when this process last wrote (or tried to write) it.
_written: OrderedDict[str, datetime] = OrderedDict()


def _claim(credential: Credential, now: datetime, interval: timedelta) -> bool:
    """True when this request should write; at most one claim per credential per interval."""
    stored = credential.last_used_at
    if stored is not None and now - stored < interval:
        return False
    name = credential.rate_key
    with _lock:
        last = _written.get(name)
        if last is not None and timedelta(0) <= now - last < interval:
            return False
        _written[name] = now
        _written.move_to_end(name)
        while len(_written) > MAX_REMEMBERED:
            _written.popitem(last=False)
    return True


def touch(
    session: Session, credential: Credential, now: datetime, interval_seconds: int,
    ip: str | None = None,
) -> bool:
    """Record a use at ``now`` (and ``ip`` when known); True if a row was written.

    Runs in its own short transaction and never fails the request it serves: bookkeeping
    that cannot be written now is simply tried again after the interval.
    """
    interval = timedelta(seconds=interval_seconds)
    if not _claim(credential, now, interval):
        return False
    model = ApiKey if credential.kind == "api_key" else Connection
    values = {"last_used_at": now}
    if ip:
        values["last_used_ip"] = ip[:MAX_IP_LENGTH]
    try:
        # End the read transaction first: on SQLite a reader upgraded to a writer fails at
        # once when another process wrote meanwhile, while a fresh transaction just waits.
        session.commit()
        result = session.execute(
            update(model)
            .where(model.id == credential.row_id)
            .where(or_(model.last_used_at.is_(None), model.last_used_at < now - interval))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        log.warning("could not record last use of %s: %s", credential.rate_key,
                    type(error).__name__)
        return False
    return result.rowcount == 1


def forget() -> None:
    """Drop this process's memory of recent writes (tests)."""
    with _lock:
        _written.clear()
