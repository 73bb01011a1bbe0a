"""Row builders of the data set; every id is explicit so rows can refer to each other cheaply."""

import os
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta

from bench.dataset import CONNECTION_SCOPE
from bench.dataset import MAKE_REDIRECT
from bench.dataset import SCOPE_SETS
from bench.dataset import ZAPIER_REDIRECT
from bench.dataset import Seeded
from bench.dataset import Shape
from bench.dataset import ago
from bench.dataset import filler_digest
from bench.dataset import picks
from bench.dataset import raw_or_filler
from bench.dataset import s256
from idp.core import secrets as cs
from idp.core.scopes import DEFAULT_SCOPES

#: Client row ids: the Zapier client is the one the load plans authenticate as.
ZAPIER, MAKE = 1, 2
#: Live access tokens and pool codes outlast the longest run, so none lapses mid-round.
LIVE_FOR = timedelta(hours=3)


def organizations(shape: Shape, now: datetime) -> Iterator[dict]:
    """Customer accounts, none suspended."""
    for o in range(shape.orgs):
        yield {"id": o + 1, "public_id": cs.new_public_id("org_"), "name": f"Realty {o}",
               "suspended": False, "created_at": ago(now, days=400)}


def users(shape: Shape, now: datetime, password_hash: str) -> Iterator[dict]:
    """People, each in exactly one organization (user ``u`` is in org ``u % orgs``)."""
    for u in range(shape.users):
        yield {"id": u + 1, "public_id": cs.new_public_id("usr_"),
               "email": f"agent{u}@realty{u % shape.orgs}.example", "name": f"Agent {u}",
               "password_hash": password_hash, "created_at": ago(now, days=300)}


def memberships(shape: Shape) -> Iterator[dict]:
    """The first user of each organization owns it; the others are members."""
    for u in range(shape.users):
        yield {"id": u + 1, "user_id": u + 1, "org_id": u % shape.orgs + 1,
               "role": "owner" if u < shape.orgs else "member"}


def clients(seeded: Seeded, now: datetime) -> Iterator[dict]:
    """The Zapier client (whose secret the plans know) and a Make client."""
    common = {"previous_secret_digest": None, "previous_secret_expires_at": None,
              "allowed_scopes": " ".join(sorted(DEFAULT_SCOPES)), "default_scopes": "leads:read",
              "org_allowlist": [], "enabled": True, "code_ttl": None, "access_token_ttl": None,
              "refresh_token_ttl": None, "created_at": ago(now, days=500)}
    yield {**common, "id": ZAPIER, "public_id": seeded.client_id, "name": "Zapier",
           "secret_digest": cs.digest(seeded.client_secret), "redirect_uris": [ZAPIER_REDIRECT]}
    yield {**common, "id": MAKE, "public_id": cs.new_public_id("cli_"), "name": "Make",
           "secret_digest": filler_digest(), "redirect_uris": [MAKE_REDIRECT]}


def resource_servers(seeded: Seeded, now: datetime) -> Iterator[dict]:
    """The FlowEstate API, which the introspection plans authenticate as."""
    yield {"id": 1, "public_id": seeded.rs_id, "name": "FlowEstate API",
           "secret_digest": cs.digest(seeded.rs_secret), "enabled": True, "created_at": now}


def is_ended(c: int) -> bool:
    """One base connection in twenty has been disconnected."""
    return c % 20 == 19


def connection_row(shape: Shape, row_id: int, person: int, client: int, created: datetime,
                   activated: datetime | None, ended: datetime | None) -> dict:
    """One connection of person ``person`` in their organization."""
    return {"id": row_id, "public_id": cs.new_public_id("con_"), "user_id": person + 1,
            "org_id": person % shape.orgs + 1, "client_id": client, "scope": CONNECTION_SCOPE,
            "created_at": created, "activated_at": activated, "ended_at": ended,
            "end_reason": "disconnected" if ended else None, "last_used_at": None,
            "last_used_ip": None}


def connections(shape: Shape, now: datetime) -> Iterator[dict]:
    """Base connections, then one per refresh-pool token, then one per pool code."""
    base, pool = shape.connections, shape.pool
    for c in range(base):
        created = ago(now, days=90 - c % 60)
        yield connection_row(shape, c + 1, c % shape.users, ZAPIER + c % 2, created, created,
                             ago(now, days=1) if is_ended(c) else None)
    for j in range(pool):
        created = ago(now, days=30)
        yield connection_row(shape, base + j + 1, j % shape.users, ZAPIER, created, created, None)
    for j in range(pool):
        # A code's connection is made at Allow and activated only when the code is redeemed.
        yield connection_row(shape, base + pool + j + 1, j % shape.users, ZAPIER, now, None, None)


