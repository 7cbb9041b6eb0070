"""Topic names (without the configurable prefix) and their creation.

Kept apart from :mod:`its_faust.topics` so that producers and readers outside
a Faust worker (ingest, the run orchestrator, tests) need not build a Faust app.
"""

from __future__ import annotations

FRAMES = "frames"
DETECTIONS = "detections"
TRACKS = "tracks"
CAMERA_EVENTS = "camera-events"
DEAD_LETTERS = "dead-letters"
CAMERA_COMMANDS = "camera-commands"
CAMERA_CONFIGS = "camera-configs"
CROSSINGS = "crossings"
COUNTS = "counts"
ZONE_EVENTS = "zone-events"
ZONE_STATS = "zone-stats"
ALERTS = "alerts"
WORKERS = "workers"
ALL = (
    FRAMES, DETECTIONS, TRACKS, CAMERA_EVENTS, DEAD_LETTERS,
    CAMERA_COMMANDS, CAMERA_CONFIGS, CROSSINGS, COUNTS, ZONE_EVENTS, ZONE_STATS, ALERTS, WORKERS,
)

# Frames and what was detected on them: bulky, and read only by the next stage.
SHORT_LIVED = (FRAMES, DETECTIONS)
# The largest record the project's producers send (a frame's JPEG in base64, ~50-150 KB at 640x360; room
# for 4K cameras) and its consumers fetch; topics holding whole frames are created to take it (Kafka's
# default is 1 MB).
MAX_RECORD_BYTES = 8 * 1024 * 1024
WHOLE_FRAMES = (FRAMES, DEAD_LETTERS)  # a dead letter holds the frame it refused


def retention_s(name: str, settings) -> float | None:
    """How long a topic (name without the prefix) keeps records: short for the bulky transient ones,
    None (the broker's default; Kafka: 7 days) for the rest."""
    return settings.frames_retention_s if name in SHORT_LIVED else None


def topic_configs(name: str, settings) -> dict[str, str]:
    """Configs a topic is created with."""
    configs = {}
    retention = retention_s(name, settings)
    if retention is not None:
        configs["retention.ms"] = str(int(retention * 1000))
    if name in WHOLE_FRAMES:
        configs["max.message.bytes"] = str(MAX_RECORD_BYTES)
    return configs


async def ensure_topics(bootstrap: str, settings) -> dict[str, int]:
    """Create the pipeline's topics with the configured partitions and replicas, if they do not exist yet;
    returns the topics that exist with another partition count than the settings', and theirs.

    Producers may start before any worker has declared the topics; a topic
    auto-created by the broker would get the broker's default partition count.
    Topics that exist already keep their configs and partitions (change them with Kafka's tools).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        ours = [settings.topic(name) for name in ALL if settings.topic(name) in existing]
        other_partitions = {
            described["topic"]: len(described["partitions"])
            for described in (await admin.describe_topics(ours) if ours else [])
            if described["error_code"] == 0 and len(described["partitions"]) != settings.partitions
        }
        new = [
            NewTopic(settings.topic(name), settings.partitions, settings.replication_factor,
                     topic_configs=topic_configs(name, settings))
            for name in ALL if settings.topic(name) not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process won the race
    finally:
        await admin.close()
    return other_partitions
