"""Time in one form everywhere: naive UTC datetimes, as the database stores them.

Callers outside the core ask :func:`utcnow` and pass the result into the core. Tests move the
clock with :func:`shift` instead of sleeping; production never shifts it.
"""

import calendar
from datetime import UTC
from datetime import datetime
from datetime import timedelta

#: Added to the real time; only tests change it.
_offset = timedelta(0)


def utcnow() -> datetime:
    """The current time as a naive UTC datetime."""
    return datetime.now(UTC).replace(tzinfo=None) + _offset


def shift(seconds: float) -> None:
    """Move this process's clock forward (or back) by ``seconds``; for tests."""
    global _offset
    _offset += timedelta(seconds=seconds)


def reset() -> None:
    """Put this process's clock back to real time."""
    global _offset
    _offset = timedelta(0)


def epoch(moment: datetime) -> int:
    """Seconds since the epoch for a naive UTC datetime (RFC 7662 ``exp``/``iat``)."""
    return calendar.timegm(moment.utctimetuple())
