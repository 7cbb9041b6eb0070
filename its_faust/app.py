"""The Faust application: one per process, configured from settings.

``faust -A its_faust.app worker`` (or ``its-faust worker``) starts a worker;
every worker runs every agent and Kafka's consumer groups spread the camera
partitions over them. Agents live in the ``agents`` package and are found by
autodiscovery, so this module stays the one place that configures Faust.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import faust

from its_faust.data_dir import claim as claim_data_dir
from its_faust.data_dir import lost as data_dir_lost
from its_faust.kafka_transport import Transport
from its_faust.settings import Settings, get_settings
from its_faust.topic_names import MAX_RECORD_BYTES
from its_faust.watchdog import install as install_watchdog
from its_faust.worker_status import install as install_status_reports

log = logging.getLogger(__name__)
DATA_DIR_CHECK_S = 5.0  # how often a worker checks that its data folder is still the one it claimed


class App(faust.App):
    its_settings: Settings | None = None  # what create_app built it from

    def _new_transport(self):
        return Transport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        """Before the consumer and the tables start (``its-faust worker`` and ``faust -A ... worker`` alike)."""
        await super().on_first_start()
        settings = self.its_settings or get_settings()
        claim_data_dir(settings.data_dir)  # `faust -A ... worker` too (its-faust worker claimed it already)
        await prepare_broker_and_tables(self, settings)

    async def on_started(self) -> None:
        await super().on_started()  # returns once the tables are recovered (or the worker is stopping)
        if not self.should_stop:
            freeze_long_lived_objects()


async def prepare_broker_and_tables(app: faust.App, settings: Settings, retry_max_s: float = 30.0) -> None:
    """The broker answers, every pipeline topic exists (integrators may read one no record has reached
    yet, and ``its-faust cameras`` reads ``its.camera-configs``), and no local table copy is ahead of
    its changelog (:mod:`tables.local_copies`). Until the broker answers, tried again with a growing
    pause (at most ``retry_max_s``): a worker may start before its Kafka does (compose, Kubernetes)."""
    from aiokafka.errors import KafkaError

    from its_faust.broker import BrokerError, bootstrap_servers, wait_reachable
    from its_faust.topic_names import ensure_topics
    from tables.local_copies import drop_stale_copies, local_copies

    url = settings.broker
    bootstrap = bootstrap_servers(url)
    pause = 1.0
    while True:
        try:
            await asyncio.to_thread(wait_reachable, url, 5.0)
            other_partitions = await ensure_topics(bootstrap, settings)
            if other_partitions:
                log.warning("topics made with another partition count than ITS_FAUST_PARTITIONS (%d) keep it: %s; "
                            "at most that many workers share their work", settings.partitions,
                            ", ".join(f"{topic} has {n}" for topic, n in sorted(other_partitions.items())))
            await drop_stale_copies(local_copies(app, settings.partitions), bootstrap)
            return
        except (BrokerError, KafkaError, OSError) as exc:
            log.warning("broker %s not ready (%s); trying again in %.0f s", url, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, retry_max_s)


def freeze_long_lived_objects() -> int:
    """Take what the worker has built so far out of the garbage collector's full collections.

    Modules, the detector, Faust's app and services: about 270,000 objects that live as long
    as the process. A full collection scans them all (130-150 ms, the GIL held, so the event
    loop and the inference threads' hand-overs wait), and about 35 s into a run the workers
    did nine in a row: a 1.3 s stall, seen as p99 latencies of 1.4-2.4 s in the benchmark.
    Frozen, a full collection takes about 1 ms. Returns how many objects were frozen.
    """
    gc.collect()  # garbage made at start-up is freed, not frozen
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d start-up objects frozen out of the garbage collector's full collections", frozen)
    return frozen


def create_app(settings: Settings) -> faust.App:
    app = App(
        settings.app_id,
        broker=settings.broker,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,  # agents' topics and table changelogs alike
        topic_allow_declare=True,
        autodiscover=["agents"],
        origin="its_faust",
        # At-least-once: Tansu has no transactions, and the actors are idempotent by frame seq.
        processing_guarantee="at_least_once",
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        stream_processing_timeout=settings.slow_processing_report_s,
        producer_max_request_size=MAX_RECORD_BYTES,
        producer_linger=settings.producer_linger_ms / 1000,
        consumer_max_fetch_size=MAX_RECORD_BYTES,
        web_enabled=False,
        table_cleanup_interval=60.0,
    )
    app.its_settings = settings
    return app


# RocksDB's defaults for each table partition's store: a 64 MB write buffer, up to 3 of them, and a 2 GB block
# cache. The actors rewrite each camera's state (10-30 KB) every half second, so every store's write buffers
# filled towards their 192 MB before any went to disk: a worker's memory grew by 5.5 MB a minute in a soak run,
# for ever as far as one could tell. The state is small and read from the latest writes.
TABLE_STORE_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


def table(name: str, **kwargs):
    """One of the workers' tables (RocksDB-backed, with a changelog), with the store options above."""
    return app.Table(name, partitions=settings.partitions, options=dict(TABLE_STORE_OPTIONS), **kwargs)


settings = get_settings()
app = create_app(settings)
stall_watchdog = install_watchdog(app, settings, settings.broker)


class DataDirLost(RuntimeError):
    """The worker's data folder was deleted or replaced under it."""


@app.timer(interval=DATA_DIR_CHECK_S, name="data-folder")
async def stop_if_the_data_folder_is_lost() -> None:
    """A worker whose data folder went (deleted, replaced) stops: its tables' files are gone, and another worker
    could claim the path; started again, it rebuilds them from the broker's changelogs."""
    reason = data_dir_lost()
    if reason:
        log.error("%s: the worker stops (started again, it rebuilds its tables from the broker)", reason)
        await app.crash(DataDirLost(reason))
status_reporter = install_status_reports(app, settings)
