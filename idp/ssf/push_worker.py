"""The push worker's loop (``flask ssf deliver``): passes until a signal, pauses between them.

Any number of workers on any hosts may run beside each other (docs/ssf.md, "The path of one
event"); each pass is :func:`idp.ssf.push.deliver_once`. SIGTERM or SIGINT ends the loop after
the request in flight, so a worker stopped for a deploy loses nothing and holds no stream.
"""

import logging
import signal
import threading

from sqlalchemy.exc import SQLAlchemyError

from idp.ssf import keys
from idp.ssf.push import deliver_once

# The push worker's one logger, as before it was split: log settings and files name it.
log = logging.getLogger("idp.ssf.push")

#: Pause of :func:`run_forever` after a pass that delivered nothing: a new event waits half
#: of it on average, well inside the quarter second docs/ssf.md aims at.
IDLE_SECONDS = 0.1
#: Longest pause of :func:`run_forever` after passes that failed (the database is away).
FAULT_PAUSE_MAX = 5.0


def _on_signals(stop: threading.Event) -> dict:
    """Have SIGTERM and SIGINT set ``stop`` (in the main thread only); a second one acts as
    it normally would. Returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}

    def handle(signum, _frame):
        stop.set()
        signal.signal(signum, previous[signum])

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    return previous


def run_forever(source, config, now_fn, http, *, interval: float = IDLE_SECONDS,
                stop: threading.Event | None = None) -> None:
    """Run passes until SIGTERM or SIGINT (or ``stop``), pausing ``interval`` when idle.

    The request in flight is finished and its stream released before this returns. A pass
    that fails (the database away, the signing key not opening) is logged and tried again
    after a pause that grows up to FAULT_PAUSE_MAX.
    """
    stop = stop or threading.Event()
    previous = _on_signals(stop)
    faults = 0
    log.info("ssf push: delivering, %g s between idle passes", interval)
    try:
        while not stop.is_set():
            try:
                accepted = deliver_once(source, config, now_fn, http, stop=stop)
            except (SQLAlchemyError, keys.KeyUnavailable) as error:
                faults += 1
                log.warning("ssf push: pass failed (%s); trying again", type(error).__name__)
                stop.wait(min(FAULT_PAUSE_MAX, interval * 2 ** min(faults, 16)))
                continue
            faults = 0
            if not accepted:
                stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("ssf push: stopped")
