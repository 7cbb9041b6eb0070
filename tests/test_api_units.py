"""Small pure parts of the API: SSE positions, the workers' state in readiness, read models."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, Field

from api.topic_ring import Message, TopicRing
from api.read_models import Alerts, CameraEvents, Cameras, Counts, DeadLetters, TrackedCameras, Zones
from api.readiness import STALLED_AFTER_S, SystemHealth, workers_verdict
from api.sse import BadCursor, format_cursor, merged, parse_cursor, parse_positions
from its_faust.broker import BrokerMemoryNote
from its_faust.codecs import decode, encode
from schemas.analytics import Alert, CountUpdate, FrameRef, WindowCount, ZoneStats, ZoneWindow
from schemas.camera_events import CameraEvent
from schemas.control import CameraConfig
from schemas.geometry import CountingLine, Zone
from schemas.tracks import TrackRecord
from schemas.workers import WorkerStatus


def test_positions_round_trip_and_bad_ones_are_refused():
    assert parse_cursor(format_cursor({2: 17, 0: 5})) == {0: 5, 2: 17}
    assert parse_cursor(None) is None and parse_cursor("") is None
    for bad in ("yesterday", "0:5,1", "0:-1", "a:b"):
        with pytest.raises(BadCursor):
            parse_cursor(bad)
    with pytest.raises(BadCursor, match=r"\.\.\. \(5005 characters\) is not a position"):
        parse_cursor("0:1," + "9" * 5000 + "x")  # quoted in brief


def test_several_feeds_positions_round_trip_and_a_feed_not_named_starts_from_now():
    names = ["alerts", "tracks:cam-1"]
    assert parse_positions("alerts=0:5,1:2;tracks:cam-1=3:9", names) == {"alerts": {0: 5, 1: 2}, "tracks:cam-1": {3: 9}}
    assert parse_positions("alerts=", names) == {"alerts": None} and parse_positions(None, names) == {}
    for bad in ("counts:cam-1=0:1", "alerts", "alerts=0:x"):
        with pytest.raises(BadCursor):
            parse_positions(bad, names)


def test_merged_feeds_carry_every_position_and_close_every_feed_when_the_client_leaves():
    import asyncio

    import anyio

    closed = []

    async def feed(name: str, n: int):
        try:
            yield {"event": "hello", "id": "0:0", "data": "{}"}
            for i in range(n):
                yield {"event": name, "id": f"0:{i + 1}", "data": "{}"}
            await asyncio.sleep(3600)
        finally:
            closed.append(name)

    async def go():
        # A queue of one: the busy feed's pump waits at a full queue, its feed held at a yield.
        stream = merged({"a": feed("a", 2), "b": feed("b", 100)}, queue_size=1)
        events = []
        with anyio.CancelScope() as scope:  # as sse-starlette ends a response whose client left
            async for event in stream:
                events.append(event)
                if len(events) == 6:
                    scope.cancel()
        return events

    events = asyncio.run(go())
    assert [e["event"] for e in events[:2]] == ["hello", "hello"]
    assert all(e["id"].startswith("a=0:") and ";b=0:" in e["id"] for e in events)  # every id holds both positions
    assert sorted(closed) == ["a", "b"]  # neither feed left open (they count SSE clients until closed)


def test_merged_feeds_close_even_when_a_feed_swallows_its_cancellation():
    import asyncio

    import anyio

    closed = []

    async def stubborn(name: str):
        try:
            yield {"event": "hello", "id": "0:0", "data": "{}"}
            yield {"event": name, "id": "0:1", "data": "{}"}
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # as Python 3.11's wait_for can, when its wait ends as it is cancelled
                pass
            await asyncio.sleep(3600)
        finally:
            closed.append(name)

    async def go():
        stream = merged({"a": stubborn("a"), "b": stubborn("b")})
        seen = set()
        with anyio.CancelScope() as scope:
            async for event in stream:
                seen.add(event["event"])
                if {"a", "b"} <= seen:
                    await asyncio.sleep(0.05)  # both pumps at their sleep
                    scope.cancel()
        await stream.aclose()

    asyncio.run(asyncio.wait_for(go(), 10))  # the close waited on the pump for ever
    assert sorted(closed) == ["a", "b"]


def test_a_feed_cancelled_as_records_come_ends():
    """Every feed waits on the ring's one event: a client that leaves as it is set must not be read on for ever."""
    import asyncio

    async def go():
        ring = TopicRing("unused:9092", "its.tracks", 10)
        waiting = [asyncio.create_task(ring.wait_new(30)) for _ in range(50)]
        await asyncio.sleep(0.01)
        ring._wake()
        for task in waiting:
            task.cancel()
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results


def test_positions_past_the_log_share_one_read_of_its_ends_and_a_stale_one_is_read_again(monkeypatch):
    """Each client resuming from a position ahead of the API read the log ends on a connection of its own: 100
    at once opened 100 to the broker (a security review)."""
    import asyncio

    import api.topic_ring
    from api.sse import past_the_log

    reads, log_end = [], {"end": 50}

    async def read_log_ends(bootstrap, tps, confirmed=None):
        reads.append(len(tps))
        await asyncio.sleep(0.05)
        confirmed.update(tp for tp in tps if log_end.get("confirmed", True))
        return {tp: log_end["end"] for tp in tps}

    monkeypatch.setattr(api.topic_ring, "read_log_ends", read_log_ends)

    async def go():
        ring = _ring("its.tracks")
        ring.partitions, ring.next = [0, 1], {0: 10, 1: 10}
        past = await asyncio.gather(*[past_the_log(ring, {0: 99, 1: 5}) for _ in range(100)])
        assert past == [{0}] * 100 and len(reads) <= 2, reads  # one read, and one more begun after they asked
        before = len(reads)
        log_end["end"] = 120  # another API process gave a position the log has reached since the last read
        assert await past_the_log(ring, {0: 110}) == set() and len(reads) == before + 1
        assert await past_the_log(ring, {0: 20}) == set() and len(reads) == before + 1  # within the last read
        log_end["confirmed"] = False  # the fetch of the last batch brought nothing in time: the end is not known
        await asyncio.sleep(1.1)
        assert await past_the_log(ring, {0: 999}) == set()

    asyncio.run(go())


def test_a_log_end_the_log_did_not_confirm_is_not_taken_for_a_lost_log(monkeypatch):
    """The embedded broker gives a log's end short of a last batch of several records; the log is asked, and a
    fetch that brought nothing in time left that figure: every such partition was taken for lost and read again
    from its start, every 5 s, once the producers stopped (a churn trial)."""
    import asyncio

    import api.topic_ring

    answer = {"confirmed": False}

    async def read_log_ends(bootstrap, tps, confirmed=None):
        if answer["confirmed"]:
            confirmed.update(tps)
        return {tp: 11999 for tp in tps}

    class Consumer:
        async def end_offsets(self, tps):
            return {tp: 11999 for tp in tps}

        def seek(self, tp, offset):
            pass

    monkeypatch.setattr(api.topic_ring, "read_log_ends", read_log_ends)

    async def go():
        ring = _ring("its.tracks")
        ring.next, ring._consumer = {0: 12000}, Consumer()
        await ring._check_for_reset()
        assert ring.resets == {0: 0} and ring.next == {0: 12000}  # not known: asked again at the next check
        answer["confirmed"] = True  # the log itself ends there: it was lost
        await ring._check_for_reset()
        assert ring.resets == {0: 1} and ring.next == {0: 0}

    asyncio.run(go())


def test_workers_are_stalled_only_when_work_waits_and_nothing_is_committed():
    health = SystemHealth(hub=None, metrics=None)
    assert health._progress(committed=100, waiting=5, now=0.0) == "consuming"
    assert health._progress(committed=100, waiting=5, now=STALLED_AFTER_S - 1) == "consuming"
    assert health._progress(committed=100, waiting=5, now=STALLED_AFTER_S + 1).startswith("stalled: 5 messages")
    assert health._progress(committed=100, waiting=0, now=STALLED_AFTER_S + 2) == "caught up"
    assert health._progress(committed=130, waiting=5, now=STALLED_AFTER_S + 3) == "consuming"


def test_work_waiting_with_no_worker_running_is_not_ready_at_once():
    assert workers_verdict("none running", "consuming", waiting=60) == ("none running, 60 messages waiting", False)
    assert workers_verdict("none running", "caught up", waiting=0) == ("none running, caught up", True)
    assert workers_verdict("2 running", "consuming", waiting=60) == ("2 running, consuming", True)
    assert workers_verdict("1 running", "stalled: 60 messages waiting, nothing committed for 31s", 60)[1] is False


def message(record, offset=0) -> Message:
    return Message(0, offset, record.camera_id.encode(), encode(record), record.captured_at)


def test_count_read_model_keeps_totals_and_window_history():
    counts = Counts()
    for i, (start, n) in enumerate([(60.0, 1), (60.0, 2), (120.0, 1)]):
        counts.apply(message(CountUpdate(
            camera_id="c", seq=i, captured_at=start + 1, line="l", direction="in", label="car", total=i + 1,
            minute=WindowCount(start=start, end=start + 60, count=n), quarter=WindowCount(start=0, end=900, count=i + 1),
        ), i))
    assert [u.total for u in counts.current("c")] == [3]
    assert [(w["start"], w["counts"][0]["count"]) for w in counts.windows("c", "1m")] == [(60.0, 2), (120.0, 1)]
    counts.forget_partition(1)  # another partition's log was lost: this camera's figures stay
    assert [u.total for u in counts.current("c")] == [3]
    counts.forget_partition(0)  # its own: the new log's totals (from 0 again) are not hidden behind the old ones
    counts.apply(message(CountUpdate(
        camera_id="c", seq=0, captured_at=1, line="l", direction="in", label="car", total=1,
        minute=WindowCount(start=0, end=60, count=1), quarter=WindowCount(start=0, end=900, count=1))))
    assert [u.total for u in counts.current("c")] == [1] and len(counts.windows("c", "1m")) == 1


def test_count_history_says_in_which_windows_live_frames_were_shed():
    """Counts fell when a worker shed frames it reached too late, and the flow chart read as traffic falling."""
    counts, events = Counts(), CameraEvents()
    counts.apply(message(CountUpdate(
        camera_id="c", seq=1, captured_at=61, line="l", direction="in", label="car", total=1,
        minute=WindowCount(start=60, end=120, count=1), quarter=WindowCount(start=0, end=900, count=1))))
    for i, (at, n) in enumerate([(70.0, 4), (100.0, 30), (190.0, 12)]):  # the last in a minute with no crossing
        events.apply(Message(0, i, b"c", encode(CameraEvent(camera_id="c", kind="frames_shed", at=at, reason="r", frames_shed=n)), at))
    events.apply(Message(0, 9, b"other", encode(CameraEvent(camera_id="other", kind="frames_shed", at=65, reason="r", frames_shed=5)), 65))
    assert [(w["start"], sum(x["count"] for x in w["counts"]), w["frames_shed"]) for w in counts.windows("c", "1m", shed=events)] \
        == [(60.0, 1, 34), (180.0, 0, 12)]
    assert [(w["start"], w["frames_shed"]) for w in counts.windows("c", "15m", shed=events)] == [(0.0, 46)]
    assert "frames_shed" not in counts.windows("c", "1m")[0]
    # What /ready gives: this minute's and the last's, per camera that shed any.
    assert events.shed_lately(now=119.0) == {"c": 46, "other": 5}
    assert events.shed_lately(now=200.0) == {"c": 12} and events.shed_lately(now=300.0) == {}


