"""What each event of the transmitter's table (docs/ssf.md, "Event table") does to the kit.

One function, :func:`actions`, turns a verified event into what the receiver does: evict the
active verdicts a subject names (a :class:`~flowestate_kit.cache.Match`), forget everything,
forget refusals, or note a verification or a stream status. Subjects are RFC 9493
identifiers: ``opaque`` ids (``key_…``, ``con_…``, ``org_…``, ``usr_…``, or this resource
server's own client_id) and ``complex`` ones whose members (``session``, ``user``,
``tenant``, ``application``) are opaque ids; a complex subject names the verdicts that match
every member present.
"""

from dataclasses import dataclass

from flowestate_kit.cache import Match
from flowestate_kit.event_types import ACCESS_PAUSED
from flowestate_kit.event_types import ACCESS_RESUMED
from flowestate_kit.event_types import CREDENTIAL_CHANGE
from flowestate_kit.event_types import SESSION_REVOKED
from flowestate_kit.event_types import STREAM_UPDATED
from flowestate_kit.event_types import VERIFICATION
from flowestate_kit.event_types import own_type
from flowestate_kit.sets import SecurityEvent
from flowestate_kit.sets import SetRejected

#: Complex-subject member -> the Bearer field its id is (docs/ssf.md).
MEMBERS = {"session": "connection_id", "user": "user_id", "tenant": "org_id",
           "application": "client_id"}
#: Opaque id prefix -> the Bearer field it is (SPEC §1 public ids).
PREFIXES = {"con_": "connection_id", "key_": "key_id", "org_": "org_id", "usr_": "user_id"}
#: Every id this resource server may be named by that is not its own client_id.
OTHER_SERVER_PREFIX = "rs_"

#: Forget every verdict: the event names this resource server itself.
EVERYTHING = "everything"
#: Forget every cached refusal: something was restored.
REFUSALS = "refusals"
#: Nothing to do.
NOTHING = "nothing"


@dataclass(frozen=True)
class Verified:
    """A verification event came back with this ``state`` (SSF 1.0 §8.1.4)."""

    state: str


@dataclass(frozen=True)
class StreamStatus:
    """The transmitter changed the stream's status (SSF 1.0 §8.1.5)."""

    status: str
    reason: str | None


def requested(issuer: str) -> list[str]:
    """The event types a receiver asks for when it creates its stream."""
    return [SESSION_REVOKED, CREDENTIAL_CHANGE, own_type(issuer, ACCESS_PAUSED),
            own_type(issuer, ACCESS_RESUMED)]


def actions(event: SecurityEvent, issuer: str, client_id: str) -> list:
    """What to do for each event of a verified SET, in order; SetRejected when an event the
    table names carries a subject it cannot map (RFC 8935 ``invalid_request``)."""
    paused, resumed = own_type(issuer, ACCESS_PAUSED), own_type(issuer, ACCESS_RESUMED)
    done = []
    for event_type, payload in event.events.items():
        if event_type == SESSION_REVOKED:
            done.append(_subject(event.sub_id, client_id, session_only=True))
        elif event_type in (CREDENTIAL_CHANGE, paused):
            done.append(_subject(event.sub_id, client_id))
        elif event_type == resumed:
            done.append(REFUSALS)
        elif event_type == VERIFICATION:
            state = payload.get("state")
            done.append(Verified(state) if isinstance(state, str) else NOTHING)
        elif event_type == STREAM_UPDATED:
            status, reason = payload.get("status"), payload.get("reason")
            if not isinstance(status, str):
                raise SetRejected("invalid_request", "stream-updated without a status")
            done.append(StreamStatus(status, reason if isinstance(reason, str) else None))
        else:
            done.append(NOTHING)  # a type we never asked for: nothing of ours to drop
    return done


def _subject(sub_id: dict, client_id: str, session_only: bool = False):
    """The Match (or EVERYTHING, or NOTHING) a revoking event's subject names."""
    if sub_id.get("format") == "opaque":
        value = sub_id.get("id")
        if isinstance(value, str) and value == client_id:
            return EVERYTHING
        for prefix, name in PREFIXES.items():
            if isinstance(value, str) and value.startswith(prefix) and len(value) > len(prefix):
                return Match(**{name: value})
        if isinstance(value, str) and value.startswith(OTHER_SERVER_PREFIX):
            return NOTHING  # another resource server's own switch: none of our verdicts
        raise SetRejected("invalid_request", "an opaque subject the kit cannot map")
    if sub_id.get("format") == "complex":
        ids = {}
        for member, name in MEMBERS.items():
            value = sub_id.get(member)
            if value is None:
                continue
            if not (isinstance(value, dict) and value.get("format") == "opaque"
                    and isinstance(value.get("id"), str) and value["id"]):
                raise SetRejected("invalid_request", f"the {member} member is not opaque")
            ids[name] = value["id"]
        if session_only and "connection_id" in ids:
            # CAEP session-revoked ends exactly that connection; the other members only
            # describe it (and narrowing by them could miss a verdict lacking one).
            return Match(connection_id=ids["connection_id"])
        if ids:
            return Match(**ids)
    raise SetRejected("invalid_request", "a subject the kit cannot map")
