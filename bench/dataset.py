"""The shape of a data set and the raw credentials a seeded one hands to the load plans."""

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from functools import cached_property

from idp.core import secrets as cs

#: What a connector connection is granted in the data set.
CONNECTION_SCOPE = "contacts:read leads:read leads:write properties:read"
ZAPIER_REDIRECT = "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"
MAKE_REDIRECT = "https://www.make.com/oauth/cb/app"
#: Scope sets API keys are created with, dealt round-robin.
SCOPE_SETS = ("leads:read", "leads:read leads:write", "contacts:read properties:read",
              "contacts:read contacts:write leads:read tasks:read")


@dataclass(frozen=True)
class Shape:
    """How many of each thing a data set of ``size`` stored tokens holds."""

    size: int
    #: Live API keys and access tokens whose raw values the read rows cycle through.
    sample: int
    #: Single-use refresh tokens (and, separately, authorization codes) for the write rows.
    pool: int

    @cached_property
    def orgs(self) -> int:
        """One organization per thousand tokens."""
        return max(4, self.size // 1000)

    @cached_property
    def users(self) -> int:
        """One person per hundred tokens."""
        return max(8, self.size // 100)

    @cached_property
    def connections(self) -> int:
        """Ten stored tokens of each kind per connection (an hourly refresh keeps a history)."""
        return max(8, self.size // 10)


@dataclass
class Seeded:
    """Raw credentials of a data set, for the load plans; the database has digests only."""

    size: int
    rs_id: str
    rs_secret: str
    client_id: str
    client_secret: str
    redirect_uri: str
    code_verifier: str
    api_keys: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)
    refresh_pool: list[str] = field(default_factory=list)
    code_pool: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def filler_digest() -> str:
    """A SHA-256-sized digest of a value nobody holds."""
    return os.urandom(32).hex()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2 S256 challenge of a verifier."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def picks(total: int, wanted: int) -> set[int]:
    """``wanted`` indexes spread evenly over ``range(total)``."""
    wanted = min(wanted, total)
    return {i * total // wanted for i in range(wanted)} if wanted else set()


def raw_or_filler(keep: set[int], i: int, make: Callable[[], str], out: list[str]) -> str:
    """The digest of a fresh raw credential kept in ``out`` when ``i`` is picked, else filler."""
    if i in keep:
        raw = make()
        out.append(raw)
        return cs.digest(raw)
    return filler_digest()


def ago(now: datetime, **kwargs) -> datetime:
    """``now`` minus a timedelta, for readable row builders."""
    return now - timedelta(**kwargs)
