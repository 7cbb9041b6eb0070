"""``its-faust bench``: the pipeline against the plain Ultralytics loop and raw ONNX Runtime, in one run.

* pipeline: the clip through the embedded broker and a worker process (``run_source``);
* plain loop: ``YOLO(weights).track(clip, stream=True)`` with ByteTrack, in a child
  process (PyTorch weights, then the same network as ONNX);
* raw ONNX Runtime: the exported model on pre-letterboxed tensors at the pipeline's
  input size, no decoding, no tracking, no Kafka: the ceiling the pipeline can reach
  (measured before and after the pipeline; the ceiling is their mean).

The pipeline's rate is taken from its first to its last frame tracked, as the plain
loop's is from its first to its last result (both leave out start-up and warm-up);
the end-to-end rate, from the camera's start, is reported beside it. With ``--repeat N``
all of it runs N times in turn and the median round is the figure (:func:`run_bench`).
"""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from its_faust.settings import usable_cores


def plain_loop(weights: str, clip: str, tracker: str = "bytetrack.yaml") -> dict:
    """The single-process Ultralytics loop; run in a child process so its threads do not mix with ours."""
    from ultralytics import YOLO

    from its_faust.settings import TRAFFIC_CLASSES

    model = YOLO(weights, task="detect")
    frames, ids = 0, set()
    started = None
    for result in model.track(clip, stream=True, imgsz=640, tracker=tracker, classes=list(TRAFFIC_CLASSES), verbose=False):
        if started is None:  # exclude model load and warm-up, as the pipeline's figure does
            started = time.perf_counter()
            continue
        frames += 1
        if result.boxes.id is not None:
            ids.update(int(i) for i in result.boxes.id)
    elapsed = time.perf_counter() - started
    return {"weights": Path(weights).name, "tracker": tracker, "frames": frames, "fps": round(frames / elapsed, 2), "distinct_track_ids": len(ids)}


def _run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "its_faust.bench", *args], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def images_per_second(run_once, images_per_call: int, parallel: int = 1, seconds: float = 6.0) -> float:
    """Images per second of ``parallel`` threads each calling ``run_once`` back to back for ``seconds``.

    Each thread runs free until the time is up: none waits for another between calls. (A
    barrier per round, as this bench had until 2026-12-02, left a core idle whenever one
    call ran longer than its twin, and understated the ceiling by 5-30% on 2 cores.)
    """
    run_once()  # warm-up
    deadline = time.perf_counter() + seconds

    def calls_until_deadline(_) -> int:
        calls = 0
        while time.perf_counter() < deadline:
            run_once()
            calls += 1
        return calls

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        calls = sum(pool.map(calls_until_deadline, range(parallel)))
    return round(calls * images_per_call / (time.perf_counter() - started), 2)


