"""When detection cannot keep up with every live camera, each gets a fair share of what it can do.

Live frames over ``model.live_frame_max_age_s`` old are shed (:mod:`its_faust.stale_frames`). Shedding by age
alone is not fair: the frames of the cameras of a partition queue in the order they came, and which of them is
just under the limit when a slot frees up depends on how the cameras' frame times fall against the time a
detection takes. Cameras paced alike fall the same way every time. In a trial with 8 cameras at 8 fps each on 2
cores, one camera got 0.9 frames a second, another 4.2, on the same partition; the starved camera's line counted
no vehicle for 7 minutes (a track needs several frames to count).

So a camera that has had more frames detected lately than one whose frames go stale gives way: while the stage
is behind (a frame over half the age limit old: ``stale_frames.PRESSURE``), its frame is shed, and the slot goes to
the frames behind it. Cameras whose frames are all detected hold nobody back, so a slow camera beside fast ones
does not cap them. Nor does a camera that giving way does not help: one with no frame detected for ``HOPELESS_S``
while its frames went stale (its clock further behind the worker's than the age limit, or its frames that long on
the way) would otherwise have every other camera give way for ever, to no one (a review: 24 frames detected a
minute of 480). Frames of files (with a ``scene_time``) are never shed, and take no part.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 5.0  # detections counted over this long
SLACK = 1  # detections a camera may be ahead of a deprived one before it gives way
FORGET_AFTER_S = 60.0  # a camera not heard of for this long is forgotten
HOPELESS_S = 3 * WINDOW_S  # stale this long with no frame detected: giving way to it does not help


class FairShare:
    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._detected: dict[str, deque[float]] = {}  # camera -> when its frames were detected, last window_s
        self._deprived_at: dict[str, float] = {}  # camera -> when a frame of it was last shed as too old
        self._stale_since: dict[str, float] = {}  # camera -> its frames stale since, with none detected
        self._heard_at: dict[str, float] = {}
        self._pruned_at = 0.0

    def detected(self, camera_id: str, now: float) -> None:
        self._detected.setdefault(camera_id, deque()).append(now)
        self._stale_since.pop(camera_id, None)
        self._count(camera_id, now)  # (drops those out of the window: asked only while behind, it would grow)
        self._heard(camera_id, now)

    def went_stale(self, camera_id: str, now: float) -> None:
        self._deprived_at[camera_id] = now
        self._stale_since.setdefault(camera_id, now)
        self._heard(camera_id, now)

    def gives_way(self, camera_id: str, now: float) -> bool:
        """Whether the camera has had more detected lately than a camera whose frames went stale meanwhile, and
        that giving way can help."""
        deprived = [c for c, at in self._deprived_at.items() if now - at <= self.window_s and c != camera_id
                    and now - self._stale_since.get(c, now) < HOPELESS_S]
        if not deprived:
            return False
        mine = self._count(camera_id, now)
        return any(self._count(c, now) + SLACK < mine for c in deprived)

    def _count(self, camera_id: str, now: float) -> int:
        times = self._detected.get(camera_id)
        if not times:
            return 0
        while times and now - times[0] > self.window_s:
            times.popleft()
        return len(times)

    def _heard(self, camera_id: str, now: float) -> None:
        self._heard_at[camera_id] = now
        if now - self._pruned_at > FORGET_AFTER_S:  # (any producer may invent cameras: none is held for ever)
            self._pruned_at = now
            for gone in [c for c, at in self._heard_at.items() if now - at > FORGET_AFTER_S]:
                self._heard_at.pop(gone)
                self._detected.pop(gone, None)
                self._deprived_at.pop(gone, None)
                self._stale_since.pop(gone, None)
