"""Shared test configuration: the real local stack fixture lives in its own plugin module."""

pytest_plugins = ["tests.conftest_stack"]
