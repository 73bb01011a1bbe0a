"""The one mapping from a change to the Security Event it is told as (docs/ssf.md, "Event table").

Every kill and every restoration names its *kind*; this module turns the kind, the issuer, the
time and the public ids involved into the SET's event type, its RFC 9493 ``sub_id`` and its
event payload (CAEP 1.0 §2: ``event_timestamp``, ``initiating_entity``, ``reason_admin``, plus
our ``reason``). Pure: the store writes what it returns, the transmitter signs it.
"""

import calendar
from datetime import datetime

# The wire names have one home, shared with the kit that reads them (standard library only).
from flowestate_kit.event_types import ACCESS_PAUSED
from flowestate_kit.event_types import ACCESS_RESUMED
from flowestate_kit.event_types import CAEP  # noqa: F401  (part of this module's vocabulary)
from flowestate_kit.event_types import CREDENTIAL_CHANGE
from flowestate_kit.event_types import SESSION_REVOKED
from flowestate_kit.event_types import SSF  # noqa: F401
from flowestate_kit.event_types import STREAM_UPDATED
from flowestate_kit.event_types import VERIFICATION
from flowestate_kit.event_types import own_type

#: Connection ends, by the kind they are told as (docs/ssf.md names four).
CONNECTION_KINDS = ("disconnected", "revoked", "refresh_reuse", "code_replay")
#: Conditions that pause access until lifted, and their lifting.
PAUSED_KINDS = ("api_key_disabled", "client_disabled", "org_suspended", "membership_removed",
                "org_disallowed", "resource_server_disabled")
RESUMED_KINDS = ("api_key_enabled", "client_enabled", "org_restored", "membership_restored",
                 "org_allowed")
#: Every kind of change an event can be emitted for, in the order of the table.
KINDS = (*CONNECTION_KINDS, "api_key_disabled", "api_key_enabled", "api_key_revoked",
         "client_disabled", "client_enabled", "org_suspended", "org_restored",
         "membership_removed", "membership_restored", "org_disallowed", "org_allowed",
         "resource_server_disabled")
#: Kinds that belong to one stream and are delivered on it whatever it requested.
STREAM_KINDS = ("verification", "stream_updated")

#: A connection's ``end_reason`` -> the kind its end is told as, and who started it when the
#: kind's own default does not say. An operator's ``flask connection end`` is a revocation by
#: an administrator.
END_REASON_KINDS = {
    "disconnected": ("disconnected", None),
    "revoked_by_client": ("revoked", None),
    "refresh_reuse": ("refresh_reuse", None),
    "code_replay": ("code_replay", None),
    "operator": ("revoked", "admin"),
}

#: Subject member -> the id argument that fills it (RFC 9493 §3.2.3 complex subjects).
_MEMBERS = {"session": "connection", "user": "user", "tenant": "org", "application": "client"}
#: Kind -> the members of its complex subject, or the one id argument of its opaque subject.
_SUBJECTS = {
    **dict.fromkeys(CONNECTION_KINDS, ("session", "user", "tenant", "application")),
    **dict.fromkeys(("api_key_disabled", "api_key_enabled", "api_key_revoked"), "api_key"),
    **dict.fromkeys(("client_disabled", "client_enabled"), ("application",)),
    **dict.fromkeys(("org_suspended", "org_restored"), ("tenant",)),
    **dict.fromkeys(("membership_removed", "membership_restored"), ("user", "tenant")),
    **dict.fromkeys(("org_disallowed", "org_allowed"), ("application", "tenant")),
    "resource_server_disabled": "resource_server",
    **dict.fromkeys(STREAM_KINDS, "stream_id"),
}
#: Who starts each change when the caller does not say (CAEP 1.0 §2 ``initiating_entity``).
_INITIATORS = {
    "disconnected": "user", "revoked": "user", "refresh_reuse": "policy",
    "code_replay": "policy",
}
#: ``reason_admin`` of each kind, in English.
REASONS = {
    "disconnected": "Connection disconnected on the Connected Apps page",
    "revoked": "Connection revoked",
    "refresh_reuse": "Refresh token reused after its grace window: connection ended",
    "code_replay": "Authorization code presented again: connection ended",
    "api_key_disabled": "API key disabled",
    "api_key_enabled": "API key enabled",
    "api_key_revoked": "API key revoked",
    "client_disabled": "Connector client disabled",
    "client_enabled": "Connector client enabled",
    "org_suspended": "Organization suspended",
    "org_restored": "Organization suspension lifted",
    "membership_removed": "Membership removed",
    "membership_restored": "Membership restored",
    "org_disallowed": "Organization taken off the client's allowlist",
    "org_allowed": "Organization put back on the client's allowlist",
    "resource_server_disabled": "Resource server disabled",
}
#: CAEP 1.0 §2 values of ``initiating_entity``.
INITIATORS = ("admin", "user", "policy", "system")


