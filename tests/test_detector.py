"""Letterbox, inference and NMS against Ultralytics' own results on the same images."""

import numpy as np
import pytest
from ultralytics import YOLO

from its_faust.backends.torch import TorchBackend
from its_faust.detector import Detector, UnreadableImage, decode_jpeg, to_blob
from its_faust.settings import TRAFFIC_CLASSES


@pytest.fixture(scope="module")
def yolo(weights_path):
    return YOLO(str(weights_path))


def ultralytics_boxes(yolo, image, conf, agnostic=False):
    result = yolo.predict(image, imgsz=640, conf=conf, iou=0.7, classes=list(TRAFFIC_CLASSES), agnostic_nms=agnostic,
                          verbose=False)[0]
    return result.boxes.xyxy.numpy(), result.boxes.conf.numpy(), result.boxes.cls.numpy().astype(int)


def as_arrays(boxes):
    xyxy = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes]).reshape(-1, 4)
    return xyxy, np.array([b.conf for b in boxes]), np.array([b.cls for b in boxes])


def match(ours, theirs, tol_px, same_count=True):
    """Each of their boxes has one of ours of the same class within tol_px on every side."""
    (oxy, _, ocls), (txy, _, tcls) = ours, theirs
    if same_count:
        assert len(oxy) == len(txy)
    for box, cls in zip(txy, tcls):
        err = np.abs(oxy - box).max(axis=1) + 1e6 * (ocls != cls)
        assert err.min() <= tol_px


@pytest.mark.parametrize("frame_index", [0, 170, 340])
def test_torch_backend_matches_yolo_predict(yolo, weights_path, clip_frames, frame_index):
    backend = TorchBackend(weights_path, device="cpu")
    from schemas import ModelInfo

    detector = Detector(backend, ModelInfo(name="yolo11n", version="t", backend="torch"), conf=0.25, classes=list(TRAFFIC_CLASSES))
    image = clip_frames[frame_index]
    ours = as_arrays(detector.detect([image])[0].boxes)
    theirs = ultralytics_boxes(yolo, image, 0.25)
    assert len(theirs[0]) > 3  # the clip is busy: the comparison means something
    match(ours, theirs, tol_px=0.5)
    np.testing.assert_allclose(np.sort(ours[1]), np.sort(theirs[1]), atol=1e-3)


def test_onnxruntime_backend_matches_yolo_predict(yolo, detector, clip_frames):
    assert detector.backend.name == "onnxruntime"
    for image in clip_frames[::85]:
        ours = as_arrays(detector.detect([image])[0].boxes)
        theirs = ultralytics_boxes(yolo, image, 0.35, agnostic=detector.agnostic)  # (the settings': across classes)
        # Same network, other runtime: scores differ in the 4th decimal, boxes by a fraction of a pixel,
        # so every box Ultralytics is sure of is among ours, and the counts above the bar agree within one.
        match(ours, theirs, tol_px=1.0, same_count=False)
        assert abs(int((ours[1] >= 0.35).sum()) - len(theirs[0])) <= 1


def test_a_model_exported_with_a_fixed_input_gets_exactly_that_and_matches_yolo_predict(settings, clip_frames):
    """The mirror's int8 model takes 1x3x320x320 only: a 640x360 frame letterboxed to 192x320 was refused, and the
    worker exited before it was ready. It gets frames padded to its square, one a call, as Ultralytics gives it."""
    from its_faust.assets import resolve_asset
    from its_faust.backends.onnxruntime import OnnxRuntimeBackend
    from schemas import ModelInfo

    path = resolve_asset("yolo11n-int8-320.onnx", settings.asset_dir, download=False)
    backend = OnnxRuntimeBackend(path)
    assert backend.input_size == (320, 320) and backend.max_batch == 1
    calls = []
    infer = backend.infer
    backend.infer = lambda batch: calls.append(batch.shape) or infer(batch)
    detector = Detector(backend, ModelInfo(name=path.stem, version="v", backend="onnxruntime"), imgsz=640, conf=0.35,
                        iou=0.7, classes=list(TRAFFIC_CLASSES))
    assert detector.imgsz == 320
    frames = clip_frames[::85]
    results = detector.detect(frames)
    assert calls == [(1, 3, 320, 320)] * len(frames)
    yolo = YOLO(str(path), task="detect")
    for image, result in zip(frames, results):
        theirs = yolo.predict(image, imgsz=320, conf=0.35, iou=0.7, classes=list(TRAFFIC_CLASSES), verbose=False)[0]
        theirs = theirs.boxes.xyxy.numpy(), theirs.boxes.conf.numpy(), theirs.boxes.cls.numpy().astype(int)
        ours = as_arrays(result.boxes)
        assert len(theirs[0]) >= 3  # (cars on every one of these frames)
        match(ours, theirs, tol_px=1.0, same_count=False)  # (ours suppress across car, bus and truck: maybe fewer)


