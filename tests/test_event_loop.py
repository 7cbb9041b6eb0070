import asyncio
import sys

import pytest

from its_faust import event_loop


@pytest.fixture(autouse=True)
def _keep_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def _new_loop_module() -> str:
    loop = asyncio.new_event_loop()
    try:
        return type(loop).__module__.split(".")[0]
    finally:
        loop.close()


def test_auto_installs_uvloop_where_it_is_installed():
    assert event_loop.install("auto") == "uvloop"
    assert _new_loop_module() == "uvloop"


def test_asyncio_puts_the_standard_loop_back():
    event_loop.install("uvloop")
    assert event_loop.install("asyncio") == "asyncio"
    assert _new_loop_module() == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(monkeypatch):
    asyncio.set_event_loop_policy(None)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    assert event_loop.install("auto") == "asyncio"
    assert _new_loop_module() == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        event_loop.install("uvloop")
