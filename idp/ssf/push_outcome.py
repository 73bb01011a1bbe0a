"""What one push's outcome does to its stream: recorded, and the queue goes on or stops.

A 202 acknowledges the delivery and a refusal records it, and the queue moves on
(:func:`answered`); any other outcome stops the stream there, keeping its order, counts a
failure and sets the time of the next try by :func:`backoff` (:func:`failed`).
idp/ssf/push_request.py says which outcome an answer is.
"""

import logging
import random
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.ssf import push_request
from idp.ssf.push_lease import Item
from idp.ssf.push_lease import Lease
from idp.ssf.push_lease import Settings
from idp.store import outbox
from idp.store import ssf_push
from idp.store.database import begin_write
from idp.store.models.ssf import SsfStream

# The push worker's one logger, as before it was split: log settings and files name it.
log = logging.getLogger("idp.ssf.push")

#: The first retry's pause in seconds; it doubles with every further failure, up to
#: ``IDP_SSF_PUSH_BACKOFF_MAX``.
BACKOFF_BASE_SECONDS = 1.0


def backoff(failures: int, backoff_max: float, rand=random.random) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``base·2^(failures-1)``, at most
    ``backoff_max``, less up to half of it at random, so that streams which failed together
    (one receiver behind several of them) are not all tried again at the same moment."""
    delay = min(backoff_max, BACKOFF_BASE_SECONDS * 2 ** min(failures - 1, 32))
    return delay * (0.5 + 0.5 * rand())


def answered(session: Session, settings: Settings, lease: Lease, item: Item,
             answer: push_request.Answer, now_fn) -> bool:
    """Record a 202 or a refusal; whether this worker still holds the stream and goes on."""
    begin_write(session)
    now = now_fn()
    until = now + settings.lease
    ssf_push.attempted(session, item.delivery_id)
    if answer.refusal is None:
        outbox.acknowledge(session, lease.stream_id, [item.jti], now)
    else:
        outbox.record_error(session, lease.stream_id, item.jti, answer.refusal, now)
    ssf_push.answered(session, lease.stream_id, lease.until, now, refusal=answer.refusal)
    held = ssf_push.extend(session, lease.stream_id, lease.until, until)
    session.commit()
    if held:
        lease.until = until
    log.log(logging.DEBUG if answer.refusal is None else logging.INFO,
            "ssf push: stream %s seq %d answered %d%s (attempt %d)", lease.public_id,
            item.stream_seq, answer.status, "" if answer.refusal is None else ", refused",
            item.attempt)
    return held


def failed(session: Session, settings: Settings, lease: Lease, item: Item | None, problem: str,
           now_fn) -> None:
    """Stop the stream here: one more failure, its reason, and the time of the next try."""
    begin_write(session)
    now = now_fn()
    failures = session.scalar(
        select(SsfStream.failures).where(SsfStream.id == lease.stream_id))
    if failures is None:
        # The receiver deleted the stream meanwhile: nothing to retry.
        session.rollback()
        return
    failures += 1
    pause = backoff(failures, settings.backoff_max)
    if item is not None:
        ssf_push.attempted(session, item.delivery_id)
    ssf_push.failed(session, lease.stream_id, lease.until, error=problem, now=now,
                    retry_at=now + timedelta(seconds=pause))
    session.commit()
    log.warning("ssf push: stream %s seq %s failed: %s (attempt %s, failure %d); next try "
                "in %.1f s", lease.public_id, item.stream_seq if item else "-", problem,
                item.attempt if item else "-", failures, pause)
