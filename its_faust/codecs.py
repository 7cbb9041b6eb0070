"""Bytes <-> records, with a reason when the bytes are not a valid record.

Topics carry raw bytes and agents decode them here rather than through a Faust
value serializer: a Faust decode error would skip the message silently, while
this way a malformed message goes to the dead-letter topic with its reason.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from schemas.base import Record, error_text

R = TypeVar("R", bound=Record)


class SchemaError(ValueError):
    """A payload is not a valid record of the expected schema; ``str()`` is the reason."""


def encode(record: Record) -> bytes:
    return record.model_dump_json(by_alias=True).encode()


def decode(record_type: type[R], payload: bytes | None) -> R:
    if not payload:
        raise SchemaError(f"empty payload where {record_type.__name__} was expected")
    try:
        return record_type.model_validate_json(payload)
    except ValidationError as exc:
        raise SchemaError(_reason(record_type, exc)) from None


def decode_keyed(record_type: type[R], key: bytes | None, payload: bytes | None) -> R:
    """``decode``, for a record of a per-camera topic: its key must be its camera_id, since actors keep each
    camera's state under the key (a record under another camera's key would change that camera's state)."""
    record = decode(record_type, payload)
    if key != record.camera_id.encode():
        raise SchemaError(f"key {key!r} is not the record's camera_id {record.camera_id!r}")
    return record


def decode_or_none(record_type: type[R], payload: bytes | None) -> R | None:
    """``decode``, or None for what does not decode: for readers beside the pipeline, which skip such a
    record (the stage that reads it dead-letters it)."""
    try:
        return decode(record_type, payload)
    except SchemaError:
        return None


def _reason(record_type: type[Record], exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {error_text(err)}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"invalid {record_type.__name__}: " + "; ".join(parts) + more
