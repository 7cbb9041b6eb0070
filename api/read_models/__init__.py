"""Read models the API builds from the topics: cameras, what each camera's tracks say (for /metrics), counts and
their windows, zone figures, alerts, camera events, workers, dead letters.

They are folds of the topics and nothing more: the API decides nothing. Each
``apply`` is called by a :class:`~api.topic_ring.TopicRing` for every message it reads.

The read models, one module per kind of record:

* ``cameras``: configurations, frames arriving, newest tracks (``Cameras``, ``FramesArriving``, ``TrackedCameras``);
* ``figures``: counts and their windows, zone figures (``Counts``, ``Zones``);
* ``alerts``, ``camera_events``, ``workers``, ``dead_letters``: one read model each;
* ``camera_sets``: which cameras a read model holds (by partition; a bound on unconfigured ones).
"""

from api.read_models.alerts import Alerts
from api.read_models.camera_events import CameraEvents
from api.read_models.camera_sets import CamerasByPartition, HeardCameras
from api.read_models.cameras import Cameras, FramesArriving, TrackedCameras
from api.read_models.dead_letters import DeadLetters
from api.read_models.figures import HISTORY_WINDOWS, WINDOW_S, Counts, CurrentFigures, Zones
from api.read_models.workers import Workers

__all__ = ["Alerts", "CameraEvents", "Cameras", "CamerasByPartition", "Counts", "CurrentFigures", "DeadLetters",
           "FramesArriving", "HISTORY_WINDOWS", "HeardCameras", "TrackedCameras", "WINDOW_S", "Workers", "Zones"]
