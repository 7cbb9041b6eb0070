"""The API process against the real broker: SSE resume, slow clients, REST, live view.

Feeds are fed by producing records straight onto the result topics (any Kafka
client may), so the expected sequence is known exactly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from aiokafka import AIOKafkaProducer

from api.sse import parse_cursor
from api.sse_client import sse_events
from its_faust.cameras import CameraSetup, parse_line
from its_faust.codecs import encode
from its_faust.pipeline import analyze_source
from its_faust.topic_names import ALERTS, CAMERA_EVENTS, FRAMES, TRACKS
from its_faust.worker import LIVENESS_TOUCH_S, WorkerProcess
from schemas.analytics import Alert, FrameRef
from schemas.camera_events import CameraEvent
from schemas.frames import FrameRecord
from schemas.geometry import Zone
from schemas.tracks import TrackRecord


def alert(camera: str, i: int, size: int = 0) -> Alert:
    return Alert(camera_id=camera, seq=i, captured_at=time.time(), alert_id=f"{camera}:test:{i}", kind="congestion",
                 state="raised", severity="info", subject=f"zone-{i}", started_at=time.time(),
                 snapshot=FrameRef(camera_id=camera, seq=i), message="x" * size or f"test {i}")


async def produce(bootstrap: str, topic: str, records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, key=r.camera_id.encode(), value=encode(r))
        await producer.flush()
    finally:
        await producer.stop()


async def take(url: str, n: int, last_event_id: str | None = None, timeout: float = 30.0, got: list | None = None,
               others: list | None = None):
    """The first ``n`` record events (and the other event kinds seen) from ``url``; ``got`` and ``others``
    (when given) fill as they come, for a caller that watches the progress."""
    got = [] if got is None else got
    others = [] if others is None else others
    last_id = last_event_id
    async with httpx.AsyncClient() as client:
        async def read():
            nonlocal last_id
            async for event in sse_events(client, url, last_event_id):
                if event.get("event") == "alert":
                    got.append(json.loads(event["data"])["alert_id"])
                    last_id = event["id"]
                    if len(got) == n:
                        return
                else:
                    others.append(event)
                    last_id = event.get("id", last_id)

        await asyncio.wait_for(read(), timeout)
    return got, others, last_id


def test_sse_resumes_exactly_across_reconnects_and_an_api_restart(stack, settings, api):
    camera = "sse-cam"
    url = f"{api.base}/api/v1/cameras/{camera}/alerts/stream"
    topic = settings.topic(ALERTS)
    expected = [f"{camera}:test:{i}" for i in range(120)]

    async def go():
        # Start from "now" (hello gives the position), then 50 records arrive.
        _, hello, start_id = await take(url, 0) if False else ([], [], None)
        async with httpx.AsyncClient() as client:
            async for event in sse_events(client, url):
                start_id = event["id"]  # the hello event: the position now
                break
        await produce(stack.bootstrap, topic, [alert(camera, i) for i in range(50)])
        first, _, last = await take(url, 20, start_id)
        rest, _, last = await take(url, 30, last)  # reconnect: the next 30, no gap, no repeat
        await produce(stack.bootstrap, topic, [alert(camera, i) for i in range(50, 100)])
        more, _, last = await take(url, 50, last)
        await asyncio.to_thread(api.restart)  # a new process: it refills its ring from the topic
        await produce(stack.bootstrap, topic, [alert(camera, i) for i in range(100, 120)])
        after_restart, _, _ = await take(url, 20, last)
        from_start_again, _, _ = await take(url, 120, start_id)  # an old position, on the new process
        return first + rest + more + after_restart, from_start_again

    union, replayed = asyncio.run(go())
    assert union == expected  # exactly the produced sequence: no gap, no duplicate
    assert replayed == expected


def test_a_bad_last_event_id_is_a_400(api):
    r = httpx.get(f"{api.base}/api/v1/alerts/stream", headers={"Last-Event-ID": "yesterday"})
    assert r.status_code == 400 and "not a position this API gave" in r.json()["detail"]
    r = httpx.get(f"{api.base}/api/v1/alerts/stream", headers={"Last-Event-ID": "7:3"})  # replayed from 0 before
    assert r.status_code == 400 and "partition(s) [7]" in r.json()["detail"]
    r = httpx.get(f"{api.base}/api/v1/alerts/stream", params={"last_event_id": "9:99"})  # named as it was given
    assert r.status_code == 400 and r.json()["detail"].startswith("last_event_id names partition(s) [9]"), r.text


def test_a_position_past_the_end_of_the_log_is_told_and_the_feed_goes_on(api):
    """A Last-Event-ID from a log the broker since lost (an in-memory broker restarted): before, the feed
    waited at that offset for ever, silently."""
    async def first_events():
        seen = []
        async with httpx.AsyncClient() as client:
            async for event in sse_events(client, f"{api.base}/api/v1/alerts/stream", "0:999999"):
                seen.append(event)
                if len(seen) == 2:
                    return seen

    hello, dropped = asyncio.run(asyncio.wait_for(first_events(), 30))
    assert hello["event"] == "hello" and dropped["event"] == "dropped"
    assert "lost the log" in json.loads(dropped["data"])["reason"]
    assert not dropped["id"].startswith("0:999999")  # resumed from what the log has


def test_idle_feeds_get_heartbeats(api):
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(b"GET /api/v1/cameras/quiet-cam/alerts/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        sock.settimeout(5)
        data = b""
        deadline = time.monotonic() + 4
        while b": heartbeat" not in data and time.monotonic() < deadline:
            data += sock.recv(4096)
    assert b": heartbeat" in data


def test_head_is_answered_headers_only_even_on_a_feed(api):
    """Uptime checks send HEAD; the dashboard's file server answered 404 to it under /api/."""
    with httpx.Client(base_url=api.base, timeout=10) as client:
        health = client.head("/api/v1/health")
        assert health.status_code == 200 and health.content == b"" and int(health.headers["content-length"]) > 0
        feed = client.head("/api/v1/cameras/quiet-cam/alerts/stream")  # a stream: not waited on to its end
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/event-stream")
        assert client.post("/api/v1/health").headers["allow"] == "GET"


