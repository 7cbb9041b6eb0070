"""The ``camera-config`` table: each camera's current configuration, folded from its commands.

Keyed by camera id like every per-camera topic, so with the same partition
count a camera's configuration lives on the worker that owns its tracks: the
analytics actor reads it locally.
"""

from __future__ import annotations

from its_faust.app import table
from its_faust.codecs import decode
from schemas.control import CameraConfig

config_table = table("camera-config", key_type=bytes, value_type=bytes)


_decoded: dict[bytes, tuple[bytes, CameraConfig]] = {}


def current_config(key: bytes) -> CameraConfig | None:
    """The camera's configuration; decoded again only when the stored bytes change (it is read every frame)."""
    stored = config_table.get(key)
    if not stored:
        return None
    cached = _decoded.get(key)
    if cached is None or cached[0] != stored:
        cached = _decoded[key] = (stored, decode(CameraConfig, stored))
    return cached[1]
