"""``client create --preset``, ``client show`` and the seed's redirect URIs (store/presets.py)."""

import json

import pytest

from idp.core.scopes import DEFAULT_SCOPES
from idp.store import presets

MAKE = [
    "https://www.make.com/oauth/cb/app",
    "https://www.integromat.com/oauth/cb/app",
    "https://eu1.make.com/oauth/cb/app",
    "https://eu2.make.com/oauth/cb/app",
    "https://us1.make.com/oauth/cb/app",
    "https://us2.make.com/oauth/cb/app",
]


@pytest.fixture
def cli(app):
    """Run ``flask`` commands against the test app."""
    runner = app.test_cli_runner()

    def run(*args):
        with app.app_context():
            return runner.invoke(args=list(args))

    return run


def created(result) -> dict:
    """The JSON ``client create`` printed."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def shown(cli, client_id) -> dict:
    """The configuration ``client show`` printed."""
    result = cli("client", "show", client_id)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(("app_id", "key"), [
    ("App123456CLIAPI", "App123456CLIAPI"),
    ("123456", "App123456CLIAPI"),
    ("App98765API", "App98765API"),
    ("CrowdinCLIAPI", "CrowdinCLIAPI"),
])
def test_zapier_preset_fills_in_the_apps_redirect_uri(cli, app_id, key):
    out = created(cli("client", "create", "--preset", "zapier", "--app-id", app_id))
    assert out["client_id"].startswith("cli_") and out["client_secret"].startswith("fe_cs_")
    config = shown(cli, out["client_id"])
    assert config["name"] == "Zapier"
    assert config["redirect_uris"] == [f"https://zapier.com/dashboard/auth/oauth/return/{key}/"]
    assert config["allowed_scopes"] == sorted(DEFAULT_SCOPES)
    assert config["default_scopes"] == sorted(DEFAULT_SCOPES)
    assert config["access_token_ttl"] == 3600
    assert config["effective_lifetimes"] == {
        "code_ttl": 60, "access_token_ttl": 3600, "refresh_token_ttl": 90 * 24 * 3600}


def test_make_preset_registers_every_make_host(cli):
    out = created(cli("client", "create", "--preset", "make", "--name", "Make (EU)"))
    config = shown(cli, out["client_id"])
    assert config["name"] == "Make (EU)" and config["redirect_uris"] == MAKE
    assert config["access_token_ttl"] == 3600 and config["enabled"] is True


def test_a_preset_takes_extra_redirect_uris_and_lifetimes(cli, demo):
    out = created(cli(
        "client", "create", "--preset", "make", "--redirect-uri",
        "https://eu1.make.celonis.com/oauth/cb/app", "--access-token-ttl", "7200",
        "--scopes", "leads:read leads:write", "--org", demo["organization"]["id"]))
    config = shown(cli, out["client_id"])
    assert config["redirect_uris"] == [*MAKE, "https://eu1.make.celonis.com/oauth/cb/app"]
    assert config["access_token_ttl"] == 7200
    assert config["allowed_scopes"] == ["leads:read", "leads:write"]
    assert config["org_allowlist"] == [demo["organization"]["id"]]


def test_show_prints_the_whole_configuration_and_never_the_secret(cli, app, demo):
    zapier = demo["clients"]["zapier"]
    result = cli("client", "show", zapier["client_id"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    assert zapier["client_secret"] not in result.output
    assert "secret_digest" not in result.output and '"id"' not in result.output
    assert config["client_id"] == zapier["client_id"]
    assert config["redirect_uris"] == zapier["redirect_uris"]
    assert {"name", "enabled", "org_allowlist", "code_ttl", "access_token_ttl",
            "refresh_token_ttl", "previous_secret_expires_at", "created_at"} <= set(config)
    assert config["previous_secret_expires_at"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "zapier"], "--preset zapier needs --app-id"),
    (["--preset", "zapier", "--app-id", ""], "--preset zapier needs --app-id"),
    (["--preset", "zapier", "--app-id", "App123456"], "is not a Zapier app key"),
    (["--preset", "zapier", "--app-id", "App1/../CLIAPI"], "is not a Zapier app key"),
    (["--preset", "zapier", "--app-id", "https://zapier.com/x/"], "is not a Zapier app key"),
    (["--preset", "make", "--app-id", "App1CLIAPI"], "--app-id belongs to --preset zapier"),
    (["--preset", "make", "--access-token-ttl", "900"], "too short for Make"),
    (["--preset", "ifttt"], "'ifttt' is not one of 'zapier', 'make'"),
    (["--app-id", "App1CLIAPI", "--name", "Z"], "--app-id needs --preset zapier"),
    (["--name", "Zapier"], "Give --name and --redirect-uri, or a --preset"),
    (["--redirect-uri", "https://ok.example/cb"], "Give --name and --redirect-uri, or a --preset"),
])
def test_bad_preset_requests_exit_non_zero_with_a_message(cli, args, message):
    result = cli("client", "create", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "client_secret" not in result.output
    assert cli("client", "list").output == ""


def test_show_of_an_unknown_client_is_a_usage_error(cli):
    result = cli("client", "show", "cli_nope")
    assert result.exit_code == 2 and "No client 'cli_nope'" in result.output


def test_seed_demo_prints_every_redirect_uri(cli, app):
    result = cli("seed-demo")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for uri in [presets.zapier_redirect(presets.DEMO_ZAPIER_APP_ID), *MAKE]:
        assert f"  redirect URI: {uri}" in lines
    seeded = json.loads(cli("seed-demo", "--json").stdout)
    assert seeded["clients"]["make"]["redirect_uris"] == MAKE
    assert seeded["clients"]["zapier"]["redirect_uris"] == [
        "https://zapier.com/dashboard/auth/oauth/return/App123456CLIAPI/"]
