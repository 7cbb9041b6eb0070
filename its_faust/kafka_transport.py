"""Faust's Kafka transport with a consumer fetch wait we choose.

Faust hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. Real Kafka
answers a fetch as soon as data arrives, but the embedded Tansu broker answers a
fetch of several partitions only when the wait runs out (one partition: at once),
which made every stage move in ~0.7 s bursts (10 fps instead of 45).

The wait is a trade on Tansu: each fetch of a worker's ~25 partitions costs the
broker ~3.5 ms of CPU, so at 10 ms a worker's polling alone took a third of a core
(broker and worker together, idle), and at 100 ms a fifteenth; a frame's latency
grows by about half the wait (measured at 20 fps: p50 140 ms at 10, 193 ms at 100).
The default (``Settings.fetch_max_wait_ms``) is 100; the profiles that need Apache
Kafka use 500, where a long wait costs nothing.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from its_faust.settings import get_settings


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = get_settings().fetch_max_wait_ms  # read by its Fetcher at start()
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
