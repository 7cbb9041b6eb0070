"""A camera whose frames keep coming with seqs already passed is reported; redelivery bursts are not."""

from __future__ import annotations

from its_faust.seqs_behind import SeqsBehind
from schemas import CameraEventKind


def test_redeliveries_are_not_reported_however_slowly_they_come():
    behind = SeqsBehind(after_s=5.0, min_frames=50)
    # A worker restarted on a busy machine: the 200 frames since the last checkpoint come again over 20 s.
    reports = [behind.skipped("cam", seq, 10_199, now=100 + i * 0.1) for i, seq in enumerate(range(10_000, 10_200))]
    assert reports == [None] * 200


def test_bursts_apart_do_not_add_up():
    behind = SeqsBehind(after_s=5.0, min_frames=50)
    for burst in range(10):  # 40 frames far behind, every minute (a partition that keeps moving back and forth)
        assert [behind.skipped("cam", 5, 100_000, now=burst * 60 + i * 0.2) for i in range(40)] == [None] * 40


def test_a_producer_that_started_its_seqs_again_is_reported_once_then_every_period():
    behind = SeqsBehind(after_s=5.0, min_frames=50, report_every_s=30.0)
    reports = [(t, behind.skipped("cam", seq, 99_999, now=1000 + t)) for seq, t in enumerate(x / 10 for x in range(0, 700))]
    sent = [(t, r) for t, r in reports if r is not None]
    assert [t for t, _ in sent] == [5.0, 35.0, 65.0]  # at 5 s (51 frames), then every 30 s while it goes on
    first = sent[0][1]
    assert first.kind is CameraEventKind.seqs_behind and first.camera_id == "cam" and first.seq == 50
    assert "51 frames in 5 s had seqs at or below the last tracked one (99999; this one: 50)" in first.reason
    # Another camera is counted on its own.
    assert behind.skipped("other", 1, 10, now=1070) is None
