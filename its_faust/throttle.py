"""What repeats with every record is told at most once a period, with how many came since.

A fault tends to repeat on every record: a covered camera sends blank frame after blank frame,
a producer with a bug has every record dead-lettered, a camera sampled slower than the tracker's
gap limit restarts its tracks at every frame. Told each time, it buries the log and the
camera-events topic; told once, a fault that goes on looks gone. So each kind of it (a key) is
told at its first occurrence, then at most once every ``every_s`` with how many came since; and
what was held back when they stop is told once its period is over (``overdue``, asked by a timer
or by the next record), so that the end of a burst is not lost.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)

_EPSILON_S = 1e-6  # times made as t0 + n/fps in floats: one due at exactly a period's end counts as due


class Throttle(Generic[K]):
    """Per key: the first occurrence told at once, then at most one every ``every_s``, with a count.

    ``keep``: how many keys are remembered, the least recently heard forgotten first (None: all). Keys
    that come from outside (a producer may invent a key a record) need the bound."""

    def __init__(self, every_s: float, keep: int | None = None):
        self.every_s, self.keep = every_s, keep
        # key -> [told at, held back since, the last held-back one's note], least recently heard first
        self._keys: OrderedDict[K, list] = OrderedDict()

    def hit(self, key: K, now: float, note: Any = None) -> int | None:
        """One more occurrence of ``key`` at ``now``. None: hold it back; else tell it, with this many
        occurrences since the last one told, itself included. ``note`` (a reason) is what ``overdue``
        gives for the last one held back."""
        state = self._keys.get(key)
        if state is not None:
            self._keys.move_to_end(key)
            if not self._due(state, now):
                state[1:] = [state[1] + 1, note]
                return None
        self._keys[key] = [now, 0, None]
        if self.keep is not None and len(self._keys) > self.keep:
            self._keys.popitem(last=False)
        return 1 + (state[1] if state is not None else 0)

    def overdue(self, now: float, *, whole_period: bool = True) -> list[tuple[K, int, Any]]:
        """(key, how many, the last one's note) of what was held back for a whole period: told now.
        ``whole_period=False``: all that is held back (a process about to stop tells it all)."""
        told = []
        for key, state in self._keys.items():
            if state[1] and (not whole_period or self._due(state, now)):
                told.append((key, state[1], state[2]))
                state[:] = [now, 0, None]
        return told

    def _due(self, state: list, now: float) -> bool:
        return now - state[0] >= self.every_s - _EPSILON_S