def raw_onnxruntime(onnx_path: Path, shape=(384, 640), seconds: float = 6.0) -> dict:
    """Images per second of bare ``session.run`` on ready tensors, in the configurations the pipeline could use."""
    import onnxruntime as ort

    cores = usable_cores()

    def session(threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    results = {}
    shared = session(cores)
    name = shared.get_inputs()[0].name
    for batch in (1, 4):
        x = np.random.rand(batch, 3, *shape).astype(np.float32)
        results[f"batch{batch}_threads{cores}"] = images_per_second(lambda: shared.run(None, {name: x}), batch, seconds=seconds)
    single = session(1)
    x = np.random.rand(1, 3, *shape).astype(np.float32)
    results[f"batch1_threads1_x{cores}"] = images_per_second(lambda: single.run(None, {name: x}), 1, parallel=cores, seconds=seconds)
    return {"input": f"{shape[0]}x{shape[1]}", "images_per_s": results, "ceiling_fps": max(results.values())}


def cpu_budget(pipeline_ms: dict[str, float], ceiling_fps: float, cores: int | None = None) -> dict:
    """The pipeline's CPU per frame against inference alone at the ceiling.

    At the ceiling every core runs inference, so one image costs ``cores * 1000 / ceiling_fps``
    CPU ms. On a machine whose cores are all busy the pipeline's share of the ceiling is at most
    that over its own total: what is not inference (broker, Kafka clients, Faust, JPEG, tracking,
    the camera) is what keeps it below.
    """
    cores = cores or usable_cores()
    if not pipeline_ms.get("total") or not ceiling_fps:
        return {}
    inference = cores * 1000 / ceiling_fps
    return {
        "pipeline": pipeline_ms["total"],
        "inference_at_ceiling": round(inference, 1),
        "not_inference": round(pipeline_ms["total"] - inference, 1),
        "ratio_bound_when_cores_are_full": round(inference / pipeline_ms["total"], 2),
    }


def run_bench(settings, clip: str, out_path: Path, *, skip_baseline: bool = False, repeat: int = 1) -> dict:
    """The pipeline, the plain loops and the raw ceiling, ``repeat`` times in turn; the median round is the figure.

    This machine's speed drifts by ±10% between minutes, so one round's ratio is a draw from a
    spread: each round measures its own ceiling right before and right after its pipeline run,
    and its own plain loops, so its ratios compare figures taken in the same minutes. The
    top-level figures are those of the round with the median pipeline-to-ceiling ratio;
    ``rounds`` has every round and ``spread`` each ratio's minimum, median and maximum.
    """
    from rich.console import Console

    from its_faust.assets import resolve_asset
    from its_faust.backends.onnxruntime import export_onnx

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    console = Console(stderr=True)
    weights = resolve_asset(settings.model.weights, settings.asset_dir)
    if weights.suffix != ".pt":  # (the ceiling takes any input size, the loops PyTorch's weights)
        raise ValueError(f"bench compares the pipeline with the plain Ultralytics loop on PyTorch weights and the raw "
                         f"ONNX Runtime ceiling of the same network: give a .pt (ITS_FAUST_MODEL__WEIGHTS is {weights.name})")
    onnx_path = export_onnx(weights, Path(settings.cache_dir) / "models")
    result: dict = {
        "clip": Path(clip).name,
        "machine": {"cpus": usable_cores(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {"backend": settings.model.backend, "imgsz": settings.model.imgsz, "batch_size": settings.model.batch_size,
                     "parallel": settings.model.inference_parallelism()},
    }
    rounds = []
    for number in range(1, repeat + 1):
        if repeat > 1:
            console.rule(f"round {number} of {repeat}")
        rounds.append(_bench_round(settings, clip, weights, onnx_path, console, skip_baseline))
    result.update(median_round(rounds))
    if repeat > 1:
        result["rounds"] = rounds
        result["spread"] = ratio_spread(rounds)
        console.rule("all rounds")
        for name, (low, middle, high) in result["spread"].items():
            console.print(f"{name}: median {middle} (from {low} to {high})")
    for name, ratio in result["ratios"].items():
        console.print(f"{name}: {ratio}")
    write_result(out_path, result)
    console.print(f"written to {out_path}")
    return result


def _bench_round(settings, clip: str, weights: Path, onnx_path: Path, console, skip_baseline: bool) -> dict:
    """One pipeline run right between two ceiling measurements, then the plain loops."""
    from its_faust.pipeline import run_source

    with console.status("raw ONNX Runtime at the same input size"):
        raw_before = raw_onnxruntime(onnx_path)
    console.print(f"raw ONNX Runtime (before): {raw_before['images_per_s']}")
    with console.status("pipeline: broker + worker + camera on the clip"):
        summary = asyncio.run(run_source(settings, clip, camera_id="bench"))
    measured: dict = {"pipeline": {k: getattr(summary, k) for k in
                                   ("frames_tracked", "throughput_fps", "fps", "latency_ms", "stage_p50_ms",
                                    "distinct_track_ids", "model", "cpu_ms_per_frame", "cores_busy",
                                    "cores_busy_elsewhere", "cores_stolen")}}
    console.print(f"pipeline: {summary.throughput_fps} fps ({summary.fps} end to end), latency {summary.latency_ms}")
    console.print(f"pipeline CPU ms per frame: {summary.cpu_ms_per_frame} ({summary.cores_busy} cores busy; "
                  f"meanwhile other processes {summary.cores_busy_elsewhere}, the hypervisor {summary.cores_stolen})")
    # The ceiling is measured before and after the pipeline: a shared machine's speed drifts.
    with console.status("raw ONNX Runtime again"):
        raw_after = raw_onnxruntime(onnx_path)
    console.print(f"raw ONNX Runtime (after): {raw_after['images_per_s']}")
    measured["raw_onnxruntime"] = {
        "input": raw_before["input"], "before": raw_before["images_per_s"], "after": raw_after["images_per_s"],
        "ceiling_fps": round((raw_before["ceiling_fps"] + raw_after["ceiling_fps"]) / 2, 2),
    }
    console.print(f"raw ONNX Runtime ceiling: {measured['raw_onnxruntime']['ceiling_fps']} fps (the mean of before and after)")
    measured["cpu_budget_ms_per_frame"] = cpu_budget(summary.cpu_ms_per_frame, measured["raw_onnxruntime"]["ceiling_fps"])
    console.print(f"CPU budget per frame: {measured['cpu_budget_ms_per_frame']}")
    fps = summary.throughput_fps
    ratios = {}
    if not skip_baseline:
        baselines = {}
        for label, model_path in (("torch", str(weights)), ("onnx", str(onnx_path))):
            with console.status(f"plain Ultralytics loop ({label})"):
                baselines[label] = _run_child("plain-loop", model_path, clip)
            console.print(f"plain loop ({label}): {baselines[label]['fps']} fps")
        measured["plain_loop"] = baselines
        best = max(b["fps"] for b in baselines.values())
        ratios = {
            "pipeline_vs_plain_loop_torch": round(fps / baselines["torch"]["fps"], 2),
            "pipeline_vs_plain_loop_onnx": round(fps / baselines["onnx"]["fps"], 2),
            "pipeline_vs_best_plain_loop": round(fps / best, 2),
        }
    ratios["pipeline_vs_raw_onnxruntime"] = round(fps / measured["raw_onnxruntime"]["ceiling_fps"], 2)
    measured["ratios"] = ratios
    measured["disturbed"] = disturbances(measured, before=raw_before["ceiling_fps"], after=raw_after["ceiling_fps"])
    for why in measured["disturbed"]:
        console.print(f"[yellow]warning: this round was disturbed: {why}; its figures are not the machine's (run it on a "
                      "quiet machine, or with --repeat)[/yellow]")
    return measured


def disturbances(measured: dict, *, before: float, after: float) -> list[str]:
    """What says a round's figures were taken while something else used the machine's cores."""
    found = []
    if min(before, after) > 0 and max(before, after) / min(before, after) > 1.25:
        found.append(f"the raw ceiling was {before:g} images/s before the pipeline and {after:g} after")
    pipeline = measured["pipeline"]
    if pipeline["throughput_fps"] > measured["raw_onnxruntime"]["ceiling_fps"]:
        found.append(f"the pipeline ({pipeline['throughput_fps']} fps) beat the raw ceiling "
                     f"({measured['raw_onnxruntime']['ceiling_fps']} fps) it cannot beat")
    if measured["cpu_budget_ms_per_frame"].get("not_inference", 0) < 0:
        found.append("the pipeline's CPU per frame was below inference's alone at the ceiling")
    if (pipeline.get("cores_busy_elsewhere") or 0) + (pipeline.get("cores_stolen") or 0) > 0.25:
        found.append(f"other processes and the hypervisor took {pipeline.get('cores_busy_elsewhere')} and "
                     f"{pipeline.get('cores_stolen')} cores during the pipeline's run")
    return found


def _lower_middle(items: list, key=None):
    """The median of an odd number of items; of an even number, the lower of the middle two (never a better draw)."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def median_round(rounds: list[dict]) -> dict:
    """The round whose pipeline-to-ceiling ratio is the median."""
    return _lower_middle(rounds, key=lambda r: r["ratios"]["pipeline_vs_raw_onnxruntime"])


def ratio_spread(rounds: list[dict]) -> dict[str, list[float]]:
    """Each ratio's [minimum, median, maximum] over the rounds (the median by the same rule as the reported round)."""
    return {
        name: [min(values), _lower_middle(values), max(values)]
        for name in rounds[0]["ratios"]
        for values in [[r["ratios"][name] for r in rounds]]
    }


def write_result(out_path: Path, result: dict) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")


def batch_sweep(settings, clip: str, sizes=(1, 2, 4, 8, 16, 32, 64), seconds: float = 3.0) -> dict:
    """The detector alone at each batch size on its device (GPU when there is one): frames per second.

    Real frames of the clip, already decoded; each call letterboxes, infers and runs NMS as
    the detection stage does, so the figure is what one detection call can deliver per
    device. On a CPU the ONNX Runtime session has the threads of one of the detect stage's
    parallel calls, so compare sizes, not absolute figures, there.
    """
    import cv2

    from its_faust.detector import Detector

    detector = Detector.from_settings(settings)
    capture = cv2.VideoCapture(clip)
    frames = []
    while len(frames) < max(sizes):
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise ValueError(f"no frames could be read from {clip}")
    by_size = {}
    for size in sizes:
        batch = [frames[i % len(frames)] for i in range(size)]
        detector.detect(batch)  # warm-up: allocations, kernel selection
        calls, inference_ms, started = 0, 0.0, time.perf_counter()
        while time.perf_counter() - started < seconds or calls < 3:
            results = detector.detect(batch)
            inference_ms += sum(r.inference_ms for r in results)
            calls += 1
        elapsed = time.perf_counter() - started
        by_size[str(size)] = {
            "fps": round(calls * size / elapsed, 1),
            "inference_ms_per_frame": round(inference_ms / (calls * size), 2),
        }
    info = detector.model_info
    return {"model": f"{info.name}@{info.version}", "backend": info.backend, "device": info.device,
            "imgsz": settings.model.imgsz, "frame": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "fps_by_batch": by_size}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "plain-loop":
        print(json.dumps(plain_loop(sys.argv[2], sys.argv[3])))
    else:
        sys.exit("usage: python -m its_faust.bench plain-loop WEIGHTS CLIP")
