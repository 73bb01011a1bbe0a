"""Time in one form everywhere: naive UTC datetimes, as the database stores them.

Every host judges time by one clock, the database's (docs/OPERATIONS.md, "One clock"): once
``idp.store.dbclock`` has read it, :func:`utcnow` is that reading carried forward by this host's
monotonic clock, so neither the host's wall clock nor a step of it moves a decision. Until then
(and always on SQLite, which is single-host) the host's clock is the one clock.

Callers outside the core ask :func:`utcnow` and pass the result into the core. Tests move the
clock with :func:`shift` instead of sleeping; production never shifts it.
"""

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

#: This module's own reference to the monotonic clock: a test that fakes ``time.monotonic``
#: for some other module must not move every decision with it.
monotonic = time.monotonic


@dataclass(frozen=True)
class Anchor:
    """One reading of the database's clock, pinned to a moment of this host's monotonic clock."""

    #: The database's time (naive UTC) at that moment.
    database: datetime
    #: ``monotonic()`` at that moment (the midpoint of the round trip).
    monotonic: float
    #: This host's wall clock minus the database's, in seconds, at that moment.
    host_offset: float


#: Added to the time; only tests change it.
_offset = timedelta(0)
#: The latest reading of the database's clock; None while the host's clock is the one clock.
_anchor: Anchor | None = None
#: Takes a first reading when time is asked for before any was taken (a CLI command's first
#: act), so that nothing is stamped by the host's clock; set by idp.store.dbclock, called once.
_first_reading: Callable[[], None] | None = None


def host_now() -> datetime:
    """This host's wall clock as a naive UTC datetime (drift reports only, never decisions)."""
    return datetime.now(UTC).replace(tzinfo=None)


def utcnow() -> datetime:
    """The current time as a naive UTC datetime, by the one clock every host shares."""
    anchor = _anchor
    if anchor is None and _first_reading is not None:
        anchor = _take_first_reading()
    if anchor is None:
        return host_now() + _offset
    return anchor.database + timedelta(seconds=monotonic() - anchor.monotonic) + _offset


def _take_first_reading() -> Anchor | None:
    """Run the first-reading hook once (other threads meanwhile use the host's clock)."""
    global _first_reading
    take, _first_reading = _first_reading, None
    if take is not None:
        take()
    return _anchor


def on_first_use(take_reading: Callable[[], None] | None) -> None:
    """Have ``take_reading`` anchor the clock if time is asked for before any reading."""
    global _first_reading
    _first_reading = take_reading


def anchor(reading: Anchor) -> None:
    """Judge time by this reading of the database's clock from now on."""
    global _anchor
    _anchor = reading


def current_anchor() -> Anchor | None:
    """The reading in use, or None while the host's clock is the one clock."""
    return _anchor


def unanchor() -> None:
    """Go back to the host's clock (a process that moves to a single-host database; tests)."""
    global _anchor
    _anchor = None


def shift(seconds: float) -> None:
    """Move this process's clock forward (or back) by ``seconds``; for tests."""
    global _offset
    _offset += timedelta(seconds=seconds)


def reset() -> None:
    """Undo every :func:`shift`; the reading of the database's clock stays."""
    global _offset
    _offset = timedelta(0)


def epoch(moment: datetime) -> int:
    """Seconds since the epoch for a naive UTC datetime (RFC 7662 ``exp``/``iat``)."""
    return calendar.timegm(moment.utctimetuple())
