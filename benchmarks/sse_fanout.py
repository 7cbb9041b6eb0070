"""SSE fan-out: how many concurrent clients one API process serves with p95 delivery delay under 100 ms.

Starts the embedded broker and one API process, produces track records onto
``its.tracks`` at the pipeline's event rate (``--rate`` per second, default 35,
about what the pipeline tracks on this 2-core CPU; ten objects each, like the
sample clips), and opens N SSE clients on the all-cameras tracks feed from one
asyncio process (raw sockets, so the clients cost little CPU). Each event's
delay is its arrival time at a client minus the time it was produced. N grows
until p95 passes the bound. Figures are printed and written as JSON.

    .venv/bin/python benchmarks/sse_fanout.py --out benchmarks/results/sse-fanout.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.process import ApiProcess  # noqa: E402
from its_faust.codecs import encode  # noqa: E402
from its_faust.pipeline import Stack  # noqa: E402
from its_faust.settings import load_settings  # noqa: E402
from its_faust.topic_names import TRACKS  # noqa: E402
from schemas.tracks import TrackedObject, TrackRecord  # noqa: E402

SENT = re.compile(rb'"tracked_at":([0-9.]+)')


def record(seq: int) -> TrackRecord:
    now = time.time()
    objects = [TrackedObject(track_id=i + 1, x1=10 * i, y1=20, x2=10 * i + 40, y2=60, conf=0.8, cls=2, label="car")
               for i in range(10)]
    return TrackRecord(camera_id="bench-cam", seq=seq, captured_at=now, width=640, height=360, detected_at=now,
                       tracked_at=now, tracker_frame=seq + 1, model="bench", detections=10, worker="bench",
                       objects=objects)


async def client(port: int, delays: list[float], ready: asyncio.Event, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/v1/tracks/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    ready.set()
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                found = SENT.search(line)
                if found:
                    delays.append(time.time() - float(found.group(1)))
    finally:
        writer.close()


async def one_level(bootstrap: str, topic: str, port: int, clients: int, rate: float, seconds: float) -> dict:
    delays: list[float] = []
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(client(port, delays, r, stop)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(1.0)  # every client past its hello
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        await producer.send(topic, key=b"bench-cam", value=encode(record(sent)))
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    await producer.flush()
    await asyncio.sleep(2.0)  # let the tail arrive
    stop.set()
    await producer.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    d = np.array(delays) * 1000 if delays else np.zeros(1)
    expected = sent * clients
    return {"clients": clients, "events_sent": sent, "deliveries": len(delays), "delivered_share": round(len(delays) / expected, 4),
            "p50_ms": round(float(np.percentile(d, 50)), 1), "p95_ms": round(float(np.percentile(d, 95)), 1),
            "p99_ms": round(float(np.percentile(d, 99)), 1), "max_ms": round(float(d.max()), 1)}


async def main(args) -> dict:
    settings = load_settings()
    levels = [int(x) for x in args.clients.split(",")]
    results = []
    async with Stack(settings, workers=0) as stack:
        api = ApiProcess(stack.broker_url, stack.workdir / "api.log").start()
        try:
            for n in levels:
                row = await one_level(stack.bootstrap, settings.topic(TRACKS), api.port, n, args.rate, args.seconds)
                row["api_rss_mb"] = round(api.rss_mb(), 1)
                results.append(row)
                print(json.dumps(row), flush=True)
                if row["p95_ms"] > args.bound_ms or row["delivered_share"] < 0.999:
                    break
        finally:
            api.stop()
    ok = [r for r in results if r["p95_ms"] <= args.bound_ms and r["delivered_share"] >= 0.999]
    return {
        "what": f"SSE fan-out of one API process: concurrent clients on the all-cameras tracks feed at {args.rate:g} "
                f"events/s (10-object track records), p95 delivery delay bound {args.bound_ms:g} ms; clients in one "
                "asyncio process on the same machine",
        "machine": "2-core CPU, no GPU",
        "levels": results,
        "max_clients_within_bound": max((r["clients"] for r in ok), default=0),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=35.0, help="Events per second produced")
    parser.add_argument("--clients", default="10,50,100,200,400,800,1600", help="Client counts to try, in order")
    parser.add_argument("--seconds", type=float, default=8.0, help="Producing time per level")
    parser.add_argument("--bound-ms", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sse-fanout.json"))
    args = parser.parse_args()
    result = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"max_clients_within_bound": result["max_clients_within_bound"]}))
