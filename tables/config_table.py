"""The ``camera-config`` table: each camera's current configuration, folded from its commands.

Keyed by camera id like every per-camera topic, so with the same partition
count a camera's configuration lives on the worker that owns its tracks: the
analytics actor reads it locally.
"""

from __future__ import annotations

from its_faust.app import table
from its_faust.codecs import decode
from schemas.control import CameraConfig
from tables.camera_config import AsAdded

config_table = table("camera-config", key_type=bytes, value_type=bytes)


_decoded: dict[bytes, tuple[bytes, AsAdded]] = {}


def current_config(key: bytes) -> CameraConfig | None:
    """The camera's configuration; decoded again only when the stored bytes change (it is read every frame)."""
    as_added = _as_added(key)
    return as_added.config if as_added is not None else None


def config_at(key: bytes, at: float) -> CameraConfig | None:
    """The camera's configuration with only the lines and zones added by ``at`` (a frame's ``tracked_at``; see
    :class:`tables.camera_config.AsAdded`)."""
    as_added = _as_added(key)
    return as_added.at(at) if as_added is not None else None


def _as_added(key: bytes) -> AsAdded | None:
    stored = config_table.get(key)
    if not stored:
        return None
    cached = _decoded.get(key)
    if cached is None or cached[0] != stored:
        cached = _decoded[key] = (stored, AsAdded(decode(CameraConfig, stored)))
    return cached[1]
