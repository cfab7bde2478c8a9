"""Shared fixtures. Importing the toy family registers it, so registry-wide contract tests
cover a second family besides the maze."""

import tests.toy_family  # noqa: F401


def pytest_addoption(parser):
    parser.addoption(
        "--all-experiments",
        action="store_true",
        help="tests that train shipped experiments run every one of them, not a representative few",
    )
