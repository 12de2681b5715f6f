"""The key naming convention: the default rule, configured environments, custom patterns."""

from __future__ import annotations

import pytest

from keystead.config.model import DEFAULT_NAME_PATTERN, DEFAULT_NAME_RULE
from keystead.errors import InvalidField
from keystead.keys.naming import NamingRule

DEFAULT = NamingRule(DEFAULT_NAME_PATTERN, DEFAULT_NAME_RULE, ("dev", "staging", "prod"))


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("prod-webhook-bot-01", "prod"),
        ("staging-rag-worker", "staging"),
        ("dev-myapp-chat", "dev"),
        ("prod-svc2-embed3-99", "prod"),
    ],
)
def test_default_rule_accepts_conventional_names(name, env):
    assert DEFAULT.check(name, None) == env


def test_matching_env_option_is_accepted():
    assert DEFAULT.check("prod-webhook-bot-01", "prod") == "prod"


@pytest.mark.parametrize(
    "name",
    [
        "prod-x",  # no purpose
        "Prod-a-b",  # uppercase
        "prod-a-b-1",  # NN is two digits
        "prod-a-b-001",
        "prod_a_b",
        "prod-a-b-c",  # a fourth word that is not NN
        "prod--b",
        "-prod-a-b",
        "prod-a-b\n",
    ],
)
def test_default_rule_refuses_unconventional_names(name):
    with pytest.raises(InvalidField) as info:
        DEFAULT.check(name, None)
    error = info.value
    assert error.code == "invalid_key_name"
    assert error.param == "name"
    assert repr(name) in error.message
    assert DEFAULT_NAME_RULE in error.message  # the message shows the rule
    assert error.status == 400


def test_environment_that_is_not_configured_is_refused():
    with pytest.raises(InvalidField) as info:
        DEFAULT.check("qa-a-b", None)
    error = info.value
    assert error.code == "invalid_key_name"
    assert "'qa'" in error.message
    assert "dev, staging, prod" in error.message
    assert "keys.environments" in error.message  # the hint says how to allow it


def test_configured_extra_environment_is_accepted():
    rule = NamingRule(DEFAULT_NAME_PATTERN, DEFAULT_NAME_RULE, ("dev", "qa", "prod"))
    assert rule.check("qa-a-b", None) == "qa"


def test_env_option_that_contradicts_the_name_is_refused():
    with pytest.raises(InvalidField) as info:
        DEFAULT.check("prod-webhook-bot-01", "dev")
    error = info.value
    assert error.param == "env"
    assert error.code == "invalid_key_name"
    assert "'prod'" in error.message and "'dev'" in error.message


def test_custom_pattern_with_env_group():
    rule = NamingRule(r"(?P<service>[a-z]+)\.(?P<env>[a-z]+)", "<service>.<env>, e.g. billing.prod",
                      ("test", "live"))
    assert rule.check("billing.live", None) == "live"
    assert rule.check("billing.test", "test") == "test"
    with pytest.raises(InvalidField, match=r"<service>\.<env>, e.g\. billing\.prod"):
        rule.check("prod-webhook-bot-01", None)
    with pytest.raises(InvalidField, match="'prod'"):
        rule.check("billing.prod", None)


def test_custom_pattern_without_env_group_takes_env_from_the_option():
    rule = NamingRule(r"team-[a-z]+", "team-<name>", ("dev", "prod"))
    assert rule.check("team-search", "prod") == "prod"
    with pytest.raises(InvalidField) as info:
        rule.check("team-search", None)
    assert info.value.code == "missing_required_parameter"
    assert info.value.param == "env"
    assert "dev, prod" in info.value.message
    with pytest.raises(InvalidField) as info:
        rule.check("team-search", "staging")
    assert info.value.param == "env"
    assert "'staging' is not one of dev, prod" in info.value.message


def test_pattern_must_match_the_whole_name():
    rule = NamingRule(r"[a-z]+", "lowercase letters", ("dev",))
    assert rule.check("abc", "dev") == "dev"
    with pytest.raises(InvalidField):
        rule.check("abc-1", "dev")
