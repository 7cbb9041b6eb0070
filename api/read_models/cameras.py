"""What the API knows of each camera: its configuration, whether its frames arrive, and its newest tracks."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from api.read_models.camera_sets import CamerasByPartition
from api.topic_ring import Message
from its_faust.codecs import SchemaError, decode, decode_or_none
from schemas.control import CameraConfig
from schemas.tracks import TrackRecord


class Cameras:
    def __init__(self, on_removed: Callable[[CameraConfig], None] | None = None):
        self.configs: dict[str, CameraConfig] = {}
        self._partitions = CamerasByPartition()
        self.on_removed = on_removed  # told of each removal (what other read models hold of the camera goes)

    def apply(self, m: Message) -> None:
        try:
            config = m.decoded(CameraConfig)
        except SchemaError:
            return
        self._partitions.note(config.camera_id, m.partition)
        self.put(config)

    def forget_partition(self, partition: int) -> None:
        for camera_id in self._partitions.take(partition):
            self.configs.pop(camera_id, None)

    def put(self, config: CameraConfig) -> None:
        """A configuration the API just saw applied (the topic will bring it too)."""
        known = self.configs.get(config.camera_id)
        if known is None or config.version >= known.version:
            self.configs[config.camera_id] = config
            if config.removed and self.on_removed is not None:
                self.on_removed(config)

    def get(self, camera_id: str) -> CameraConfig | None:
        config = self.configs.get(camera_id)
        return None if config is None or config.removed else config

    def is_configured(self, camera_id: str) -> bool:
        return self.get(camera_id) is not None

    def removed(self, camera_id: str) -> bool:
        """Whether the camera was configured and then removed (and not added again)."""
        config = self.configs.get(camera_id)
        return config is not None and config.removed

    def all(self) -> list[CameraConfig]:
        return sorted((c for c in self.configs.values() if not c.removed), key=lambda c: c.camera_id)


class FramesArriving:
    """Per camera: when its newest frame was sent (``its.frames``' Kafka time), whether or not anything tracked it,
    so that a camera whose frames come while no worker tracks them is told from one that stopped sending.
    Bounded like TrackedCameras (any producer may write the topic)."""

    def __init__(self, max_cameras: int = 10_000):
        self.max_cameras = max_cameras
        self.sent_at: OrderedDict[bytes, float] = OrderedDict()

    def apply(self, m: Message) -> None:
        if not m.key:
            return
        # Sent at most now: one frame stamped in the future (any producer may) must not keep it "arriving".
        self.sent_at[m.key] = max(min(m.timestamp, time.time()), self.sent_at.get(m.key, float("-inf")))
        self.sent_at.move_to_end(m.key)
        if len(self.sent_at) > self.max_cameras:
            self.sent_at.popitem(last=False)

    def newest(self, camera_id: str) -> float | None:
        return self.sent_at.get(camera_id.encode())


class TrackedCameras:
    """Per camera: frames tracked since the API started, and the newest track record.

    A frame's record that comes again (a worker replaced before it committed tracks it again: same seq)
    is not counted again: a seq not above the camera's last is a repeat, unless it is over
    ``RESTARTED_BELOW`` below it (a producer that started its seqs again).
    Bounded like CameraEvents: the ``max_cameras`` heard from most recently (any producer may write).
    """

    RESTARTED_BELOW = 1_000  # (as the tracker judges it: its_faust/seqs_behind.py)

    def __init__(self, max_cameras: int = 10_000):
        self.max_cameras = max_cameras
        self.frames: OrderedDict[bytes, int] = OrderedDict()
        self.newest: dict[bytes, Message] = {}
        self._last_seq: dict[bytes, int] = {}
        self._removed_at: dict[str, float] = {}  # camera -> when it was last removed

    def camera_removed(self, config: CameraConfig) -> None:
        """The camera's frames tracked before this are not what it shows once added again (kept: counted).

        Its time is the commanding host's (``updated_at``), records' the workers': no later than when this API
        learned of it, so a host whose clock is ahead does not blank the camera's frames once it is added again."""
        removed_at = min(config.updated_at, time.time())
        self._removed_at[config.camera_id] = max(self._removed_at.get(config.camera_id, removed_at), removed_at)

    def removed_at(self, camera_id: str, default: float) -> float:
        """When the camera was last removed, as :meth:`camera_removed` took it (``default`` if not known)."""
        return self._removed_at.get(camera_id, default)

    def before_removal(self, record: TrackRecord) -> bool:
        """Whether the record was tracked before its camera was last removed: a camera added again showed the
        vehicles of then in view, and live (a trial)."""
        removed_at = self._removed_at.get(record.camera_id)
        return removed_at is not None and record.tracked_at <= removed_at

    def apply(self, m: Message) -> None:
        if not m.key:
            return
        seq = m.record.seq if isinstance(m.record, TrackRecord) else None
        last = self._last_seq.get(m.key)
        if seq is not None and last is not None and last - self.RESTARTED_BELOW <= seq <= last:
            return  # a frame tracked again
        if seq is not None:
            self._last_seq[m.key] = seq
        self.frames[m.key] = self.frames.get(m.key, 0) + 1
        self.frames.move_to_end(m.key)
        self.newest[m.key] = m
        if len(self.frames) > self.max_cameras:
            gone, _ = self.frames.popitem(last=False)
            self.newest.pop(gone, None)
            self._last_seq.pop(gone, None)

    def frame_size(self, camera_id: str) -> tuple[int, int] | None:
        """(width, height) of the camera's newest tracked frame; None when none is held (or it does not decode)."""
        message = self.newest.get(camera_id.encode())
        record = decode_or_none(TrackRecord, message.value) if message else None
        return (record.width, record.height) if record else None

    def silent_for(self, camera_id: str, seconds: float, now: float) -> bool:
        """Whether the camera's newest track record held was tracked over ``seconds`` before ``now`` (wall
        clock). A camera none of whose records is held is not judged: False."""
        message = self.newest.get(camera_id.encode())
        record = decode_or_none(TrackRecord, message.value) if message else None
        return record is not None and now - record.tracked_at > seconds

    def latest(self) -> list[tuple[TrackRecord, int]]:
        """Each camera's newest track record and how many were read, by camera id (records that do not decode left out)."""
        out = []
        for key, count in self.frames.items():
            try:
                out.append((decode(TrackRecord, self.newest[key].value), count))
            except SchemaError:
                continue
        return sorted(out, key=lambda pair: pair[0].camera_id)
