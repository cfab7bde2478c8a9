"""The slow-tier table names tests and fixtures that exist, so a rename cannot silently move a
slow test into the quick tier."""

import re

import pytest

from tests.slow_tier import ROOT, SLOW_FIXTURES, SLOW_TESTS, is_slow


@pytest.mark.parametrize("where", sorted(set(SLOW_TESTS) | set(SLOW_FIXTURES)))
def test_listed_names_are_defined_in_their_module(where):
    text = (ROOT / where).read_text()
    defined = set(re.findall(r"^\s*def (\w+)\(", text, re.M))
    missing = (SLOW_TESTS.get(where, set()) | SLOW_FIXTURES.get(where, set())) - defined
    assert not missing, f"{where}: {sorted(missing)}"


def test_listed_tests_and_fixture_users_are_slow_and_others_are_not():
    class Item:  # the parts of a pytest item that is_slow reads
        def __init__(self, where, name, fixtures=()):
            self.fspath, self.originalname = ROOT / where, name
            self.name, self.fixturenames = name, list(fixtures)

    where, name = "tests/ued/test_golden.py", "test_golden"
    assert is_slow(Item(where, name))
    fixture_user = Item("tests/ued/test_parallel.py", "test_anything", ["tmp_path", "checks"])
    assert is_slow(fixture_user)
    assert not is_slow(Item("tests/ued/test_parallel.py", "test_anything", ["tmp_path"]))
    assert not is_slow(Item("tests/test_slow_tier.py", "test_listed_names_are_defined"))
