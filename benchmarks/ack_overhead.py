"""What acknowledging after delivery costs per event (its_faust/delivery.py), against acknowledging at once.

Until 2026-12-06 the stateless stages acknowledged an event as soon as its records were
handed to the producer; now an ``Acknowledger`` waits, in order, for their deliveries. This
times both on the event loop's CPU, with records delivered 2 ms after they are sent (the
producer's linger), in the same run: the difference is what each stage pays per event.

    .venv/bin/python benchmarks/ack_overhead.py --out benchmarks/results/ack-overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from its_faust.delivery import Acknowledger  # noqa: E402

DELIVERED_AFTER_S = 0.002


class _Stream:
    def __init__(self):
        self.acked = 0

    async def ack(self, event) -> None:
        self.acked += 1


class _Topic:
    def get_topic_name(self) -> str:
        return "its.detections"

    async def send(self, key=None, value=None, timestamp=None):
        loop = asyncio.get_running_loop()
        delivery = loop.create_future()
        loop.call_later(DELIVERED_AFTER_S, delivery.set_result, None)
        return delivery


def _events(n: int) -> list:
    return [SimpleNamespace(key=b"cam", message=SimpleNamespace(topic="its.frames", partition=0, offset=i)) for i in range(n)]


async def _at_once(n: int) -> float:
    stream, topic, events = _Stream(), _Topic(), _events(n)
    start = time.process_time()
    for event in events:
        await topic.send(event.key, b"{}")
        await stream.ack(event)
    await asyncio.sleep(2 * DELIVERED_AFTER_S)
    return time.process_time() - start


async def _after_delivery(n: int) -> float:
    stream, topic, events = _Stream(), _Topic(), _events(n)
    start = time.process_time()
    async with Acknowledger(stream, "bench") as acks:
        for event in events:
            await acks.send(event, topic, b"{}")
            acks.done(event)
        while stream.acked < n:
            await asyncio.sleep(0.001)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each; the medians are given")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    at_once, after = [], []
    for _ in range(args.rounds):
        at_once.append(asyncio.run(_at_once(args.events)) / args.events * 1e6)
        after.append(asyncio.run(_after_delivery(args.events)) / args.events * 1e6)
    figures = {
        "events": args.events, "rounds": args.rounds, "delivered_after_ms": DELIVERED_AFTER_S * 1000,
        "cpu_us_per_event_acked_at_once": round(statistics.median(at_once), 2),
        "cpu_us_per_event_acked_after_delivery": round(statistics.median(after), 2),
    }
    figures["cpu_us_per_event_added"] = round(figures["cpu_us_per_event_acked_after_delivery"]
                                              - figures["cpu_us_per_event_acked_at_once"], 2)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
