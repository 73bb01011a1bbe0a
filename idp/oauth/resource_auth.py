"""Resource-server authentication for introspection: one column lookup, then a short memo.

Every introspection call carries the resource server's Basic credentials, so checking them is
on the hottest path. The check reads three columns with a statement built once, and a
successful check is remembered for a few seconds per process so a busy resource server is not
looked up on every call. The price, documented in docs/SECURITY.md: a resource server that is
disabled, or whose secret is replaced, keeps working for at most ``MEMO_SECONDS`` in each
worker that has just seen it.
"""

import hmac
import threading
import time
from typing import NamedTuple

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.core import secrets as cs
from idp.store.driver import DriverStatement
from idp.store.models import ResourceServer

#: How long a successful check is trusted without asking the database again.
MEMO_SECONDS = 5.0
#: At most this many remembered checks per app; a full memo is emptied, never grown.
MEMO_SIZE = 256



class ServerRow(NamedTuple):
    """The three columns a check needs."""

    public_id: str
    secret_digest: str
    enabled: bool


#: Those columns by public client_id (built once: PERFORMANCE.md §1, §2), run on the driver's
#: cursor (idp/store/driver.py).
BY_PUBLIC_ID = DriverStatement(select(
    ResourceServer.public_id, ResourceServer.secret_digest, ResourceServer.enabled
).where(ResourceServer.public_id == bindparam("public_id")), ServerRow)


class Memo:
    """Successful checks of one app, keyed by client_id and the presented secret's digest."""

    def __init__(self, seconds: float = MEMO_SECONDS, size: int = MEMO_SIZE,
                 clock=time.monotonic):
        """An empty memo; ``seconds`` <= 0 turns it off."""
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._lock = threading.Lock()
        #: (client_id, secret digest) -> monotonic time until which the check holds.
        self._until: dict[tuple[str, str], float] = {}

    def holds(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` passed a check less than ``seconds`` ago."""
        until = self._until.get(key)
        return until is not None and until > self.clock()

    def clear(self) -> None:
        """Forget every remembered check (as if ``seconds`` had passed for all)."""
        with self._lock:
            self._until.clear()

    def remember(self, key: tuple[str, str]) -> None:
        """Trust ``key`` for ``seconds`` from now."""
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._until) >= self.size and key not in self._until:
                # Emptying bounds memory under a flood of distinct valid pairs; the next call
                # of each simply asks the database again.
                self._until.clear()
            self._until[key] = self.clock() + self.seconds


#: A memo that remembers nothing: every check with it reads the database.
NO_MEMO = Memo(seconds=0)


def check(session: Session, memo: Memo, client_id: str | None, secret: str | None) -> str | None:
    """The public id of an enabled resource server whose secret this is, else None.

    Only successes are remembered, and by the digest of the secret, never the raw value; a
    wrong secret always reaches the constant-time comparison with the stored digest.
    """
    if not secret or not cs.plausible_client_id(client_id):
        return None
    presented = cs.digest(secret)
    key = (client_id, presented)
    if memo.holds(key):
        return client_id
    row = BY_PUBLIC_ID.first(session, {"public_id": client_id})
    if row is None:
        return None
    public_id, stored, enabled = row
    if not enabled or not stored or not hmac.compare_digest(stored, presented):
        return None
    memo.remember(key)
    return public_id
