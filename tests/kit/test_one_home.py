"""The kit's answers and counting have one home, which the IdP uses, and the kit imports
nothing of the IdP."""

import ast
from pathlib import Path

import pytest

from flowestate_kit import answers
from flowestate_kit import counting
from flowestate_kit import local_counters
from idp.core import bearer
from idp.core import secrets as cs
from idp.infra import ratelimit
from idp.web import guard

KIT = Path(__file__).resolve().parents[2] / "kit" / "flowestate_kit"


def kit_modules():
    """Every Python file of the kit's package."""
    return sorted(KIT.glob("*.py"))


def test_the_kit_has_the_modules_it_ships():
    assert {p.stem for p in kit_modules()} == {
        "__init__", "answers", "cache", "counting", "event_types", "events", "flask", "judge",
        "local_counters", "push", "sets", "ssf", "ssf_apply", "ssf_health", "ssf_loop",
        "ssf_stream", "ssf_transmitter", "wsgi"}


@pytest.mark.parametrize("path", kit_modules(), ids=lambda p: p.name)
def test_no_kit_module_imports_the_idp(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name != "idp" and not name.startswith(("idp.", "tests")), (path.name, name)


def test_answers_imports_only_the_standard_library():
    tree = ast.parse((KIT / "answers.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"re", "collections", "dataclasses"}


@pytest.mark.parametrize("name", bearer.__all__)
def test_the_idp_words_its_answers_with_the_kit_module(name):
    assert getattr(bearer, name) is getattr(answers, name)


def test_the_guard_builds_its_answers_from_the_same_module():
    assert guard.denial_parts is answers.denial_parts
    assert guard.www_authenticate is answers.www_authenticate


@pytest.mark.parametrize("name", ratelimit.__all__)
def test_the_idp_counts_with_the_kit_module(name):
    home = local_counters if name == "LocalCounters" else counting
    assert getattr(ratelimit, name) is getattr(home, name)


def test_the_kit_shapes_api_keys_as_the_idp_makes_them():
    assert cs.API_KEY_PREFIX is answers.API_KEY_PREFIX
    assert cs.API_KEY_PATTERN is answers.API_KEY_PATTERN
    for _ in range(50):
        assert answers.check_shape(cs.new_api_key()) is None
