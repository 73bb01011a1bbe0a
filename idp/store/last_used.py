"""Remember when, and from where, an API key or a connection was last used (SPEC §6).

A write per API call would make every read a write, so a credential is written at most once
per ``IDP_LAST_USED_INTERVAL`` seconds: the lookup already told us the stored time, this
process remembers its own recent writes, and the UPDATE itself is conditional, so several
processes racing on one credential still write once. The store only claims and writes; the
web layer commits that write in its own short transaction.
"""

import threading
from collections import OrderedDict
from datetime import datetime
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp.core.credentials import Credential
from idp.store.models import ApiKey
from idp.store.models import Connection

#: How many credentials this process remembers; the oldest are forgotten first.
MAX_REMEMBERED = 10_000
#: Longest address stored (the column's width).
MAX_IP_LENGTH = 64

_lock = threading.Lock()
#: Public id of a credential -> when this process last wrote (or tried to write) it.
_written: OrderedDict[str, datetime] = OrderedDict()


def claim(credential: Credential, now: datetime, interval_seconds: int) -> bool:
    """True when this request should write; at most one claim per credential per interval."""
    interval = timedelta(seconds=interval_seconds)
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


def write(
    session: Session, credential: Credential, now: datetime, interval_seconds: int,
    ip: str | None = None,
) -> bool:
    """Record a use at ``now`` (and ``ip`` when known); True if a row was written.

    The UPDATE is conditional, so a stale view never writes inside the interval. The caller
    claimed the write first and commits it (idp/web/unit_of_work.py ``record_use``).
    """
    model = ApiKey if credential.kind == "api_key" else Connection
    values = {"last_used_at": now}
    if ip:
        values["last_used_ip"] = ip[:MAX_IP_LENGTH]
    result = session.execute(
        update(model)
        .where(model.id == credential.row_id)
        .where(or_(model.last_used_at.is_(None),
                   model.last_used_at < now - timedelta(seconds=interval_seconds)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def forget() -> None:
    """Drop this process's memory of recent writes (tests)."""
    with _lock:
        _written.clear()
