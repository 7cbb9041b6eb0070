"""One typed settings object for every process of ITS Faust.

Values come, lowest priority first, from: the field defaults below, the
profile file ``its_faust/profiles/<profile>.env``, a ``.env`` file in the
working directory, and environment variables prefixed ``ITS_FAUST_`` (nested
fields use ``__``, e.g. ``ITS_FAUST_MODEL__BACKEND=torch``).
"""

from __future__ import annotations

import json
import os
import re
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROFILES_DIR = Path(__file__).parent / "profiles"

# COCO ids of the traffic classes: person, bicycle, car, motorcycle, bus, truck.
TRAFFIC_CLASSES = (0, 1, 2, 3, 5, 7)
DEFAULT_BROKER = "kafka://127.0.0.1:9092"  # where a worker looks with no ITS_FAUST_BROKER_URL


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may use: its CPU set (a container's, where ``os.cpu_count`` gives the
    host's), and no more than its CPU quota (``docker run --cpus=2``, a Kubernetes CPU limit), which
    would otherwise throttle a pool of inference threads sized for the whole host."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    quota = cpu_quota(cgroup_root)
    return max(1, min(cores, int(quota))) if quota else cores


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2's ``cpu.max``, else v1's CFS quota), None when unlimited."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]  # "max 100000" or "200000 100000"
    except (OSError, ValueError):
        quota = period = None
        for v1 in ("cpu", "cpu,cpuacct"):
            try:
                quota = (cgroup_root / v1 / "cpu.cfs_quota_us").read_text().strip()  # -1: none
                period = (cgroup_root / v1 / "cpu.cfs_period_us").read_text().strip()
                break
            except OSError:
                continue
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):  # "max", or no cgroup files
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


class Profile(str, Enum):
    local = "local"
    development = "development"
    staging = "staging"
    production = "production"


