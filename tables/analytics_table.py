"""The ``camera-analytics`` table: each camera's analytics memory (tracks, line sides, zones, incident timers, alerts, last seq)."""

from __future__ import annotations

from its_faust.app import settings, table
from its_faust.codecs import decode, encode
from tables.actor_cache import ActorCache
from tables.camera_analytics import AnalyticsState, CameraAnalytics

analytics_states = table("camera-analytics", key_type=bytes, value_type=bytes)


def _build(camera_id: str, stored: bytes | None) -> CameraAnalytics:
    return CameraAnalytics(camera_id, decode(AnalyticsState, stored) if stored else None, settings.analytics,
                           settings.tracker)


def analytics_cache() -> ActorCache[CameraAnalytics]:
    return ActorCache(analytics_states, _build, lambda actor: encode(actor.state()))
