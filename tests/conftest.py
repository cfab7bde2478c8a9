"""Shared fixtures. Importing the toy family registers it, so registry-wide contract tests
cover a second family besides the maze."""

import pytest

import tests.toy_family  # noqa: F401


def pytest_addoption(parser):
    parser.addoption(
        "--all-experiments",
        action="store_true",
        help="tests that train shipped experiments or presets run every one, not a few",
    )


def pytest_collection_modifyitems(config, items):
    from tests.slow_tier import is_slow

    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)