def access_paused(issuer: str) -> str:
    """Our own event type: access is refused until the condition is lifted."""
    return own_type(issuer, ACCESS_PAUSED)


def access_resumed(issuer: str) -> str:
    """Our own event type: a condition that paused access was lifted."""
    return own_type(issuer, ACCESS_RESUMED)


def events_supported(issuer: str) -> list[str]:
    """Every event type a stream may request (SSF 1.0 §8.1.1 ``events_supported``).

    Verification and stream-updated are not requested: they go to their stream regardless.
    """
    return [SESSION_REVOKED, CREDENTIAL_CHANGE, access_paused(issuer), access_resumed(issuer)]


def event_type(kind: str, issuer: str) -> str:
    """The event type a kind is told as."""
    if kind in CONNECTION_KINDS:
        return SESSION_REVOKED
    if kind == "api_key_revoked":
        return CREDENTIAL_CHANGE
    if kind in PAUSED_KINDS:
        return access_paused(issuer)
    if kind in RESUMED_KINDS:
        return access_resumed(issuer)
    if kind == "verification":
        return VERIFICATION
    if kind == "stream_updated":
        return STREAM_UPDATED
    raise ValueError(f"not an event kind: {kind!r}")


def opaque(value: str) -> dict:
    """An RFC 9493 §3.2.4 opaque identifier."""
    return {"format": "opaque", "id": value}


def subject(kind: str, ids: dict) -> dict:
    """The ``sub_id`` of a kind from the public ids given; every id it needs must be given,
    and no other."""
    shape = _SUBJECTS.get(kind)
    if shape is None:
        raise ValueError(f"not an event kind: {kind!r}")
    needed = {shape} if isinstance(shape, str) else {_MEMBERS[m] for m in shape}
    if set(ids) != needed or not all(isinstance(ids[name], str) and ids[name]
                                     for name in needed):
        raise ValueError(f"{kind} needs the ids {sorted(needed)}, got {sorted(ids)}")
    if isinstance(shape, str):
        return opaque(ids[shape])
    return {"format": "complex", **{member: opaque(ids[_MEMBERS[member]]) for member in shape}}


def timestamp(now: datetime) -> int:
    """Whole Unix seconds of a naive UTC time."""
    return calendar.timegm(now.utctimetuple())


def event_for(
    kind: str,
    issuer: str,
    now: datetime,
    *,
    initiating_entity: str | None = None,
    state: str | None = None,
    status: str | None = None,
    status_reason: str | None = None,
    **ids: str,
) -> tuple[str, dict, dict]:
    """``(event_type, sub_id, payload)`` of one change, exactly as the event table says.

    ``ids`` are public ids: ``connection``, ``user``, ``org``, ``client`` (the connector's
    client_id), ``api_key``, ``resource_server``, or ``stream_id`` for the stream-only kinds;
    ``state`` (verification) and ``status``/``status_reason`` (stream-updated) are theirs.
    """
    kind_type = event_type(kind, issuer)
    sub_id = subject(kind, ids)
    if kind == "verification":
        return kind_type, sub_id, {} if state is None else {"state": state}
    if kind == "stream_updated":
        if status is None:
            raise ValueError("stream_updated needs the stream's status")
        payload = {"status": status}
        if status_reason:
            payload["reason"] = status_reason
        return kind_type, sub_id, payload
    initiator = initiating_entity or _INITIATORS.get(kind, "admin")
    if initiator not in INITIATORS:
        raise ValueError(f"not an initiating_entity: {initiator!r}")
    payload = {
        "event_timestamp": timestamp(now),
        "initiating_entity": initiator,
        "reason_admin": {"en": REASONS[kind]},
        "reason": kind,
    }
    if kind == "api_key_revoked":
        payload.update(credential_type="api-key", change_type="delete")
    return kind_type, sub_id, payload
