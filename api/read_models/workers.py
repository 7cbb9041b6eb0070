"""Each worker's latest report and what it means now."""

from __future__ import annotations

from collections import OrderedDict

from api.topic_ring import Message
from its_faust.codecs import SchemaError
from schemas.workers import WorkerStatus


class Workers:
    """Each worker's latest report (``its.workers``) and what it means now: running, recovering, stopped
    (it said so as it stopped) or gone (silent for ``SILENT_INTERVALS`` of its own report intervals:
    killed, crashed, cut off or frozen). Stopped and gone workers are forgotten after ``forget_after_s``."""

    SILENT_INTERVALS = 3

    def __init__(self, forget_after_s: float = 600.0, max_workers: int = 1000, away_between=None):
        self.forget_after_s = forget_after_s
        self.max_workers = max_workers  # any producer may write the topic: made-up ids must not grow the API
        self.latest: OrderedDict[str, WorkerStatus] = OrderedDict()
        # away_between(since, now): seconds the broker did not answer the API in between. A worker is judged silent
        # over the rest only, so a broker the API cannot reach does not make every worker "gone", neither while it
        # lasts nor for the moments after it in which their reports have not been read again.
        self.away_between = away_between

    def apply(self, m: Message) -> None:
        try:
            status = m.decoded(WorkerStatus)
        except SchemaError:
            return
        known = self.latest.get(status.worker)
        if known is not None and status.at < known.at:
            return
        self.latest[status.worker] = status
        self.latest.move_to_end(status.worker)
        if len(self.latest) > self.max_workers:
            self.latest.popitem(last=False)

    def state(self, status: WorkerStatus, now: float) -> str:
        silent_s = now - status.at - (self.away_between(status.at, now) if self.away_between else 0.0)
        if status.state != "stopped" and silent_s > self.SILENT_INTERVALS * status.interval_s:
            return "gone"
        return status.state

    def view(self, now: float) -> list[dict]:
        """Every worker not long gone or stopped, by id: its last report, its state now, how long ago it spoke."""
        for worker, status in list(self.latest.items()):
            if self.state(status, now) in ("stopped", "gone") and now - status.at > self.forget_after_s:
                del self.latest[worker]
        return [self._view(status, now) for _, status in sorted(self.latest.items())]

    def _view(self, status: WorkerStatus, now: float) -> dict:
        view = {**status.model_dump(mode="json", by_alias=False, exclude={"schema_", "v"}),
                "state": self.state(status, now), "reported_s_ago": round(max(0.0, now - status.at), 1)}
        if view["state"] == "gone":  # its partitions went to the others (or wait for one): it holds none
            view["last_partitions"], view["partitions"] = view["partitions"], []
        return view

    def serving(self, now: float) -> list[WorkerStatus]:
        """The workers that report in time and have not stopped (running or recovering)."""
        return [s for s in self.latest.values() if self.state(s, now) in ("running", "recovering")]
