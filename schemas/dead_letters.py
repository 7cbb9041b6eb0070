"""``its.dead-letters``: input a stage could not use, kept whole with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Record


class DeadLetter(Record):
    schema_: Literal["its.dead-letter"] = Field("its.dead-letter", alias="schema")
    v: Literal[1] = 1
    stage: str = Field(description="Agent that rejected it")
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes = Field(description="The original payload, unchanged")
    reason: str
    failed_at: float