def test_an_api_told_to_stop_does_not_wait_for_an_open_live_view(stack, tmp_path):
    """The dashboard's MJPEG view streams until its viewer leaves: SIGTERM left the API running until killed."""
    from api.process import ApiProcess

    process = ApiProcess(stack.broker_url, tmp_path / "api.log").start()
    try:
        with httpx.Client(base_url=process.base, timeout=30) as c:
            assert c.post("/api/v1/cameras?exist_ok=true", json={"camera_id": "stopping-view-cam"}).status_code in (200, 201)
            with c.stream("GET", "/api/v1/cameras/stopping-view-cam/live.mjpg") as viewer:
                assert viewer.status_code == 200
                process.process.terminate()
                stopped_at = time.monotonic()
                code = process.process.wait(20)
                stopping_s = time.monotonic() - stopped_at
    finally:
        process.stop()
    assert stopping_s < 8, stopping_s
    # Stopped as Ctrl-C stops it (it was killed by the signal uvicorn raised again after its shutdown: 143).
    assert code == 0 and (tmp_path / "api.log").read_text().rstrip().endswith("api stopped")


def test_a_client_that_never_reads_costs_no_memory_and_holds_nobody_up(stack, settings, api):
    camera = "slow-cam"
    n = 12000  # about 12 MB of alerts: four times what the API's rings hold
    slow = socket.create_connection(("127.0.0.1", api.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(f"GET /api/v1/cameras/{camera}/alerts/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.5)
    rss_before = api.rss_mb()

    async def go():
        async with httpx.AsyncClient() as client:
            async for event in sse_events(client, f"{api.base}/api/v1/cameras/{camera}/alerts/stream"):
                start = event["id"]
                break
        got, others = [], []
        reading = asyncio.create_task(
            take(f"{api.base}/api/v1/cameras/{camera}/alerts/stream", n, start, timeout=180, got=got, others=others))
        # The alerts go out in steps the reading client keeps up with (on a loaded 2-core machine a burst
        # of 12 MB outran the ring and the client, correctly, was told it missed some): what is tested
        # is that it is not held up by the slow client, not how fast Python parses SSE.
        for first in range(0, n, 1000):
            await produce(stack.bootstrap, settings.topic(ALERTS), (alert(camera, i, 900) for i in range(first, first + 1000)))
            while len(got) < first + 500 and not reading.done():
                await asyncio.sleep(0.05)
        try:
            await reading
        except TimeoutError:
            log = Path(api.log_path).read_text(errors="replace")[-3000:]
            raise AssertionError(f"the reading client stalled after {len(got)} alerts (other events: "
                                 f"{[e.get('event') for e in others][:10]}); API log tail:\n{log}") from None
        return got

    got = asyncio.run(go())
    rss_after = api.rss_mb()
    assert got == [f"{camera}:test:{i}" for i in range(n)]  # the reading client got everything, in order
    assert rss_after - rss_before < 60, (rss_before, rss_after)  # bounded by the ring, not by what the slow one missed
    # The slow client, when it finally reads, is told it missed events rather than being fed a backlog.
    # (A wider window now, or the megabytes already in the socket buffers trickle in 4 KB windows for minutes.)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    slow.settimeout(5)
    data = b""
    try:
        while b"event: dropped" not in data and len(data) < 50 << 20:
            chunk = slow.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    slow.close()
    assert b"event: dropped" in data


def test_rest_cameras_validate_and_produce_commands(api):
    c = httpx.Client(base_url=api.base, timeout=30)
    r = c.post("/api/v1/cameras", json={"camera_id": "rest-cam", "name": "Bridge St"})
    assert r.status_code == 201 and r.json()["version"] == 1
    assert c.post("/api/v1/cameras", json={"camera_id": "rest-cam"}).status_code == 409
    assert c.post("/api/v1/cameras", json={"camera_id": "bad id!"}).status_code == 422
    stop = {"name": "stop", "x1": 0, "y1": 100, "x2": 640, "y2": 100}
    r = c.post("/api/v1/cameras/rest-cam/lines", json=stop)
    assert r.status_code == 201 and r.json()["lines"][0]["name"] == "stop"
    # A client's retry: the same again is no conflict with exist_ok (nothing sent, no new version); another one is.
    version = r.json()["version"]
    again = c.post("/api/v1/cameras/rest-cam/lines", params={"exist_ok": "true"}, json=stop)
    assert again.status_code == 200 and again.json()["version"] == version, again.text
    assert c.post("/api/v1/cameras", params={"exist_ok": "true"}, json={"camera_id": "rest-cam", "name": "Bridge St"}).status_code == 200
    assert c.post("/api/v1/cameras/rest-cam/lines", json=stop).status_code == 409
    assert c.post("/api/v1/cameras/rest-cam/lines", params={"exist_ok": "true"}, json={**stop, "y1": 120}).status_code == 409
    r = c.post("/api/v1/cameras/rest-cam/zones", json={"name": "bowtie", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "zone polygon is not simple: its edges cross at (50, 50)"
    r = c.post("/api/v1/cameras/rest-cam/zones", json={"name": "two", "points": [[0, 0], [100, 100]]})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "needs at least 3 points, 2 given", r.text
    r = c.put("/api/v1/cameras/rest-cam/calibration", json={"image_points": [[0, 0], [1, 1], [2, 2], [0, 9]],
                                                            "road_points": [[0, 0], [1, 0], [1, 1], [0, 1]]})
    assert r.status_code == 422 and "three of the four points" in r.text
    assert c.patch("/api/v1/cameras/rest-cam", json={"name": "Bridge Street"}).json()["name"] == "Bridge Street"
    assert c.get("/api/v1/cameras/rest-cam").json()["lines"][0]["name"] == "stop"
    assert c.delete("/api/v1/cameras/rest-cam/lines/nope").status_code == 404
    assert c.delete("/api/v1/cameras/rest-cam/zones/nope").status_code == 404
    assert c.get("/api/v1/cameras/ghost-cam").status_code == 404
    assert c.post("/api/v1/cameras/ghost-cam/lines", json={"name": "a", "x1": 0, "y1": 0, "x2": 9, "y2": 9}).status_code == 404
    assert c.delete("/api/v1/cameras/rest-cam").status_code == 204
    gone = c.get("/api/v1/cameras/rest-cam")
    assert gone.status_code == 404 and gone.json()["detail"] == "camera 'rest-cam' was removed", gone.text
    again = c.delete("/api/v1/cameras/rest-cam")  # said as removed, not as a camera never heard of
    assert again.status_code == 404 and again.json()["detail"] == "camera 'rest-cam' was removed: nothing to remove"
    assert "rest-cam" not in [x["camera_id"] for x in c.get("/api/v1/cameras").json()]


def test_non_finite_numbers_and_empty_changes_are_a_precise_422(api):
    """Python's JSON reader takes NaN and 1e999; echoing them back in the 422 was a 500."""
    c = httpx.Client(base_url=api.base, timeout=30)
    assert c.post("/api/v1/cameras", json={"camera_id": "finite-cam"}).status_code == 201
    bodies = {"/api/v1/cameras/finite-cam/lines": b'{"name": "a", "x1": 1e999, "y1": 0, "x2": 9, "y2": 9}',
              "/api/v1/cameras/finite-cam/zones": b'{"name": "z", "points": [[0, 0], [NaN, 1], [9, 9]]}'}
    for path, body in bodies.items():
        r = c.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "finite number" in r.text, (path, r.status_code, r.text)
    r = c.put("/api/v1/cameras/finite-cam/speed-limit", content=b'{"kmh": Infinity}', headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    # `curl -d` without -H: a form's Content-Type, so the body is text; the answer names the header
    r = c.put("/api/v1/cameras/finite-cam/speed-limit", content=b'{"kmh": 50}', headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"], r.text
    for body in ({}, {"name": None}, {"colour": "red"}):  # each gave 200 and a new version with nothing changed
        r = c.patch("/api/v1/cameras/finite-cam", json=body)
        assert r.status_code == 422, (body, r.text)
    assert c.get("/api/v1/cameras/finite-cam").json()["version"] == 1
    # A change to what is so already: answered with the configuration as it is, nothing sent, no new version.
    assert c.put("/api/v1/cameras/finite-cam/speed-limit", json={"kmh": 50}).json()["version"] == 2
    for path, body in (("/speed-limit", {"kmh": 50}), ("", {"name": "finite-cam"})):
        r = c.put(f"/api/v1/cameras/finite-cam{path}", json=body) if path else c.patch("/api/v1/cameras/finite-cam", json=body)
        assert r.status_code == 200 and r.json()["version"] == 2, (path, r.text)
    assert c.delete("/api/v1/cameras/finite-cam/calibration").json()["version"] == 2


def test_live_view_counts_health_and_metrics_on_a_real_clip(stack, settings, api, clip_path):
    camera = "api-live"
    road = Zone(name="near-road", points=[(0, 200), (640, 200), (640, 360), (0, 360)])
    setup = CameraSetup(lines=[parse_line("140,120,620,120:y120")], zones=[road])
    asyncio.run(analyze_source(stack, str(clip_path), setup, camera_id=camera, max_frames=60))
    c = httpx.Client(base_url=api.base, timeout=30)
    counts = c.get(f"/api/v1/cameras/{camera}/counts").json()["counts"]
    assert [(u["line"], u["direction"], u["label"], u["total"]) for u in counts] == [("y120", "in", "car", 1)]
    history = c.get(f"/api/v1/cameras/{camera}/counts/history", params={"window": "1m"}).json()
    assert sum(x["count"] for w in history for x in w["counts"]) >= 1
    assert c.get(f"/api/v1/cameras/{camera}/counts/history", params={"window": "2m"}).status_code == 422
    zones = c.get(f"/api/v1/cameras/{camera}/zone-stats").json()
    assert zones["camera_id"] == camera and [z["zone"] for z in zones["zones"]] == ["near-road"] and zones["idle"] == [], zones
    near = zones["zones"][0]
    assert near["entries"] >= 2 and near["entries"] - near["exits"] == near["occupancy"] >= 0, near
    # The minute is that of the zone's last event, which may be an exit in a minute with no entry (the clip's
    # two seconds of scene time can straddle a minute's end): the event itself is all it must hold.
    minute = near["minute"]
    assert minute["entries"] + minute["exits"] >= 1 and minute["end"] - minute["start"] == 60, minute
    # A camera nobody configured and no record names: 404, not an empty 200 (a typo showed nothing, for ever).
    for path in ("counts", "counts/history", "zone-stats", "alerts", "live.mjpg"):
        r = c.get(f"/api/v1/cameras/no-such-camera/{path}")
        assert r.status_code == 404 and "unknown camera 'no-such-camera'" in r.text, (path, r.status_code, r.text)
    snap = c.get(f"/api/v1/cameras/{camera}/snapshot.jpg")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)
    # The counting line is drawn in yellow (BGR 0,255,255) across y=120.
    row = image[118:123, 200:600].reshape(-1, 3).astype(int)
    assert ((row[:, 1] > 200) & (row[:, 2] > 200) & (row[:, 0] < 90)).mean() > 0.3
    with c.stream("GET", f"/api/v1/cameras/{camera}/live.mjpg", params={"fps": 5}) as live:
        assert live.headers["content-type"].startswith("multipart/x-mixed-replace")
        first = b""
        for chunk in live.iter_bytes():
            first += chunk
            if first.count(b"--frame") >= 1 and b"\xff\xd9" in first:
                break
    assert b"Content-Type: image/jpeg" in first
    metrics = c.get("/metrics").text  # before any /ready: the lag metric was set by /ready alone
    ready = c.get("/api/v1/ready")
    assert ready.status_code == 200 and ready.json()["broker"] == "reachable" and "its.frames" in ready.json()["lag"]
    assert "its.camera-commands" in ready.json()["lag"]  # commands queued with no worker are work waiting
    if not settings.broker_url:  # the embedded broker, on this machine: what it holds (it only grows), below its limit
        assert ready.json()["embedded_broker_mb"] > 5 and ready.json()["warnings"] == []
    assert "its_faust_api_sse_events_sent_total" in metrics and "its_faust_api_ring_messages" in metrics
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics) for s in family.samples}
    of_camera = (("camera", camera),)
    assert samples[("its_faust_camera_frames_tracked_total", of_camera)] >= 60  # (at least once: a redelivery counts)
    assert samples[("its_faust_camera_latency_seconds", of_camera)] > 0
    assert 0 <= samples[("its_faust_camera_last_frame_age_seconds", of_camera)] < 120
    assert samples[("its_faust_line_crossings", (("camera", camera), ("direction", "in"), ("label", "car"), ("line", "y120")))] == 1
    assert samples[("its_faust_zone_occupancy", (("camera", camera), ("zone", "near-road")))] == near["occupancy"]
    assert samples[("its_faust_api_ring_received_total", (("topic", settings.topic(TRACKS)),))] >= 60
    assert samples[("its_faust_worker_lag_messages", (("topic", settings.topic(FRAMES)),))] >= 0
    if not settings.broker_url:
        assert samples[("its_faust_embedded_broker_bytes", ())] > 5e6
    assert c.get("/api/v1/cameras/no-frames/snapshot.jpg").status_code == 404
    # The camera's own events: what ingest reported about its stream, newest first.
    events = c.get(f"/api/v1/cameras/{camera}/events").json()
    assert [e["kind"] for e in events] == ["finished", "started"], events
    assert "640x360" in events[1]["reason"] and "60 frames sent" in events[0]["reason"]
    assert c.get(f"/api/v1/cameras/{camera}/events", params={"limit": 1}).json() == events[:1]
    assert c.get(f"/api/v1/cameras/{camera}/events", params={"limit": 0}).status_code == 422
    assert c.get("/api/v1/cameras/no-such-camera/events").json() == []


def test_camera_events_feed_streams_one_cameras_events(stack, settings, api):
    camera = "events-cam"
    reasons = [f"blank: grey-level std 0.{i} < 4.0" for i in range(3)]
    records = [CameraEvent(camera_id=camera, kind="frame_rejected", at=time.time(), seq=i, reason=r) for i, r in enumerate(reasons)]
    other = CameraEvent(camera_id="other-cam", kind="stream_lost", at=time.time(), reason="rtsp://x stopped delivering frames")
    url = f"{api.base}/api/v1/cameras/{camera}/camera-events/stream"

    async def go():
        async with httpx.AsyncClient() as client:
            listed = await client.get(f"{api.base}/api/v1/cameras/{camera}/events")
            assert listed.json() == []
            start_id = listed.headers["X-Feed-Position"]  # the feed's position right after the list
            await produce(stack.bootstrap, settings.topic(CAMERA_EVENTS), [records[0], other, *records[1:]])
            got = []

            async def read():
                async for event in sse_events(client, url, start_id):
                    if event.get("event") == "camera-event":
                        got.append(json.loads(event["data"]))
                        if len(got) == len(records):
                            return

            await asyncio.wait_for(read(), 30)
        return got

    got = asyncio.run(go())
    assert [(e["camera_id"], e["kind"], e["reason"]) for e in got] == [(camera, "frame_rejected", r) for r in reasons]


def test_a_cameras_refused_frames_are_listed_counted_and_told_as_a_camera_event(stack, settings, api):
    """A producer whose frames all go to the dead letters: its camera says why, over HTTP and in /metrics."""
    camera = "refused-cam"

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        for seq in (1, 2, 3):
            await producer.send(settings.topic(FRAMES), key=camera.encode(),
                                value=json.dumps({"schema": "its.frame", "camera_id": camera, "seq": seq}).encode())
        await producer.stop()
        async with httpx.AsyncClient() as client:
            async def refused() -> dict:
                return (await client.get(f"{api.base}/api/v1/dead-letters", params={"camera": camera})).json()

            deadline = time.monotonic() + 60
            while (await refused())["counts"] != {camera: {"detect": 3}} and time.monotonic() < deadline:
                await asyncio.sleep(0.3)

            async def events_of_camera() -> list:
                return (await client.get(f"{api.base}/api/v1/cameras/{camera}/events")).json()

            # The camera's event is sent after its dead letter, on another topic the API reads on its own: it
            # may come a moment after the count.
            while not (events := await events_of_camera()) and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            metrics = (await client.get(f"{api.base}/metrics")).text
            bad_limit = await client.get(f"{api.base}/api/v1/dead-letters", params={"limit": 0})
            return await refused(), events, metrics, bad_limit

    listed, events, metrics, bad_limit = asyncio.run(go())
    assert listed["counts"] == {camera: {"detect": 3}}
    assert [d["offset"] for d in listed["recent"]] == sorted((d["offset"] for d in listed["recent"]), reverse=True)
    assert all("Field required" in d["reason"] and d["stage"] == "detect" for d in listed["recent"])
    # Newest first: the first refusal was told at once (the count of the others follows 10 s on).
    assert {e["kind"] for e in events} == {"records_rejected"} and "Field required" in events[-1]["reason"]
    samples = {(s.name, s.labels.get("key"), s.labels.get("stage")): s.value
               for family in text_string_to_metric_families(metrics) for s in family.samples}
    # Not configured, none of its frames tracked: a key any producer could invent, summed with the others.
    assert ("its_faust_dead_letters_total", camera, "detect") not in samples
    assert samples[("its_faust_dead_letters_total", "other", "detect")] >= 3
    assert bad_limit.status_code == 422


def test_several_feeds_in_one_stream_filter_per_camera_and_resume_each_exactly(stack, settings, api):
    """The dashboard held one connection per feed, six with its live view: a browser's limit for one host, and
    nothing was left for the page's requests or for opening /docs (the click hung)."""
    camera = "merged-cam"
    url = f"{api.base}/api/v1/stream?feeds=alerts,camera-events:{camera}"
    events_of = [CameraEvent(camera_id=camera, kind="frame_rejected", at=time.time(), seq=i, reason=f"blank {i}") for i in range(4)]
    elsewhere = CameraEvent(camera_id="other-cam", kind="stream_lost", at=time.time(), reason="gone")

    async def read(last_event_id: str | None, n: int) -> tuple[list, list, str]:
        records, others, last = [], [], last_event_id
        async with httpx.AsyncClient() as client:
            async def go():
                nonlocal last
                async for event in sse_events(client, url, last_event_id):
                    last = event["id"]
                    data = json.loads(event["data"])
                    # Alerts of this test's cameras only: the module's other tests share the broker (a clip's
                    # congestion, the silent-camera closer's clears could come meanwhile).
                    if event["event"] == "camera-event" or (event["event"] == "alert" and data["camera_id"] in ("cam-x", "cam-y")):
                        records.append((event["event"], data.get("alert_id") or data["reason"]))
                        if len(records) == n:
                            return
                    else:
                        others.append((event["event"], data))

            await asyncio.wait_for(go(), 30)
        return records, others, last

    async def go():
        hellos, start = [], None
        async with httpx.AsyncClient() as client:
            async for event in sse_events(client, url):
                hellos.append(json.loads(event["data"]))
                start = event["id"]
                if len(hellos) == 2:
                    break
        await produce(stack.bootstrap, settings.topic(ALERTS), [alert("cam-x", 1), alert("cam-y", 2)])
        await produce(stack.bootstrap, settings.topic(CAMERA_EVENTS), [events_of[0], elsewhere, events_of[1]])
        first, _, last = await read(start, 2)
        rest, _, last = await read(last, 2)  # reconnect: each feed goes on from where it was
        await produce(stack.bootstrap, settings.topic(CAMERA_EVENTS), events_of[2:])
        await produce(stack.bootstrap, settings.topic(ALERTS), [alert("cam-x", 3)])
        more, _, _ = await read(last, 3)
        return hellos, start, first + rest + more

    hellos, start, got = asyncio.run(go())
    assert sorted(h["feed"] for h in hellos) == ["alerts", f"camera-events:{camera}"], hellos
    assert {part.split("=")[0] for part in start.split(";")} == {"alerts", f"camera-events:{camera}"}, start
    alerts = [x for kind, x in got if kind == "alert"]
    camera_events = [x for kind, x in got if kind == "camera-event"]
    assert alerts == ["cam-x:test:1", "cam-y:test:2", "cam-x:test:3"]  # every camera's alerts, each once, in order
    assert camera_events == ["blank 0", "blank 1", "blank 2", "blank 3"]  # this camera's events only
    c = httpx.Client(base_url=api.base, timeout=30)
    for feeds in ("alerts,nonsense", "tracks:bad/cam", "alerts,alerts", ",".join(f"tracks:c{i}" for i in range(65))):
        r = c.get("/api/v1/stream", params={"feeds": feeds})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "feeds"], (feeds, r.text)
        assert r.json()["detail"][0]["msg"].startswith("feeds: "), r.text
    r = c.get("/api/v1/stream", params={"feeds": "alerts"}, headers={"Last-Event-ID": "tracks=0:1"})
    assert r.status_code == 400 and "names no feed of this stream" in r.json()["detail"], r.text


def test_workers_report_themselves_and_a_stopped_one_says_so(stack, api, tmp_path):
    """/workers, /ready and /metrics from the workers' own reports (its.workers): a second worker joins,
    the two split the partitions, and it leaves cleanly with a last report that says it stopped."""
    c = httpx.Client(base_url=api.base, timeout=30)

    def listed_until(check, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            workers = {w["worker"]: w for w in c.get("/api/v1/workers").json()["workers"]}
            if check(workers) or time.monotonic() > deadline:
                return workers
            time.sleep(0.5)

    def running(workers):
        return {k: w for k, w in workers.items() if w["state"] == "running"}

    first = listed_until(lambda ws: len(running(ws)) == 1)
    assert len(running(first)) == 1, first
    (only,) = running(first).values()
    assert only["partitions"] == list(range(stack.settings.partitions)), only  # one worker holds every camera
    assert only["model"]["name"] == "yolo11n" and only["interval_s"] > 0
    assert c.get("/api/v1/ready").json()["workers"].startswith("1 running")

    second = WorkerProcess(stack.broker_url, tmp_path, "reporting-worker",
                           extra_env={"ITS_FAUST_WORKER_STATUS_INTERVAL_S": "1"}).start()
    try:
        second.wait_ready()
        ready_at = second.ready_file.stat().st_mtime
        everything = list(range(stack.settings.partitions))
        # Each reports right after the rebalance: soon the two reports split the partitions.
        two = listed_until(lambda ws: len(running(ws)) == 2
                           and sorted(p for w in running(ws).values() for p in w["partitions"]) == everything)
        held = [w["partitions"] for w in running(two).values()]
        assert len(held) == 2 and all(held), two
        assert sorted(held[0] + held[1]) == everything, two  # split, none twice
        assert c.get("/api/v1/ready").json()["workers"].startswith("2 running")
        assert 'its_faust_workers{state="running"} 2.0' in c.get("/metrics").text
        new_id = next(k for k, w in running(two).items() if w["interval_s"] == 1.0)
        # Its liveness: the ready file is touched every LIVENESS_TOUCH_S while it is well...
        deadline = time.monotonic() + 3 * LIVENESS_TOUCH_S
        while second.ready_file.stat().st_mtime == ready_at and time.monotonic() < deadline:
            time.sleep(0.5)
        assert second.ready_file.stat().st_mtime > ready_at
    finally:
        second.stop()
    # ...and goes with it (unless it had to be killed: stop() does after 15 s): a restart in place is not ready
    assert second.proc.returncode == -signal.SIGKILL or not second.ready_file.exists()
    after = listed_until(lambda ws: ws.get(new_id, {}).get("state") == "stopped")
    assert after[new_id]["state"] == "stopped" and after[new_id]["partitions"] == [], after
    back = listed_until(lambda ws: len(running(ws)) == 1 and len(next(iter(running(ws).values()))["partitions"])
                        == stack.settings.partitions)
    assert len(running(back)) == 1 and next(iter(running(back).values()))["partitions"] == list(range(stack.settings.partitions))


def test_all_cameras_alerts_list_and_where_their_feed_goes_on(stack, settings, api):
    asyncio.run(produce(stack.bootstrap, settings.topic(ALERTS), [alert("rest-alerts", i) for i in range(3)]))
    c = httpx.Client(base_url=api.base, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        listed = c.get("/api/v1/alerts", params={"limit": 2})
        ours = [a["alert_id"] for a in listed.json()["recent"] if a["camera_id"] == "rest-alerts"]
        if ours == ["rest-alerts:test:1", "rest-alerts:test:2"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ours == ["rest-alerts:test:1", "rest-alerts:test:2"], listed.json()  # the last two, oldest first
    assert {a["alert_id"] for a in listed.json()["active"]} >= {f"rest-alerts:test:{i}" for i in range(3)}
    assert parse_cursor(listed.headers["X-Feed-Position"])  # where /alerts/stream goes on
    active_alone = c.get("/api/v1/alerts", params={"limit": 0}).json()
    assert active_alone["recent"] == [] and {a["alert_id"] for a in active_alone["active"]} >= {"rest-alerts:test:2"}
    assert c.get("/api/v1/alerts", params={"limit": -1}).status_code == 422


def test_an_alerts_snapshot_outlives_the_frames_the_api_holds(stack, settings, api):
    """The API holds the frames of the last few seconds (3 s here); the frame an alert points at is kept when the
    alert arrives."""
    camera = "snap-cam"
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()

    def frame(seq: int) -> FrameRecord:
        return FrameRecord(camera_id=camera, seq=seq, captured_at=time.time(), width=64, height=48, jpeg=jpeg)

    tracked = TrackRecord(camera_id=camera, seq=5, captured_at=time.time(), width=64, height=48, detected_at=time.time(),
                          tracked_at=time.time(), tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])
    c = httpx.Client(base_url=api.base, timeout=30)

    def until(check, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not check() and time.monotonic() < deadline:
            time.sleep(0.2)
        return check()

    asyncio.run(produce(stack.bootstrap, settings.topic(FRAMES), [frame(i) for i in range(6)]))
    asyncio.run(produce(stack.bootstrap, settings.topic(TRACKS), [tracked]))
    assert until(lambda: c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 5}).status_code == 200)
    raised = alert(camera, 0).model_copy(update={"seq": 5, "snapshot": FrameRef(camera_id=camera, seq=5)})
    asyncio.run(produce(stack.bootstrap, settings.topic(ALERTS), [raised]))
    assert until(lambda: c.get(f"/api/v1/cameras/{camera}/alerts").json()["active"])
    later = [frame(i) for i in range(6, 10)]
    asyncio.run(produce(stack.bootstrap, settings.topic(FRAMES), later))
    assert until(lambda: c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 6}).status_code == 200)
    time.sleep(5)  # 3 s and half again: the frames held are old now; the next frames to arrive push them out
    asyncio.run(produce(stack.bootstrap, settings.topic(FRAMES), [frame(i) for i in range(10, 20)]))
    # Frame 6 (no alert's) is gone; frame 5, the alert's, is still served.
    assert until(lambda: c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 19}).status_code == 200)
    assert c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 6}).status_code == 404
    kept = c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 5})
    assert kept.status_code == 200 and kept.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(kept.content, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    # An alert that comes after its frame left the API (the pipeline behind its camera by more than the frames
    # held: half the snapshots of a file sent at its own pace were 404): its frame is read from the topic.
    late = alert(camera, 1).model_copy(update={"seq": 6, "captured_at": later[0].captured_at,
                                               "snapshot": FrameRef(camera_id=camera, seq=6)})
    asyncio.run(produce(stack.bootstrap, settings.topic(ALERTS), [late]))
    assert until(lambda: len(c.get(f"/api/v1/cameras/{camera}/alerts").json()["active"]) == 2)
    fetched = c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 6})
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg", fetched.text
    assert cv2.imdecode(np.frombuffer(fetched.content, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert c.get(f"/api/v1/cameras/{camera}/snapshot.jpg", params={"seq": 7}).status_code == 404  # no alert's


def test_a_line_or_zone_wholly_outside_a_tracked_cameras_frame_is_a_precise_422(stack, settings, api):
    """Once a frame of the camera has been tracked, its size is known: geometry nothing in view can reach is refused."""
    camera = "view-cam"
    c = httpx.Client(base_url=api.base, timeout=30)
    typo = c.post("/api/v1/cameras", json={"camera_id": camera, "nmae": "typo"})  # not a camera without a name
    assert typo.status_code == 422 and typo.json()["detail"][0]["type"] == "extra_forbidden", typo.text
    assert c.post("/api/v1/cameras", json={"camera_id": camera}).status_code == 201
    # Before any frame: the size is not known, so nothing is refused for lying outside it.
    r = c.post(f"/api/v1/cameras/{camera}/lines", json={"name": "far", "x1": 0, "y1": 900, "x2": 640, "y2": 900})
    assert r.status_code == 201, r.text
    tracked = TrackRecord(camera_id=camera, seq=1, captured_at=time.time(), width=640, height=360, detected_at=time.time(),
                          tracked_at=time.time(), tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])
    asyncio.run(produce(stack.bootstrap, settings.topic(TRACKS), [tracked]))
    beside = {"name": "beside", "points": [[700, 50], [900, 50], [900, 100]]}
    deadline = time.monotonic() + 30
    while (r := c.post(f"/api/v1/cameras/{camera}/zones", json=beside)).status_code != 422 and time.monotonic() < deadline:
        assert r.status_code == 201, r.text  # the API had not read the track yet: take it back and try again
        c.delete(f"/api/v1/cameras/{camera}/zones/beside")
        time.sleep(0.2)
    assert r.status_code == 422 and "zone 'beside' lies wholly outside the camera's 640x360 frame" in r.text, r.text
    (error,) = r.json()["detail"]  # FastAPI's shape, as for every other 422
    assert error["loc"] == ["body"] and error["msg"].startswith("zone 'beside'") and error["input"]["name"] == "beside"
    r = c.post(f"/api/v1/cameras/{camera}/lines", json={"name": "below", "x1": 0, "y1": 400, "x2": 640, "y2": 400})
    assert r.status_code == 422 and "nothing in view can cross it" in r.text
    far = {"image_points": [[5000, 5000], [5400, 5000], [5400, 5100], [5000, 5100]],
           "road_points": [[0, 0], [7, 0], [7, 40], [0, 40]]}
    r = c.put(f"/api/v1/cameras/{camera}/calibration", json=far)
    assert r.status_code == 422 and "the calibration's image points lie wholly outside" in r.text, r.text
    edge = {"name": "edge", "points": [[600, 300], [900, 300], [900, 500]]}  # reaching past the edge is fine
    assert c.post(f"/api/v1/cameras/{camera}/zones", json=edge).status_code == 201
    assert [z["name"] for z in c.get(f"/api/v1/cameras/{camera}").json()["zones"]] == ["edge"]
