"""Time in one form everywhere: naive UTC datetimes, as the database stores them."""

import calendar
from datetime import UTC
from datetime import datetime


def utcnow() -> datetime:
    """The current time as a naive UTC datetime."""
    return datetime.now(UTC).replace(tzinfo=None)


def epoch(moment: datetime) -> int:
    """Seconds since the epoch for a naive UTC datetime (RFC 7662 ``exp``/``iat``)."""
    return calendar.timegm(moment.utctimetuple())
