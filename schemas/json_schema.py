"""Every topic's record as JSON Schema, for producers and consumers in any language.

``python -m schemas.json_schema [DIR]`` writes one file per record, named by its ``schema`` and ``v``
(``its.frame-v1.json``), into DIR (default: ``schemas/json-schema/`` beside this file, which is
committed; a test keeps it current). They are pydantic's schemas of what the stages accept: a record
that fails one is dead-lettered with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.analytics import Alert, CountUpdate, Crossing, ZoneEvent, ZoneStats
from schemas.base import Record
from schemas.camera_events import CameraEvent
from schemas.control import CameraCommand, CameraConfig
from schemas.dead_letters import DeadLetter
from schemas.detections import DetectionRecord
from schemas.frames import FrameRecord
from schemas.tracks import TrackRecord
from schemas.workers import WorkerStatus

# In the pipeline's order (docs/architecture.md names each one's topic).
TOPIC_RECORDS: tuple[type[Record], ...] = (
    FrameRecord, DetectionRecord, TrackRecord, Crossing, ZoneEvent, Alert, CountUpdate, ZoneStats,
    CameraCommand, CameraConfig, CameraEvent, DeadLetter, WorkerStatus,
)
HERE = Path(__file__).parent / "json-schema"


def file_name(record_type: type[Record]) -> str:
    fields = record_type.model_fields
    return f"{fields['schema_'].default}-v{fields['v'].default}.json"


# Bytes as the stages accept them: base64 in either alphabet, padding optional. Pydantic's schema says
# "format": "base64url", what the stages write; a validator that checks formats would refuse the standard
# alphabet, which every stage takes.
BASE64_EITHER_ALPHABET = {"type": "string", "contentEncoding": "base64", "pattern": "^[A-Za-z0-9+/_-]*={0,2}$"}


def _bytes_as_accepted(node):
    if isinstance(node, dict):
        if node.get("format") == "base64url":
            node = {**{k: v for k, v in node.items() if k != "format"}, **BASE64_EITHER_ALPHABET}
        return {k: _bytes_as_accepted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_bytes_as_accepted(v) for v in node]
    return node


def json_schemas() -> dict[str, str]:
    """File name -> the record's JSON Schema, as written."""
    return {file_name(t): json.dumps(_bytes_as_accepted(t.model_json_schema(by_alias=True)), indent=2, sort_keys=True) + "\n"
            for t in TOPIC_RECORDS}


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
