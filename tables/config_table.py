"""The ``camera-config`` table: each camera's current configuration, folded from its commands.

Keyed by camera id like every per-camera topic, so with the same partition
count a camera's configuration lives on the worker that owns its tracks: the
analytics actor reads it locally.
"""

from __future__ import annotations

from its_faust.app import app, settings
from its_faust.codecs import decode
from schemas.control import CameraConfig

camera_configs = app.Table("camera-config", key_type=bytes, value_type=bytes, partitions=settings.partitions)


def current_config(key: bytes) -> CameraConfig | None:
    stored = camera_configs.get(key)
    return decode(CameraConfig, stored) if stored else None
