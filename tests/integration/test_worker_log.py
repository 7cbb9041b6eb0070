"""A healthy, idle worker on the real broker logs no errors, however long it runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from its_faust.broker import EmbeddedBroker
from its_faust.worker import WorkerProcess

REPORT_AFTER_S = 2.0  # Faust's slow-processing report, 300 s by default: brought forward to see it in seconds


def test_an_idle_worker_reports_no_slow_partitions(tmp_path):
    """Recovered changelog partitions are paused in aiokafka on purpose (kafka_transport): Faust's
    slow-processing check must not report them as never fetched (it did, for every changelog
    partition, every few seconds from five minutes after start)."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        worker = WorkerProcess(
            broker.url, tmp_path, "worker-1",
            extra_env={"ITS_FAUST_SLOW_PROCESSING_REPORT_S": str(REPORT_AFTER_S)},
        ).start()
        try:
            worker.wait_ready()
            # The check runs every 2.5 commit intervals (2.5 s): give it three rounds past the timeout.
            time.sleep(REPORT_AFTER_S + 3 * 2.5)
            assert worker.proc.poll() is None, worker.tail()
            log = worker.log_path.read_text(errors="replace")
        finally:
            worker.stop()
    assert "has not sent fetch request" not in log
    assert "\x1b" not in log and "\b" not in log  # no terminal spinner codes in a log file
    errors = [line for line in log.splitlines() if " ERROR " in line or "CRITICAL" in line]
    assert errors == [], "\n".join(errors[:10])


def test_a_worker_whose_broker_went_first_still_stops(tmp_path):
    """Broker stopped before its worker (a compose file's order, Ctrl-C in the broker's terminal first):
    SIGTERM must still stop the worker. It used to hang for ever: aiokafka's fetcher re-raised the
    cancellation of a fetch waiting to retry, and the consumer thread died without saying it had stopped."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    worker = WorkerProcess(broker.url, tmp_path, "worker-1").start()
    try:
        worker.wait_ready()
        broker.stop()
        time.sleep(3)  # the worker's fetches fail and wait to retry
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        assert code is not None, "the worker did not stop within 60 s of SIGTERM:\n" + worker.tail(40)
        log = worker.tail(400)
        assert code == 0 and "Traceback" not in log, log  # a clean stop, not a crash on the way out
    finally:
        worker.kill()
        broker.stop()


def _cameras(broker_url: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "its_faust.cli", "cameras", *args, "--broker", broker_url, "--timeout", "60"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_worker_whose_in_memory_broker_restarted_under_it_starts_again_and_goes_on(tmp_path):
    """The broker restarted empty on its address: the running worker's table copies applied offsets the new
    changelogs do not have, and Faust's recovery stopped the worker with a ConsistencyError (a trial's)."""
    with EmbeddedBroker(log_path=tmp_path / "broker-1.log") as first:
        worker = WorkerProcess(first.url, tmp_path, "worker-1").start()
        worker.wait_ready()
        for args in (("add", "lost-cam"), ("update", "lost-cam", "--name", "A"), ("update", "lost-cam", "--name", "B")):
            _cameras(first.url, *args)  # camera-config changelog: offsets 0-2 of one partition
        time.sleep(3)  # the copy writes its applied offset at the next commit
    try:
        worker.ready_file.unlink()
        with EmbeddedBroker(port=first.port, log_path=tmp_path / "broker-2.log") as second:
            worker.wait_ready(timeout=180)  # the ready file comes again: the worker started again
            _cameras(second.url, "add", "new-cam")  # and it applies commands
            assert worker.proc.poll() is None
            log = worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
    assert "ConsistencyError" in log and "starting again" in log, log[-3000:]
    assert "the copy is dropped" in log