def json_list_or_commas(value):
    """A list setting from the environment: a JSON list, or items separated by commas (``2,3,5,7``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{value!r} is not a JSON list ({exc})") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ModelSettings(BaseModel):
    weights: str = Field("yolo11n.pt", description="Weights file name or path, resolved through the asset directory")
    backend: Literal["auto", "onnxruntime", "onnx", "torch", "pytorch"] = Field(
        "auto", description="onnxruntime | torch | auto (torch on CUDA, else onnxruntime; onnxruntime for .onnx weights)"
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (torch backend)")
    imgsz: int = Field(640, ge=32, multiple_of=32, description="Long side of the network input; frames are letterboxed to a multiple of 32")
    conf: float = Field(0.1, ge=0.0, le=1.0, description="Minimum score kept (ByteTrack uses low scores too)")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold")
    agnostic_nms: bool = Field(
        True, description="Suppress overlapping boxes across the classes of one kind (car, bus and truck; bicycle "
        "and motorcycle), not within each class as Ultralytics does by default: one box, so one track and one "
        "count, for a vehicle the model calls both car and truck (a rider and their bike stay two)")
    # NoDecode: the validator below takes "2,3,5,7" as well as the JSON list pydantic-settings wants.
    classes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: list(TRAFFIC_CLASSES), min_length=1,
        description="COCO class ids kept, as 2,3,5,7 or a JSON list: person, bicycle, car, motorcycle, bus, truck")
    max_det: int = Field(300, ge=1, description="Most boxes kept per frame after NMS")
    batch_size: int = Field(
        0, ge=0, le=256,
        description="Most frames in one inference call, across cameras; 0 = auto: 1 on a CPU (single-threaded "
        "calls side by side are fastest there), 16 on a GPU",
    )
    batch_wait_ms: float = Field(15.0, ge=0.0, description="Longest wait to fill a batch")
    parallel: int = Field(
        0, ge=0,
        description="Inference calls in flight at once; 0 = one per CPU core (at most 4). On a GPU the device runs "
        "one call at a time and the others decode and post-process around it",
    )
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads per call; 0 = cores / parallel")
    live_frame_max_age_s: float = Field(
        3.0, ge=0,
        description="A live frame (one without scene_time) older than this when detection reaches it is shed, not "
        "detected, so a pipeline that fell behind catches up with the present (its_faust.stale_frames); 0 = never",
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_json_or_commas(cls, value):
        return json_list_or_commas(value)

    @model_validator(mode="after")
    def _onnx_runs_on_onnxruntime(self) -> "ModelSettings":
        # The torch backend fed an ONNX file exported with a fixed input the shapes it chose (a worker that exited
        # before it was ready, a traceback in its log); `auto` picks torch wherever CUDA is.
        if self.weights.lower().endswith(".onnx") and self.backend in ("torch", "pytorch"):
            raise ValueError(f"weights {self.weights!r} are ONNX: they run on the onnxruntime backend (CUDA too, with "
                             "onnxruntime-gpu), not torch")
        return self

    def backend_for(self, cuda: bool) -> str:
        """The backend to load: the one asked for, or for ``auto`` torch on CUDA and ONNX Runtime elsewhere, and for
        ONNX weights."""
        if self.backend != "auto":
            return self.backend
        return "torch" if cuda and not self.weights.lower().endswith(".onnx") else "onnxruntime"

    def frames_per_call(self, device: str) -> int:
        return self.batch_size or (16 if device.startswith("cuda") else 1)

    def inference_parallelism(self) -> tuple[int, int]:
        """(concurrent inference calls, threads per call) for a CPU backend.

        On a small CPU, single-threaded calls side by side beat one call spread over
        all cores: no thread barriers, and nothing to lose when another process runs.
        """
        cores = usable_cores()
        parallel = self.parallel or min(cores, 4)
        threads = self.ort_threads or max(1, cores // parallel)
        return parallel, threads


class TrackerSettings(BaseModel):
    # ByteTrack parameters, same meaning and defaults as Ultralytics' bytetrack.yaml.
    track_high_thresh: float = Field(0.25, ge=0, le=1, description="ByteTrack: boxes scoring above this are matched first")
    track_low_thresh: float = Field(0.1, ge=0, le=1,
                                    description="ByteTrack: boxes between this and the high threshold are matched second")
    new_track_thresh: float = Field(0.25, ge=0, le=1, description="ByteTrack: an unmatched box above this starts a track")
    track_buffer: int = Field(30, ge=1, description="ByteTrack: frames a lost track is kept for (at 30 fps)")
    match_thresh: float = Field(0.8, gt=0, le=1, description="ByteTrack: matching cost above this is no match")
    fuse_score: bool = Field(True, description="ByteTrack: weigh the matching by the boxes' scores")
    # Not ByteTrack's: ours (tables/camera_tracker.py, agents/track.py).
    live_max_age_s: float = Field(
        6.0, ge=0,
        description="A live frame's detections older than this (from capture) when tracking comes to them are shed, "
        "not tracked: tracking is behind, and skipping is what lets it catch up (its_faust/stale_frames.py); 0 = never",
    )
    max_gap_s: float = Field(
        2.0, gt=0,
        description="Frames further apart than this (scene time) start the camera's tracks afresh, ids counting on: "
        "after a stream loss or shed frames, the old tracks would be matched to whatever is there now. A camera whose "
        "frames come slower (time-lapse) is judged by three of its usual intervals instead",
    )

    @model_validator(mode="after")
    def _low_under_high(self) -> "TrackerSettings":
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError(f"ITS_FAUST_TRACKER__TRACK_LOW_THRESH ({self.track_low_thresh:g}) must be at most "
                             f"ITS_FAUST_TRACKER__TRACK_HIGH_THRESH ({self.track_high_thresh:g})")
        return self


class AnalyticsSettings(BaseModel):
    """Thresholds of the analytics actors; times are scene time (capture time for live sources), so replays give the same events."""

    forget_after_s: float = Field(10.0, gt=0, description="A track unseen this long is forgotten")
    line_margin_px: float = Field(2.0, ge=0, description="Dead band around counting lines")
    speed_window_s: float = Field(1.0, gt=0, description="Speeds are fitted over this much of a track's path")
    line_min_track_frames: int = Field(
        10, ge=1,
        description="Frames a track must have been seen in for its crossing of a line to count (a crossing before that "
        "counts when it has, on that frame): a track followed for a few frames only is mostly a second one on a "
        "vehicle already tracked (a truck's trailer) or one that jumped between vehicles",
    )
    zone_frames: int = Field(3, ge=1, description="Frames in a row inside (or outside) to enter (or leave) a zone")
    zone_min_track_frames: int = Field(
        10, ge=1,
        description="Frames a track must have been seen in before it can enter a zone: a track the tracker follows for "
        "a few frames only is mostly a second one on a vehicle already tracked (a truck's cab and trailer)",
    )
    zone_lost_s: float = Field(1.0, gt=0, description="A track unseen this long has left its zones")
    moving_px_s: float = Field(15.0, gt=0, description="Below this image speed a track has no direction")
    stopped_kmh: float = Field(5.0, gt=0, description="Stopped when slower (calibrated cameras)")
    stopped_px_s: float = Field(6.0, gt=0, description="Stopped when slower, uncalibrated cameras (pixels per second)")
    stopped_after_s: float = Field(10.0, gt=0, description="Stopped in a lane zone this long: an alert")
    wrong_way_deg: float = Field(120.0, gt=90, le=180, description="Heading this far from a zone's: wrong way")
    wrong_way_after_s: float = Field(1.0, gt=0, description="Driving the wrong way this long: an alert")
    congestion_vehicles: int = Field(4, ge=1, description="Occupancy of a zone that can be a queue")
    congestion_kmh: float = Field(10.0, gt=0, description="Mean speed below this (calibrated) is queueing")
    congestion_px_s: float = Field(10.0, gt=0, description="Mean image speed below this (uncalibrated) is queueing")
    congestion_after_s: float = Field(20.0, gt=0, description="Queueing this long: an alert")
    overspeed_margin: float = Field(0.1, ge=0, description="Above limit x (1 + margin) is overspeed")
    overspeed_after_s: float = Field(0.5, gt=0, description="Over the limit this long: an alert")
    condition_grace_s: float = Field(1.0, ge=0, description="A condition that lapses for less than this keeps its clock")
    clear_after_s: float = Field(3.0, gt=0, description="A condition must be gone this long before its alert clears")
    cooldown_s: float = Field(60.0, ge=0, description="After a clear, the same alert is not raised again this soon")
    camera_silent_s: float = Field(
        30.0, ge=0,
        description="Wall-clock seconds, unlike the rest: a camera whose frames have stopped (its stream ended or was "
        "lost, it was removed) for this long, with none waiting, is closed: its alerts clear and its tracks leave "
        "their zones, as no frame will come to do it (or, with no worker left to, by its next frame, as of then; "
        "the API counts its alerts over meanwhile). 0: never",
    )


class ApiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `its-faust api` listens on (0.0.0.0: every one)")
    port: int = Field(8000, ge=1, le=65535, description="Port of `its-faust api` (the demo's too)")
    ring_size: int = Field(10000, ge=10, description="Messages per partition each API process holds per topic")
    frames_keep_s: float = Field(
        6.0, gt=0,
        description="Seconds of frames each API process holds for the live view and alert snapshots: a frame is drawn "
        "when its track record arrives, so this must outlast the pipeline's latency (live frames reach detection at "
        "most model.live_frame_max_age_s, 3 s, old; older ones are shed)",
    )
    frames_ring: int = Field(1000, ge=2, description="At most this many frames per partition held, whatever their age")
    frames_memory_mb: int = Field(
        512, ge=1,
        description="At most this much memory of frames held (JPEG in JSON), shared out between the partitions: the "
        "oldest go first. Many or large cameras per partition may need more to hold frames_keep_s of them",
    )
    heartbeat_s: float = Field(15.0, gt=0, description="SSE comment sent on idle connections this often")
    max_body_bytes: int = Field(
        65536, ge=1024,
        description="Largest request body the API reads (a camera's change is a few kilobytes); a larger one is a 413")
    command_timeout_s: float = Field(15.0, gt=0, description="How long a REST change waits for a worker to apply it")
    live_fps: float = Field(4.0, gt=0, le=30, description="Frames per second of the live view (live.mjpg), unless ?fps= asks otherwise")
    cors_origins: Annotated[list[str], NoDecode] = Field(  # NoDecode: see ModelSettings.classes
        [], description="Origins whose web pages may call the API from a browser (CORS), e.g. https://ops.example.org; "
        "* for any. Empty: only pages the API serves itself (the dashboard). Comma-separated or a JSON list")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_as_json_or_commas(cls, value):
        return json_list_or_commas(value)


class IngestSettings(BaseModel):
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the frames a camera sends")
    max_in_flight: int = Field(
        24, ge=1,
        description="Frames a file paced by the pipeline (`run`, `replay --source`) may have sent and not yet tracked. "
        "Enough to keep the detector busy through the broker's fetch waits (on 2 cores 24 against 12: about +5% "
        "frames per second, 7 paired runs); more adds only queueing, i.e. capture-to-track latency",
    )
    live_max_in_flight: int = Field(
        12, ge=1,
        description="Frames live feeds (demo's cameras, shared out between them) may have untracked at once; a "
        "frame beyond it is dropped at the camera, so this bounds what a live view lags behind",
    )
    reconnect_initial_s: float = Field(0.5, gt=0, description="First wait before reconnecting a lost stream; it doubles")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts")
    reconnect_attempts: int = Field(0, ge=0, description="Tries again after the first failed open (or a lost stream) "
                                    "before giving up: 2 gives up after 3 attempts; 0 = tries again for ever")
    stream_timeout_s: float = Field(10.0, gt=0, description="A network stream that takes longer than this to open, "
                                    "or to deliver a frame, is down (reported, then reconnected)")
    blank_std: float = Field(4.0, ge=0, description="A frame whose grey-level std dev is below this is blank")
    frozen_delta: int = Field(
        12, ge=0, le=255,
        description="Grey levels a thumbnail pixel must change by to count as changed; a frame with almost none "
        "changed (0.2%) is unchanged",
    )
    frozen_after: int = Field(15, ge=1, description="Consecutive unchanged frames before the stream counts as frozen")
    frozen_keepalive_s: float = Field(
        0.25, ge=0.0,
        description="While the picture is frozen, one frame per this many seconds of scene time still goes to the "
        "detector, so what stands still in a still scene stays tracked and keeps its alerts (at most a quarter of "
        "analytics.speed_window_s: speeds need 4 positions in it); 0 = none",
    )
    rejection_report_s: float = Field(
        60.0, gt=0.0,
        description="Flagged frames (blank, frozen, ...) are reported at the first of a kind, then at most once per "
        "this many seconds of scene time per kind, with how many were flagged since the last report",
    )
    blur_var: float = Field(0.0, ge=0.0, description="Laplacian variance below which a frame is blurred; 0 = off")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ITS_FAUST_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    profile: Profile = Field(Profile.local, description="local | development | staging | production: its file in "
                             "its_faust/profiles/ sets the values below it differs in")
    app_id: str = Field("its-faust", min_length=1, description="The workers' consumer group and the prefix of their tables' changelog topics")
    broker_url: str | None = Field(
        None, description="kafka://host:port[;host:port]; empty starts the embedded Tansu broker"
    )
    broker_wait_s: float = Field(
        10.0, gt=0,
        description="How long a worker and the API wait at start for ITS_FAUST_BROKER_URL to answer before they "
        "stop with one error line (a container may start before its Kafka: the staging and production profiles "
        "wait 300)",
    )
    embedded_broker_warn_mb: int = Field(
        1024, ge=1,
        description="The embedded broker keeps every record in memory and slows as it fills: past this the demo "
        "and `its-faust broker` say once that a long run wants Kafka, and the API's /ready warns while it is so",
    )
    topic_prefix: str = Field("its", description="Topic names are <prefix>.frames, <prefix>.tracks, ... (empty: no prefix)")
    frames_retention_s: float = Field(
        3600, gt=0,
        description="retention.ms of the frames and detections topics when the project creates them: the bulk of "
        "the traffic (a camera's JPEG frames, ~2.1 MB/s at 27 fps) and read only by the next stage, so an hour covers "
        "a worker outage; the other topics keep the broker's default (tracks, counts and alerts are what replay and "
        "the API read back)",
    )
    partitions: int = Field(4, ge=1, description="Partitions of every keyed topic; the most workers that share work")
    replication_factor: int = Field(
        1, ge=1,
        description="Copies of every topic and table changelog the project creates: 1 on the embedded broker (one "
        "node); 3 in the production profile, so that a lost broker loses no frames and no table state",
    )
    data_dir: Path = Field(Path(".its-faust"), description="Worker state (RocksDB tables)")
    asset_dir: Path | None = Field(None, description="Where weights and sample videos lie (see its_faust.assets); "
                                   "empty: ~/.cache/its-faust/assets")
    cache_dir: Path = Field(Path.home() / ".cache" / "its-faust", description="Exported models (shared by workers)")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field("info", description="debug | info | warning | error | critical")
    log_json: bool = Field(False, description="One JSON object per log line (for a log pipeline)")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto: uvloop where installed (less CPU per frame), else asyncio's own loop"
    )

    # Group-membership timing. Faust's defaults (60 s rebalance) make a worker
    # join slowly; these values let a worker take over a dead one in ~10 s.
    rebalance_timeout_s: float = Field(3.0, gt=0, description="How long a rebalance waits for the group's workers to rejoin")
    session_timeout_s: float = Field(
        10.0, gt=0, description="A worker silent this long (killed, cut off, frozen) leaves the group and its partitions "
        "go to the others")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="How often a worker tells the group it is alive")
    commit_interval_s: float = Field(1.0, gt=0, description="How often a worker commits the offsets it has processed")
    stall_after_s: float = Field(15.0, gt=0, description="A partition with backlog that has not moved this long is re-sought")
    slow_processing_report_s: float = Field(
        300.0, gt=0,
        description="Faust's stream_processing_timeout: a partition not fetched, or with backlog its agent has not "
        "taken, for this long is logged as an error (the watchdog acts on stalls; this only reports)",
    )
    fetch_max_wait_ms: int = Field(
        100, ge=0,
        description="Longest a fetch of several partitions waits for data (workers, API). The embedded broker "
        "answers such fetches only when the wait runs out, so this trades latency (about +50 ms at 100) against "
        "the CPU of polling (see kafka_transport); Apache Kafka answers as soon as data arrives: use 500 there",
    )
    worker_status_interval_s: float = Field(
        5.0, gt=0,
        description="How often each worker reports itself on its.workers (its_faust/worker_status.py); the API "
        "counts one silent for three intervals as gone",
    )
    state_flush_interval_s: float = Field(
        0.5, ge=0,
        description="How often the tracker and analytics actors write each camera's state to its table and release "
        "the frames it covers for commit (tables/checkpoints.py); their outputs still leave with every frame. A "
        "worker that dies redoes at most this much (plus the commit interval), emitting the same records again. "
        "0: after every frame",
    )
    producer_linger_ms: int = Field(
        2, ge=0, le=100,
        description="How long a worker's producer gathers records into one request. Measured on 2 cores with the "
        "embedded broker: 2 ms against 0 gave 8% more frames per second (fewer requests: less broker and client "
        "CPU, fewer wake-ups of the inference threads). The track and analytics agents wait for each record's "
        "acknowledgement only at a state flush, so this adds little latency",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @property
    def broker(self) -> str:
        """The broker a worker connects to: ``broker_url``, or a broker on this machine's default port (commands
        that start the embedded broker set ``broker_url`` to it first)."""
        return self.broker_url or DEFAULT_BROKER

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        """Empty: the embedded broker. Else ``kafka://host:port[;host:port]`` (``host:port`` alone means
        kafka://), checked here so that a typo is one line at start, not a failure deep in a client."""
        if not value:
            return None
        scheme, sep, hosts = str(value).partition("://")
        if not sep:
            scheme, hosts = "kafka", str(value)
        if scheme not in ("kafka", "aiokafka"):
            raise ValueError(f"{value!r}: a Kafka broker is kafka://host:port, not {scheme}://")
        for hostport in hosts.replace(";", ",").split(","):
            host, colon, port = hostport.strip().rpartition(":")
            if colon and host and port.isdigit() and not 0 < int(port) < 65536:
                raise ValueError(f"{value!r}: port {port} of {hostport.strip()} is not a port (1-65535)")
            if not colon or not host or not port.isdigit():
                raise ValueError(f"{value!r}: {hostport.strip() or 'an empty address'} is not host:port (kafka://host:port[;host:port])")
        return f"{scheme}://{hosts}"

    @field_validator("profile", mode="before")
    @classmethod
    def _profile_any_case(cls, value):
        return value.lower() if isinstance(value, str) else value

    @field_validator("data_dir", "cache_dir", mode="before")
    @classmethod
    def _empty_folder_is_the_default(cls, value, info):
        """Empty (``ITS_FAUST_DATA_DIR=``): the default, as for the asset folder and the broker; it was the current
        folder, which a worker then filled with its tables."""
        return cls.model_fields[info.field_name].get_default() if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value):
        """Any case, and the names the logging module also takes (WARN, FATAL)."""
        if not isinstance(value, str):
            return value
        value = value.lower()
        return {"warn": "warning", "fatal": "critical"}.get(value, value)

    @model_validator(mode="after")
    def _still_scene_samples_keep_tracks_and_alerts(self) -> "Settings":
        """Samples of a frozen picture must come often enough for the tracker (no gap, with a frame to spare)
        and for analytics (a speed needs 4 positions in its window, or a stopped car stops counting as stopped;
        the sampler's grid puts 4 in any window of 4 steps: frame_quality.StillSceneSampler)."""
        keepalive = self.ingest.frozen_keepalive_s
        limits = {
            "ITS_FAUST_TRACKER__MAX_GAP_S / 2": self.tracker.max_gap_s / 2,
            "ITS_FAUST_ANALYTICS__SPEED_WINDOW_S / 4": self.analytics.speed_window_s / 4,
        }
        name, limit = min(limits.items(), key=lambda item: item[1])
        if keepalive > limit:
            raise ValueError(
                f"ITS_FAUST_INGEST__FROZEN_KEEPALIVE_S ({keepalive:g}) must be at most {name} ({limit:g}): samples of "
                "a frozen picture further apart would lose the tracks or the alerts of what stands still in it"
            )
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}" if self.topic_prefix else name


