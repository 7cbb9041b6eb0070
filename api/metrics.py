"""Prometheus metrics of the API process: its own (SSE clients, events sent) and, at each scrape, the system's
figures as the read models hold them (per camera, line, zone and worker)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.clients = Gauge("its_faust_api_sse_clients", "Connected SSE clients", ["feed"], registry=self.registry)
        self.sent = Counter("its_faust_api_sse_events_sent_total", "Events sent to SSE clients", ["feed"], registry=self.registry)
        self.dropped = Counter("its_faust_api_sse_events_dropped_total",
                               "Events a client missed because it was too far behind", ["feed"], registry=self.registry)
        self.lag = Gauge("its_faust_worker_lag_messages", "Messages the workers have not committed yet", ["topic"],
                         registry=self.registry)

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
        for ring in hub.rings.values():
            held.add_metric([ring.topic], ring.held())
            received.add_metric([ring.topic], ring.received)
        workers = GaugeMetricFamily("its_faust_workers", "Workers by state, from their own reports (its.workers)",
                                    labels=["state"])
        states = [w["state"] for w in hub.workers.view(now)]
        for state in ("running", "recovering", "stopped", "gone"):
            workers.add_metric([state], states.count(state))
        yield from (held, received, workers)
        yield from self._cameras(now)

    def _cameras(self, now: float):
        hub = self.hub
        frames = CounterMetricFamily("its_faust_camera_frames_tracked",
                                     "The camera's tracked frames the API has read since it started", labels=["camera"])
        objects = GaugeMetricFamily("its_faust_camera_objects", "Objects tracked in the camera's newest frame",
                                    labels=["camera"])
        age = GaugeMetricFamily("its_faust_camera_last_frame_age_seconds",
                                "Since the camera's newest frame was tracked (a stopped camera's grows)", labels=["camera"])
        latency = GaugeMetricFamily("its_faust_camera_latency_seconds",
                                    "From capture to tracked, for the camera's newest frame", labels=["camera"])
        for record, count in hub.tracked.latest():
            camera = [record.camera_id]
            frames.add_metric(camera, count)
            objects.add_metric(camera, len(record.objects))
            age.add_metric(camera, max(0.0, now - record.tracked_at))
            latency.add_metric(camera, max(0.0, record.tracked_at - record.captured_at))
        crossings = GaugeMetricFamily("its_faust_line_crossings", "Vehicles counted on the line since it was added",
                                      labels=["camera", "line", "direction", "label"])
        for (camera, line, direction, label), update in sorted(hub.counts.latest.items()):
            crossings.add_metric([camera, line, direction, label], update.total)
        occupancy = GaugeMetricFamily("its_faust_zone_occupancy", "Vehicles in the zone, as of its last event",
                                      labels=["camera", "zone"])
        for (camera, zone), stats in sorted(hub.zones.latest.items()):
            occupancy.add_metric([camera, zone], stats.occupancy)
        alerts = GaugeMetricFamily("its_faust_alerts_active", "Alerts raised and not cleared", labels=["camera", "kind"])
        active: dict[tuple[str, str], int] = {}
        for alert in hub.alerts.active.values():
            active[(alert.camera_id, alert.kind)] = active.get((alert.camera_id, alert.kind), 0) + 1
        for (camera, kind), n in sorted(active.items()):
            alerts.add_metric([camera, kind], n)
        yield from (frames, objects, age, latency, crossings, occupancy, alerts)
