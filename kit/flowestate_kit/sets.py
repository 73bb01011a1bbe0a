"""Verify a Security Event Token (RFC 8417) as docs/ssf.md, "The SET", makes them.

A SET is accepted only when every check holds: a compact JWS whose header says
``typ`` ``secevent+jwt`` and ``alg`` ``ES256`` (nothing else, so no ``none`` and no key
confusion), signed by a key of the transmitter's JWKS named by ``kid``, with ``iss`` the
transmitter's issuer, ``aud`` this resource server's client_id, and the claims the contract
names (``jti``, ``iat``, ``sub_id``, ``events``, ``stream_seq``). A refusal carries the RFC 8935
§2.4 error code the receiver answers with (a poll's ``setErrs``, a push's 400).

joserfc is imported here only: it is the ``ssf`` extra, needed by a service with a stream.
"""

import base64
import binascii
import json
import threading
from dataclasses import dataclass

#: RFC 8417 §2.3; RFC 7515 §4.1.9 lets ``typ`` drop the ``application/`` and ignores case.
SET_TYPES = ("secevent+jwt", "application/secevent+jwt")
#: RFC 7518 §3.4: the one algorithm the transmitter signs with (docs/ssf.md).
ALG = "ES256"


class SetRejected(Exception):
    """A SET that must not be acted on, with its RFC 8935 §2.4 ``err`` code."""

    def __init__(self, err: str, description: str):
        """Carry the error code and a plain sentence (never the token itself)."""
        super().__init__(f"{err}: {description}")
        self.err = err
        self.description = description

    def as_dict(self) -> dict:
        """The ``{"err", "description"}`` object of RFC 8935 §2.3 and RFC 8936 §2.4."""
        return {"err": self.err, "description": self.description}


class KeysUnavailable(Exception):
    """The transmitter's keys could not be fetched now: retry the SET later, do not refuse it."""


@dataclass(frozen=True)
class SecurityEvent:
    """The verified claims of one SET."""

    jti: str
    iat: int | float
    stream_seq: int
    sub_id: dict
    events: dict
    txn: str | None = None


def jose():
    """The joserfc modules the verification needs, or an ImportError saying how to get them."""
    try:
        from joserfc import jws
        from joserfc.jwk import ECKey
    except ImportError as error:
        raise ImportError("the SSF receiver needs joserfc: install flowestate-kit[ssf]"
                          ) from error
    return jws, ECKey


def _part(segment: str) -> dict:
    """Decode one base64url JSON segment of a compact JWS; SetRejected when it is not one."""
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise SetRejected("invalid_request", "not a compact JWS") from None
    if not isinstance(value, dict):
        raise SetRejected("invalid_request", "not a compact JWS")
    return value


class Verifier:
    """Check SETs against the transmitter's issuer, keys and this receiver's audience."""

    def __init__(self, issuer: str, audience: str, fetch_keys, clock,
                 refetch_interval: float = 30):
        """``fetch_keys()`` returns the JWKS (a dict) or raises KeysUnavailable; it is called
        at most once per ``refetch_interval`` seconds of ``clock``, when a kid is unknown."""
        self.jws, self.key_class = jose()
        self.issuer = issuer
        self.audience = audience
        self.fetch_keys = fetch_keys
        self.clock = clock
        self.refetch_interval = refetch_interval
        self.keys: dict[str, object] = {}
        self._fetched_at: float | None = None
        #: kids asked about and absent from the latest fetch
        self._missing: set[str] = set()
        self._lock = threading.Lock()

    def verify(self, token) -> SecurityEvent:
        """The verified event; SetRejected when it must be refused, KeysUnavailable when the
        keys needed to tell could not be fetched."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise SetRejected("invalid_request", "not a compact JWS")
        header = _part(token.split(".", 1)[0])
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in SET_TYPES:
            raise SetRejected("invalid_request", "typ is not secevent+jwt")
        if header.get("alg") != ALG:
            raise SetRejected("invalid_key", "alg is not ES256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SetRejected("invalid_key", "no kid")
        key = self.key(kid)
        try:
            signed = self.jws.extract_compact(token.encode("ascii"))
            valid = self.jws.validate_compact(signed, key, algorithms=[ALG])
        except Exception:  # joserfc raises many kinds for a damaged token; all mean refuse
            valid = False
        if not valid:
            raise SetRejected("invalid_key", "signature does not verify")
        try:
            claims = json.loads(signed.payload)
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise SetRejected("invalid_request", "claims are not a JSON object")
        return self._event(claims)

    def key(self, kid: str):
        """The public key named ``kid``, refetching the JWKS (bounded) when it is unknown.

        A kid absent from the latest fetch is refused at once; one not asked about since
        then waits (KeysUnavailable) until a refetch is allowed again, so a key made since
        the last fetch is never refused and a made-up kid costs at most one fetch per
        ``refetch_interval``.
        """
        with self._lock:
            if kid in self.keys:
                return self.keys[kid]
            if kid in self._missing:
                raise SetRejected("invalid_key", "unknown kid")
            now = self.clock()
            if self._fetched_at is not None and now - self._fetched_at < self.refetch_interval:
                raise KeysUnavailable("unknown kid; the keys were fetched too recently")
            self.keys = self._load(self.fetch_keys())
            self._fetched_at = now
            self._missing = set()
            if kid not in self.keys:
                self._missing.add(kid)
                raise SetRejected("invalid_key", "unknown kid")
            return self.keys[kid]

    def _load(self, jwks) -> dict:
        """The usable P-256 signing keys of a JWKS, by kid (RFC 7517 §5)."""
        keys = {}
        listed = jwks.get("keys") if isinstance(jwks, dict) else None
        for jwk in listed if isinstance(listed, list) else ():
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                continue
            if jwk.get("alg", ALG) != ALG or jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[jwk["kid"]] = self.key_class.import_key(
                    {k: v for k, v in jwk.items() if k != "d"})
            except Exception:  # a damaged entry is skipped, not fatal to the others
                continue
        return keys

    def _event(self, claims: dict) -> SecurityEvent:
        """Check the claims the contract names (RFC 8417 §2.2, docs/ssf.md)."""
        if claims.get("iss") != self.issuer:
            raise SetRejected("invalid_issuer", "iss is not the transmitter's issuer")
        aud = claims.get("aud")
        if not (aud == self.audience or isinstance(aud, list) and self.audience in aud):
            raise SetRejected("invalid_audience", "aud is not this resource server")
        jti, iat, seq = claims.get("jti"), claims.get("iat"), claims.get("stream_seq")
        sub_id, events, txn = claims.get("sub_id"), claims.get("events"), claims.get("txn")
        if not isinstance(jti, str) or not jti:
            raise SetRejected("invalid_request", "jti is missing")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise SetRejected("invalid_request", "iat is missing")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise SetRejected("invalid_request", "stream_seq is missing")
        if not isinstance(sub_id, dict):
            raise SetRejected("invalid_request", "sub_id is missing")
        if not isinstance(events, dict) or not events or not all(
                isinstance(payload, dict) for payload in events.values()):
            raise SetRejected("invalid_request", "events is not one or more event objects")
        if txn is not None and not isinstance(txn, str):
            raise SetRejected("invalid_request", "txn is not a string")
        return SecurityEvent(jti=jti, iat=iat, stream_seq=seq, sub_id=sub_id, events=events,
                             txn=txn)
