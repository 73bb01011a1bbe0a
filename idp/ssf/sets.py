"""Security Event Tokens (RFC 8417) as docs/ssf.md, "The SET", describes them.

A SET is signed when it is handed out (a poll answer, a push request), never stored: a
delivery sent again is signed again, with the key current then.
"""

from datetime import datetime

from joserfc import jwt
from sqlalchemy.orm import Session

from idp.core.clock import epoch
from idp.ssf import keys
from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfEvent
from idp.store.models.ssf import SsfStream

#: RFC 8417 §2.3: the media type a SET's ``typ`` names.
TYP = "secevent+jwt"


def claims(issuer: str, stream: SsfStream, delivery: SsfDelivery, event: SsfEvent,
           now: datetime) -> dict:
    """The claims of one delivery's SET (RFC 8417 §2.2; SSF 1.0 §4 ``sub_id``)."""
    return {
        "iss": issuer,
        "jti": delivery.jti,
        "iat": epoch(now),
        "aud": stream.aud,
        # The outbox event's id: the same change carries the same txn in every stream.
        "txn": event.public_id,
        "sub_id": event.subject,
        "events": {event.event_type: event.payload},
        # Contiguous per stream from 1: a receiver that sees a gap knows it missed one.
        "stream_seq": delivery.stream_seq,
    }


def signed_set(session: Session, config, stream: SsfStream, delivery: SsfDelivery,
               event: SsfEvent, now: datetime) -> str:
    """The delivery's SET signed with the current key; notes the kid and the time on it."""
    row = keys.current_key(session, config, now)
    header = {"alg": keys.ALG, "kid": row.kid, "typ": TYP}
    token = jwt.encode(header, claims(config["IDP_ISSUER"], stream, delivery, event, now),
                       keys.private_key(row, config), algorithms=[keys.ALG])
    delivery.signed_kid = row.kid
    delivery.delivered_at = now
    return token
