"""Integration set-up: a real embedded broker and real worker processes per module."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from its_faust.pipeline import Stack


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    # This hook sees the whole session's items: mark only the ones in this folder.
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory):
    """Broker + one worker, shared by the tests of a module."""
    stack = Stack(settings, workers=1, workdir=tmp_path_factory.mktemp("stack"))
    asyncio.run(stack.start())
    yield stack
    asyncio.run(stack.stop())


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    """An API process on the module's stack (small rings, frames held 3 s and quick heartbeats, to test their limits)."""
    from api.process import ApiProcess

    process = ApiProcess(stack.broker_url, tmp_path_factory.mktemp("api") / "api.log", ring_size=3000, heartbeat_s=1,
                         frames_keep_s=3).start()
    yield process
    process.stop()