def test_counts_of_a_line_added_again_replace_those_of_before():
    counts = Counts()

    def update(i, direction, total, version):
        return message(CountUpdate(
            camera_id="c", seq=i, captured_at=100 + i, line="l", line_version=version, direction=direction, label="car",
            total=total, minute=WindowCount(start=60, end=120, count=total), quarter=WindowCount(start=0, end=900, count=total),
        ), i)

    counts.apply(update(0, "in", 7, 2))
    counts.apply(update(1, "out", 5, 2))
    counts.apply(update(2, "in", 1, 6))  # removed and added again: counts from 1
    assert [(u.direction, u.total) for u in counts.current("c")] == [("in", 1)]
    counts.apply(update(3, "in", 7, 2))  # a late copy from before changes nothing
    assert [(u.direction, u.total) for u in counts.current("c")] == [("in", 1)]
    assert counts.windows("c", "1m")[0]["counts"] == [
        {"line": "l", "line_version": 6, "direction": "in", "label": "car", "count": 1},
        {"line": "l", "line_version": 2, "direction": "out", "label": "car", "count": 5},  # before the line went
    ]


def test_a_removed_cameras_count_history_is_the_same_whichever_the_api_read_first():
    """At start the rings fill side by side: the history of a camera removed and added again had its counts of
    before the removal or not, from one start of the API to the next (a trial: 32, 7, 7 vehicles, or none)."""
    removal = CameraConfig(camera_id="c", version=4, last_command_id="x", updated_at=500.0, removed=True)

    def update(seq, minute, version, total):
        return message(CountUpdate(
            camera_id="c", seq=seq, captured_at=minute + 1, line="l", line_version=version, direction="in", label="car",
            total=total, minute=WindowCount(start=minute, end=minute + 60, count=1),
            quarter=WindowCount(start=0, end=900, count=total)), seq)

    before, after = [update(1, 60, 2, 1), update(2, 120, 2, 2)], [update(3, 600, 6, 1)]
    read_live, read_at_start = Counts(), Counts()
    for m in before:
        read_live.apply(m)
    read_live.camera_removed(removal)
    read_at_start.camera_removed(removal)  # its configs read first
    for m in before:
        read_at_start.apply(m)
    for counts in (read_live, read_at_start):
        for m in after:
            counts.apply(m)
    assert read_live.windows("c", "1m") == read_at_start.windows("c", "1m")
    assert [(w["start"], [(c["line_version"], c["count"]) for c in w["counts"]]) for w in read_at_start.windows("c", "1m")] \
        == [(60.0, [(2, 1)]), (120.0, [(2, 1)]), (600.0, [(6, 1)])]
    assert [u.line_version for u in read_at_start.current("c")] == [6]  # its current figures: the line added again


def test_counts_are_those_of_the_lines_the_camera_has_now():
    counts = Counts()
    for i, (line, version, total) in enumerate([("gone", 1, 4), ("kept", 2, 3), ("again", 3, 9)]):
        counts.apply(message(CountUpdate(
            camera_id="c", seq=i, captured_at=100 + i, line=line, line_version=version, direction="in", label="car",
            total=total, minute=WindowCount(start=60, end=120, count=1), quarter=WindowCount(start=0, end=900, count=1)), i))
    lines = [CountingLine(name=name, x1=0, y1=0, x2=9, y2=0) for name in ("kept", "again")]
    # "gone" was removed; "again" removed and added again at version 5: its 9 are of the line before.
    config = CameraConfig(camera_id="c", version=5, last_command_id="x", updated_at=50.0, lines=lines,
                          line_versions={"kept": 2, "again": 5})
    assert [u.line for u in counts.current("c", config)] == ["kept"]
    assert counts.idle("c", config) == ["again"] and counts.idle("c", None) == []  # no crossing since added again
    assert [u.line for u in counts.current("c")] == ["again", "gone", "kept"]  # no configuration: nothing to judge by
    assert "gone" in {x["line"] for w in counts.windows("c", "1m") for x in w["counts"]}  # its history stays


def test_alert_read_model_tracks_active_alerts_and_ignores_repeats():
    def alert(state):
        return Alert(camera_id="c", seq=1, captured_at=1, alert_id="c:wrong_way:track-1:1", kind="wrong_way", state=state,
                     severity="critical", subject="track-1", started_at=1, snapshot=FrameRef(camera_id="c", seq=1), message="m")

    alerts = Alerts()
    for a in (alert("raised"), alert("raised")):
        alerts.apply(message(a))
    assert len(alerts.active) == 1 and len(alerts.recent) == 1
    alerts.apply(message(alert("cleared")))
    alerts.apply(message(alert("cleared")))
    assert alerts.active == {} and [a.state for a in alerts.recent] == ["raised", "cleared"]
    alerts.apply(message(alert("raised")))
    alerts.forget_partition(0)  # its log was lost, so its clearing never comes
    assert alerts.active == {}


def test_a_removed_cameras_alerts_are_no_longer_active_but_a_re_added_ones_are():
    alerts = Alerts()
    cameras = Cameras(on_removed=alerts.camera_removed)

    def raised(camera, at, config_version=1):
        return Alert(camera_id=camera, seq=int(at), captured_at=at, alert_id=f"{camera}:stopped:{at}", kind="stopped_vehicle",
                     state="raised", severity="warning", subject="track-1", started_at=at,
                     snapshot=FrameRef(camera_id=camera, seq=int(at)), message="m", config_version=config_version)

    def config(version, removed, at):
        return CameraConfig(camera_id="c", version=version, last_command_id=f"k{version}", updated_at=at, removed=removed)

    alerts.apply(message(raised("c", 100.0)))
    alerts.apply(message(raised("other", 100.0)))
    cameras.apply(Message(0, 0, b"c", encode(config(2, True, 200.0)), 200.0))
    assert [a.camera_id for a in alerts.for_camera(None)[1]] == ["other"]
    # Read after the removal (the rings fill side by side), raised under a version before it: over too, whatever
    # its time says (a camera clock ahead of the commanding host's).
    alerts.apply(message(raised("c", 250.0)))
    assert [a.camera_id for a in alerts.for_camera(None)[1]] == ["other"]
    cameras.apply(Message(0, 1, b"c", encode(config(3, False, 300.0)), 300.0))  # added again, and new alerts
    alerts.apply(message(raised("c", 310.0, config_version=3)))
    # One from a camera whose clock is minutes behind the commanding host's (dated before the removal): raised
    # under the new version, active.
    alerts.apply(message(raised("c", 50.0, config_version=3)))
    assert sorted(a.alert_id for a in alerts.for_camera("c")[1]) == ["c:stopped:310.0", "c:stopped:50.0"]
    assert len(alerts.for_camera("c")[0]) == 4  # the recent list keeps what happened
    # Alerts of workers from before the field (0: an API upgraded first) are judged by time, as then: the new
    # API hid a re-added camera's live alerts in an upgrade trial.
    alerts.apply(message(raised("c", 150.0, config_version=0)))
    alerts.apply(message(raised("c", 320.0, config_version=0)))
    assert sorted(a.alert_id for a in alerts.for_camera("c")[1]) == ["c:stopped:310.0", "c:stopped:320.0", "c:stopped:50.0"]


def test_camera_events_read_model_is_bounded_per_camera_and_in_cameras():
    events = CameraEvents(keep_per_camera=3, max_cameras=2)

    def event(camera, i):
        return Message(0, i, camera.encode(), encode(CameraEvent(camera_id=camera, kind="frame_rejected", at=i, reason=f"r{i}")), i)

    for i in range(5):
        events.apply(event("cam-a", i))
    assert [e.reason for e in events.recent("cam-a", 10)] == ["r4", "r3", "r2"]  # newest first, 3 kept
    assert [e.reason for e in events.recent("cam-a", 1)] == ["r4"]
    events.apply(event("cam-b", 5))
    events.apply(event("cam-a", 6))  # cam-a heard from again: cam-b is now the oldest
    events.apply(event("cam-c", 7))
    assert set(events.by_camera) == {"cam-a", "cam-c"} and events.recent("cam-b", 5) == []
    events.apply(Message(0, 8, b"cam-a", b"not json", 8))  # not an event: ignored
    assert len(events.recent("cam-a", 10)) == 3


def test_a_ring_whose_partition_goes_back_to_an_earlier_offset_starts_it_over():
    """Kafka resets a consumer past a lost log's end to its beginning: offsets go back, the ring starts over."""
    forgotten = []
    ring = TopicRing("127.0.0.1:1", "t", 10, on_reset=forgotten.append)
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals = {0: []}, {0: []}, {0: []}
    for offset in (0, 1, 2, 0):
        ring._add(Message(0, offset, b"k", b"v", 0.0))
    assert ring.resets == {0: 1} and forgotten == [0]
    assert [m.offset for m in ring.read(0, 0)] == [0] and ring.next[0] == 1


