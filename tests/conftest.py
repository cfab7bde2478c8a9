"""Shared fixtures. Importing the toy family registers it, so registry-wide contract tests
cover a second family besides the maze."""

import tests.toy_family  # noqa: F401
