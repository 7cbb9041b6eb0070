"""GPU figures in one go, for a machine with a CUDA GPU (the workplace's lent device machine).

1. the batched CUDA detection path at batch sizes 1 to 64 (``its-faust bench --batch-sweep``
   with the PyTorch backend: letterbox, half-precision inference and NMS per call);
2. on each clip, the whole pipeline (embedded broker, a worker, the camera) with the PyTorch
   backend on the GPU (``its-faust run``) against the plain Ultralytics loop
   ``YOLO(weights).track(clip, stream=True)`` on the same GPU.

Each step runs in its own process with a time limit, so one that fails or hangs leaves the
others' figures. Everything lands in one JSON file (default ``benchmarks/results/gpu.json``)
and a table is printed last.

    ITS_FAUST_MODEL__BACKEND=torch python benchmarks/gpu_figures.py --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIPS = ("dual_carriageway_abhishek.mp4", "intersection_cctv_borislavy.mp4")


def step(name: str, command: list[str], timeout_s: float, log_dir: Path) -> tuple[bool, float]:
    """Run one step, its output to ``log_dir/NAME.log``; (whether it succeeded, seconds)."""
    started = time.perf_counter()
    with open(log_dir / f"{name}.log", "w") as log:
        try:
            ok = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode == 0
        except subprocess.TimeoutExpired:
            log.write(f"\n*** stopped after {timeout_s} s\n")
            ok = False
    seconds = round(time.perf_counter() - started, 1)
    print(f"{name}: {'ok' if ok else 'FAILED'} in {seconds} s", flush=True)
    return ok, seconds


def gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    except ImportError:
        return "torch is not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    parser.add_argument("--logs", type=Path, default=Path("out/gpu-logs"), help="One log per step.")
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument("--weights", default="yolo11n.pt", help="Weights for the plain loop (resolved like the pipeline's).")
    args = parser.parse_args()

    from its_faust.assets import resolve_asset
    from its_faust.settings import load_settings

    settings = load_settings()
    weights = str(resolve_asset(args.weights, settings.asset_dir))
    args.logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-figures-"))
    cli = [sys.executable, "-m", "its_faust.cli"]
    result: dict = {"gpu": gpu_name(), "backend": settings.model.backend, "steps": {}, "clips": {}}

    def save() -> None:  # after every step: a run stopped from outside keeps what was measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    sweep_json = work / "batch-sweep.json"
    ok, seconds = step("batch-sweep", [*cli, "bench", "--batch-sweep", "--sizes", args.sizes, "--out", str(sweep_json)], 150, args.logs)
    result["steps"]["batch-sweep"] = {"ok": ok, "seconds": seconds}
    if ok:
        result["batch_sweep"] = json.loads(sweep_json.read_text())
    save()

    for clip in args.clips.split(","):
        name = Path(clip).stem
        clip_path = str(resolve_asset(clip, settings.asset_dir))
        figures: dict = result["clips"].setdefault(name, {})
        summary_json = work / f"run-{name}.json"
        ok, seconds = step(f"pipeline-{name}", [*cli, "run", "--source", clip_path, "--summary", str(summary_json)], 150, args.logs)
        result["steps"][f"pipeline-{name}"] = {"ok": ok, "seconds": seconds}
        if ok:
            summary = json.loads(summary_json.read_text())
            figures["pipeline"] = {k: summary.get(k) for k in ("frames_tracked", "throughput_fps", "fps", "latency_ms",
                                                               "stage_p50_ms", "distinct_track_ids", "model", "cores_busy",
                                                               "cpu_ms_per_frame", "wall_s")}
        save()
        loop_log = args.logs / f"plain-loop-{name}.log"
        ok, seconds = step(f"plain-loop-{name}", [sys.executable, "-m", "its_faust.bench", "plain-loop", weights, clip_path], 120, args.logs)
        result["steps"][f"plain-loop-{name}"] = {"ok": ok, "seconds": seconds}
        if ok:
            figures["plain_loop"] = json.loads([line for line in loop_log.read_text().splitlines() if line.startswith("{")][-1])
        if "pipeline" in figures and "plain_loop" in figures and figures["plain_loop"]["fps"]:
            figures["pipeline_vs_plain_loop"] = round(figures["pipeline"]["throughput_fps"] / figures["plain_loop"]["fps"], 2)
        save()

    print(f"\nGPU: {result['gpu']}  (written to {args.out})")
    for size, row in result.get("batch_sweep", {}).get("fps_by_batch", {}).items():
        print(f"  batch {size:>3}: {row['fps']:>8} frames/s  ({row['inference_ms_per_frame']} ms inference per frame)")
    for name, figures in result["clips"].items():
        pipeline, loop = figures.get("pipeline", {}), figures.get("plain_loop", {})
        print(f"  {name}: pipeline {pipeline.get('throughput_fps')} fps (latency {pipeline.get('latency_ms')}), "
              f"plain loop {loop.get('fps')} fps, ratio {figures.get('pipeline_vs_plain_loop')}")
    return 0 if all(s["ok"] for s in result["steps"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
