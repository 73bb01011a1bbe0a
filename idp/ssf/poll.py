"""RFC 8936 poll delivery: acknowledge, sequence, answer the stream's SETs, or wait for one.

One poll is a series of *looks*. Each look is one short write transaction, run and committed
by the caller (idp/web/ssf.py, through the unit of work): it applies the acknowledgements
(first look only), runs the sequencer and signs up to ``maxEvents`` waiting deliveries. When
the first look finds nothing and the receiver did not ask to return immediately, the poll
waits (RFC 8936 §2.4 long polling) with no transaction open: between looks it sleeps and
asks one cheap read whether anything may be due, until ``IDP_SSF_LONG_POLL_SECONDS`` pass.

Stream status (SSF 1.0 §8.1.2): a *paused* stream holds its events, so its poll applies the
acknowledgements and answers no SETs (after the wait, or sooner if the stream is enabled
meanwhile); a *disabled* stream transmits and holds nothing, so polling it is a request that
cannot be served: 400 ``invalid_request``, and nothing in it is applied.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

from sqlalchemy.orm import Session

from idp.ssf.sets import signed_set
from idp.ssf.stream_errors import NotFound
from idp.ssf.streams import find
from idp.store import outbox
from idp.store import ssf_streams
from idp.store.models.ssf import POLL

#: SETs one answer holds when the receiver names no ``maxEvents``, and at most.
DEFAULT_MAX_EVENTS = 100
#: Seconds between the cheap reads of a waiting poll.
LOOK_INTERVAL = 0.08
#: Most acknowledgements and errors one request may carry (a receiver acks what it was sent).
MAX_ACKS = 1000
#: Longest ``jti``, ``err`` and ``description`` read from a request.
MAX_JTI = 64
MAX_ERR = 100
MAX_DESCRIPTION = 1000


class PollError(Exception):
    """A poll refused: RFC 8936 §2.4.4 ``{"err", "description"}`` with an HTTP status."""

    def __init__(self, status: int, err: str, description: str):
        """Refuse with ``status``, the ``err`` code and the sentence a developer reads."""
        super().__init__(description)
        self.status = status
        self.err = err
        self.description = description


@dataclass(frozen=True)
class PollRequest:
    """RFC 8936 §2.4 poll request members, validated."""

    max_events: int = DEFAULT_MAX_EVENTS
    return_immediately: bool = False
    ack: tuple[str, ...] = ()
    set_errs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PollAnswer:
    """RFC 8936 §2.5 answer: SETs by jti, and whether more are waiting."""

    sets: dict
    more_available: bool = False
    #: Nothing can come by waiting longer (the stream is paused with ``maxEvents`` 0 …).
    final: bool = False

    def body(self) -> dict:
        """The JSON body."""
        return {"sets": self.sets, "moreAvailable": self.more_available}


def _invalid(description: str) -> PollError:
    """400 invalid_request."""
    return PollError(400, "invalid_request", description)


def _jtis(value) -> tuple[str, ...]:
    """The ``ack`` member: a list of jti strings."""
    if value is None:
        return ()
    if (not isinstance(value, list) or len(value) > MAX_ACKS
            or not all(isinstance(jti, str) and 0 < len(jti) <= MAX_JTI for jti in value)):
        raise _invalid(f"ack must be a list of at most {MAX_ACKS} jti strings.")
    return tuple(value)


def _set_errs(value) -> dict:
    """The ``setErrs`` member: jti -> {"err", "description"} (RFC 8936 §2.4)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ACKS:
        raise _invalid("setErrs must be an object of jti -> {err, description}.")
    errors = {}
    for jti, error in value.items():
        if (not 0 < len(jti) <= MAX_JTI or not isinstance(error, dict)
                or not isinstance(error.get("err"), str)
                or not isinstance(error.get("description", ""), str)):
            raise _invalid("setErrs must be an object of jti -> {err, description}.")
        err, description = error["err"][:MAX_ERR], error.get("description", "")
        errors[jti] = f"{err}: {description[:MAX_DESCRIPTION]}" if description else err
    return errors


def parse(body) -> PollRequest:
    """RFC 8936 §2.4 request members; unknown ones are ignored."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    max_events = body.get("maxEvents", DEFAULT_MAX_EVENTS)
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0:
        raise _invalid("maxEvents must be a whole number, 0 or more.")
    immediately = body.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise _invalid("returnImmediately must be true or false.")
    return PollRequest(max_events=min(max_events, DEFAULT_MAX_EVENTS),
                       return_immediately=immediately, ack=_jtis(body.get("ack")),
                       set_errs=_set_errs(body.get("setErrs")))


def look(session: Session, config, server: str, stream_id: str, request: PollRequest,
         now: datetime, *, first: bool) -> PollAnswer:
    """One look, in the caller's write transaction: acknowledgements on the ``first`` look,
    then the sequencer, then up to ``max_events`` SETs signed now."""
    try:
        stream = find(session, server, stream_id)
    except NotFound:
        raise PollError(404, "not_found", "There is no stream with this id.") from None
    if stream.delivery_method != POLL:
        raise _invalid("This stream is delivered by push, not poll.")
    if stream.status == "disabled":
        if first:
            raise _invalid("The stream is disabled: enable it to receive events.")
        return PollAnswer({}, final=True)
    if first:
        outbox.acknowledge(session, stream.id, request.ack, now)
        for jti, error in request.set_errs.items():
            outbox.record_error(session, stream.id, jti, error, now)
        # The inactivity purge measures from here; later looks of the same poll add nothing.
        stream.last_polled_at = now
    if request.max_events == 0:
        return PollAnswer({}, final=True)
    if stream.status != "enabled":
        return PollAnswer({})
    outbox.sequence(session, now)
    rows = outbox.pending(session, stream.id, request.max_events + 1)
    sets = {delivery.jti: signed_set(session, config, stream, delivery, event, now)
            for delivery, event in rows[:request.max_events]}
    if sets:
        stream.last_delivery_at = now
    return PollAnswer(sets, more_available=len(rows) > request.max_events)


def due(conn, stream_id: str) -> bool:
    """Whether a look may find something now (one read on ``conn``, no transaction)."""
    return ssf_streams.due(conn, stream_id)


def wait(request: PollRequest, look_once: Callable[[bool], PollAnswer],
         due: Callable[[], bool], seconds: float, *, clock=time.monotonic,
         sleep=time.sleep) -> PollAnswer:
    """The whole poll: a first look, then, when it found nothing and the receiver may wait,
    a look whenever ``due()`` says one may find something, until ``seconds`` pass.

    ``look_once(first)`` runs and commits one look; ``due()`` is a read without a
    transaction. Nothing is held while sleeping.
    """
    answer = look_once(True)
    if answer.sets or answer.final or request.return_immediately:
        return answer
    deadline = clock() + seconds
    while (left := deadline - clock()) > 0:
        sleep(min(LOOK_INTERVAL, left))
        if due():
            answer = look_once(False)
            if answer.sets or answer.final:
                return answer
    return answer
