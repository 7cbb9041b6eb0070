"""What the analytics actor makes of a frame (or of a close), on its way out: each record with its topic, and
the log line of each alert. Shared by the analyze agent and its closer of silent cameras, so that an alert
reads the same whichever of them ended it."""

from __future__ import annotations

import logging

from its_faust import topics
from tables.camera_analytics import FrameOutput

_alerts_log = logging.getLogger("agents.analyze")  # whoever ends them, alerts are the analyze stage's


def records_of(out: FrameOutput):
    """A frame's (or a close's) outputs, each with its topic."""
    for topic, items in ((topics.crossings, out.crossings), (topics.zone_events, out.zone_events),
                         (topics.alerts, out.alerts)):
        for item in items:
            yield topic, item


def log_alerts(out: FrameOutput) -> None:
    for alert in out.alerts:
        _alerts_log.info("analyze: %s alert %s %s: %s", alert.camera_id, alert.state, alert.alert_id, alert.message)
