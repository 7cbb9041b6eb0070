"""Workers' status reports: what a worker says of itself, and what the API makes of the reports."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from aiokafka import TopicPartition

from api.topic_ring import Message
from api.read_models import Workers
from its_faust.codecs import decode, encode
from its_faust.settings import Settings
from its_faust.worker import WorkerGone, WorkerProcess
from its_faust.worker_status import WORKER_ID, StatusReporter
from schemas.workers import WorkerStatus


class FakeConsumer:
    def __init__(self, assigned, highwater, committed):
        self._assigned, self._highwater, self._committed_offset = assigned, highwater, committed

    def assignment(self):
        return set(self._assigned)

    def highwater(self, tp):
        return self._highwater.get(tp)


def reporter(in_recovery=False, rebalancing=False):
    settings = Settings(worker_status_interval_s=2.0)
    frames, tracks = settings.topic("frames"), settings.topic("tracks")
    owned = [TopicPartition(frames, 3), TopicPartition(frames, 1), TopicPartition(tracks, 1)]
    consumer = FakeConsumer(owned, {owned[0]: 50, owned[1]: 9}, {owned[0]: 40, owned[1]: 10})
    monitor = SimpleNamespace(messages_received_by_topic=Counter({frames: 120}), messages_sent_by_topic=Counter({tracks: 100}))
    app = SimpleNamespace(consumer=consumer, monitor=monitor, in_recovery=in_recovery, rebalancing=rebalancing)
    return StatusReporter(app, settings), monitor, tracks


def test_a_report_says_what_the_worker_holds_did_and_has_waiting():
    rep, monitor, tracks = reporter()
    first = rep.status()
    assert first.worker == WORKER_ID and first.state == "running" and first.interval_s == 2.0
    assert first.partitions == [1, 3]  # the frames topic's partitions, in order
    assert first.frames_waiting == 10  # 50 - 40; a commit past the highwater is no work waiting
    assert (first.frames_in, first.frames_tracked, first.fps) == (120, 100, 0.0)  # no rate before a second report
    monitor.messages_sent_by_topic[tracks] += 30
    second = rep.status()
    assert second.frames_tracked == 130 and second.fps > 0
    assert decode(WorkerStatus, encode(second)) == second  # it travels as any record does


def test_a_worker_restoring_tables_says_so_and_a_stopped_one_holds_nothing():
    assert reporter(in_recovery=True)[0].status().state == "recovering"
    assert reporter(rebalancing=True)[0].status().state == "recovering"  # a rebalance stops its cameras too
    stopped = reporter()[0].status("stopped")
    assert stopped.state == "stopped" and stopped.partitions == [] and stopped.frames_waiting == 0


def message(status: WorkerStatus, offset: int = 0) -> Message:
    return Message(partition=0, offset=offset, key=status.worker.encode(), value=encode(status), timestamp=status.at)


def status(worker: str, at: float, state: str = "running", interval_s: float = 5.0) -> WorkerStatus:
    return WorkerStatus(worker=worker, state=state, at=at, started_at=0.0, interval_s=interval_s, partitions=[0])


def test_the_api_counts_a_silent_worker_as_gone_and_forgets_old_ones():
    workers = Workers(forget_after_s=100.0)
    workers.apply(message(status("a:1", at=1000.0)))
    workers.apply(message(status("b:2", at=1000.0, state="stopped")))
    workers.apply(message(status("c:3", at=1000.0, state="recovering")))
    by_id = {w["worker"]: w for w in workers.view(now=1014.0)}
    assert {k: w["state"] for k, w in by_id.items()} == {"a:1": "running", "b:2": "stopped", "c:3": "recovering"}
    assert by_id["a:1"]["reported_s_ago"] == 14.0 and "schema" not in by_id["a:1"]
    assert [s.worker for s in workers.serving(now=1014.0)] == ["a:1", "c:3"]
    # Silent for more than three of its intervals: gone (killed, cut off or frozen).
    gone = {w["worker"]: w for w in workers.view(now=1016.0)}["a:1"]
    assert gone["state"] == "gone"
    assert gone["partitions"] == [] and gone["last_partitions"] == [0]  # not held: they went to the others
    assert "last_partitions" not in by_id["a:1"]
    assert workers.serving(now=1016.0) == []
    assert workers.view(now=1101.0) == []  # stopped and gone ones are forgotten in time


def test_an_older_report_does_not_undo_a_newer_one_and_garbage_is_ignored():
    workers = Workers()
    workers.apply(message(status("a:1", at=1000.0, state="stopped")))
    workers.apply(message(status("a:1", at=990.0)))  # read late (another partition of the topic)
    workers.apply(Message(partition=0, offset=9, key=b"x", value=b"{not json", timestamp=0.0))
    assert [(w["worker"], w["state"]) for w in workers.view(now=1001.0)] == [("a:1", "stopped")]


def test_made_up_worker_ids_do_not_grow_the_api_without_end():
    workers = Workers(max_workers=3)
    for i in range(10):
        workers.apply(message(status(f"w:{i}", at=1000.0 + i)))
    assert [w["worker"] for w in workers.view(now=1010.0)] == ["w:7", "w:8", "w:9"]


def test_a_worker_that_starts_again_in_its_process_is_not_said_to_stop(monkeypatch):
    """A worker whose broker lost its logs starts again as the same process (same id): it reported "stopped"
    until it ran again."""
    from faust.exceptions import ConsistencyError

    from its_faust import worker
    from its_faust.settings import Settings

    kafka = Settings(broker_url="kafka://kafka-1:9092")
    monkeypatch.setenv(worker.RESTARTS_VARIABLE, "0")
    assert worker.starts_again(ConsistencyError("ahead of the log"), kafka)
    assert not worker.starts_again(RuntimeError("a bug"), kafka) and not worker.starts_again(None, kafka)
    assert not worker.starts_again(ConsistencyError("ahead"), Settings(broker_url=None))  # an embedded broker is ours
    monkeypatch.setenv(worker.RESTARTS_VARIABLE, str(worker.RESTARTS_FOR_LOST_LOGS))
    assert not worker.starts_again(ConsistencyError("ahead of the log"), kafka)  # it gave up: a stop


def test_a_worker_that_crashed_sends_no_stopped_report_and_so_reads_as_gone(monkeypatch):
    """It had read "stopped" (left cleanly) on /workers, /ready and the dashboard."""
    from faust.exceptions import ConsistencyError

    from its_faust import worker
    from its_faust.worker_status import last_state

    monkeypatch.setenv(worker.RESTARTS_VARIABLE, "0")
    kafka = Settings(broker_url="kafka://kafka-1:9092")
    assert last_state(None, kafka) == "stopped"  # Ctrl-C, SIGTERM
    assert last_state(RuntimeError("a bug in an agent"), kafka) is None
    assert last_state(ConsistencyError("ahead of the log"), Settings(broker_url=None)) is None
    assert worker.starts_again(ConsistencyError("ahead of the log"), kafka)
    assert last_state(ConsistencyError("ahead of the log"), kafka) == "recovering"


def test_a_worker_that_exits_before_it_is_ready_is_told_with_what_its_log_said_went_wrong(tmp_path):
    """Its log's last lines were those of its stop, and the log's folder (a run's) was gone once the run ended."""
    import pytest

    worker = WorkerProcess("kafka://127.0.0.1:1", tmp_path, "worker-1")
    lines = [f"12:00:{i:02d} INFO its_faust: line {i}" for i in range(30)]
    lines[5] = "12:00:05 ERROR its_faust.worker: worker stopped: it crashed (Too many open files)"
    worker.log_path.write_text("\n".join(lines) + "\n")
    worker.proc = SimpleNamespace(poll=lambda: -6, returncode=-6)
    with pytest.raises(WorkerGone) as told:  # (a command's one line, exit status 1: not a traceback)
        worker.wait_ready(timeout=1)
    said = str(told.value)
    assert said.startswith("worker worker-1 was ended by SIGABRT before it was ready; from its log:\n")
    assert "it crashed (Too many open files)" in said and said.endswith("line 29") and "line 19" not in said


def _ended(tmp_path, name: str, code: str) -> WorkerProcess:
    """A WorkerProcess whose process (a plain Python one, no Faust) has run ``code`` and ended."""
    import subprocess
    import sys

    worker = WorkerProcess("kafka://127.0.0.1:1", tmp_path, name)
    worker.proc = subprocess.Popen([sys.executable, "-c", code])
    worker.proc.wait(30)
    return worker


def test_a_worker_killed_from_outside_is_told_apart_from_one_stopped_here(tmp_path):
    """The kernel's out-of-memory killer leaves nothing in the worker's log: its end is all there is to say."""
    import signal

    from its_faust.worker import how_it_ended

    assert how_it_ended(-signal.SIGKILL).startswith("was killed (SIGKILL): out of memory?")
    assert how_it_ended(-signal.SIGSEGV) == "was ended by SIGSEGV" and how_it_ended(3) == "exited (status 3)"
    killed = _ended(tmp_path, "worker-1", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.ended_by_itself() == how_it_ended(-signal.SIGKILL)
    crashed = _ended(tmp_path, "worker-2", "raise SystemExit(1)")
    assert crashed.ended_by_itself() == "exited (status 1)"
    crashed.kill()  # (already ended) what its owner ends is no news
    assert crashed.ended_by_itself() is None
    stopped = _ended(tmp_path, "worker-3", "pass")
    stopped.stop()
    assert stopped.ended_by_itself() is None


def test_a_run_is_told_once_no_worker_is_left_on_its_own_broker_and_each_end_is_said_once(tmp_path, caplog):
    import logging
    import signal
    import subprocess
    import sys

    from its_faust.pipeline import Stack
    from its_faust.settings import Settings

    stack = Stack(Settings(broker_url=None), workers=0, workdir=tmp_path)
    running = _ended(tmp_path, "worker-1", "pass")
    running.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stack.workers = [running, _ended(tmp_path, "worker-2", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")]
    broker_exit = [None]
    # The stack's own broker: no worker but its own can take the partitions.
    stack.broker = SimpleNamespace(wait=lambda timeout: broker_exit[0], log_path=tmp_path / "broker.log")
    told: set[str] = set()
    try:
        with caplog.at_level(logging.WARNING, "its_faust.pipeline"):
            assert stack.no_worker_left(told, 120) is None  # worker-1 runs, and takes worker-2's partitions
            assert stack.no_worker_left(told, 130) is None  # (said once)
        said = [r.getMessage() for r in caplog.records]
        assert told == {"worker-2"} and len(said) == 1 and said[0].startswith("worker-2 was killed (SIGKILL)"), said
        assert "120 frames tracked" in said[0]
    finally:
        running.proc.kill()
        running.proc.wait()
    gone = stack.no_worker_left(told, 130)
    assert gone.startswith("no worker is left to track the frames (130 tracked): worker-1 was killed (SIGKILL): "
                           "out of memory?") and "worker-2 was killed" in gone, gone
    # The broker went (its workers with it): that is what is said, with its log's last lines.
    (tmp_path / "broker.log").write_text("starting\nmemory store full\n")
    broker_exit[0] = -signal.SIGKILL
    assert stack.no_worker_left(told, 130) == ("the embedded broker was killed (SIGKILL): out of memory? (the kernel's "
                                               "out-of-memory killer says so in `dmesg`) (130 frames tracked); from its "
                                               "log:\nstarting\nmemory store full")
    stack.broker = None  # on a shared broker, other workers may take the partitions: said, not raised
    assert stack.no_worker_left(set(), 130) is None
