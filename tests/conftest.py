"""Shared test configuration: the real local stack fixture lives in its own plugin module."""

import gc
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.conftest_stack"]


@pytest.fixture(autouse=True)
def _heap_not_left_frozen() -> Iterator[None]:
    """An extraction worker freezes its heap after loading a model (`streams.agents.extract.settle_heap`);
    a test that builds one must not leave the whole test process frozen for the tests after it."""
    yield
    gc.unfreeze()