def test_boxes_are_in_original_image_coordinates(detector, clip_frames):
    image = clip_frames[100]
    full = detector.detect([image])[0].boxes
    # The same scene at half size: boxes scale with it (letterbox and scale-back are consistent).
    import cv2

    half = detector.detect([cv2.resize(image, (320, 180))])[0].boxes
    big_full = sorted((b for b in full if b.conf > 0.6), key=lambda b: -b.conf)[:3]
    for b in big_full:
        centre = ((b.x1 + b.x2) / 4, (b.y1 + b.y2) / 4)
        nearest = min(half, key=lambda h: abs((h.x1 + h.x2) / 2 - centre[0]) + abs((h.y1 + h.y2) / 2 - centre[1]))
        assert abs((nearest.x1 + nearest.x2) / 2 - centre[0]) < 6 and abs((nearest.y1 + nearest.y2) / 2 - centre[1]) < 6
    for b in full:
        assert 0 <= b.x1 < b.x2 <= 640 and 0 <= b.y1 < b.y2 <= 360


def test_only_configured_classes_are_kept(detector, clip_frames):
    classes = {b.cls for f in detector.detect(clip_frames[:4]) for b in f.boxes}
    assert classes and classes <= set(TRAFFIC_CLASSES)


def test_undecodable_bytes_raise_a_clear_error():
    with pytest.raises(UnreadableImage, match="not a decodable image: neither a JPEG nor"):
        decode_jpeg(b"\x00" * 100)
    with pytest.raises(UnreadableImage, match="not a decodable image"):
        decode_jpeg(b"")


def test_a_jpeg_whose_header_claims_a_huge_size_is_unreadable_not_an_error_of_its_batch():
    """One flipped bit in a JPEG's size field: OpenCV raised its own error (or the decoder ran out of memory),
    and every frame of the batch the frame was in was dead-lettered with it."""
    import struct

    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    at = jpeg.find(b"\xff\xc0")
    huge = jpeg[:at + 5] + struct.pack(">HH", 60000, 60000) + jpeg[at + 9:]
    with pytest.raises(UnreadableImage, match="not a decodable image: the JPEG says 60000x60000, over 8192 a side"):
        decode_jpeg(huge)  # at once: a record that claimed the same size took 46 s and 11 GB to fail
    with pytest.raises(UnreadableImage, match="the image is 6000x6000, the record says 16x16"):
        decode_jpeg(jpeg[:at + 5] + struct.pack(">HH", 6000, 6000) + jpeg[at + 9:], (16, 16))  # before decoding
    assert decode_jpeg(jpeg, (16, 16)).shape == (16, 16, 3)
    with pytest.raises(UnreadableImage, match="the image is 8x8, the record says 16x16"):
        decode_jpeg(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), (16, 16))