def latest(shape: Shape, c: int) -> int:
    """Index of connection ``c``'s newest token among ``size`` tokens dealt round-robin."""
    return c + shape.connections * ((shape.size - 1 - c) // shape.connections)


def token_times(shape: Shape, i: int, now: datetime) -> tuple[datetime, bool]:
    """When token ``i`` was issued (one per hour back in time) and whether it is the newest."""
    newest = latest(shape, i % shape.connections)
    return ago(now, minutes=5, hours=(newest - i) // shape.connections), i == newest


def access_tokens(shape: Shape, now: datetime, sample: list[str]) -> Iterator[dict]:
    """Hourly access tokens per connection; only the newest of each is unexpired."""
    live = [latest(shape, c) for c in range(min(shape.connections, shape.size))
            if not is_ended(c)]
    keep = {live[k] for k in picks(len(live), shape.sample)}
    for i in range(shape.size):
        issued, newest = token_times(shape, i, now)
        yield {"id": i + 1, "digest": raw_or_filler(keep, i, cs.new_access_token, sample),
               "connection_id": i % shape.connections + 1, "scope": CONNECTION_SCOPE,
               "issued_at": issued,
               "expires_at": now + LIVE_FOR if newest else issued + timedelta(hours=1)}


def refresh_history(shape: Shape, now: datetime) -> Iterator[dict]:
    """Rotated refresh tokens kept for reuse detection, and the live one of each connection."""
    for i in range(shape.size):
        issued, newest = token_times(shape, i, now)
        yield {"id": i + 1, "digest": filler_digest(), "connection_id": i % shape.connections + 1,
               "scope": CONNECTION_SCOPE, "issued_at": issued,
               "expires_at": issued + timedelta(days=90),
               "rotated_at": None if newest else issued + timedelta(hours=1),
               "successor_id": None, "sealed_successor": None}


def refresh_pool(shape: Shape, now: datetime, pool: list[str]) -> Iterator[dict]:
    """Per pool connection: its live refresh token, then the predecessor still holding a seal.

    The seal is what a rotation moments earlier leaves behind, so every benchmarked rotation
    also clears one, as it does in steady use.
    """
    first, base = shape.size + 1, shape.connections
    for j in range(shape.pool):
        raw = cs.new_refresh_token()
        pool.append(raw)
        yield {"id": first + j, "digest": cs.digest(raw), "connection_id": base + j + 1,
               "scope": CONNECTION_SCOPE, "issued_at": ago(now, seconds=30),
               "expires_at": now + timedelta(days=90), "rotated_at": None,
               "successor_id": None, "sealed_successor": None}
    for j in range(shape.pool):
        yield {"id": first + shape.pool + j, "digest": filler_digest(),
               "connection_id": base + j + 1, "scope": CONNECTION_SCOPE,
               "issued_at": ago(now, hours=1), "expires_at": now + timedelta(days=89),
               "rotated_at": ago(now, seconds=30), "successor_id": first + j,
               "sealed_successor": os.urandom(600)}


def key_is_usable(i: int) -> bool:
    """Whether API key ``i`` is active and unexpired (see :func:`api_keys`)."""
    return i % 50 != 7 and i % 10 != 3


def api_keys(shape: Shape, now: datetime, sample: list[str]) -> Iterator[dict]:
    """Organization keys: a few disabled, some expired, some with a future expiry."""
    usable = [i for i in range(shape.size) if key_is_usable(i)]
    keep = {usable[k] for k in picks(len(usable), shape.sample)}
    for i in range(shape.size):
        org = i % shape.orgs
        made: list[str] = []
        digest = raw_or_filler(keep, i, cs.new_api_key, made)
        sample.extend(made)
        expires = None
        if i % 10 == 3:
            expires = ago(now, days=1)
        elif i % 10 == 5:
            expires = now + timedelta(days=180)
        yield {"id": i + 1, "public_id": cs.new_public_id("key_"), "org_id": org + 1,
               "name": f"integration-{i}", "digest": digest,
               "last4": made[0][-4:] if made else digest[:4],
               "scopes": SCOPE_SETS[i % len(SCOPE_SETS)], "created_by_id": org + 1,
               "created_at": ago(now, days=60), "expires_at": expires,
               "active": i % 50 != 7, "last_used_at": None, "last_used_ip": None}


def codes(shape: Shape, now: datetime, seeded: Seeded) -> Iterator[dict]:
    """One unredeemed code per pool connection, all bound to one PKCE verifier.

    Codes live 60 s in use; these are stored with a longer life so none lapses before its turn.
    """
    challenge = s256(seeded.code_verifier)
    first_connection = shape.connections + shape.pool + 1
    for j in range(shape.pool):
        raw = cs.new_authorization_code()
        seeded.code_pool.append(raw)
        yield {"id": j + 1, "digest": cs.digest(raw), "connection_id": first_connection + j,
               "client_id": ZAPIER, "redirect_uri": ZAPIER_REDIRECT, "redirect_uri_given": True,
               "scope": CONNECTION_SCOPE, "code_challenge": challenge,
               "code_challenge_method": "S256", "created_at": now,
               "expires_at": now + LIVE_FOR, "used_at": None}
