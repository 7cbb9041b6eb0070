"""PyTorch backend: CUDA (half precision) when a GPU is present, CPU otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchBackend:
    name = "torch"
    concurrent = False  # one call at a time; a GPU batches better than threads do
    input_size = max_batch = None  # any

    def __init__(self, weights: Path, device: str = "auto"):
        import torch
        from ultralytics.nn.autobackend import AutoBackend

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch = torch
        self.device = device
        self.half = device.startswith("cuda")
        self.model = AutoBackend(str(weights), device=torch.device(device), fp16=self.half, fuse=True, verbose=False)
        self.model.eval()
        self.stride = int(self.model.stride)
        self.class_names = dict(self.model.names)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            x = x.half() if self.half else x
            out = self.model(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            return out.float().cpu().numpy()
