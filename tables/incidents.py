"""Incidents -> alerts: one alert per incident, a clear when it ends, and a cool-down after.

Rules (in :mod:`tables.camera_analytics`) say each frame which conditions hold
now (:class:`Condition`, keyed by kind and subject). The :class:`AlertBook`
turns that into events: a new condition raises one alert; while it holds,
nothing more is said; when it has been gone ``clear_after_s`` a ``cleared``
event with the same id follows; the same kind and subject is then quiet for
``cooldown_s``. Everything runs on scene time (capture time for live sources), so a replay says the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from schemas.analytics import Alert, FrameRef
from schemas.base import SeqStored, TableState


@dataclass
class Condition:
    kind: str
    subject: str
    since: float  # scene time the condition began
    severity: str
    message: str
    track_ids: list[int] = field(default_factory=list)
    zone: str | None = None
    details: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


class ActiveAlert(TableState):
    alert_id: str
    kind: str
    subject: str
    severity: str
    message: str
    started_at: float
    raised_seq: SeqStored
    track_ids: list[int] = Field(default_factory=list)
    zone: str | None = None
    details: dict[str, float] = Field(default_factory=dict)
    gone_since: float | None = None
    gone_from_view: bool = False  # its one vehicle's track was not in the frame its condition lapsed on


# What ended an incident whose vehicles were in view as it did, as its clear says it: what was seen (a box that
# shifts as a van passes in front of a standing car is "seen moving" too).
OVER = {"stopped_vehicle": "seen moving", "wrong_way": "seen out of the zone, or with its heading",
        "overspeed": "seen under the limit, or off the calibrated road", "congestion": "the queue seen moving or thinner"}


class AlertBook:
    def __init__(self, cooldown_s: float,
                 active: dict[str, ActiveAlert] | None = None, quiet_until: dict[str, float] | None = None):
        self.cooldown_s = cooldown_s
        self.active: dict[str, ActiveAlert] = dict(active or {})
        self.quiet_until: dict[str, float] = dict(quiet_until or {})

    def step(self, camera_id: str, record, conditions: list[Condition], clear_after_s: float, seen: set[int] = frozenset(),
             config_version: int = 0, zones: set[str] | None = None) -> list[Alert]:
        """``record``: the frame (camera record) the conditions were judged on; ``clear_after_s``: how long an
        alert's condition must be gone for it to clear (longer for a camera whose frames come further apart);
        ``seen``: the tracks in the frame; ``config_version``: the camera's configuration version they were
        judged under; ``zones``: the camera's zones now (None: not known), to tell an alert whose zone went.

        An alert about one vehicle whose track was not in the frame its condition ended on says so when it
        clears: the vehicle left, or the tracker lost it (after a pause in the camera's frames, a rebalance
        say, it tracks every vehicle afresh, under new ids, so the same incident may be raised again under
        a new alert)."""
        seq, now = record.seq, record.at
        out: list[Alert] = []
        holding = {c.key: c for c in conditions}
        for key in sorted(holding):
            c = holding[key]
            if key in self.active:
                alert = self.active[key]
                self.active[key] = alert.model_copy(update={
                    "gone_since": None, "gone_from_view": False, "details": c.details or alert.details,
                    "track_ids": c.track_ids,
                })
                continue
            if now < self.quiet_until.get(key, float("-inf")):
                continue  # cooling down after the last one
            alert = ActiveAlert(
                alert_id=f"{camera_id}:{key}:{seq}", kind=c.kind, subject=c.subject, severity=c.severity,
                message=c.message, started_at=c.since, raised_seq=seq, track_ids=c.track_ids, zone=c.zone,
                details=c.details,
            )
            self.active[key] = alert
            out.append(self._event(record, alert, "raised", config_version=config_version))
        for key in sorted(set(self.active) - set(holding)):
            alert = self.active[key]
            if alert.gone_since is None:
                alert = alert.model_copy(update={
                    "gone_since": now, "gone_from_view": len(alert.track_ids) == 1 and alert.track_ids[0] not in seen,
                })
            if now - alert.gone_since >= clear_after_s:
                del self.active[key]
                self.quiet_until[key] = now + self.cooldown_s
                # Its one vehicle gone from view when the condition lapsed: "no longer tracked"; else what ended it
                # in view (a bare "cleared" left an operator to guess: an alert-quality trial).
                why = ("its zone was removed" if alert.zone and zones is not None and alert.zone not in zones
                       else "no longer tracked" if alert.gone_from_view else OVER.get(alert.kind))
                out.append(self._event(record, alert, "cleared", why))
            else:
                self.active[key] = alert
        self.quiet_until = {k: t for k, t in self.quiet_until.items() if t > now}
        return out

    def clear_all(self, record, why: str) -> list[Alert]:
        """Every active alert cleared now, with the reason (``record``: the moment, as in :meth:`step`)."""
        out = []
        for key in sorted(self.active):
            alert = self.active.pop(key)
            self.quiet_until[key] = record.at + self.cooldown_s
            out.append(self._event(record, alert, "cleared", why))
        return out

    @staticmethod
    def _event(record, alert: ActiveAlert, state: str, why: str | None = None, config_version: int = 0) -> Alert:
        # config_version: on raised alerts only. Kept in the table's ActiveAlert it would have made the stored
        # state unreadable to a worker rolled back to before the field (every frame of the camera dead-lettered).
        camera_id = record.camera_id
        return Alert(
            camera_id=camera_id, seq=record.seq, captured_at=record.captured_at, scene_time=record.scene_time,
            alert_id=alert.alert_id, kind=alert.kind, state=state,
            severity=alert.severity, subject=alert.subject, track_ids=alert.track_ids, zone=alert.zone,
            started_at=alert.started_at, snapshot=FrameRef(camera_id=camera_id, seq=alert.raised_seq),
            message=alert.message if state == "raised" else f"cleared{f' ({why})' if why else ''}: {alert.message}",
            details=alert.details, config_version=config_version,
        )
