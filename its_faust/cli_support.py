"""What every command shares: options that become settings, settings loaded or one error line."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from typing import NoReturn

import click

from its_faust.settings import Settings, get_settings, invalid_settings, unknown_variables

# ITS_FAUST_... variable -> the option that set it in this process, so an error names what the user typed.
_options_given: dict[str, str] = {}


def fail(problem: BaseException | str, code: int = 2) -> NoReturn:
    from its_faust.logs import json_line, json_logging

    # With JSON logs (staging, production), the line that says why the command ended is one of them too.
    click.echo(json_line(logging.ERROR, "its_faust", f"its-faust: error: {problem}") if json_logging()
               else f"its-faust: error: {problem}", err=True)
    sys.exit(code)


def terminal_safe(text: str) -> str:
    """``text`` with its control characters written out (``\\x1b``): a camera's name or a record's key that any
    producer wrote is printed on a terminal, where an escape sequence had cleared the screen and a newline
    printed a row of its own (an odd-names trial)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def set_env(**values) -> None:
    """Options given on the command line become settings for this process and its children."""
    for key, value in values.items():
        if value is not None:
            variable = f"ITS_FAUST_{key.upper()}"
            os.environ[variable] = str(value)
            _options_given[variable] = "--broker" if key == "broker_url" else "--" + key.split("__")[-1].replace("_", "-")
    get_settings.cache_clear()


def settings_or_fail() -> Settings:
    try:
        settings = get_settings()
    except ValueError as exc:  # a bad value, an unknown profile, a value that is not JSON where JSON is needed
        message = invalid_settings(exc)
        for variable, option in _options_given.items():
            message = message.replace(f"{variable}:", f"{option} ({variable}):")
        fail(message)
    _warn_of_unknown_variables()
    return settings


@functools.cache
def _warn_of_unknown_variables() -> None:
    """Once a process: ITS_FAUST_ variables that are no setting (a typo would otherwise change nothing, silently)."""
    for name, like in unknown_variables():
        hint = f"did you mean {like}?" if like else "`its-faust settings` lists them"
        click.echo(f"its-faust: warning: {name} is not a setting and changes nothing ({hint})", err=True)


def running_broker(broker_url: str | None, needs: str, start: str = "`its-faust broker`", unreachable_code: int = 2) -> str:
    """The bootstrap servers of the running broker a command works with, checked; else one error line.

    ``needs``: how the error begins, e.g. "cameras needs a running broker and worker"; ``start``: what starts one;
    ``unreachable_code``: the exit status when the broker set does not answer (none set is a usage error, 2).
    """
    from its_faust.broker import BrokerError, bootstrap_servers, wait_reachable

    set_env(broker_url=broker_url)  # checked like the setting it stands for
    url = settings_or_fail().broker_url
    if not url:
        fail(f"{needs}: set ITS_FAUST_BROKER_URL or --broker (start: {start}; `its-faust demo` prints the URL of its own)")
    try:
        wait_reachable(url, 5.0)
    except BrokerError as exc:
        fail(str(exc), code=unreachable_code)
    return bootstrap_servers(url)


def stop_on_terminate() -> None:
    """SIGTERM (kill, timeout, systemd) and SIGHUP (the terminal closed) stop a command the way Ctrl-C
    does, so it stops what it started (broker and workers run in sessions of their own, out of reach
    of a signal sent to this one; the API is stopped in turn) instead of leaving them running."""
    forwarded = False

    def forward_once(*_) -> None:
        # Only the first: a second TERM (systemd, a supervisor repeating itself) must not cut that stop short.
        nonlocal forwarded
        if not forwarded:
            forwarded = True
            os.kill(os.getpid(), signal.SIGINT)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup ignores SIGHUP: it keeps running then
            signal.signal(sig, forward_once)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell, which ignores SIGINT for it; the forwarded SIGINT must
        # still land, so a stray Ctrl-C to that shell's process group now stops it the same clean way.
        signal.signal(signal.SIGINT, signal.default_int_handler)


class StopSoftly:
    """For commands that can end early with a result: while installed in the running loop, the first Ctrl-C,
    SIGTERM or SIGHUP sets ``event`` once ``ready`` (there is work to finish: the command stops its source
    and sums up what it did), calling ``on_first``; a second one, or one before that, cancels the command's
    task, as Ctrl-C does everywhere else. Any after that are let be: the task is stopping what it started,
    and cut short it would leave those running.

    Leaving it with the result in hand (no exception), Ctrl-C stays held until ``release``: the loop's
    shutdown and the printing of the summary take a moment, and one Ctrl-C then must not throw away a
    result that is already whole; a second one aborts, should that shutdown hang. SIGTERM and SIGHUP
    abort at once then (a supervisor sends one, and waits). Leaving it with an exception, or on
    ``release``, the handlers from before are back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, on_first=lambda: None):
        self.event = asyncio.Event()
        self.ready = False
        self.on_first = on_first
        self._cancelled = False
        self._held_once = False
        self._before: dict[int, object] = {}

    def __enter__(self) -> "StopSoftly":
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in self.SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                self._before[sig] = signal.getsignal(sig)
                self._loop.add_signal_handler(sig, self._interrupted)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for sig in self._before:
            self._loop.remove_signal_handler(sig)
            signal.signal(sig, self._held if sig == signal.SIGINT else self._abort)
        if exc_type is not None:
            self.release()

    def release(self) -> None:
        """The result is out (or there is none): signals act as they did before."""
        for sig, handler in self._before.items():
            if getattr(getattr(handler, "func", None), "__name__", "") == "_on_sigint":
                # asyncio.run's own, for its run alone (it puts Python's back after, unless replaced, as here)
                handler = signal.default_int_handler
            signal.signal(sig, handler)
        self._before = {}

    def _held(self, *_) -> None:
        if self._held_once:
            raise KeyboardInterrupt
        self._held_once = True

    @staticmethod
    def _abort(*_) -> None:
        raise KeyboardInterrupt

    def _interrupted(self) -> None:
        if self.ready and not self.event.is_set():
            self.event.set()
            self.on_first()
        elif not self._cancelled:
            self._cancelled = True
            self._task.cancel()
