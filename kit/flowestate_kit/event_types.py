"""The Security Event types the IdP sends and the kit understands (docs/ssf.md, "Event table").

One home for the wire names both sides use: the IdP's mapping (``idp.core.ssf_events``) builds
its SETs from them and the kit's handling (:mod:`flowestate_kit.events`) reads SETs by them.
Standard library only, like :mod:`flowestate_kit.answers`, so the IdP's pure core may import it.
"""

#: CAEP 1.0 and SSF 1.0 event-type prefixes.
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
#: CAEP 1.0 §3.1: a session (for us, a connection) was revoked.
SESSION_REVOKED = CAEP + "session-revoked"
#: CAEP 1.0 §3.3: a credential was created, changed, revoked or deleted.
CREDENTIAL_CHANGE = CAEP + "credential-change"
#: SSF 1.0 §8.1.4.1 and §8.1.5: events about the stream itself, sent on that stream only.
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"
#: The transmitter's own types, under its issuer: access stopped until lifted, and lifted.
ACCESS_PAUSED = "access-paused"
ACCESS_RESUMED = "access-resumed"


def own_type(issuer: str, name: str) -> str:
    """The URI of one of the transmitter's own event types (``{issuer}/ssf/event-type/…``)."""
    return f"{issuer}/ssf/event-type/{name}"
