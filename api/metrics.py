"""Prometheus metrics of the API process: its own (SSE clients, events sent) and, at each scrape, the system's
figures as the read models hold them (per camera, line, zone and worker)."""

from __future__ import annotations

import time
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from schemas.analytics import AlertKind


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.clients = Gauge("its_faust_api_sse_clients", "Connected SSE clients", ["feed"], registry=self.registry)
        self.sent = Counter("its_faust_api_sse_events_sent_total", "Events sent to SSE clients", ["feed"], registry=self.registry)
        self.dropped = Counter("its_faust_api_sse_events_dropped_total",
                               "Events a client missed because it was too far behind", ["feed"], registry=self.registry)
        self.lag = Gauge("its_faust_worker_lag_messages", "Messages the workers have not committed yet", ["topic"],
                         registry=self.registry)
        self.broker_up = Gauge("its_faust_broker_up", "1 while the broker answers the API's probe (every 2 s), else 0",
                               registry=self.registry)
        self.lag_age = Gauge("its_faust_worker_lag_age_seconds", "Since the lag figures were read from the broker "
                             "(a scrape waits 3 s for a read, then gives the last figures up to 30 s old; NaN: none)",
                             registry=self.registry)
        self.embedded_broker_bytes = Gauge(
            "its_faust_embedded_broker_bytes", "Resident memory of the embedded broker, which keeps every record and "
            "slows as it fills (NaN: Kafka, or a broker this machine does not run)", registry=self.registry)

    def watch(self, hub) -> None:
        """Read ``hub``'s figures at every scrape (a Hub's read models, once it has started)."""
        self.registry.register(HubFigures(hub))


class HubFigures:
    """A collector: what the hub's rings and read models hold, as metrics, read when Prometheus scrapes."""

    def __init__(self, hub):
        self.hub = hub

    def describe(self):
        return []  # the cameras, lines and zones are only known at a scrape

    def collect(self):
        hub, now = self.hub, time.time()
        held = GaugeMetricFamily("its_faust_api_ring_messages", "Messages held in memory", labels=["topic"])
        received = CounterMetricFamily("its_faust_api_ring_received", "Messages read from the broker since the API started",
                                       labels=["topic"])
        refused = CounterMetricFamily("its_faust_api_ring_refused", "Messages left out of their feed since the API "
                                      "started: not their topic's record, or not their key's camera", labels=["topic"])
        for ring in hub.rings.values():
            held.add_metric([ring.topic], ring.held())
            received.add_metric([ring.topic], ring.received)
            refused.add_metric([ring.topic], ring.refused)
        workers = GaugeMetricFamily("its_faust_workers", "Workers by state, from their own reports (its.workers)",
                                    labels=["state"])
        states = [w["state"] for w in hub.workers.view(now)]
        for state in ("running", "recovering", "stopped", "gone"):
            workers.add_metric([state], states.count(state))
        yield from (held, received, refused, workers, self._dead_letters())
        yield from self._cameras(now)

    def _dead_letters(self):
        """By camera and stage; keys that are no camera configured or tracked (any producer may invent them) are
        summed as "other", so that they cannot flood Prometheus with series."""
        hub = self.hub
        letters = CounterMetricFamily("its_faust_dead_letters", "Records the stages dead-lettered, as the API has read "
                                      "them (its.dead-letters), by camera (other: keys that are no known camera)",
                                      labels=["key", "stage"])
        summed: dict[tuple[str, str], int] = {}
        for key, stages in hub.dead_letters.counts.items():
            known = hub.cameras.get(key) is not None or key.encode() in hub.tracked.frames
            for stage, n in stages.items():
                label = (key if known else "other", stage)
                summed[label] = summed.get(label, 0) + n
        for labels, n in summed.items():
            letters.add_metric(list(labels), n)
        return letters

    def _cameras(self, now: float):
        hub = self.hub
        frames = CounterMetricFamily("its_faust_camera_frames_tracked",
                                     "The camera's tracked frames the API has read since it started", labels=["camera"])
        objects = GaugeMetricFamily("its_faust_camera_objects", "Objects tracked in the camera's newest frame; 0 once the camera has "
                                    "been silent for analytics.camera_silent_s",
                                    labels=["camera"])
        age = GaugeMetricFamily("its_faust_camera_last_frame_age_seconds",
                                "Since the camera's newest frame was tracked (a stopped camera's grows)", labels=["camera"])
        latency = GaugeMetricFamily("its_faust_camera_latency_seconds",
                                    "From capture to tracked, for the camera's newest frame", labels=["camera"])
        silent_s = hub.settings.analytics.camera_silent_s
        for record, count in hub.tracked.latest():
            if hub.cameras.removed(record.camera_id) or hub.tracked.before_removal(record):
                # A removed camera's series go (its last frame's age grew for ever: an alarm on stale cameras kept
                # firing for one that is no more); one added again has none until its next frame.
                continue
            camera, since = [record.camera_id], max(0.0, now - record.tracked_at)
            frames.add_metric(camera, count)
            # Workers close a camera silent this long: its tracks end, though no frame says so.
            objects.add_metric(camera, 0 if 0 < silent_s < since else len(record.objects))
            age.add_metric(camera, since)
            latency.add_metric(camera, max(0.0, record.tracked_at - record.captured_at))
        # A camera whose frames are shed needs more workers (or fewer cameras): the signal to scale on.
        shed = CounterMetricFamily("its_faust_camera_frames_shed",
                                   "The camera's live frames the workers shed, too old when detection reached them "
                                   "(the pipeline was behind), as reported since the API started", labels=["camera"])
        for camera_id, n in hub.camera_events.shed_total.items():
            if not hub.cameras.removed(camera_id):
                shed.add_metric([camera_id], n)
        yield from (frames, objects, age, latency, shed)
        yield from self._lines_and_zones()
        yield self._alerts()

    def _lines_and_zones(self):
        """As the API's routes give them: only the lines and zones each camera has now."""
        hub = self.hub
        crossings = GaugeMetricFamily("its_faust_line_crossings", "Vehicles counted on the line since it was added",
                                      labels=["camera", "line", "direction", "label"])
        for u in hub.counts.all_current(hub.cameras.get):
            crossings.add_metric([u.camera_id, u.line, u.direction, u.label], u.total)
        occupancy = GaugeMetricFamily("its_faust_zone_occupancy", "Vehicles in the zone, as of its last event (0 before any)",
                                      labels=["camera", "zone"])
        figures = [(s.camera_id, s.zone, s.occupancy) for s in hub.zones.all_current(hub.cameras.get)]
        idle = [(c.camera_id, zone, 0) for c in hub.cameras.all() for zone in hub.zones.idle(c.camera_id, c)]
        for camera, zone, n in sorted(figures + idle):
            occupancy.add_metric([camera, zone], n)
        return crossings, occupancy

    def _alerts(self):
        """Every kind for every configured camera, 0 when none is active (a series that vanishes reads as no data)."""
        hub = self.hub
        alerts = GaugeMetricFamily("its_faust_alerts_active", "Alerts raised and not cleared", labels=["camera", "kind"])
        active = {(c.camera_id, kind): 0 for c in hub.cameras.all() for kind in get_args(AlertKind)}
        for alert in hub.alerts_of(None)[1]:
            active[(alert.camera_id, alert.kind)] = active.get((alert.camera_id, alert.kind), 0) + 1
        for (camera, kind), n in sorted(active.items()):
            alerts.add_metric([camera, kind], n)
        return alerts