def test_a_ring_says_once_in_a_line_that_its_reading_fails_and_once_that_it_works_again(caplog):
    """A hung broker: each ring's traceback, again at every try, had filled the API's log."""
    from aiokafka.errors import KafkaTimeoutError

    caplog.set_level("INFO", logger="api.topic_ring")
    ring = TopicRing("127.0.0.1:1", "its.tracks", 10)
    for _ in range(3):
        ring._failed("reading", KafkaTimeoutError())
        ring._failed("checking for a reset log", KafkaTimeoutError())
    ring._works("reading")
    ring._works("reading")
    ring._failed("reading", OSError("Connection refused"))
    said = [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"]
    assert said == ["api: its.tracks: reading failed (KafkaTimeoutError); trying again until it works",
                    "api: its.tracks: checking for a reset log failed (KafkaTimeoutError); trying "
                    "again until it works", "api: its.tracks: reading works again",
                    "api: its.tracks: reading failed (OSError: Connection refused); trying again until it works"]
    assert not any(r.exc_info for r in caplog.records if r.levelname != "DEBUG")
    caplog.clear()
    for _ in range(2):  # not the broker's or the network's: maybe a bug, said each time with its traceback
        try:
            raise KeyError("partition")
        except KeyError as exc:
            ring._failed("checking for a reset log", exc)
    assert [bool(r.exc_info) for r in caplog.records if r.levelname != "DEBUG"] == [True, True]


def test_a_ring_holding_nothing_of_a_partition_still_starts_it_over_when_its_offsets_go_back():
    """Every record refused (or trimmed by age): the lost log went unnoticed, and a client resuming after the old
    offsets skipped the new log's first records with no word."""
    from api.hub import keyed_record

    forgotten = []
    ring = TopicRing("127.0.0.1:1", "its.tracks", 10, on_reset=forgotten.append, check=keyed_record(TrackRecord))
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals = {0: []}, {0: []}, {0: []}
    for offset in range(50):
        ring._add(Message(0, offset, b"cam-a", b"junk", 0.0))
    assert ring.next[0] == 50
    ring._add(Message(0, 0, b"cam-a", b"junk", 0.0))  # the new log's first record
    assert ring.resets == {0: 1} and forgotten == [0] and ring.next[0] == 1


def test_a_feeds_ring_leaves_out_records_that_are_not_its_schema_or_not_their_keys_camera(caplog):
    """Any producer can write a result topic; the feeds passed its garbage on as a record (`data: garbage`)."""
    from api.hub import keyed_record

    seen = []
    ring = TopicRing("127.0.0.1:1", "its.tracks", 10, on_message=seen.append, check=keyed_record(TrackRecord))
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals = {0: []}, {0: []}, {0: []}
    good = TrackRecord(camera_id="cam-a", seq=1, captured_at=10.0, width=64, height=48, detected_at=10.1, tracked_at=10.2,
                       tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])
    for offset, key, value in [(0, b"cam-a", b"garbage"), (1, b"cam-a", encode(good)), (2, b"cam-b", encode(good)),
                               (3, b"cam-a", b"{}")]:
        ring._add(Message(0, offset, key, value, 0.0))
    assert [m.offset for m in ring.read(0, 0)] == [1] and [m.offset for m in seen] == [1]
    assert ring.next[0] == 4 and ring.refused == 3
    told = [r.getMessage() for r in caplog.records if "left out of its feed" in r.getMessage()]
    assert len(told) == 1 and "its.tracks[0]@0" in told[0] and "Invalid JSON" in told[0]  # then once a minute


def test_a_frames_ring_holds_what_arrived_in_the_last_keep_s_seconds_and_never_more_than_about_its_capacity(monkeypatch):
    """The live view draws a frame when its track record arrives, seconds later on a busy machine: the frames
    must be held that long, whatever the frame rate (a count of 48 was 1.6 s of a 30-fps camera)."""
    clock = [1000.0]
    monkeypatch.setattr("api.topic_ring.time.monotonic", lambda: clock[0])
    ring = TopicRing("127.0.0.1:1", "frames", 400, keep_s=6.0)
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals, ring._bytes = {0: []}, {0: []}, {0: []}, {0: 0}
    for offset in range(300):  # 30 fps for 10 s
        ring._add(Message(0, offset, b"cam", b"{}", 0.0))
        clock[0] += 1 / 30
    held = ring.latest(0, ring.capacity)
    assert 6 * 30 <= len(held) <= 9 * 30 + 1 and held[-1].offset == 299, len(held)
    for offset in range(300, 1000):  # a burst: 700 at once
        ring._add(Message(0, offset, b"cam", b"{}", 0.0))
    assert len(ring.latest(0, 10_000)) <= 1.25 * 400 and ring.latest(0, 1)[0].offset == 999
    # And within its share of the memory: large frames go sooner.
    ring._partition_bytes = 50_000
    for offset in range(1000, 1100):
        ring._add(Message(0, offset, b"cam", b"x" * 1000, 0.0))
    held = ring.latest(0, 10_000)
    assert sum(len(m.value) for m in held) == ring._bytes[0] <= 1.25 * 50_000 and held[-1].offset == 1099
    assert len(held) >= 40


def test_zone_read_model_keeps_each_zones_latest_figures_and_only_the_zones_a_camera_has():
    def stats(zone, seq, occupancy, at=100.0, version=2):
        window = ZoneWindow(start=60, end=120, entries=seq, exits=seq - occupancy)
        return ZoneStats(camera_id="c", seq=seq, captured_at=at + seq, zone=zone, zone_version=version, occupancy=occupancy,
                         entries=seq, exits=seq - occupancy, minute=window, quarter=window)

    zones = Zones()
    for i, record in enumerate([stats("a", 1, 1), stats("b", 1, 1), stats("a", 2, 0), stats("a", 3, 1)]):
        zones.apply(message(record, i))
    zones.apply(Message(0, 9, b"c", b"{not json", 0.0))  # any producer may write the topic: skipped
    assert [(z.zone, z.entries, z.occupancy) for z in zones.current("c", None)] == [("a", 3, 1), ("b", 1, 1)]
    # A record sent again on its own after a refused batch-mate lands after the camera's later ones: not taken
    # (the zone's entries went back from 3 to 2); one redelivered, with as many entries and exits, is.
    zones.apply(message(stats("a", 2, 0), 7))
    zones.apply(message(stats("a", 3, 1), 8))
    assert [(z.zone, z.entries, z.occupancy) for z in zones.current("c", None)] == [("a", 3, 1), ("b", 1, 1)]
    square = [(0, 0), (9, 0), (9, 9)]
    only_a = CameraConfig(camera_id="c", version=3, last_command_id="x", updated_at=50.0, zones=[Zone(name="a", points=square)])
    assert [z.zone for z in zones.current("c", only_a)] == ["a"]  # b was removed: not current
    with_new = only_a.model_copy(update={"zones": [*only_a.zones, Zone(name="new", points=square)]})
    assert zones.idle("c", with_new) == ["new"] and zones.idle("c", only_a) == [] and zones.idle("c", None) == []
    assert zones.has("c") and not zones.has("d") and zones.current("d", None) == []
    zones.camera_removed(only_a.model_copy(update={"removed": True, "updated_at": 200.0}))
    assert zones.current("c", None) == [] and not zones.has("c")
    # Of the zone as added before the removal, read after it (the rings fill side by side): not current, even
    # dated after the removal (a camera clock ahead of the commanding host's).
    zones.apply(message(stats("a", 4, 1, at=250.0), 10))
    assert zones.current("c", None) == []
    # The zone added again after the camera was (version 4 on): current, even dated before the removal (a camera
    # clock behind the commanding host's kept them out until it passed the removal's time: a day, in a trial).
    zones.apply(message(stats("a", 1, 1, at=20.0, version=5), 11))
    assert [z.seq for z in zones.current("c", None)] == [1]
    # Figures from before zone versions (0) are judged by time, as they were.
    zones.apply(message(stats("b", 5, 1, at=150.0, version=0), 12))
    assert [z.zone for z in zones.current("c", None)] == ["a"]
    zones.apply(message(stats("b", 6, 1, at=250.0, version=0), 13))
    assert [z.zone for z in zones.current("c", None)] == ["a", "b"]
    # The removal read again after them (the rings fill side by side at start): figures of after it stay.
    zones.camera_removed(only_a.model_copy(update={"removed": True, "updated_at": 200.0}))
    assert [z.zone for z in zones.current("c", None)] == ["a", "b"]
    # An earlier removal read after a later one: the later one stands (figures of in between stay out).
    zones.camera_removed(only_a.model_copy(update={"removed": True, "version": 9, "updated_at": 400.0}))
    zones.camera_removed(only_a.model_copy(update={"removed": True, "version": 3, "updated_at": 200.0}))
    zones.apply(message(stats("a", 7, 1, at=20.0, version=8), 14))
    assert zones.current("c", None) == []
    zones.forget_partition(0)
    assert zones.current("c", None) == []


def test_a_zone_removed_and_added_again_has_no_figures_until_its_own_first_event():
    def stats(seq, entries, version):
        window = ZoneWindow(start=60, end=120, entries=entries, exits=0)
        return ZoneStats(camera_id="c", seq=seq, captured_at=100.0 + seq, zone="a", zone_version=version, occupancy=1,
                         entries=entries, exits=0, minute=window, quarter=window)

    square = [(0, 0), (9, 0), (9, 9)]
    again = CameraConfig(camera_id="c", version=6, last_command_id="x", updated_at=50.0,
                         zones=[Zone(name="a", points=square)], zone_versions={"a": 6})
    zones = Zones()
    zones.apply(message(stats(1, 40, version=2), 0))  # the zone as first added: 40 entries
    assert zones.current("c", again) == [] and zones.idle("c", again) == ["a"]
    assert [z.entries for z in zones.current("c", None)] == [40]  # no configuration to judge by
    zones.apply(message(stats(2, 1, version=6), 1))
    assert [(z.entries, z.zone_version) for z in zones.current("c", again)] == [(1, 6)] and zones.idle("c", again) == []


def test_tracked_cameras_count_each_cameras_records_and_forget_the_least_recent_beyond_the_bound():
    from schemas.tracks import TrackRecord

    def tracked(camera, seq):
        return TrackRecord(camera_id=camera, seq=seq, captured_at=10.0, width=64, height=48, detected_at=10.1,
                           tracked_at=10.2, tracker_frame=seq, model="m@v", detections=0, worker="w:1", objects=[])

    cameras = TrackedCameras(max_cameras=2)
    for i, record in enumerate([tracked("a", 1), tracked("b", 1), tracked("a", 2)]):
        cameras.apply(message(record, i))
    assert [(r.camera_id, r.seq, n) for r, n in cameras.latest()] == [("a", 2, 2), ("b", 1, 1)]
    cameras.apply(Message(0, 5, b"b", b"{not json", 0.0))  # counted; its newest does not decode: left out
    cameras.apply(message(tracked("c", 1), 6))  # a third camera: a, heard from least recently, goes
    assert [(r.camera_id, n) for r, n in cameras.latest()] == [("c", 1)]
    assert cameras.frames == {b"b": 2, b"c": 1}
    cameras.apply(Message(0, 7, b"", b"{}", 0.0))  # no key: no camera
    assert len(cameras.frames) == 2
    assert cameras.frame_size("c") == (64, 48) and cameras.frame_size("a") is None
    assert cameras.frame_size("b") is None  # its newest does not decode


