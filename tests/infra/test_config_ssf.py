"""The Shared Signals settings (docs/ssf.md, "Configuration"): defaults and refusals."""

import pytest

from idp.infra.config import ConfigError
from idp.infra.config import build_config
from idp.infra.config_checks import check_config


def config_for(tmp_path, **env):
    """Build the config from exactly ``env`` (nothing from the real environment)."""
    return build_config(str(tmp_path), environ=env)


def test_defaults(tmp_path):
    config = config_for(tmp_path)
    check_config(config)
    assert {name: config[name] for name in config if name.startswith("IDP_SSF_")} == {
        "IDP_SSF_LONG_POLL_SECONDS": 10, "IDP_SSF_RETENTION_SECONDS": 604800,
        "IDP_SSF_INACTIVITY_SECONDS": 3600, "IDP_SSF_MAX_STREAMS": 100,
        "IDP_SSF_PUSH_TIMEOUT": 5, "IDP_SSF_PUSH_BACKOFF_MAX": 300}


def test_a_poll_may_answer_at_once_and_a_push_may_wait_a_fraction(tmp_path):
    config = config_for(tmp_path, IDP_SSF_LONG_POLL_SECONDS="0", IDP_SSF_PUSH_TIMEOUT="0.5")
    check_config(config)
    assert (config["IDP_SSF_LONG_POLL_SECONDS"], config["IDP_SSF_PUSH_TIMEOUT"]) == (0, 0.5)


@pytest.mark.parametrize("env, message", [
    ({"IDP_SSF_LONG_POLL_SECONDS": "-1"}, "IDP_SSF_LONG_POLL_SECONDS must be between 0 and 20"),
    ({"IDP_SSF_LONG_POLL_SECONDS": "21"}, "IDP_SSF_LONG_POLL_SECONDS must be between 0 and 20"),
    ({"IDP_SSF_LONG_POLL_SECONDS": "nan"}, "IDP_SSF_LONG_POLL_SECONDS must be between"),
    ({"IDP_SSF_PUSH_TIMEOUT": "0"}, "IDP_SSF_PUSH_TIMEOUT must be more than 0"),
    ({"IDP_SSF_PUSH_TIMEOUT": "61"}, "IDP_SSF_PUSH_TIMEOUT must be more than 0 and at most 60"),
    ({"IDP_SSF_RETENTION_SECONDS": "0"}, "IDP_SSF_RETENTION_SECONDS must be a positive number"),
    ({"IDP_SSF_INACTIVITY_SECONDS": "-5"}, "IDP_SSF_INACTIVITY_SECONDS must be a positive"),
    ({"IDP_SSF_PUSH_BACKOFF_MAX": "0"}, "IDP_SSF_PUSH_BACKOFF_MAX must be a positive number"),
    ({"IDP_SSF_MAX_STREAMS": "0"}, "IDP_SSF_MAX_STREAMS must be at least 1, got 0."),
])
def test_wrong_values_are_refused_with_one_message(tmp_path, env, message):
    with pytest.raises(ConfigError) as refused:
        check_config(config_for(tmp_path, **env))
    assert message in str(refused.value)


@pytest.mark.parametrize("name", ["IDP_SSF_RETENTION_SECONDS", "IDP_SSF_PUSH_TIMEOUT"])
def test_a_number_that_is_not_one_is_named(tmp_path, name):
    with pytest.raises(ConfigError, match=name):
        config_for(tmp_path, **{name: "soon"})
