"""The benchmark's raw ONNX Runtime ceiling: how images per second are counted."""

import threading
import time

from its_faust.bench import images_per_second


def test_parallel_callers_run_free_so_a_slow_call_does_not_hold_the_fast_one_back():
    """One caller's calls take 10x as long as the other's: the fast one must not wait for it between calls."""
    calls_by_thread: dict[int, int] = {}
    slow_thread: list[int] = []
    lock = threading.Lock()

    def run_once():
        me = threading.get_ident()
        with lock:
            if not slow_thread and calls_by_thread:  # the first worker thread to call after the warm-up is the slow one
                slow_thread.append(me)
            calls_by_thread[me] = calls_by_thread.get(me, 0) + 1
        time.sleep(0.05 if slow_thread and me == slow_thread[0] else 0.005)

    rate = images_per_second(run_once, images_per_call=2, parallel=2, seconds=0.6)
    workers = {t: n for t, n in calls_by_thread.items() if t != threading.get_ident()}  # leave out the warm-up call
    slow = workers[slow_thread[0]]
    fast = sum(workers.values()) - slow
    # With a barrier per round both would make the same number of calls.
    assert fast >= 2 * slow, workers
    assert rate > 0


def _round(ceiling_ratio: float, torch_ratio: float) -> dict:
    return {"ratios": {"pipeline_vs_plain_loop_torch": torch_ratio, "pipeline_vs_raw_onnxruntime": ceiling_ratio}}


def test_repeated_bench_reports_the_round_with_the_median_ceiling_ratio_and_every_ratios_spread():
    from its_faust.bench import median_round, ratio_spread

    rounds = [_round(0.74, 2.1), _round(0.68, 1.9), _round(0.79, 1.8)]
    assert median_round(rounds) is rounds[0]
    # An even number of rounds: the lower middle one, so the figure is never the better of two draws.
    assert median_round(rounds[:2]) is rounds[1]
    assert median_round(rounds[:1]) is rounds[0]
    assert ratio_spread(rounds) == {
        "pipeline_vs_plain_loop_torch": [1.8, 1.9, 2.1],
        "pipeline_vs_raw_onnxruntime": [0.68, 0.74, 0.79],
    }
    # Of two rounds, the spread's median is the reported round's figure, not the mean of the two.
    assert ratio_spread(rounds[:2])["pipeline_vs_raw_onnxruntime"] == [0.68, 0.68, 0.74]


def test_a_round_taken_on_a_busy_machine_says_so():
    """On a shared machine the raw ceiling came out at 17.7 fps and the pipeline "beat" it at 28.3, with
    -52.7 ms of CPU per frame beside inference: printed as figures, with nothing to say they were not."""
    from its_faust.bench import disturbances

    def measured(fps, ceiling, not_inference, elsewhere=0.0):
        return {"pipeline": {"throughput_fps": fps, "cores_busy_elsewhere": elsewhere, "cores_stolen": 0.0},
                "raw_onnxruntime": {"ceiling_fps": ceiling}, "cpu_budget_ms_per_frame": {"not_inference": not_inference}}

    assert disturbances(measured(31.5, 43.1, 16.8), before=42.0, after=44.2) == []  # a quiet round
    found = disturbances(measured(28.27, 17.72, -52.7, elsewhere=0.33), before=5.6, after=29.8)
    assert len(found) == 4, found
    assert "5.6 images/s before the pipeline and 29.8 after" in found[0] and "beat the raw ceiling" in found[1]


def test_bench_on_onnx_weights_says_it_needs_pytorch_ones(settings):
    """The loops it compares with take PyTorch weights: an ONNX file was 'exported' again, and failed deep in Ultralytics."""
    import pytest

    from its_faust.bench import run_bench

    onnx = settings.model_copy(update={"model": settings.model.model_copy(update={"weights": "yolo11n-int8-320.onnx"})})
    with pytest.raises(ValueError, match=r"give a \.pt \(ITS_FAUST_MODEL__WEIGHTS is yolo11n-int8-320.onnx\)"):
        run_bench(onnx, "dual_carriageway_abhishek.mp4", None)
