"""Integration set-up: a real embedded broker and real worker processes per module."""

from __future__ import annotations

import asyncio

import pytest

from its_faust.pipeline import Stack


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory):
    """Broker + one worker, shared by the tests of a module."""
    stack = Stack(settings, workers=1, workdir=tmp_path_factory.mktemp("stack"))
    asyncio.run(stack.start())
    yield stack
    asyncio.run(stack.stop())
