"""The backend interface and the choice of backend from settings."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np


class DetectorBackend(Protocol):
    name: str  # onnxruntime | torch
    concurrent: bool  # infer() may be called from several threads at once
    device: str
    stride: int
    class_names: dict[int, str]
    # A model exported with a fixed input takes only that: (height, width), and that many images a call; None: any.
    input_size: tuple[int, int] | None
    max_batch: int | None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw head output for a ``(B, 3, H, W)`` float32 batch."""


def weights_version(path: Path) -> str:
    """A short, stable version id for a weights file until the model registry assigns one."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def load_backend(model_settings, weights: Path, cache_dir: Path) -> DetectorBackend:
    """Build the backend the settings ask for; ``auto`` is torch on CUDA, ONNX Runtime on CPU and for ONNX weights."""
    choice = model_settings.backend_for(cuda_available() if model_settings.backend == "auto" else False)
    if choice in ("onnx", "onnxruntime"):
        from its_faust.backends.onnxruntime import OnnxRuntimeBackend

        _, threads = model_settings.inference_parallelism()
        return OnnxRuntimeBackend.from_weights(weights, cache_dir, threads=threads)
    if choice in ("torch", "pytorch"):
        from its_faust.backends.torch import TorchBackend

        return TorchBackend(weights, device=model_settings.device)
    raise ValueError(f"unknown detector backend {model_settings.backend!r}; choose onnxruntime, torch or auto")