def test_a_line_zone_or_calibration_wholly_outside_the_frame_is_refused_with_where_it_lies():
    from schemas.geometry import Calibration, CountingLine, Zone, out_of_view

    beside = Zone(name="beside", points=[(700, 50), (900, 50), (900, 100)])
    assert out_of_view(beside, 640, 360) == (
        "zone 'beside' lies wholly outside the camera's 640x360 frame (x 700 to 900, y 50 to 100): "
        "nothing in view can enter it")
    assert out_of_view(Zone(name="past-the-edge", points=[(600, 300), (900, 300), (900, 500)]), 640, 360) is None
    touching = Zone(name="touching", points=[(640, 50), (900, 50), (900, 100)])  # the last column is 639.x
    assert "zone 'touching' lies wholly outside" in out_of_view(touching, 640, 360)
    around = Zone(name="around", points=[(-10, -10), (700, -10), (700, 400), (-10, 400)])
    assert out_of_view(around, 640, 360) is None  # the whole frame inside it
    below = CountingLine(name="below", x1=0, y1=400, x2=640, y2=400)
    assert "line 'below' lies wholly outside" in out_of_view(below, 640, 360)
    assert "nothing in view can cross it" in out_of_view(below, 640, 360)
    assert out_of_view(below, 640, 480) is None
    # A calibration there was accepted, and no speed was ever measured (only inside its image points' area).
    road = [(0, 0), (7, 0), (7, 40), (0, 40)]
    far = Calibration(image_points=[(5000, 5000), (5400, 5000), (5400, 5100), (5000, 5100)], road_points=road)
    assert out_of_view(far, 640, 360) == (
        "the calibration's image points lie wholly outside the camera's 640x360 frame (x 5000 to 5400, y 5000 to "
        "5100): nothing in view can have its speed measured")
    part = Calibration(image_points=[(100, 350), (540, 350), (700, 100), (-100, 100)], road_points=road)
    assert out_of_view(part, 640, 360) is None