def _env_file(path: Path = Path(".env")) -> dict[str, str | None]:
    """A .env-style file's variables, names upper-cased (the settings read them in any case); none if it is absent."""
    from dotenv import dotenv_values

    return {k.upper(): v for k, v in dotenv_values(path).items()} if path.exists() else {}


def _environment() -> dict[str, str]:
    """The environment's variables, names upper-cased: the settings read them in any case (its_faust_profile)."""
    return {k.upper(): v for k, v in os.environ.items()}


def _profile_name() -> str:
    """``ITS_FAUST_PROFILE`` from the environment, else from ``.env`` (where the ``profile`` field reads it
    too: a profile named there and not applied would run one profile's values under another's name), else local;
    in any case of letters, as the setting reads it."""
    environment = _environment()
    if "ITS_FAUST_PROFILE" in environment:
        return environment["ITS_FAUST_PROFILE"].lower()
    return (_env_file().get("ITS_FAUST_PROFILE") or Profile.local.value).lower()


def load_settings(**overrides) -> Settings:
    """Build settings for the profile named by ``ITS_FAUST_PROFILE`` (default ``local``)."""
    profile = _profile_name()
    try:
        Profile(profile)
    except ValueError:
        names = ", ".join(p.value for p in Profile)
        raise ValueError(f"unknown profile {profile!r}; choose one of: {names}") from None
    env_files = [PROFILES_DIR / f"{profile}.env", Path(".env")]
    return Settings(_env_file=[str(p) for p in env_files if p.exists()], **overrides)


