"""Settings from the environment, and the refusal of unsafe ones (SPEC §7)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from idp import create_app
from idp.infra.config import ConfigError
from idp.infra.config import build_config
from idp.infra.config_checks import check_config
from tests.helpers import ROOT

STRONG_KEY = "q7Vt2mLx9RkP4wZs8NbC3yHf6JdA1uEg5TqK0oIr"
HTTPS = "https://idp.flowestate.example"
PG = "postgresql+psycopg://idp@db.internal/idp"


def config_for(tmp_path, **env):
    """Build the config from exactly ``env`` (nothing from the real environment)."""
    return build_config(str(tmp_path), environ=env)


def test_development_defaults(tmp_path):
    config = config_for(tmp_path)
    assert config["IDP_DEVELOPMENT"] is True
    assert config["IDP_ISSUER"] == "http://127.0.0.1:5000"
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert config["RATELIMIT_SWALLOW_ERRORS"] is True
    check_config(config)


def test_development_key_is_random_private_and_kept(tmp_path):
    first = config_for(tmp_path)["SECRET_KEY"]
    key_file = tmp_path / "secret_key"
    assert len(first) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert config_for(tmp_path)["SECRET_KEY"] == first


def test_a_key_made_by_another_process_meanwhile_is_read_not_refused(tmp_path, monkeypatch):
    """Processes starting at once on a fresh checkout (gunicorn's master and the servers
    beside it) each see no key, then all but one find it made: they read it, whole."""
    other = "k" * 64
    (tmp_path / "secret_key").write_text(other)
    real_exists = Path.exists
    # This process looked before the other one wrote its key.
    monkeypatch.setattr(Path, "exists",
                        lambda path: False if path.name == "secret_key" else real_exists(path))
    assert config_for(tmp_path)["SECRET_KEY"] == other
    assert sorted(path.name for path in tmp_path.iterdir()) == ["secret_key"]


@pytest.mark.parametrize("issuer", [
    "http://127.0.0.1:5000", "http://localhost:8000", "http://[::1]:5000", "http://127.0.0.1:5000/",
])
def test_loopback_http_issuer_is_development(tmp_path, issuer):
    config = config_for(tmp_path, IDP_ISSUER=issuer)
    assert config["IDP_DEVELOPMENT"] is True
    assert not config["IDP_ISSUER"].endswith("/")


@pytest.mark.parametrize("issuer", [
    "https://127.0.0.1:5000", "http://0.0.0.0:5000", "http://idp.internal", HTTPS,
])
def test_any_other_issuer_is_production(tmp_path, issuer):
    assert config_for(tmp_path, IDP_ISSUER=issuer)["IDP_DEVELOPMENT"] is False


@pytest.mark.parametrize("given, expected", [
    ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgresql://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:////var/lib/idp.sqlite3", "sqlite:////var/lib/idp.sqlite3"),
])
def test_database_url_uses_psycopg3(tmp_path, given, expected):
    assert config_for(tmp_path, DATABASE_URL=given)["SQLALCHEMY_DATABASE_URI"] == expected


def test_production_with_safe_settings_passes(tmp_path):
    config = config_for(tmp_path, IDP_ISSUER=HTTPS, SECRET_KEY=STRONG_KEY, DATABASE_URL=PG,
                        RATELIMIT_STORAGE_URI="redis://cache:6379/0")
    check_config(config)
    assert config["SESSION_COOKIE_SECURE"] is True
    # An unreachable Redis must cost a fraction of a second, not a hung request.
    assert config["RATELIMIT_STORAGE_OPTIONS"] == {"socket_timeout": 0.5,
                                                    "socket_connect_timeout": 0.5}


@pytest.mark.parametrize("given, expected", [
    ("", []),
    (STRONG_KEY, [STRONG_KEY]),
    (f" {STRONG_KEY} , {STRONG_KEY[::-1]},", [STRONG_KEY, STRONG_KEY[::-1]]),
])
def test_secret_key_fallbacks_are_comma_separated(tmp_path, given, expected):
    config = config_for(tmp_path, IDP_ISSUER=HTTPS, SECRET_KEY=STRONG_KEY, DATABASE_URL=PG,
                        SECRET_KEY_FALLBACKS=given)
    assert config["SECRET_KEY_FALLBACKS"] == expected
    check_config(config)


@pytest.mark.parametrize("grace", ["0", "60", "300"])
def test_refresh_grace_window_within_bounds_is_accepted(tmp_path, grace):
    config = config_for(tmp_path, IDP_REFRESH_GRACE_SECONDS=grace)
    check_config(config)
    assert config["IDP_REFRESH_GRACE_SECONDS"] == int(grace)


def test_max_body_bytes_sets_flasks_limit(tmp_path):
    assert config_for(tmp_path)["MAX_CONTENT_LENGTH"] == 64 * 1024
    config = config_for(tmp_path, IDP_MAX_BODY_BYTES="16384")
    check_config(config)
    assert config["MAX_CONTENT_LENGTH"] == 16384


def test_production_sqlite_needs_explicit_opt_in(tmp_path):
    config = config_for(tmp_path, IDP_ISSUER=HTTPS, SECRET_KEY=STRONG_KEY, IDP_ALLOW_SQLITE="1")
    check_config(config)


#: Every refusal, with the words its one message must contain.
REFUSALS = [
    ({"IDP_ISSUER": "http://idp.flowestate.example", "SECRET_KEY": STRONG_KEY, "DATABASE_URL": PG},
     "IDP_ISSUER must be an https URL"),
    ({"IDP_ISSUER": HTTPS, "DATABASE_URL": PG}, "SECRET_KEY must be a random value"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": "too-short", "DATABASE_URL": PG},
     "SECRET_KEY must be a random value"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": "a" * 48, "DATABASE_URL": PG},
     "SECRET_KEY must be a random value"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": STRONG_KEY, "DATABASE_URL": PG,
      "SECRET_KEY_FALLBACKS": f"{STRONG_KEY[::-1]},changeme"}, "SECRET_KEY_FALLBACKS must hold"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": STRONG_KEY}, "DATABASE_URL points at SQLite"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": STRONG_KEY, "DATABASE_URL": "sqlite:////srv/idp.db"},
     "DATABASE_URL points at SQLite"),
    ({"IDP_CODE_TTL": "0"}, "IDP_CODE_TTL must be a positive number"),
    ({"IDP_ACCESS_TOKEN_TTL": "-5"}, "IDP_ACCESS_TOKEN_TTL must be a positive number"),
    ({"IDP_REFRESH_GRACE_SECONDS": "-1"}, "IDP_REFRESH_GRACE_SECONDS must not be negative"),
    ({"IDP_REFRESH_GRACE_SECONDS": "301"}, "IDP_REFRESH_GRACE_SECONDS must be at most 300"),
    ({"IDP_REFRESH_GRACE_SECONDS": "86400"}, "IDP_REFRESH_GRACE_SECONDS must be at most 300"),
    ({"IDP_TOKEN_RATE_LIMIT": "lots"}, "IDP_TOKEN_RATE_LIMIT must be a rate"),
    ({"IDP_LOG_LEVEL": "chatty"}, "IDP_LOG_LEVEL must be"),
    ({"IDP_LOG_FORMAT": "xml"}, "IDP_LOG_FORMAT must be text or json"),
    ({"IDP_MAX_BODY_BYTES": "1000"}, "IDP_MAX_BODY_BYTES must be between 4096 and 1048576"),
    ({"IDP_MAX_BODY_BYTES": "104857600"}, "IDP_MAX_BODY_BYTES must be between 4096"),
]


@pytest.mark.parametrize("env, message", REFUSALS)
def test_unsafe_settings_are_refused_with_one_message(tmp_path, env, message):
    with pytest.raises(ConfigError) as refused:
        check_config(config_for(tmp_path, **env))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_number_that_is_not_one_is_named(tmp_path):
    with pytest.raises(ConfigError, match="IDP_DB_POOL_SIZE must be a whole number, got 'five'"):
        config_for(tmp_path, IDP_DB_POOL_SIZE="five")


def test_the_factory_refuses_too(database_url):
    with pytest.raises(ConfigError, match="IDP_ISSUER must be an https URL"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, "IDP_ISSUER": "http://idp.example",
                    "IDP_DEVELOPMENT": False, "SECRET_KEY": STRONG_KEY})


def test_seed_demo_is_refused_in_production(make_app):
    app = make_app(IDP_ISSUER=HTTPS, IDP_DEVELOPMENT=False, SECRET_KEY=STRONG_KEY,
                   IDP_ALLOW_SQLITE=True)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["seed-demo", "--json"])
    assert result.exit_code == 1
    assert "Error: seed-demo is refused in production mode." in result.stderr


def _flask(*args, **env):
    """Run the flask command in a clean environment; return the finished process."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("IDP_", "SECRET_KEY", "DATABASE_URL", "RATELIMIT_"))}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT,
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("env, message", [
    ({"IDP_ISSUER": "http://idp.flowestate.example"}, "Error: IDP_ISSUER must be an https URL"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": "changeme"}, "Error: SECRET_KEY must be a random value"),
    ({"IDP_ISSUER": HTTPS, "SECRET_KEY": STRONG_KEY}, "Error: DATABASE_URL points at SQLite"),
])
def test_flask_command_prints_one_message_not_a_traceback(env, message):
    finished = _flask("seed-demo", **env)
    assert finished.returncode == 1
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout


def test_seed_demo_command_refused_in_production_process():
    finished = _flask("seed-demo", "--json", IDP_ISSUER=HTTPS, SECRET_KEY=STRONG_KEY,
                      IDP_ALLOW_SQLITE="1")
    assert finished.returncode == 1
    assert finished.stderr.strip() == "Error: seed-demo is refused in production mode."
    assert finished.stdout == ""
