"""Connector presets (SPEC §8): the redirect URIs, scopes and lifetimes of Zapier and Make clients.

This is the one home of the platforms' callback URLs; the CLI, the demo seed, the docs' tests
and the connector tests all read them from here.
"""

import re
from dataclasses import dataclass

#: Zapier CLI apps return to this URL; the key is the app's, as `zapier describe` shows it.
ZAPIER_REDIRECT = "https://zapier.com/dashboard/auth/oauth/return/{key}/"
#: The demo seed's Zapier app key.
DEMO_ZAPIER_APP_ID = "App123456CLIAPI"
#: Make's callback: the current host, the legacy Integromat host and every zone host, since an
#: authorization started in a zone returns to that zone (docs/connectors.md).
MAKE_REDIRECTS = (
    "https://www.make.com/oauth/cb/app",
    "https://www.integromat.com/oauth/cb/app",
    "https://eu1.make.com/oauth/cb/app",
    "https://eu2.make.com/oauth/cb/app",
    "https://us1.make.com/oauth/cb/app",
    "https://us2.make.com/oauth/cb/app",
)
#: ``App<digits>CLIAPI`` for CLI apps, ``App<digits>API`` for legacy ones, ``<Brand>CLIAPI`` for
#: published apps with a branded key: letters and digits ending in ``API``, nothing that could
#: change the URL's path.
_ZAPIER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}API")
#: Make refreshes when less than 15 minutes are left: a shorter token means a refresh per run.
MAKE_REFRESH_LEAD_SECONDS = 15 * 60


class PresetError(ValueError):
    """A preset asked for with settings it cannot take."""


@dataclass(frozen=True)
class Preset:
    """What a preset fills in; ``None`` lifetimes follow the server's defaults."""

    name: str
    redirect_uris: tuple[str, ...]
    #: One hour: long enough that Make's 15-minute lead does not refresh on every run, short
    #: enough that a leaked token dies soon (SPEC §3).
    access_token_ttl: int = 3600


def zapier_key(app_id: str) -> str:
    """The redirect key of a Zapier app: ``App123456CLIAPI`` as given, or a bare ``123456``."""
    value = (app_id or "").strip()
    if value.isdigit():
        return f"App{value}CLIAPI"
    if not _ZAPIER_KEY.fullmatch(value):
        raise PresetError(
            f"--app-id {app_id!r} is not a Zapier app key: give the key of the redirect URL "
            "that `zapier describe` shows, e.g. App123456CLIAPI (or just 123456)."
        )
    return value


def zapier_redirect(app_id: str) -> str:
    """The exact redirect URI of a Zapier app, trailing slash included."""
    return ZAPIER_REDIRECT.format(key=zapier_key(app_id))


def preset(kind: str, app_id: str | None) -> Preset:
    """The settings of ``kind`` (``zapier`` needs the app id, ``make`` takes none)."""
    if kind == "zapier":
        if not app_id:
            raise PresetError("--preset zapier needs --app-id, e.g. --app-id App123456CLIAPI.")
        return Preset("Zapier", (zapier_redirect(app_id),))
    if kind == "make":
        if app_id:
            raise PresetError("--app-id belongs to --preset zapier; Make apps have none.")
        return Preset("Make", MAKE_REDIRECTS)
    raise PresetError(f"Unknown preset {kind!r}: choose zapier or make.")


#: Names accepted by ``client create --preset``.
NAMES = ("zapier", "make")
