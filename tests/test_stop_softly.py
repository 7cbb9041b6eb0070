"""StopSoftly: how a command that can end early with a result takes Ctrl-C, before and after that result."""

import asyncio
import os
import signal

import pytest

from its_faust.cli_support import StopSoftly


@pytest.fixture(autouse=True)
def default_handlers():
    before = {sig: signal.getsignal(sig) for sig in StopSoftly.SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


async def _interrupt_and_wait(stop: StopSoftly, times: int = 1):
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)


def test_the_first_ctrl_c_once_ready_asks_for_a_soft_stop_and_the_second_cancels():
    stop = StopSoftly()
    stopped = []
    stop.on_first = lambda: stopped.append(True)

    async def command():
        with stop:
            stop.ready = True
            await _interrupt_and_wait(stop)
            assert stop.event.is_set() and stopped == [True]
            await _interrupt_and_wait(stop)  # cancels this task
            return "finished"

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(command())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # back as before


def test_a_ctrl_c_before_ready_cancels_at_once():
    stop = StopSoftly()

    async def command():
        with stop:
            await _interrupt_and_wait(stop)
            return "finished"

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(command())
    assert not stop.event.is_set()


def test_one_ctrl_c_after_the_result_is_in_does_not_lose_it_a_second_aborts_and_release_restores():
    stop = StopSoftly()

    async def command():
        with stop:
            stop.ready = True
        return "result"

    assert asyncio.run(command()) == "result"
    os.kill(os.getpid(), signal.SIGINT)  # while the summary is printed: held
    with pytest.raises(KeyboardInterrupt):  # a second one: the user means it (a hung shutdown)
        os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):  # SIGTERM: a supervisor sends one and waits, so it aborts at once
        os.kill(os.getpid(), signal.SIGTERM)
    stop.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