# Set by the project for processes it starts (its_faust/worker.py), not by people: no setting, and no typo.
INTERNAL_VARIABLES = frozenset({"ITS_FAUST_RESTARTS_FOR_LOST_LOGS"})


def _variables(model: type[BaseModel], prefix: str = "ITS_FAUST_") -> set[str]:
    """Every variable that sets something: each field's, and a nested group's own (it takes JSON)."""
    names = set()
    for name, field in model.model_fields.items():
        names.add(f"{prefix}{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _variables(field.annotation, f"{prefix}{name.upper()}__")
    return names


def unknown_variables() -> list[tuple[str, str | None]]:
    """``ITS_FAUST_*`` variables of the environment and .env that are no setting, each with the setting it
    looks most like (or None): pydantic-settings ignores them, so a typo (one underscore for two) would change
    nothing without a word."""
    import difflib

    given = {k for k in [*_environment(), *_env_file()] if k.startswith("ITS_FAUST_")}
    known = _variables(Settings)
    unknown = []
    for name in sorted(given - known - INTERNAL_VARIABLES):
        like = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        unknown.append((name, like[0] if like else None))
    return unknown


def describe(settings: Settings) -> list[dict]:
    """Every setting: its environment variable, the value in ``settings``, its default, and its description
    (what `its-faust settings` prints). ``changed``: the value is not the default; ``set_by``: what sets it
    here (the environment, .env, the profile; empty for none), as load_settings reads them, the last first."""
    profile = _profile_name()
    sources = [("the environment", _environment()), (".env", _env_file()),
               (f"the {profile} profile", _env_file(PROFILES_DIR / f"{profile}.env"))]
    rows = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            variable = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(value, variable + "__")
                continue
            default = field.get_default(call_default_factory=True)
            value, default = _plain(value), _plain(default)
            # The first source (the one that wins) that gives it, by its own variable or its group's JSON.
            set_by = next((name if found == variable else f"{name} ({found})" for name, values in sources
                           for found in (variable, *_groups_of(variable)) if found in values), "")
            rows.append({"variable": variable, "value": value, "default": default, "changed": value != default,
                         "set_by": set_by, "description": field.description or ""})

    walk(settings, "ITS_FAUST_")
    return rows


def _groups_of(variable: str) -> list[str]:
    """The variables of the groups a setting is in, innermost first: ITS_FAUST_MODEL for ITS_FAUST_MODEL__IMGSZ
    (a group's variable takes JSON)."""
    parts = variable.split("__")
    return ["__".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def _plain(value):
    """An enum's value (a profile), anything else as it is."""
    return value.value if isinstance(value, Enum) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def invalid_settings(exc: ValueError) -> str:
    """One line for settings that do not load: each bad value with its environment variable, an unknown
    profile, a value that is not the JSON it must be (with the parser's reason)."""
    if not isinstance(exc, ValidationError):
        # pydantic-settings' own: 'error parsing value for field "model" from source "EnvSettingsSource"'
        group = re.match(r'error parsing value for field "(\w+)" from source "(\w+)"', str(exc))
        if group:
            name, source = f"ITS_FAUST_{group[1].upper()}", group[2].removesuffix("SettingsSource")
            where = {"Env": "the environment", "DotEnv": ".env or the profile"}.get(source, source)
            return (f"invalid settings: {name} (in {where}) is not the JSON object it must be"
                    f" ({exc.__cause__}); or set its fields one by one, as {name}__<FIELD>")
        return f"invalid settings: {exc}" + (f" ({exc.__cause__})" if exc.__cause__ else "")
    parts = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        names = [str(p) for p in err["loc"] if not isinstance(p, int)]
        items = [str(p) for p in err["loc"] if isinstance(p, int)]  # a list's item: the variable is the list's
        where = "ITS_FAUST_" + "__".join(names).upper() if names else ""
        where += f" (its item {int(items[0]) + 1})" if items else ""
        parts.append(f"{where}: {message}" if where else message)
    return "invalid settings: " + "; ".join(parts)
