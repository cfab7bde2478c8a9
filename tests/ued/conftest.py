"""Markers of the tests under ``tests/ued``."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long (a compile each); skipped unless UED_SLOW_TESTS=1 is set"
    )
