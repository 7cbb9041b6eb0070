"""Batched YOLO11 detection: JPEG frames in, boxes in original-image pixels out.

Pre- and post-processing do what ``YOLO.predict`` does, with Ultralytics' own
``LetterBox`` and ``scale_boxes`` and its NMS steps (the suppression itself by OpenCV,
see :func:`nms`), so results match; only the runtime differs.
Frames of different sizes are letterboxed to different shapes, so a batch is
split into groups of equal shape and each group is one inference call (or several, for a model exported
for a fixed number of images a call).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from ultralytics.data.augment import LetterBox
from ultralytics.utils.ops import scale_boxes

from its_faust.assets import resolve_asset
from its_faust.backends import DetectorBackend, load_backend
from its_faust.backends.base import weights_version
from schemas import Box, ModelInfo
from schemas.frames import MAX_SIDE_PX

log = logging.getLogger(__name__)


class UnreadableImage(ValueError):
    """The bytes are not a decodable image."""


def decode_jpeg(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """A frame's bytes as a BGR image; ``size`` (width, height), when given, is checked first.

    JPEG by libjpeg-turbo's own API (simplejpeg): the same pixels as ``cv2.imdecode``, in
    less than half its time (0.6 against 1.5 ms for a 640x360 frame). Anything else OpenCV
    decodes (a PNG, say) goes to OpenCV. Whatever the bytes, what goes wrong is an
    :class:`UnreadableImage` of this frame alone: a header claiming 60000x60000 pixels made
    OpenCV raise its own error (or the decoder run out of memory), which failed the frames
    of every camera in the frame's batch.
    """
    if data[:2] == b"\xff\xd8":
        try:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
        except ValueError:
            pass  # a broken header: the decoders below say what is wrong with it
        else:
            if max(width, height) > MAX_SIDE_PX:  # decoding would take gigabytes and tens of seconds, then fail
                raise UnreadableImage(f"frame bytes are not a decodable image: the JPEG says {width}x{height}, "
                                      f"over {MAX_SIDE_PX} a side")
            if size is not None:
                _check_size((width, height), size)
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="BGR")
    except (ValueError, MemoryError) as exc:  # not a JPEG, or a broken one
        reason = str(exc) or type(exc).__name__
    else:
        return _checked(image, size)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except (cv2.error, MemoryError) as exc:
        image, reason = None, f"{reason}; OpenCV: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
    if image is None:
        detail = reason if data[:2] == b"\xff\xd8" else "neither a JPEG nor another image format"
        raise UnreadableImage(f"frame bytes are not a decodable image: {detail}")
    return _checked(image, size)


def _checked(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is not None:
        _check_size((image.shape[1], image.shape[0]), size)
    return image


def _check_size(actual: tuple[int, int], size: tuple[int, int]) -> None:
    # The boxes would be scaled to a size that is not the image's.
    if actual != size:
        raise UnreadableImage(f"the image is {actual[0]}x{actual[1]}, the record says {size[0]}x{size[1]}")


def to_blob(images: list[np.ndarray], rows: int | None = None) -> np.ndarray:
    """BGR HWC uint8 images of one shape -> RGB NCHW float32 in [0, 1], the network's input.

    The same values as ``cv2.dnn.blobFromImages(images, 1 / 255, swapRB=True)``, in half its
    time: each colour plane is copied once into place and the batch scaled in place.
    ``rows`` (at least the number of images) pads the batch with black images.
    """
    height, width = images[0].shape[:2]
    blob = np.empty((max(rows or 0, len(images)), 3, height, width), np.float32)
    for n, image in enumerate(images):
        for channel, plane in enumerate(reversed(cv2.split(image))):
            blob[n, channel] = plane
    blob[len(images):] = 0
    blob *= np.float32(1 / 255)
    return blob


def padded_batch_sizes(largest: int) -> tuple[int, ...]:
    """The batch sizes a GPU is given: powers of two below ``largest``, and ``largest``.

    On a GPU the first call at each new input shape is slow (cuDNN picks and builds its
    convolution plans per shape; seconds for the whole network), and a detect stage that
    batches what arrived within a few milliseconds gives every size from 1 to its maximum.
    Padding each batch up to one of these few sizes bounds the shapes per frame size to
    log2(largest) + 1, and the worker warms them all up before it takes frames. Measured
    without it on an H200 (benchmarks/results/gpu-h200.json): the pipeline ran a clip at
    6 fps that the plain Ultralytics loop ran at 122, its worker busy on one core with a
    cost that did not scale with the frames; padded batches are not yet measured there.
    """
    sizes, size = [], 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


@dataclass(frozen=True)
class FrameDetections:
    boxes: list[Box]
    inference_ms: float  # this frame's share of its group's inference call
    batch_size: int


class Detector:
    def __init__(
        self,
        backend: DetectorBackend,
        model_info: ModelInfo,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: list[int] | None = None,
        max_det: int = 300,
        agnostic: bool = False,
        batch_sizes: tuple[int, ...] | None = None,
    ):
        self.backend = backend
        self.model_info = model_info
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        self.classes = classes
        self.max_det = max_det
        self.agnostic = agnostic
        # Fixed batch sizes to pad to (see padded_batch_sizes): for a GPU; None feeds batches as they come.
        self.batch_sizes = tuple(sorted(batch_sizes)) if batch_sizes else None
        # auto=True pads to the smallest multiple of the stride (rect inference), as YOLO.predict does; a model with
        # a fixed input gets exactly that (a 640x360 frame letterboxed to 192x320 was refused by a 320x320 model).
        fixed = getattr(backend, "input_size", None)
        if fixed:
            if imgsz != max(fixed):
                log.info("detector: the model takes %dx%d images only: ITS_FAUST_MODEL__IMGSZ (%d) does not apply to it",
                         fixed[1], fixed[0], imgsz)
            self.imgsz = max(fixed)
        self.letterbox = (LetterBox(fixed, auto=False, stride=backend.stride) if fixed
                          else LetterBox((imgsz, imgsz), auto=True, stride=backend.stride))
        self.max_batch = getattr(backend, "max_batch", None)  # a model exported for that many images a call
        self.names = backend.class_names
        # Calls from several threads overlap their decoding and NMS; a backend that cannot run
        # two inferences at once (a GPU model) takes them one at a time here.
        self._infer_lock = contextlib.nullcontext() if backend.concurrent else threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "Detector":
        weights = resolve_asset(settings.model.weights, settings.asset_dir)
        backend = load_backend(settings.model, weights, Path(settings.cache_dir) / "models")
        info = ModelInfo(name=weights.stem, version=weights_version(weights), backend=backend.name, device=backend.device)
        log.info("detector %s@%s on %s/%s", info.name, info.version, info.backend, info.device)
        on_gpu = backend.device != "cpu"
        return cls(
            backend,
            info,
            imgsz=settings.model.imgsz,
            conf=settings.model.conf,
            iou=settings.model.iou,
            classes=settings.model.classes or None,
            max_det=settings.model.max_det,
            agnostic=settings.model.agnostic_nms,
            batch_sizes=padded_batch_sizes(settings.model.frames_per_call(backend.device)) if on_gpu else None,
        )

    def warmup(self, shape: tuple[int, int] = (360, 640)) -> None:
        """One call at each batch size the backend will be given, for frames of ``shape``."""
        for size in self.batch_sizes or (1,):
            self.detect([np.zeros((*shape, 3), np.uint8)] * size)

    def rows_for(self, images: int) -> int:
        """The batch size a group of ``images`` goes to the backend as: the next fixed size, if any fits."""
        return next((size for size in self.batch_sizes or () if size >= images), images)

    def detect(self, images: list[np.ndarray]) -> list[FrameDetections]:
        """Detect in a list of BGR images; one result per image, in order."""
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        letterboxed = [self.letterbox(image=im) for im in images]
        for i, lb in enumerate(letterboxed):
            groups[lb.shape[:2]].append(i)
        results: list[FrameDetections | None] = [None] * len(images)
        calls = [(shape, indices[start:start + (self.max_batch or len(indices))])
                 for shape, indices in groups.items() for start in range(0, len(indices), self.max_batch or len(indices))]
        for shape, indices in calls:
            batch = to_blob([letterboxed[i] for i in indices], rows=self.max_batch or self.rows_for(len(indices)))
            with self._infer_lock:
                started = time.perf_counter()
                raw = self.backend.infer(batch)[: len(indices)]
                share_ms = (time.perf_counter() - started) * 1000 / len(indices)
            for i, boxes in zip(indices, self._postprocess(raw, shape, [images[i].shape for i in indices])):
                results[i] = FrameDetections(boxes, share_ms, len(images))
        return results  # type: ignore[return-value]

    def _postprocess(self, raw: np.ndarray, input_shape, original_shapes) -> list[list[Box]]:
        out = []
        for pred, orig in zip(raw, original_shapes):
            xyxy, conf, cls = nms(pred, self.conf, self.iou, self.classes, self.max_det, self.agnostic)
            xyxy = scale_boxes(input_shape, xyxy, orig[:2])
            out.append(
                [
                    Box(x1=x1, y1=y1, x2=x2, y2=y2, conf=c, cls=k, label=self.names.get(k, str(k)))
                    for (x1, y1, x2, y2), c, k in zip(xyxy.tolist(), conf.tolist(), cls.tolist())
                ]
            )
        return out


# With ``agnostic``, boxes of one kind suppress each other whatever the class the model gave them: a van called
# car and truck is one vehicle. A rider and their bicycle or motorcycle overlap as much, and are two objects.
CARS = (2, 5, 7)  # car, bus, truck (COCO)
TWO_WHEELERS = (1, 3)  # bicycle, motorcycle


def nms(pred: np.ndarray, conf: float, iou: float, classes: list[int] | None, max_det: int, agnostic: bool = False):
    """Ultralytics' ``non_max_suppression`` for one image's raw head output ``(4 + classes, anchors)``.

    Same steps (best class per anchor, score and class filters, per-class greedy NMS, or with ``agnostic``
    across the classes of one kind, :data:`CARS` and :data:`TWO_WHEELERS`, the ``max_det`` best), with
    OpenCV's ``NMSBoxesBatched`` doing the suppression: the same
    boxes (tested against Ultralytics'), in a quarter of the time of its torch version on
    the ~1% of anchors left after the score filter. Returns ``xyxy, conf, cls`` by score.
    """
    pred = pred[:, pred[4:].max(axis=0) > conf]  # anchors whose best class clears the bar
    scores = pred[4:]
    cls = scores.argmax(axis=0)
    best = scores[cls, np.arange(scores.shape[1])]
    if classes:
        keep = np.isin(cls, classes)
        pred, cls, best = pred[:, keep], cls[keep], best[keep]
    cx, cy, w, h = pred[:4]
    tlwh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    groups = np.select([np.isin(cls, CARS), np.isin(cls, TWO_WHEELERS)], [-1, -2], cls) if agnostic else cls
    picked = np.asarray(cv2.dnn.NMSBoxesBatched(tlwh, best, groups, conf, iou), dtype=np.int64).reshape(-1)
    picked = picked[np.argsort(-best[picked], kind="stable")][:max_det]
    x1, y1, bw, bh = tlwh[picked].T
    return np.stack([x1, y1, x1 + bw, y1 + bh], axis=1), best[picked], cls[picked]