def test_metrics_give_the_lines_and_zones_a_camera_has_now_and_zeros_where_nothing_is():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from api.metrics import HubFigures
    from api.read_models import Workers
    from schemas.tracks import TrackRecord, TrackedObject

    window = ZoneWindow(start=60, end=120, entries=1, exits=0)
    square = [(0, 0), (9, 0), (9, 9)]
    ring = SimpleNamespace(topic="its.tracks", held=lambda: 2, received=5, refused=3)
    hub = SimpleNamespace(rings={"tracks": ring}, workers=Workers(), tracked=TrackedCameras(), counts=Counts(), zones=Zones(),
                          alerts=Alerts(), cameras=Cameras(), dead_letters=DeadLetters(), camera_events=CameraEvents(),
                          settings=SimpleNamespace(analytics=SimpleNamespace(camera_silent_s=30.0)))
    for i, (at, n) in enumerate(((10.0, 4), (70.0, 6))):
        hub.camera_events.apply(Message(0, i, b"c", encode(CameraEvent(camera_id="c", kind="frames_shed", at=at, reason="r",
                                                                       frames_shed=n)), at))
    hub.alerts_of = lambda camera_id: hub.alerts.for_camera(camera_id)
    for offset in range(3):
        hub.dead_letters.apply(_letter(_dead_letter(b"c", offset)))
    for junk in (b"junk-1", b"junk-2"):  # keys of no camera: summed, not a series each
        hub.dead_letters.apply(_letter(_dead_letter(junk, 9)))
    hub.cameras.put(CameraConfig(camera_id="c", version=4, last_command_id="x", updated_at=50.0,
                                 zones=[Zone(name="kept", points=square), Zone(name="quiet", points=square)]))
    for i, zone in enumerate(("kept", "removed")):
        hub.zones.apply(message(ZoneStats(camera_id="c", seq=i, captured_at=100.0, zone=zone, occupancy=1, entries=1,
                                          exits=0, minute=window, quarter=window), i))
    box = TrackedObject(track_id=1, cls=2, label="car", conf=0.9, x1=0, y1=0, x2=5, y2=5)
    now = time.time()
    for camera, tracked_at in (("c", now), ("stopped", now - 60)):
        hub.tracked.apply(message(TrackRecord(
            camera_id=camera, seq=1, captured_at=tracked_at - 0.1, width=64, height=48, detected_at=tracked_at,
            tracked_at=tracked_at, tracker_frame=1, model="m@v", detections=1, worker="w:1", objects=[box])))
    registry = CollectorRegistry()
    registry.register(HubFigures(hub))
    samples = {(s.name, tuple(sorted(s.labels.values()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples}
    occupancy = {labels: v for (name, labels), v in samples.items() if name == "its_faust_zone_occupancy"}
    assert occupancy == {("c", "kept"): 1, ("c", "quiet"): 0}  # the removed zone is gone, the quiet one is 0
    assert samples[("its_faust_camera_objects", ("c",))] == 1
    assert samples[("its_faust_camera_objects", ("stopped",))] == 0  # silent past camera_silent_s: closed
    alerts = {labels: v for (name, labels), v in samples.items() if name == "its_faust_alerts_active"}
    assert alerts == {("c", kind): 0 for kind in ("congestion", "overspeed", "stopped_vehicle", "wrong_way")}
    assert samples[("its_faust_dead_letters_total", ("c", "detect"))] == 3
    assert samples[("its_faust_dead_letters_total", ("detect", "other"))] == 2
    assert samples[("its_faust_camera_frames_shed_total", ("c",))] == 10
    assert samples[("its_faust_api_ring_refused_total", ("its.tracks",))] == 3  # left out of the feed: counted
    # A removed camera's series go: its last frame's age grew for ever (a stale-camera alarm kept firing for it).
    hub.cameras.put(CameraConfig(camera_id="c", version=5, last_command_id="y", updated_at=now + 1, removed=True))
    hub.tracked.camera_removed(hub.cameras.configs["c"])
    samples = {(s.name, tuple(sorted(s.labels.values()))) for family in
               text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples}
    assert not {name for name, labels in samples if name.startswith("its_faust_camera_") and labels == ("c",)}
    assert ("its_faust_camera_objects", ("stopped",)) in samples


def _dead_letter(key: bytes | None, offset: int, stage: str = "detect"):
    from schemas import DeadLetter

    return DeadLetter(stage=stage, topic="its.frames", partition=1, offset=offset, key=key, value=b"x" * 10,
                      reason=f"bad {offset}", failed_at=100.0 + offset)


def _letter(letter) -> Message:
    return Message(0, letter.offset, letter.key, encode(letter), letter.failed_at)


def test_dead_letters_are_counted_by_key_and_stage_and_the_newest_listed_first_without_their_payloads():
    letters = DeadLetters(keep_per_key=2, max_keys=2)
    for offset, (key, stage) in enumerate([(b"cam-1", "detect"), (b"cam-1", "detect"), (b"cam-1", "track"),
                                           (None, "detect"), (b"\xff", "detect")]):
        letters.apply(_letter(_dead_letter(key, offset, stage)))
    letters.apply(Message(0, 9, b"cam-1", b"not a dead letter", 0.0))  # skipped
    view = letters.view(None, 10)
    # Two keys kept (the newest heard from): the camera's counts were dropped with it. A key that is not UTF-8 is
    # written out (replaced, b"\xff" and b"\xfe" were one key).
    assert view["counts"] == {"": {"detect": 1}, "\\xff": {"detect": 1}}
    assert [d["offset"] for d in view["recent"]] == [4, 3]
    letters.apply(_letter(_dead_letter(b"cam-1", 10)))
    letters.apply(_letter(_dead_letter(b"cam-1", 11, "track")))
    letters.apply(_letter(_dead_letter(b"cam-1", 12)))
    one = letters.view("cam-1", 10)
    assert one["counts"] == {"cam-1": {"detect": 2, "track": 1}}
    assert [d["offset"] for d in one["recent"]] == [12, 11]  # two kept per key
    assert one["recent"][0] == {"stage": "detect", "topic": "its.frames", "partition": 1, "offset": 12, "key": "cam-1",
                                "reason": "bad 12", "failed_at": 112.0, "bytes": 10}
    assert letters.view("cam-1", 1)["recent"][0]["offset"] == 12 and letters.view("nobody", 5) == {"counts": {}, "recent": []}
    assert list(letters.view(None, 1)["counts"]) == ["cam-1"]  # of all keys: the ones heard from most recently


class _NamedBody(BaseModel):
    name: str


def test_a_json_body_sent_without_the_json_content_type_is_a_415_that_names_the_header():
    import asyncio

    import httpx
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    from api.errors import validation_failed

    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_failed)

    @app.post("/named")
    def named(body: _NamedBody) -> _NamedBody:
        return body

    async def post(**request):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.post("/named", **request)

    def answer(**request):
        return asyncio.run(post(**request))

    as_form = answer(content=b'{"name": "a"}', headers={"content-type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == 415
    assert "Content-Type: application/json" in as_form.json()["detail"] and "x-www-form-urlencoded" in as_form.json()["detail"]
    assert answer(content=b'{"name": "a"}').status_code == 415  # no Content-Type at all
    assert answer(json={"name": "a"}).json() == {"name": "a"}
    assert answer(content=b'{"name": "a"}', headers={"content-type": "application/merge-patch+json"}).status_code == 200
    # JSON that is not an object, or a field wrong, stays FastAPI's 422: the header was right
    assert answer(json=[1]).status_code == 422
    assert answer(json={"name": 3}).status_code == 422
    assert answer(headers={"content-type": "text/plain"}).status_code == 422  # no body: "Field required"


class _Points(BaseModel):
    points: list[list[float]] = Field(max_length=64)


def test_a_body_over_the_limit_is_a_413_and_a_422_echoes_a_long_input_in_brief():
    """A 19 MB list of points was read, parsed and echoed whole in a 422 on the event loop: 17 s of every
    other client and feed waiting (a security review)."""
    import asyncio

    import httpx
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    from api.errors import ECHO_ITEMS, validation_failed
    from api.body_limit import BodyLimit

    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=4096)
    app.add_exception_handler(RequestValidationError, validation_failed)

    @app.post("/zone")
    def zone(body: _Points) -> int:
        return len(body.points)

    async def post(**request):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.post("/zone", **request)

    def answer(**request):
        return asyncio.run(post(**request))

    assert answer(json={"points": [[1, 2]] * 60}).json() == 60
    too_long = answer(json={"points": [[1, 2]] * 1000})
    assert too_long.status_code == 413 and "4096 bytes" in too_long.json()["detail"]

    async def chunks():  # no Content-Length: counted as it comes
        yield b'{"points": ['
        for _ in range(1000):
            yield b"[1, 2],"
        yield b"[1, 2]]}"

    assert answer(content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    refused = answer(json={"points": [[1, 2]] * 300})
    assert refused.status_code == 422
    echoed = refused.json()["detail"][0]["input"]
    assert len(echoed) == ECHO_ITEMS + 1 and echoed[-1] == "... (300 items)", echoed
    many = answer(json={"points": [["x", "y"]] * 30}).json()["detail"]  # every error listed, as FastAPI's 422 does
    assert len(many) == 60 and all(isinstance(e, dict) and e["msg"] for e in many)


def _ring(topic: str, capacity: int = 100) -> TopicRing:
    ring = TopicRing("127.0.0.1:1", topic, capacity)
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals, ring._bytes = {0: []}, {0: []}, {0: []}, {0: 0}
    return ring


def test_the_live_view_draws_a_cameras_frame_once_for_all_its_viewers():
    """Each viewer of live.mjpg drew and encoded the frame at its every tick: 60 viewers of a 4 fps camera at
    fps=30 took 1.4 cores (a security review)."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    import numpy as np

    from api.live import LiveView
    from schemas import FrameRecord, TrackedObject, TrackRecord
    from schemas.control import CameraConfig

    now = time.time()
    frames, tracks = _ring("frames"), _ring("tracks")
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 120, np.uint8))[1].tobytes()

    def frame_and_track(seq: int) -> None:
        frames._add(Message(0, seq, b"cam-a", encode(FrameRecord(camera_id="cam-a", seq=seq, captured_at=now, width=160,
                                                                  height=120, jpeg=jpeg)), now))
        record = TrackRecord(camera_id="cam-a", seq=seq, captured_at=now, width=160, height=120, detected_at=now,
                             tracked_at=now, tracker_frame=seq + 1, model="m@v", detections=1, worker="w:1",
                             objects=[TrackedObject(track_id=3, x1=40, y1=30, x2=120, y2=100, conf=0.9, cls=2, label="car")])
        tracks._add(Message(0, seq, b"cam-a", encode(record), now))

    live = LiveView(frames, tracks)
    assert live.jpeg("cam-a", None) is None and live.drawings == 1  # nothing held yet
    frame_and_track(0)
    with ThreadPoolExecutor(16) as pool:  # viewers at the same moment: one drawing, the same bytes for all
        seen = list(pool.map(lambda _: live.jpeg("cam-a", None), range(64)))
    assert live.drawings == 2 and all(image is seen[0] for image in seen) and seen[0][:2] == b"\xff\xd8"
    frames._add(Message(0, 1, b"cam-b", encode(FrameRecord(camera_id="cam-b", seq=1, captured_at=now, width=160,
                                                            height=120, jpeg=jpeg)), now))
    assert live.jpeg("cam-a", None) is seen[0] and live.drawings == 2  # the rings moved, not for this camera
    config = CameraConfig(camera_id="cam-a", name="a", version=2, last_command_id="c2", updated_at=now)
    assert live.jpeg("cam-a", config) is not seen[0] and live.drawings == 3  # its lines and zones changed
    frame_and_track(2)
    assert live.jpeg("cam-a", config) is not seen[0] and live.drawings == 4  # a new frame
    assert live.jpeg("cam-b", None) is not None and live.drawings == 5  # a camera of its own


def test_an_alert_read_before_its_frames_track_record_gets_its_boxes_when_the_record_arrives():
    """The API reads each topic on its own: a stopped-vehicle alert came before its frame's tracks, and its
    snapshot was kept for good without a box ("not tracked yet")."""
    import cv2
    import numpy as np

    from api.snapshots import AlertSnapshots
    from schemas import FrameRecord, TrackedObject, TrackRecord

    now = time.time()
    frames, tracks = _ring("frames"), _ring("tracks")
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 120, np.uint8))[1].tobytes()
    frames._add(Message(0, 0, b"cam-a", encode(FrameRecord(camera_id="cam-a", seq=7, captured_at=now, width=160, height=120, jpeg=jpeg)), now))
    snapshots = AlertSnapshots(frames, tracks, {})
    alert = Alert(alert_id="cam-a:stopped_vehicle:3", camera_id="cam-a", seq=7, captured_at=now, kind="stopped_vehicle",
                  state="raised", severity="warning", started_at=now, subject="track-3", track_ids=[3],
                  snapshot=FrameRef(camera_id="cam-a", seq=7), message="car 3 stopped in lane")
    snapshots.apply(Message(0, 0, b"cam-a", encode(alert), now))

    def box_pixels() -> int:
        image = cv2.imdecode(np.frombuffer(snapshots.get("cam-a", 7), np.uint8), cv2.IMREAD_COLOR)
        return int((np.abs(image[28:95, 35:125].astype(int) - 120).max(axis=2) > 60).sum())

    untracked = box_pixels()
    record = TrackRecord(camera_id="cam-a", seq=7, captured_at=now, width=160, height=120, detected_at=now, tracked_at=now,
                         tracker_frame=1, model="m@v", detections=1, worker="w:1",
                         objects=[TrackedObject(track_id=3, x1=40, y1=30, x2=120, y2=100, conf=0.9, cls=2, label="car")])
    other = record.model_copy(update={"seq": 6})
    for offset, r in enumerate((other, record)):
        tracks._add(Message(0, offset, b"cam-a", encode(r), now))
        snapshots.track_arrived(tracks.latest(0, 1)[0])
    assert untracked == 0 and box_pixels() > 200  # the car's box, drawn once its record came
    assert not snapshots._untracked


def test_an_alert_snapshot_marks_the_vehicles_and_zone_the_alerts_of_its_frame_are_about():
    """Snapshots drew every vehicle alike: which of them was stopped or speeding, the picture did not say."""
    import cv2
    import numpy as np

    from api.snapshots import AlertSnapshots
    from schemas import FrameRecord, TrackedObject, TrackRecord
    from schemas.control import CameraConfig, Zone

    now = time.time()
    frames, tracks = _ring("frames"), _ring("tracks")
    jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 120, np.uint8))[1].tobytes()
    frames._add(Message(0, 0, b"cam-a", encode(FrameRecord(camera_id="cam-a", seq=7, captured_at=now, width=320, height=240, jpeg=jpeg)), now))
    tracks._add(Message(0, 0, b"cam-a", encode(TrackRecord(
        camera_id="cam-a", seq=7, captured_at=now, width=320, height=240, detected_at=now, tracked_at=now,
        tracker_frame=1, model="m@v", detections=2, worker="w:1",
        objects=[TrackedObject(track_id=3, x1=40, y1=100, x2=120, y2=180, conf=0.9, cls=2, label="car"),
                 TrackedObject(track_id=4, x1=200, y1=100, x2=280, y2=180, conf=0.9, cls=2, label="car")])), now))
    lane = Zone(name="lane", points=[(10, 60), (310, 60), (310, 230), (10, 230)])
    config = CameraConfig(camera_id="cam-a", version=1, last_command_id="c1", updated_at=now, zones=[lane])
    snapshots = AlertSnapshots(frames, tracks, {"cam-a": config})

    def raise_alert(kind: str, track_ids: list[int], zone: str | None, message: str) -> None:
        alert = Alert(alert_id=f"cam-a:{kind}:7", camera_id="cam-a", seq=7, captured_at=now, kind=kind, state="raised",
                      severity="warning", started_at=now, subject="x", track_ids=track_ids, zone=zone,
                      snapshot=FrameRef(camera_id="cam-a", seq=7), message=message)
        snapshots.apply(Message(0, 0, b"cam-a", encode(alert), now))

    def red(y1: int, y2: int, x1: int, x2: int) -> int:
        image = cv2.imdecode(np.frombuffer(snapshots.get("cam-a", 7), np.uint8), cv2.IMREAD_COLOR)[y1:y2, x1:x2].astype(int)
        return int(((image[..., 2] > 180) & (image[..., 1] < 100) & (image[..., 0] < 100)).sum())

    raise_alert("stopped_vehicle", [3], None, "car 3 stopped")
    stopped_box, other_box, zone_edge = (red(95, 185, 35, 125), red(95, 185, 195, 285), red(225, 235, 100, 300))
    assert stopped_box > 300 and other_box == 0 and zone_edge == 0, (stopped_box, other_box, zone_edge)
    assert red(5, 30, 4, 120) > 300  # the alert's message on a red band at the top
    raise_alert("congestion", [3, 4], "lane", "queue in lane: 2 vehicles")  # a second alert on the same frame
    assert red(95, 185, 195, 285) > 300 and red(225, 235, 100, 300) > 200  # both queued cars and the lane marked
    assert red(35, 50, 4, 120) > 300  # its message under the first one


def test_a_configuration_stored_with_a_zone_far_past_the_frame_is_still_drawn():
    """A zone at 1e308 (stored before shapes were bounded) overflowed OpenCV's int32: every picture was a 500."""
    import json

    import cv2
    import numpy as np

    from api.live import draw
    from schemas import FrameRecord
    from schemas.control import CameraConfig

    now = time.time()
    stored = json.loads(encode(CameraConfig(camera_id="cam-a", version=1, last_command_id="c1", updated_at=now)))
    stored["zones"] = [{"name": "huge", "points": [[0, 0], [1e308, 0], [1e308, 1e308]], "kind": "area"}]
    stored["lines"] = [{"name": "far", "x1": 0, "y1": 0, "x2": 1e300, "y2": 5}]
    config = decode(CameraConfig, json.dumps(stored).encode())  # read as stored (a command would be refused)
    jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 120, np.uint8))[1].tobytes()
    frame = FrameRecord(camera_id="cam-a", seq=7, captured_at=now, width=320, height=240, jpeg=jpeg)
    image = draw(frame, None, config)
    assert image.shape == (240, 320, 3) and (image != 120).any()  # the zone's fill and the line are there


def test_an_active_alert_of_a_camera_silent_for_camera_silent_s_is_over_though_no_worker_cleared_it(monkeypatch):
    """`run` on a kept broker stops its own worker with the clip: nothing closed the camera, and its alerts
    stayed active for minutes (GET /alerts, the active-alerts metric)."""
    from api.hub import Hub
    from its_faust.settings import load_settings
    from schemas import TrackRecord

    hub = Hub("127.0.0.1:1", load_settings())
    assert hub.settings.analytics.camera_silent_s == 30
    now = time.time()

    def tracked(camera: str, at: float) -> Message:
        return Message(0, 0, camera.encode(), encode(TrackRecord(
            camera_id=camera, seq=1, captured_at=at, width=64, height=48, detected_at=at, tracked_at=at,
            tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])), at)

    for camera, last_tracked in (("gone-cam", now - 45), ("live-cam", now - 2)):
        hub.tracked.apply(tracked(camera, last_tracked))
        raised = Alert(alert_id=f"{camera}:wrong_way:track-1:1", camera_id=camera, seq=1, captured_at=last_tracked,
                       kind="wrong_way", state="raised", severity="critical", subject="track-1", started_at=last_tracked,
                       snapshot=FrameRef(camera_id=camera, seq=1), message="wrong way")
        hub.alerts.apply(Message(0, 0, camera.encode(), encode(raised), last_tracked))
    hub.alerts.apply(Message(0, 1, b"unseen-cam", encode(raised.model_copy(update={"camera_id": "unseen-cam", "alert_id": "u"})), now))
    recent, active = hub.alerts_of(None)
    assert len(recent) == 3 and sorted(a.camera_id for a in active) == ["live-cam", "unseen-cam"]  # no track held: not judged
    assert hub.alerts_of("gone-cam")[1] == [] and len(hub.alerts_of("gone-cam")[0]) == 1
    monkeypatch.setenv("ITS_FAUST_ANALYTICS__CAMERA_SILENT_S", "0")  # 0: never closed
    hub.settings = load_settings()
    assert len(hub.alerts_of(None)[1]) == 3


def test_the_api_docs_pages_load_nothing_from_outside():
    """/docs was blank on a network without the internet: FastAPI's pages take Swagger UI from a CDN."""
    import asyncio
    import re

    import httpx

    from api.app import create_app
    from its_faust.settings import load_settings

    app = create_app(load_settings(), "127.0.0.1:1")

    async def fetch():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            pages = {page: (await client.get(page)).text for page in ("/docs", "/redoc")}
            assets = {url: await client.get(url) for text in pages.values() for url in re.findall(r'(?:src|href)="([^"]+)"', text)}
            return pages, assets

    pages, assets = asyncio.run(fetch())
    assert not [url for text in pages.values() for url in re.findall(r"https?://[^\s'\"]+", text)]
    assert {url.rsplit("/", 1)[-1] for url in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"}
    assert all(r.status_code == 200 and len(r.content) > 1000 for r in assets.values()), assets


def test_pages_of_the_origins_allowed_may_call_the_api_from_a_browser_and_others_may_not(monkeypatch):
    """A city's web app on another origin could not call the API: no CORS headers, and no setting for them."""
    import asyncio

    import httpx

    from api.app import create_app
    from its_faust.settings import load_settings

    def preflight(app, origin: str) -> httpx.Response:
        async def ask():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
                return await client.options("/api/v1/cameras", headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type"})
        return asyncio.run(ask())

    monkeypatch.setenv("ITS_FAUST_API__CORS_ORIGINS", "https://ops.example.org, https://maps.example.org")
    app = create_app(load_settings(), "127.0.0.1:1")
    allowed = preflight(app, "https://maps.example.org")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://maps.example.org"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in preflight(app, "https://evil.example.com").headers
    monkeypatch.delenv("ITS_FAUST_API__CORS_ORIGINS")
    assert "access-control-allow-origin" not in preflight(create_app(load_settings(), "127.0.0.1:1"),
                                                           "https://maps.example.org").headers


def test_the_openapi_describes_every_feed_as_an_event_stream_not_json():
    from api.app import create_app
    from its_faust.settings import load_settings

    paths = create_app(load_settings(), "127.0.0.1:9").openapi()["paths"]
    streams = [p for p in paths if p.endswith("/stream")]
    assert len(streams) == 3
    for path in streams:
        assert set(paths[path]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}, path
    assert set(paths["/api/v1/dead-letters"]["get"]["responses"]["200"]["content"]) == {"application/json"}


def test_camera_activity_says_which_cameras_are_live_what_is_in_view_and_their_active_alerts():
    """The dashboard's camera list gave ids only: a stopped or never-started camera looked like a live one."""
    from api.hub import Hub
    from its_faust.settings import load_settings
    from schemas import TrackRecord
    from schemas.tracks import TrackedObject

    hub = Hub("127.0.0.1:1", load_settings())
    now = time.time()
    car = TrackedObject(track_id=1, cls=2, label="car", conf=0.9, x1=0, y1=0, x2=5, y2=5)
    for camera, tracked_at, frames in (("live-cam", now - 1, 3), ("stopped-cam", now - 20, 1), ("closed-cam", now - 60, 1)):
        for seq in range(frames):
            hub.tracked.apply(Message(0, seq, camera.encode(), encode(TrackRecord(
                camera_id=camera, seq=seq, captured_at=tracked_at, width=64, height=48, detected_at=tracked_at,
                tracked_at=tracked_at, tracker_frame=seq + 1, model="m@v", detections=2, worker="w:1", objects=[car, car])),
                tracked_at))
    hub.cameras.put(CameraConfig(camera_id="idle-cam", version=1, last_command_id="x", updated_at=now, name="Bridge"))
    for i, camera in enumerate(("live-cam", "closed-cam")):
        hub.alerts.apply(Message(0, i, camera.encode(), encode(Alert(
            alert_id=f"{camera}:wrong_way:track-1:1", camera_id=camera, seq=1, captured_at=now, kind="wrong_way",
            state="raised", severity="critical", subject="track-1", started_at=now,
            snapshot=FrameRef(camera_id=camera, seq=1), message="wrong way")), now))
    listed = {c["camera_id"]: c for c in hub.camera_activity(now)}
    assert list(listed) == ["closed-cam", "idle-cam", "live-cam", "stopped-cam"]
    live, stopped, closed, idle = (listed[c] for c in ("live-cam", "stopped-cam", "closed-cam", "idle-cam"))
    assert live["live"] and live["objects"] == 2 and live["frames_tracked"] == 3 and live["alerts_active"] == 1
    assert live["state"] == "live" and stopped["state"] == "stopped" and idle["state"] == "no_frames"
    assert not stopped["live"] and round(stopped["last_frame_age_s"]) == 20 and stopped["objects"] == 2
    assert stopped["last_tracked_at"] == pytest.approx(now - 20)
    assert closed["objects"] == 0 and closed["alerts_active"] == 0  # silent past camera_silent_s: closed
    # Frames of it keep coming, and none is tracked (no worker runs, say): not "stopped", which sent a control
    # room to the camera; a configured camera whose frames come untracked from the start is told the same way.
    for camera in ("stopped-cam", "idle-cam"):
        hub.frames_arriving.apply(Message(0, 1, camera.encode(), b"{}", now - 2))
    listed = {c["camera_id"]: c for c in hub.camera_activity(now)}
    assert listed["stopped-cam"]["state"] == listed["idle-cam"]["state"] == "untracked"
    assert listed["live-cam"]["state"] == "live" and not listed["stopped-cam"]["live"]
    assert {c["camera_id"]: c["state"] for c in hub.camera_activity(now + 10)}["stopped-cam"] == "stopped"
    # Live, but the workers shed most of its frames: said beside "live" (8 fps tracked at 0.2 read like any other).
    assert listed["live-cam"]["frames_shed_lately"] == 0
    hub.camera_events.apply(Message(0, 0, b"live-cam", encode(CameraEvent(
        camera_id="live-cam", kind="frames_shed", at=now - 5, reason="behind", frames_shed=40)), now - 5))
    listed = {c["camera_id"]: c for c in hub.camera_activity(now)}
    assert listed["live-cam"]["state"] == "live" and listed["live-cam"]["frames_shed_lately"] == 40
    assert listed["stopped-cam"]["frames_shed_lately"] == 0
    assert {c["camera_id"]: c for c in hub.camera_activity(now + 180)}["live-cam"]["frames_shed_lately"] == 0
    # The broker does not answer the API: what the cameras do now is not known (a live one read "stopped" once its
    # last frame read was 10 s old, its frames unread, though the workers may track it on).
    hub.broker.trouble = "connection refused"
    unknown = {c["camera_id"]: c for c in hub.camera_activity(now)}
    assert {c: a["state"] for c, a in unknown.items()} == dict.fromkeys(listed, "unknown")
    assert not unknown["live-cam"]["live"] and unknown["live-cam"]["last_tracked_at"] == listed["live-cam"]["last_tracked_at"]
    hub.broker.trouble = None
    # Removed, its frames refused: said so, though its last frames were tracked a moment ago (it looked live).
    hub.cameras.put(CameraConfig(camera_id="live-cam", version=3, last_command_id="y", updated_at=now, removed=True))
    removed = {c["camera_id"]: c for c in hub.camera_activity(now)}["live-cam"]
    assert removed["state"] == "removed" and not removed["configured"]
    assert not removed["live"] and removed["objects"] == 0  # over at once: not live, nothing in view (a trial)
    # Added again: what was in view before its removal is not in view now, and it is not live (it read live, with
    # the 8 vehicles of then, until its last frame was 30 s old: a trial).
    hub.cameras.put(CameraConfig(camera_id="live-cam", version=4, last_command_id="z", updated_at=now + 1))
    again = {c["camera_id"]: c for c in hub.camera_activity(now + 2)}["live-cam"]
    assert (again["state"], again["live"], again["objects"], again["last_tracked_at"]) == ("no_frames", False, 0, None)
    hub.tracked.apply(Message(0, 9, b"live-cam", encode(TrackRecord(
        camera_id="live-cam", seq=9, captured_at=now + 2, width=64, height=48, detected_at=now + 2, tracked_at=now + 2,
        tracker_frame=1, model="m@v", detections=1, worker="w:1", objects=[car])), now + 2))
    again = {c["camera_id"]: c for c in hub.camera_activity(now + 2)}["live-cam"]
    assert (again["state"], again["objects"], again["frames_tracked"]) == ("live", 1, 4)  # its own frames from then on
    assert idle == {"camera_id": "idle-cam", "name": "Bridge", "configured": True, "state": "no_frames", "live": False,
                    "last_tracked_at": None, "last_frame_age_s": None, "frames_tracked": 0, "objects": 0, "alerts_active": 0,
                    "frames_shed_lately": 0}


def test_a_removed_camera_is_listed_as_removed_for_ten_minutes_or_while_an_alert_of_it_is_active():
    """Each `replay --source` on a shared broker removes a camera of its own: each stayed in the dashboard's list,
    struck through, for as long as the API held a frame of it."""
    from api.hub import REMOVED_LISTED_S, Hub
    from its_faust.settings import load_settings
    from schemas import TrackRecord

    hub = Hub("127.0.0.1:1", load_settings())
    now = time.time()
    for camera in ("replay-0a1b2c", "cam-1"):
        hub.tracked.apply(Message(0, 1, camera.encode(), encode(TrackRecord(
            camera_id=camera, seq=1, captured_at=now - 5, width=64, height=48, detected_at=now - 5, tracked_at=now - 5,
            tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])), now - 5))
        hub.cameras.put(CameraConfig(camera_id=camera, version=1, last_command_id="a", updated_at=now - 10))
    hub.cameras.put(CameraConfig(camera_id="replay-0a1b2c", version=2, last_command_id="r", updated_at=now, removed=True))
    states = lambda at: {c["camera_id"]: c["state"] for c in hub.camera_activity(at)}  # noqa: E731
    assert states(now + 1) == {"cam-1": "live", "replay-0a1b2c": "removed"}
    assert states(now + REMOVED_LISTED_S + 1) == {"cam-1": "stopped"}


def test_records_left_out_of_a_feed_are_no_events_a_resuming_client_missed():
    """A partition that held only refused records told a client resuming before them that events were dropped."""
    import asyncio

    from api.hub import keyed_record
    from api.sse import events

    ring = TopicRing("127.0.0.1:1", "its.tracks", 3, check=keyed_record(TrackRecord))
    ring.partitions, ring.resets = [0, 1], {0: 0, 1: 0}
    for p in (0, 1):
        ring.next[p] = ring._seen_from[p] = 0
        ring._offsets[p], ring._messages[p], ring._arrivals[p] = [], [], []
    good = lambda seq: encode(TrackRecord(camera_id="cam-a", seq=seq, captured_at=10.0, width=64, height=48, detected_at=10.1,
                                          tracked_at=10.2, tracker_frame=seq + 1, model="m@v", detections=0, worker="w:1", objects=[]))
    for offset in range(3):
        ring._add(Message(0, offset, b"cam-a", b"garbage", 0.0))  # partition 0: only refused records
    for offset in range(10):  # partition 1: refused records between held ones, then trimmed past capacity
        ring._add(Message(1, offset, b"cam-a", good(offset) if offset in (0, 5, 6, 8, 9) else b"junk", 0.0))
    assert ring.held_from(0) == 0
    assert ring.held_from(1) == 6  # 5 is beyond the 3 held (6, 8, 9): a reader after it misses nothing

    async def first_events(cursor: dict[int, int], n: int) -> list[dict]:
        stream = events(ring, cursor, lambda m: True, "tracks", heartbeat_s=0.05)
        return [await stream.__anext__() for _ in range(n)]

    got = asyncio.run(first_events({0: 1, 1: 6}, 4))
    assert [e.get("event") for e in got] == ["hello", "tracks", "tracks", "tracks"]
    got = asyncio.run(first_events({0: 0, 1: 1}, 3))
    assert [e.get("event") for e in got] == ["hello", "dropped", "tracks"]  # 1-5 are gone: 5 was a record
    assert '"events": 5' in got[1]["data"]


def test_a_feed_of_one_camera_moves_its_position_on_with_its_heartbeats():
    """A quiet camera's client kept the position of its last event while other cameras filled the ring: on
    reconnecting it was told of their records, which it never wanted, as dropped."""
    import asyncio

    from api.hub import keyed_record
    from api.sse import events, parse_cursor

    ring = TopicRing("127.0.0.1:1", "its.tracks", 3, check=keyed_record(TrackRecord))
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals, ring._seen_from = {0: []}, {0: []}, {0: []}, {0: 0}
    track = lambda camera, seq: encode(TrackRecord(camera_id=camera, seq=seq, captured_at=10.0, width=64, height=48,
                                                   detected_at=10.1, tracked_at=10.2, tracker_frame=seq + 1, model="m@v",
                                                   detections=0, worker="w:1", objects=[]))

    async def quiet_client() -> list[dict]:
        stream = events(ring, None, lambda m: m.key == b"cam-b", "track", heartbeat_s=0.3)
        got = [await anext(stream)]  # hello, at 0:0

        async def other_camera():  # its records only, read as they come (the ring trims them past 3)
            for offset in range(10):
                ring._add(Message(0, offset, b"cam-a", track("cam-a", offset), 0.0))
                ring._wake()
                await asyncio.sleep(0.005)

        adding = asyncio.create_task(other_camera())
        got.append(await anext(stream))
        await adding
        await stream.aclose()
        return got

    async def resumed(position: str) -> list[str]:
        stream = events(ring, parse_cursor(position), lambda m: m.key == b"cam-b", "track", heartbeat_s=0.05)
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return [e.get("event", "heartbeat") for e in got]

    async def scenario():  # one event loop: the ring's wake-up event belongs to it
        hello, heartbeat = await quiet_client()
        return hello, heartbeat, await resumed(heartbeat["id"]), await resumed(hello["id"])

    hello, heartbeat, from_heartbeat, from_hello = asyncio.run(scenario())
    assert hello["id"] == "0:0" and heartbeat["comment"] == "heartbeat" and heartbeat["id"] == "0:10"
    assert from_heartbeat == ["hello", "heartbeat"]  # nothing dropped
    assert from_hello == ["hello", "dropped"]  # what the client had before


def test_counts_zones_and_alerts_hold_only_the_cameras_heard_from_most_recently():
    """A producer that invents camera ids grew them without end (30,000 cameras: 60,000 histories); a configured
    camera's figures stay, however many are invented."""
    configured = {"made-up-0"}.__contains__  # configured, and heard from first
    counts, zones = Counts(max_cameras=100, configured=configured), Zones(max_cameras=100, configured=configured)
    alerts = Alerts(max_cameras=100, configured=configured)
    window = WindowCount(start=60, end=120, count=1)
    for i in range(1000):
        camera = f"made-up-{i}"
        counts.apply(message(CountUpdate(camera_id=camera, seq=1, captured_at=1e9, line="l", direction="in", label="car",
                                         total=1, minute=window, quarter=window)))
        zones.apply(message(ZoneStats(camera_id=camera, seq=1, captured_at=1e9, zone="z", occupancy=1, entries=1, exits=0,
                                      minute=ZoneWindow(start=60, end=120, entries=1, exits=0),
                                      quarter=ZoneWindow(start=0, end=900, entries=1, exits=0))))
        alerts.apply(message(Alert(camera_id=camera, seq=1, captured_at=1e9, alert_id=f"{camera}:x", kind="wrong_way",
                                   state="raised", severity="critical", subject="t", started_at=1,
                                   snapshot=FrameRef(camera_id=camera, seq=1), message="m")))
    assert len(counts.latest) <= 101 and len(counts.history) <= 202 and len(zones.latest) <= 101
    assert len(alerts.active) <= 101 and len(counts._partitions._partition) <= 101
    for camera in ("made-up-999", "made-up-0"):  # the newest, and the configured one
        assert counts.current(camera) and zones.current(camera, None) and alerts.for_camera(camera)[1]
    assert not counts.current("made-up-1")


def test_a_frame_tracked_again_is_not_counted_again_and_the_ring_hands_on_its_record_decoded():
    """A worker replaced before it committed tracks its last frames again: the API counted 920 frames of 909."""
    from api.hub import keyed_record

    tracked = TrackedCameras()
    ring = TopicRing("127.0.0.1:1", "its.tracks", 100, on_message=tracked.apply, check=keyed_record(TrackRecord))
    ring.partitions, ring.next, ring.resets = [0], {0: 0}, {0: 0}
    ring._offsets, ring._messages, ring._arrivals = {0: []}, {0: []}, {0: []}
    record = lambda seq: encode(TrackRecord(camera_id="cam-a", seq=seq, captured_at=10.0, width=64, height=48, detected_at=10.1,
                                            tracked_at=10.2, tracker_frame=seq, model="m@v", detections=0, worker="w:1",
                                            objects=[]))
    for offset, seq in enumerate([1, 2, 3, 2, 3, 4, 5000, 1, 2]):  # again 2 and 3; then its seqs started again
        ring._add(Message(0, offset, b"cam-a", record(seq), 0.0))
    assert tracked.frames[b"cam-a"] == 7
    assert isinstance(tracked.newest[b"cam-a"].record, TrackRecord)  # decoded once, by the check
    assert ring.read(0, 0)[0].record is None  # the ring holds 10,000 a partition: as bytes


def test_a_request_under_api_that_no_route_takes_gets_the_apis_answer_and_head_is_answered_as_get():
    """The dashboard's file server, which takes what no route took, answered HEAD /api/v1/health with 404 and
    a POST to a GET-only path with 405 "Allow: GET, HEAD"."""
    import asyncio

    import httpx
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from api.app import STATIC, Dashboard, create_app
    from its_faust.settings import load_settings

    feed = FastAPI()  # a feed streams for ever: HEAD must not wait for its end

    @feed.get("/api/v1/feed")
    async def stream():
        async def forever():
            while True:
                yield b"data: x\n\n"
                await asyncio.sleep(0.05)
        return StreamingResponse(forever(), media_type="text/event-stream")

    feed.mount("/", Dashboard(directory=STATIC, html=True))

    async def ask(app, method, path):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await asyncio.wait_for(client.request(method, path), 10)

    app = create_app(load_settings(), "127.0.0.1:1")
    head, get = (asyncio.run(ask(app, method, "/api/v1/health")) for method in ("HEAD", "GET"))
    assert head.status_code == get.status_code == 200 and head.content == b"" and get.json()
    assert head.headers["content-length"] == get.headers["content-length"]
    streamed = asyncio.run(ask(feed, "HEAD", "/api/v1/feed"))
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    wrong = asyncio.run(ask(app, "POST", "/api/v1/workers"))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET" and "takes GET" in wrong.json()["detail"]
    assert asyncio.run(ask(app, "OPTIONS", "/api/v1/cameras")).headers["allow"] == "GET, POST"
    for method in ("GET", "POST", "HEAD"):
        assert asyncio.run(ask(app, method, "/api/v1/nope")).status_code == 404
    assert "no API endpoint /api/v1/nope" in asyncio.run(ask(app, "GET", "/api/v1/nope")).json()["detail"]
    page = asyncio.run(ask(app, "HEAD", "/"))  # the dashboard as before
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_a_scrape_whose_lag_read_is_slow_gives_the_last_figures_and_leaves_the_read_running(monkeypatch):
    """Under load the broker answers slowly, just when the lag matters: the metric was empty whenever a read took
    over the scrape's 3 s, and the read was cancelled, so every scrape began afresh and none finished."""
    import asyncio

    import httpx
    from fastapi import FastAPI
    from prometheus_client.parser import text_string_to_metric_families

    from api import readiness, routes_status
    from api.metrics import Metrics

    monkeypatch.setattr(readiness, "METRICS_LAG_TIMEOUT_S", 0.05)

    class Broker:  # the workers' commits and the logs' ends, answering after `delay`
        delay, done, reads, fail = 0.0, 5, 0, False

        async def read(self):
            self.reads += 1
            await asyncio.sleep(self.delay)
            if self.fail:
                raise ConnectionError("broker gone")
            return {("its.frames", 0): (self.done, 12)}

    broker = Broker()
    app = FastAPI()
    app.include_router(routes_status.router)
    app.state.metrics = Metrics()
    app.state.hub = SimpleNamespace(group_offsets=broker, broker=SimpleNamespace(up=True, trouble=None, came_back=0),
                                    broker_memory=BrokerMemoryNote(None, 1))
    app.state.health = SystemHealth(app.state.hub, app.state.metrics)

    async def scrape(client) -> dict:
        text = (await client.get("/metrics")).text
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("its_faust_worker_lag")}

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            assert (await scrape(client))["its_faust_worker_lag_messages"] == 7
            broker.delay, broker.done = 0.3, 3
            slow = await scrape(client)
            assert slow["its_faust_worker_lag_messages"] == 7  # the last figures, not none
            assert 0 <= slow["its_faust_worker_lag_age_seconds"] < 1
            again = await scrape(client)  # the read in flight is waited for again, not begun afresh
            assert broker.reads == 2 and again["its_faust_worker_lag_messages"] == 7
            await asyncio.sleep(0.35)  # the read the scrapes left running ends
            assert (await scrape(client))["its_faust_worker_lag_messages"] == 9
            monkeypatch.setattr(readiness, "METRICS_LAG_KEEP_S", 0.0)
            old = await scrape(client)  # figures too old to give
            assert "its_faust_worker_lag_messages" not in old and old["its_faust_worker_lag_age_seconds"] != 0
            await asyncio.sleep(0.35)
            broker.delay, broker.fail = 0.0, True
            failed = await scrape(client)  # the broker said no: no figure
            assert "its_faust_worker_lag_messages" not in failed

    asyncio.run(go())


def test_a_worker_is_judged_silent_only_over_the_time_its_reports_could_be_read():
    """A broker the API could not reach made every worker "gone" in /workers and the metrics after 15 s."""
    from api.broker_probe import BrokerProbe
    from api.read_models import Workers

    now = time.time()
    probe = BrokerProbe("127.0.0.1:9")
    probe.outages.append([now - 50, None])  # not answering for 50 s
    workers = Workers(away_between=probe.away_between)
    status = WorkerStatus(worker="h:1", state="running", at=now - 52, started_at=now - 100, interval_s=5.0, partitions=[0])
    workers.apply(Message(0, 0, b"h:1", encode(status), now - 52))
    [view] = workers.view(now)
    assert view["state"] == "running" and view["reported_s_ago"] == 52 and workers.serving(now)
    probe.outages[-1][1] = now - 5  # back 5 s ago: its reports since may not be read yet
    assert workers.view(now)[0]["state"] == "running"
    [view] = workers.view(now + 12)  # 2 s before and 17 s after the outage, heard from: gone
    assert view["state"] == "gone" and view["partitions"] == [] and not workers.serving(now + 12)
    assert probe.away_between(now - 60, now) == 45 and probe.away_between(now - 10, now - 8) == 2


def test_the_broker_probe_says_why_no_address_answered():
    import asyncio
    import socket

    from api.broker_probe import BrokerProbe

    closed = []
    for _ in range(2):  # two ports nothing listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed.append(s.getsockname()[1])
    probe = BrokerProbe(",".join(f"127.0.0.1:{p}" for p in closed), timeout_s=0.3)
    assert probe.up  # as of its start, until asked
    asyncio.run(probe.probe())
    assert not probe.up and all(f"127.0.0.1:{p} is not reachable" in probe.trouble for p in closed)
    assert len(probe.outages) == 1 and probe.outages[0][1] is None  # from its last answer, still going on


def test_a_frame_stamped_in_the_future_does_not_keep_its_camera_arriving():
    from api.read_models import FramesArriving

    arriving = FramesArriving()
    arriving.apply(Message(0, 0, b"cam", b"{}", time.time() + 3600))  # any producer may stamp its records so
    assert arriving.newest("cam") <= time.time() and arriving.newest("other") is None


def test_ready_answers_in_its_own_time_and_says_which_cameras_shed_frames(monkeypatch):
    """A lag read that hung (a broker that stopped answering) held /ready for 40 s; overload was nowhere in it, nor
    the embedded broker filling up (its warning was in the demo's log alone)."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    from api import readiness, routes_status
    from api.metrics import Metrics
    from api.read_models import Workers

    monkeypatch.setattr(readiness, "READY_LAG_TIMEOUT_S", 0.1)

    class Broker:
        delay = 0.0

        async def read(self):
            await asyncio.sleep(self.delay)
            return {("its.frames", 0): (12, 12)}

    events = CameraEvents()
    events.apply(Message(0, 0, b"c", encode(CameraEvent(camera_id="c", kind="frames_shed", at=time.time(), reason="r",
                                                        frames_shed=7)), time.time()))
    cameras = Cameras()  # a camera removed since it shed frames: over, not listed (a trial)
    cameras.put(CameraConfig(camera_id="gone", version=2, last_command_id="x", updated_at=time.time(), removed=True))
    events.apply(Message(0, 1, b"gone", encode(CameraEvent(camera_id="gone", kind="frames_shed", at=time.time(),
                                                           reason="r", frames_shed=3)), time.time()))
    broker, probe = Broker(), SimpleNamespace(up=True, trouble=None, came_back=0)
    configs = SimpleNamespace(log_lost_at=None, last_fetch_ok=time.monotonic())  # (the camera-configs ring)
    embedded = SimpleNamespace(memory_bytes=lambda: 1_300_000_000)
    app = FastAPI()
    app.include_router(routes_status.router)
    app.state.metrics = Metrics()
    app.state.hub = SimpleNamespace(group_offsets=broker, broker=probe, camera_events=events, workers=Workers(), cameras=cameras,
                                    rings={"tracks": SimpleNamespace(last_fetch_ok=time.monotonic()), "configs": configs},
                                    broker_memory=BrokerMemoryNote(embedded, warn_bytes=1_024_000_000, every_s=0.0))
    app.state.health = SystemHealth(app.state.hub, app.state.metrics)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            fine = await client.get("/api/v1/ready")
            metrics = (await client.get("/metrics")).text
            embedded.memory_bytes = lambda: 900_000_000  # started again, say: below the limit, no warning
            below = (await client.get("/api/v1/ready")).json()
            embedded.memory_bytes = lambda: None  # stopped: no figure, not the last one
            gone = (await client.get("/api/v1/ready")).json()
            configs.log_lost_at = time.time() - 60  # the broker lost its logs a minute ago: said for an hour
            lost = (await client.get("/api/v1/ready")).json()
            cameras.put(CameraConfig(camera_id="again", version=1, last_command_id="y", updated_at=time.time()))
            assert (await client.get("/api/v1/ready")).json()["warnings"] == []  # while none is configured again
            cameras.put(CameraConfig(camera_id="again", version=2, last_command_id="z", updated_at=time.time(), removed=True))
            configs.log_lost_at = time.time() - 3700
            assert (await client.get("/api/v1/ready")).json()["warnings"] == []
            broker.delay = 1.0
            started = time.monotonic()
            slow = await client.get("/api/v1/ready")
            slow_s = time.monotonic() - started
            probe.up, probe.trouble = False, "broker 127.0.0.1:9 is not reachable"
            down = await client.get("/api/v1/ready")
            return fine, slow, slow_s, down, metrics, below, gone, lost

    fine, slow, slow_s, down, metrics, below, gone, lost = asyncio.run(go())
    assert gone["embedded_broker_mb"] is None and gone["warnings"] == []
    [said] = lost["warnings"]
    assert said.startswith("the broker lost its logs at ") and "add the cameras again" in said, said
    assert lost["logs_lost_at"] == pytest.approx(time.time() - 60, abs=5)  # (what the dashboard's badge reads)
    assert fine.status_code == 200 and fine.json()["frames_shed"] == {"c": 7}
    assert fine.json()["embedded_broker_mb"] == 1300 and fine.json()["warnings"] == [
        "embedded broker holds 1300 MB, over the 1024 MB warning limit: it keeps every frame and slows as it fills "
        "(point ITS_FAUST_BROKER_URL at Kafka for long runs)"]
    assert "its_faust_embedded_broker_bytes 1.3e+09" in metrics
    assert below["embedded_broker_mb"] == 900 and below["warnings"] == []
    assert fine.json()["workers"] == "none running, caught up"
    assert slow.status_code == 503 and slow_s < 0.9 and "no answer in 0.1 s" in slow.json()["lag"]
    assert down.status_code == 503 and down.json()["broker"] == "not answering: broker 127.0.0.1:9 is not reachable"


def test_a_lag_read_dropped_as_the_broker_comes_back_fails_its_askers_softly(monkeypatch):
    """The read begun while the broker was away is dropped once it is back: its askers got CancelledError, which
    no handler took (/ready and /metrics failed instead of answering)."""
    import asyncio

    from api.metrics import Metrics
    from api.read_models import Workers

    class Broker:
        async def read(self):
            await asyncio.sleep(0.3)
            return {("its.frames", 0): (12, 12)}

    probe = SimpleNamespace(up=True, trouble=None, came_back=0)
    hub = SimpleNamespace(group_offsets=Broker(), broker=probe, camera_events=CameraEvents(), workers=Workers(),
                          rings={"tracks": SimpleNamespace(last_fetch_ok=time.monotonic())}, broker_memory=BrokerMemoryNote(None, 1))
    health = SystemHealth(hub, Metrics())

    async def go():
        first = asyncio.ensure_future(health.ready())
        await asyncio.sleep(0.05)
        probe.came_back += 1  # back from an outage the probe saw meanwhile
        return await asyncio.gather(first, health.ready())

    (first_ok, first), (second_ok, second) = asyncio.run(go())
    assert not first_ok and "asked afresh next time" in first["lag"]
    assert second_ok and second["lag"] == {"its.frames": 0}


def test_a_removal_dated_ahead_by_the_commanding_hosts_clock_does_not_blank_the_cameras_frames_after_it():
    from schemas import TrackRecord

    tracked, now = TrackedCameras(), time.time()
    tracked.camera_removed(CameraConfig(camera_id="c", version=3, last_command_id="x", updated_at=now + 3600,
                                        removed=True))  # a host an hour ahead
    later = TrackRecord(camera_id="c", seq=1, captured_at=now + 5, width=64, height=48, detected_at=now + 5,
                        tracked_at=now + 5, tracker_frame=1, model="m@v", detections=0, worker="w:1", objects=[])
    earlier = later.model_copy(update={"tracked_at": now - 5})
    assert not tracked.before_removal(later) and tracked.before_removal(earlier)


def test_the_dashboards_files_are_revalidated_and_framed_nowhere():
    """The dashboard's files came with an ETag alone: a browser could run its cached app.js against an upgraded
    API; and any site could frame the page (a security review)."""
    import asyncio

    import httpx

    from api.app import create_app
    from its_faust.settings import Settings

    app = create_app(Settings(), "127.0.0.1:1")  # no lifespan: the files alone

    async def get(path: str):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.get(path)

    for path in ("/", "/app.js", "/style.css"):
        answer = asyncio.run(get(path))
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-cache", (path, answer.headers)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"


def test_overlapping_zones_tint_the_frame_once():
    """Each zone was blended on its own: under 15 overlapping zones 5% of the frame was left (a junction with 64)."""
    import cv2
    import numpy as np

    from api.live import draw
    from schemas import FrameRecord
    from schemas.control import CameraConfig
    from schemas.geometry import Zone

    now = time.time()
    zones = [Zone(name=f"z{i}", points=[(20 + i, 20), (300, 20 + i), (300, 220), (20, 220)]) for i in range(15)]
    config = CameraConfig(camera_id="cam-a", version=1, last_command_id="c1", updated_at=now, zones=zones)
    jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 120, np.uint8))[1].tobytes()
    frame = FrameRecord(camera_id="cam-a", seq=7, captured_at=now, width=320, height=240, jpeg=jpeg)
    one = draw(frame, None, config.model_copy(update={"zones": zones[:1]}))
    many = draw(frame, None, config)
    # Inside all of them (away from their outlines and names): tinted as by one zone, the frame still showing.
    assert np.abs(many[150, 200].astype(int) - one[150, 200].astype(int)).max() <= 2, (many[150, 200], one[150, 200])