def test_jpeg_frames_decode_to_opencvs_pixels(clip_frames):
    """The detect stage's decoder (libjpeg-turbo's own API) gives exactly what cv2.imdecode gives."""
    import cv2

    for image in clip_frames[::60]:
        for params in ([cv2.IMWRITE_JPEG_QUALITY, 85], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
            data = cv2.imencode(".jpg", image, params)[1]
            np.testing.assert_array_equal(decode_jpeg(data.tobytes()), cv2.imdecode(data, cv2.IMREAD_COLOR))
    gray = cv2.imencode(".jpg", cv2.cvtColor(clip_frames[0], cv2.COLOR_BGR2GRAY))[1]
    np.testing.assert_array_equal(decode_jpeg(gray.tobytes()), cv2.imdecode(gray, cv2.IMREAD_COLOR))


def test_other_image_formats_still_decode_and_broken_jpegs_say_why(clip_frames):
    import cv2

    png = cv2.imencode(".png", clip_frames[0])[1].tobytes()
    np.testing.assert_array_equal(decode_jpeg(png), clip_frames[0])
    jpeg = cv2.imencode(".jpg", clip_frames[0])[1].tobytes()
    with pytest.raises(UnreadableImage, match="Premature end of JPEG"):
        decode_jpeg(jpeg[: len(jpeg) // 2])


def test_blob_is_what_opencvs_blob_from_images_gives(detector, clip_frames):
    import cv2

    images = [detector.letterbox(image=image) for image in clip_frames[:3]]
    ours = to_blob(images)
    assert ours.shape == (3, 3, 384, 640) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, cv2.dnn.blobFromImages(images, 1 / 255.0, swapRB=True))


def test_nms_gives_ultralytics_boxes(detector, clip_frames):
    """Our NMS (OpenCV's suppression) against Ultralytics' non_max_suppression on the same raw outputs."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    from its_faust.detector import CARS, nms

    compared = fewer = 0
    for image in clip_frames[::20]:
        batch = detector.letterbox(image=image)
        x = np.ascontiguousarray(batch[None][..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        raw = detector.backend.infer(x)[0]
        theirs = non_max_suppression(torch.from_numpy(raw[None]), 0.1, 0.7, classes=list(TRAFFIC_CLASSES), max_det=300)[0].numpy()
        xyxy, conf, cls = nms(raw, 0.1, 0.7, list(TRAFFIC_CLASSES), 300)
        ours = np.column_stack([xyxy, conf, cls])
        assert ours.shape == theirs.shape
        order = lambda a: a[np.lexsort((a[:, 0], -a[:, 4]))]  # noqa: E731
        np.testing.assert_allclose(order(ours), order(theirs), atol=1e-3)
        compared += len(ours)
        # Across the classes of one kind: no two cars, buses or trucks kept on one box; those of other kinds
        # (people) are as before.
        a_xyxy, a_conf, a_cls = nms(raw, 0.1, 0.7, list(TRAFFIC_CLASSES), 300, agnostic=True)
        cars = np.isin(a_cls, CARS)
        boxes = a_xyxy[cars]
        for i in range(len(boxes)):
            assert all(iou(boxes[i], boxes[j]) <= 0.7 for j in range(i + 1, len(boxes)))
        people = lambda boxes, classes: sorted(tuple(np.round(b, 2)) for b, c in zip(boxes, classes) if c == 0)  # noqa: E731
        assert people(a_xyxy, a_cls) == people(xyxy, cls)
        fewer += len(ours) - len(a_xyxy)  # a vehicle called both car and truck: one box
    assert compared > 100 and fewer > 0


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class ShapeRecorder:
    """The real backend, posing as a GPU one, that notes the batch shape of each call."""

    def __init__(self, backend):
        self.backend, self.shapes = backend, []
        self.name, self.concurrent, self.device = backend.name, False, "cuda"
        self.stride, self.class_names = backend.stride, backend.class_names

    def infer(self, batch):
        self.shapes.append(batch.shape)
        return self.backend.infer(batch)


def test_padded_batch_sizes_are_powers_of_two_up_to_the_largest():
    from its_faust.detector import padded_batch_sizes

    assert padded_batch_sizes(16) == (1, 2, 4, 8, 16)
    assert padded_batch_sizes(12) == (1, 2, 4, 8, 12)
    assert padded_batch_sizes(1) == (1,)


def test_a_gpu_backend_gets_padded_batches_and_the_same_boxes(detector, clip_frames):
    """Three frames go to a GPU backend as a batch of four; the padding changes no frame's boxes."""
    recorder = ShapeRecorder(detector.backend)
    padded = Detector(recorder, detector.model_info, classes=list(TRAFFIC_CLASSES), batch_sizes=(1, 2, 4, 8))
    plain = Detector(detector.backend, detector.model_info, classes=list(TRAFFIC_CLASSES))
    frames = clip_frames[100:103]
    ours, theirs = padded.detect(frames), plain.detect(frames)
    assert [shape[0] for shape in recorder.shapes] == [4]
    assert len(ours) == 3 and all(r.batch_size == 3 for r in ours)
    for a, b in zip(ours, theirs):
        assert len(a.boxes) == len(b.boxes) > 0
        np.testing.assert_allclose(as_arrays(a.boxes)[0], as_arrays(b.boxes)[0], atol=0.05)
    recorder.shapes.clear()
    padded.detect(clip_frames[:9])  # more than the largest fixed size: goes as it is
    assert [shape[0] for shape in recorder.shapes] == [9]


def test_warmup_runs_every_fixed_batch_size(detector):
    recorder = ShapeRecorder(detector.backend)
    Detector(recorder, detector.model_info, batch_sizes=(1, 2, 4)).warmup()
    assert [shape[:2] for shape in recorder.shapes] == [(1, 3), (2, 3), (4, 3)]
    recorder.shapes.clear()
    Detector(recorder, detector.model_info).warmup()  # a CPU backend: one frame
    assert [shape[0] for shape in recorder.shapes] == [1]
    assert detector.batch_sizes is None  # Detector.from_settings on this CPU machine pads nothing


def test_blob_padding_rows_are_black(detector, clip_frames):
    images = [detector.letterbox(image=image) for image in clip_frames[:2]]
    blob = to_blob(images, rows=4)
    assert blob.shape[0] == 4 and not blob[2:].any()
    np.testing.assert_array_equal(blob[:2], to_blob(images))
