"""One kill of the propagation benchmark, and the figures over many (docs/PERFORMANCE.md,
"Revocation propagation").

A kill ends one live connection through the IdP's revocation endpoint and times how long the
kit, holding the connection's access token as a cached active verdict, goes on accepting it.
Each kill also checks that it measured what it claims: the token was served from the kit's
cache before the revoke, and its refusal was the IdP's ``token_revoked``, looked up afresh
after the kit had dropped the cached verdict. A kill that fails a check does not count.
"""

import http.client
import json
import math
import time
from dataclasses import dataclass
from urllib.parse import urlencode
from urllib.parse import urlsplit

from bench.apps.kit import PROTECTED
from bench.load import PROXY_HEADERS

FORM = "application/x-www-form-urlencoded"
STATE = "/bench/state"
#: A token still accepted this long after its revoke was sent failed to propagate. Below the
#: kit's 30 s ``active_ttl``, so a refusal within it can only follow an eviction.
GIVE_UP = 10.0
#: What the refusal of an ended connection's access token must be (SPEC §4).
REFUSAL = "401 token_revoked"


class Endpoint:
    """A server on the loopback interface, asked with a fresh connection per request, as
    gunicorn's sync workers close each one, and with the proxy's headers as wrk sends them."""

    def __init__(self, url: str):
        """``url`` is the server's ``http://127.0.0.1:port``."""
        parts = urlsplit(url)
        self.url = url
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, headers: dict | None = None,
                body: str | None = None) -> tuple[int, bytes]:
        """Status and body of one request."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers={**PROXY_HEADERS, **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@dataclass(frozen=True)
class Victim:
    """A live connection: its access token (what the kit caches) and refresh token (what the
    client revokes it with)."""

    access_token: str
    refresh_token: str


@dataclass
class Kill:
    """What one kill saw. Times in ms from ``t0``, the moment the revoke request was sent."""

    method: str
    #: Statuses of the two requests that put the token in the kit's cache.
    primed: tuple[int, int]
    #: Introspections of the token by the kit after priming (1: the second was cached) ...
    looked_before: int
    #: ... and after the refusal (one more: the refusal was a fresh look).
    looked_after: int
    #: Whether the kit's stream was healthy just before the revoke.
    healthy: bool
    revoke_status: int
    #: When the revoke's answer arrived.
    revoke_ms: float
    #: When the kit's first refusal arrived; None when it never came within GIVE_UP.
    propagation_ms: float | None
    #: Requests with the token from the revoke's answer to the refusal, the refusal included.
    probes: int
    #: Status and reason of the first answer that was not 200.
    refusal: str = ""

    def problem(self) -> str | None:
        """Why this kill does not count, or None when it does."""
        if self.primed != (200, 200):
            return f"the token was not accepted before the revoke: {self.primed}"
        if self.looked_before != 1:
            return (f"the token was not served from the kit's cache "
                    f"({self.looked_before} introspections while priming)")
        if not self.healthy:
            return "the kit's revocation stream was not healthy"
        if self.revoke_status != 200:
            return f"the revoke answered {self.revoke_status}"
        if self.propagation_ms is None:
            return f"still accepted {GIVE_UP:g} s after the revoke"
        if self.refusal != REFUSAL:
            return f"refused with {self.refusal}, not {REFUSAL}"
        if self.looked_after <= self.looked_before:
            return "refused without a fresh introspection"
        return None


def percentile(values, q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` % of the values at
    or below it (p99 of 200 kills is the 198th fastest). Never interpolated: every figure
    reported is one that a kill measured."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def client_form(client_id: str, client_secret: str) -> dict:
    """The connector client's credentials in the body, as Zapier sends them."""
    return {"client_id": client_id, "client_secret": client_secret}


def make_victims(idp: Endpoint, refresh_tokens, client: dict) -> list[Victim]:
    """One live connection per refresh token, through the token endpoint: each refresh grant
    answers a fresh access token and the refresh token that now holds the connection."""
    victims = []
    for raw in refresh_tokens:
        body = urlencode({"grant_type": "refresh_token", "refresh_token": raw, **client})
        status, answer = idp.request("POST", "/oauth/token", {"Content-Type": FORM}, body)
        if status != 200:
            raise RuntimeError(f"a refresh for a victim answered {status}: {answer[:300]!r}")
        tokens = json.loads(answer)
        victims.append(Victim(tokens["access_token"], tokens["refresh_token"]))
    return victims


def state(kit: Endpoint, bearer: dict) -> dict:
    """The kit's count of introspections of the bearer's token, and its stream's health."""
    status, body = kit.request("GET", STATE, bearer)
    if status != 200:
        raise RuntimeError(f"{kit.url}{STATE} answered {status}")
    return json.loads(body)


def reason(body: bytes) -> str:
    """The SPEC §4 reason of a refusal's body, or its first bytes."""
    try:
        return json.loads(body)["error"]["reason"]
    except (ValueError, KeyError, TypeError):
        return body[:80].decode("utf-8", "replace")


def kill(method: str, kit: Endpoint, idp: Endpoint, victim: Victim, client: dict,
         pause: float = 0.0, clock=time.perf_counter, give_up: float = GIVE_UP) -> Kill:
    """Cache the victim's token in the kit, revoke its connection, and ask the kit with the
    token until it refuses; see the module docstring.

    ``pause`` (seconds, between priming and the revoke) spreads kills over the delivery
    loops' own cycles. ``t0`` is taken just before the revoke request is sent: the change
    commits inside that request, so t0 is before the commit and every figure an upper bound.
    """
    bearer = {"Authorization": f"Bearer {victim.access_token}"}
    primed = (kit.request("GET", PROTECTED, bearer)[0], kit.request("GET", PROTECTED, bearer)[0])
    before = state(kit, bearer)
    time.sleep(pause)
    body = urlencode({"token": victim.refresh_token, "token_type_hint": "refresh_token",
                      **client})
    t0 = clock()
    revoke_status, _ = idp.request("POST", "/oauth/revoke", {"Content-Type": FORM}, body)
    revoked = clock()
    probes, refusal, refused = 0, "", None
    while clock() - t0 < give_up:
        status, answer = kit.request("GET", PROTECTED, bearer)
        probes += 1
        if status != 200:
            refused = clock()
            refusal = f"{status} {reason(answer)}"
            break
    after = state(kit, bearer)
    return Kill(method=method, primed=primed, looked_before=before["introspections"],
                looked_after=after["introspections"], healthy=before["healthy"],
                revoke_status=revoke_status, revoke_ms=(revoked - t0) * 1000,
                propagation_ms=None if refused is None else (refused - t0) * 1000,
                probes=probes, refusal=refusal)
