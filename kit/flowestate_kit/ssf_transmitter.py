"""The receiver's client of one SSF transmitter: discovery, its JWKS, stream management, polls.

Every exchange with the transmitter goes through :class:`Transmitter`, which knows the
endpoints the configuration (SSF 1.0 §7) names and the resource server's credentials, and
turns every failure into a :class:`StreamError`. It keeps no stream state: what a stream is
and whether it is healthy is the :class:`~flowestate_kit.ssf.Receiver`'s.
"""

from urllib.parse import quote
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests

from flowestate_kit.judge import check_introspection_url
from flowestate_kit.sets import KeysUnavailable

#: RFC 8936 poll and RFC 8935 push, as SSF 1.0 names the delivery methods.
POLL = "urn:ietf:rfc:8936"
PUSH = "urn:ietf:rfc:8935"
METHODS = {"poll": POLL, "push": PUSH}
#: SSF 1.0 §7.2: inserted between the issuer's host and its path.
WELL_KNOWN = "/.well-known/ssf-configuration"


class StreamError(Exception):
    """The transmitter could not be reached or answered wrongly: unhealthy, retry later."""

    def __init__(self, message: str, status: int | None = None):
        """Carry the HTTP status, when there was one."""
        super().__init__(message)
        self.status = status


def discovery_urls(issuer_or_url: str) -> tuple[str, str]:
    """The configuration URL and the issuer it must name, from either of them (SSF 1.0 §7.2)."""
    parts = urlsplit(issuer_or_url)
    if parts.path.startswith(WELL_KNOWN):
        issuer_path = parts.path[len(WELL_KNOWN):]
        return issuer_or_url, urlunsplit((parts.scheme, parts.netloc, issuer_path, "", ""))
    issuer = issuer_or_url[:-1] if parts.path == "/" else issuer_or_url
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", "")), issuer


def named_url(data: dict, name: str, required: bool = True) -> str | None:
    """A URL the transmitter named, held to the same https rule as the kit's own."""
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise StreamError(f"the transmitter named no {name}")
    try:
        check_introspection_url(value, name)
    except ValueError as error:
        raise StreamError(str(error)) from None
    return value


class Transmitter:
    """One transmitter as a receiver with these credentials reaches it over HTTP."""

    def __init__(self, configuration_url: str, client_id: str, client_secret: str, *,
                 timeout: float, session: requests.Session | None):
        """The issuer or configuration URL; ``timeout`` bounds every request but a poll."""
        self.configuration_url, self.issuer = discovery_urls(configuration_url)
        check_introspection_url(self.configuration_url, "configuration_url")
        self.auth = (client_id, client_secret)
        self.timeout = timeout
        #: Whether the session is ours to close (and to replace in a forked child).
        self.own_session = session is None
        self.session = session if session is not None else requests.Session()
        #: The configuration document, once discovered.
        self.metadata: dict | None = None

    def request(self, method: str, url: str, *, body=None, params=None, auth: bool = True,
                expect=(200,), timeout=None):
        """One HTTP exchange; the JSON object answered (None for an empty answer)."""
        what = f"{method} {urlsplit(url).path}"
        try:
            with self.session.request(
                method, url, json=body, params=params, auth=self.auth if auth else None,
                headers={"Accept": "application/json"}, allow_redirects=False,
                timeout=timeout if timeout is not None else self.timeout,
            ) as response:
                status = response.status_code
                if status not in expect:
                    raise StreamError(f"{what} answered {status}", status)
                if status == 204 or not response.content:
                    return None
                data = response.json()
        except requests.RequestException as error:
            raise StreamError(f"{what} failed: {type(error).__name__}") from None
        except ValueError:
            raise StreamError(f"{what} answered something not JSON") from None
        if not isinstance(data, dict):
            raise StreamError(f"{what} answered something not a JSON object")
        return data

    def discover(self, delivery: str) -> None:
        """Fetch and check the configuration document (SSF 1.0 §7) for ``delivery``."""
        data = self.request("GET", self.configuration_url, auth=False) or {}
        # SSF 1.0 §7.2: the issuer must be the one the configuration URL was built from.
        if data.get("issuer") != self.issuer:
            raise StreamError("the transmitter configuration names another issuer")
        for name in ("jwks_uri", "configuration_endpoint", "verification_endpoint"):
            named_url(data, name)
        methods = data.get("delivery_methods_supported")
        if not isinstance(methods, list) or METHODS[delivery] not in methods:
            raise StreamError(f"the transmitter does not deliver by {delivery}")
        self.metadata = data

    def fetch_keys(self) -> dict:
        """The transmitter's JWKS; KeysUnavailable when it cannot be had now."""
        try:
            return self.request("GET", self.metadata["jwks_uri"], auth=False) or {}
        except StreamError as error:
            raise KeysUnavailable(str(error)) from None

    def streams(self, method: str, *, expect=(200,), **arguments) -> dict | None:
        """One call of the stream-management endpoint (SSF 1.0 §8.1.1)."""
        return self.request(method, self.metadata["configuration_endpoint"], expect=expect,
                            **arguments)

    def ask_verification(self, stream_id: str, state: str) -> None:
        """Ask for a verification event echoing ``state`` (SSF 1.0 §8.1.4.2)."""
        self.request("POST", self.metadata["verification_endpoint"],
                     body={"stream_id": stream_id, "state": state}, expect=(200, 202, 204))

    def poll_url_of(self, config: dict, stream_id: str) -> str:
        """Where a poll stream is polled: its ``endpoint_url``, else the contract's path."""
        url = named_url(config.get("delivery") or {}, "endpoint_url", required=False)
        return url or f"{self.issuer}/ssf/poll/{quote(stream_id, safe='')}"
