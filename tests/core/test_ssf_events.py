"""The event table of docs/ssf.md, one row per kind, checked against idp.core.ssf_events."""

from datetime import datetime

import pytest

from idp.core import ssf_events

ISSUER = "https://idp.flowestate.example"
NOW = datetime(2026, 11, 28, 12, 0, 5, 900000)
PAUSED = f"{ISSUER}/ssf/event-type/access-paused"
RESUMED = f"{ISSUER}/ssf/event-type/access-resumed"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
IDS = {"connection": "con_1", "user": "usr_1", "org": "org_1", "client": "cli_1",
       "api_key": "key_1", "resource_server": "rs_1"}


def opaque(value):
    """An RFC 9493 opaque identifier."""
    return {"format": "opaque", "id": value}


def complex_(**members):
    """An RFC 9493 complex identifier of opaque members."""
    return {"format": "complex", **{name: opaque(value) for name, value in members.items()}}


SESSION = complex_(session="con_1", user="usr_1", tenant="org_1", application="cli_1")

#: docs/ssf.md "Event table": kind, the ids it takes, event type, sub_id, who starts it.
TABLE = [
    ("disconnected", ("connection", "user", "org", "client"), CAEP + "session-revoked",
     SESSION, "user"),
    ("revoked", ("connection", "user", "org", "client"), CAEP + "session-revoked",
     SESSION, "user"),
    ("refresh_reuse", ("connection", "user", "org", "client"), CAEP + "session-revoked",
     SESSION, "policy"),
    ("code_replay", ("connection", "user", "org", "client"), CAEP + "session-revoked",
     SESSION, "policy"),
    ("api_key_disabled", ("api_key",), PAUSED, opaque("key_1"), "admin"),
    ("api_key_enabled", ("api_key",), RESUMED, opaque("key_1"), "admin"),
    ("api_key_revoked", ("api_key",), CAEP + "credential-change", opaque("key_1"), "admin"),
    ("client_disabled", ("client",), PAUSED, complex_(application="cli_1"), "admin"),
    ("client_enabled", ("client",), RESUMED, complex_(application="cli_1"), "admin"),
    ("org_suspended", ("org",), PAUSED, complex_(tenant="org_1"), "admin"),
    ("org_restored", ("org",), RESUMED, complex_(tenant="org_1"), "admin"),
    ("membership_removed", ("user", "org"), PAUSED, complex_(user="usr_1", tenant="org_1"),
     "admin"),
    ("membership_restored", ("user", "org"), RESUMED, complex_(user="usr_1", tenant="org_1"),
     "admin"),
    ("org_disallowed", ("client", "org"), PAUSED,
     complex_(application="cli_1", tenant="org_1"), "admin"),
    ("org_allowed", ("client", "org"), RESUMED,
     complex_(application="cli_1", tenant="org_1"), "admin"),
    ("resource_server_disabled", ("resource_server",), PAUSED, opaque("rs_1"), "admin"),
]


def test_the_table_covers_every_kind():
    assert [row[0] for row in TABLE] == list(ssf_events.KINDS)


@pytest.mark.parametrize("kind, ids, event_type, sub_id, initiator", TABLE,
                         ids=[row[0] for row in TABLE])
def test_each_kind_is_told_as_the_table_says(kind, ids, event_type, sub_id, initiator):
    told_type, told_subject, payload = ssf_events.event_for(
        kind, ISSUER, NOW, **{name: IDS[name] for name in ids})
    assert told_type == event_type
    assert told_subject == sub_id
    expected = {"event_timestamp": 1795867205, "initiating_entity": initiator,
                "reason_admin": {"en": ssf_events.REASONS[kind]}, "reason": kind}
    if kind == "api_key_revoked":
        expected.update(credential_type="api-key", change_type="delete")
    assert payload == expected
    assert told_type in ssf_events.events_supported(ISSUER)


def test_the_caller_may_say_who_started_a_change():
    _, _, payload = ssf_events.event_for("disconnected", ISSUER, NOW, initiating_entity="admin",
                                         connection="con_1", user="usr_1", org="org_1",
                                         client="cli_1")
    assert payload["initiating_entity"] == "admin"


@pytest.mark.parametrize("kind, ids", [
    ("api_key_revoked", {}),
    ("api_key_revoked", {"api_key": "key_1", "org": "org_1"}),
    ("org_disallowed", {"client": "cli_1"}),
    ("disconnected", {"connection": "con_1", "user": "usr_1", "org": "org_1", "client": ""}),
    ("no_such_kind", {"api_key": "key_1"}),
], ids=["missing", "extra", "partial", "empty", "unknown kind"])
def test_wrong_ids_or_kinds_are_refused(kind, ids):
    with pytest.raises(ValueError):
        ssf_events.event_for(kind, ISSUER, NOW, **ids)


def test_an_unknown_initiator_is_refused():
    with pytest.raises(ValueError, match="initiating_entity"):
        ssf_events.event_for("api_key_disabled", ISSUER, NOW, api_key="key_1",
                             initiating_entity="robot")


def test_stream_only_events_carry_their_own_payloads():
    assert ssf_events.event_for("verification", ISSUER, NOW, stream_id="str_1", state="xyz") \
        == (ssf_events.VERIFICATION, opaque("str_1"), {"state": "xyz"})
    assert ssf_events.event_for("verification", ISSUER, NOW, stream_id="str_1")[2] == {}
    assert ssf_events.event_for("stream_updated", ISSUER, NOW, stream_id="str_1",
                                status="paused", status_reason="maintenance") \
        == (ssf_events.STREAM_UPDATED, opaque("str_1"),
            {"status": "paused", "reason": "maintenance"})
    with pytest.raises(ValueError, match="status"):
        ssf_events.event_for("stream_updated", ISSUER, NOW, stream_id="str_1")


def test_every_connection_end_reason_has_a_kind():
    # idp/store/connections.py ends connections with these reasons (and the CLI's "operator").
    for reason, (kind, initiator) in ssf_events.END_REASON_KINDS.items():
        assert kind in ssf_events.CONNECTION_KINDS, reason
        assert initiator in (None, *ssf_events.INITIATORS)
    assert ssf_events.END_REASON_KINDS["operator"] == ("revoked", "admin")


def test_supported_types_are_the_four_change_types():
    assert ssf_events.events_supported(ISSUER) == [
        CAEP + "session-revoked", CAEP + "credential-change", PAUSED, RESUMED]
