"""The dashboard in a real browser: headless Chromium against a running pipeline and API.

Chromium is driven over the DevTools protocol: it loads the page, the page
subscribes to the SSE feeds by itself, a clip goes through the pipeline, and
the test waits until the page shows live counts, tracks and the camera's events; then it saves a
screenshot (artifacts/dashboard.png).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from its_faust.broker import free_port
from its_faust.cameras import CameraSetup, command, parse_line, send_commands
from its_faust.pipeline import analyze_source, configure_camera
from its_faust.topic_names import ALERTS, CAMERA_EVENTS
from schemas.camera_events import CameraEvent
from schemas.control import RemoveLine
from schemas.geometry import Zone
from .test_api import alert, produce

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed here (.ci/run installs it)", allow_module_level=True)


class DevTools:
    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            try:  # a browser that stopped answering fails the test, rather than hanging it
                reply = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            except asyncio.TimeoutError:
                raise TimeoutError(f"{method}: no reply from Chromium in 60 s") from None
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def value(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


def test_dashboard_shows_live_counts_and_tracks(stack, api, clip_path, tmp_path):
    import websockets

    assert CHROMIUM, "chromium is not installed (.ci/run installs Debian's chromium)"
    camera = "browser-cam"
    port = free_port()
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1250",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "chromium.log", "wb"),
    )

    setup = CameraSetup(lines=[parse_line("140,120,620,120:y120")],
                        zones=[Zone(name="near-road", points=[(0, 200), (640, 200), (640, 360), (0, 360)])])

    async def go():
        await configure_camera(stack, camera, setup)
        # An alert raised before the page opens; the page lists it, then takes the feed from there on.
        await produce(stack.bootstrap, stack.settings.topic(ALERTS), [alert("zz-alerts-cam", 1)])
        for _ in range(100):
            try:
                pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                page = next(p for p in pages if p["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration, ValueError):
                await asyncio.sleep(0.2)
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=32 << 20) as ws:
            tools = DevTools(ws)
            await tools.call("Page.enable")
            await tools.call("Page.navigate", url=f"{api.base}/")
            for _ in range(100):  # the page finds the camera and opens its feeds
                if await tools.value("document.body.dataset.camera") == camera:
                    break
                await asyncio.sleep(0.2)
            for _ in range(50):  # its zone, before any traffic: listed, empty
                idle_zones = await tools.value(
                    "[...document.querySelectorAll('#zones tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent))")
                if idle_zones[0][0] == "near-road":
                    break
                await asyncio.sleep(0.2)
            running = asyncio.create_task(analyze_source(stack, str(clip_path), setup, camera_id=camera, max_frames=150))
            seen = {}
            for _ in range(300):
                seen = await tools.value(
                    "({counts: +(document.body.dataset.countTotal || 0), frames: +(document.body.dataset.trackFrames || 0),"
                    " tracks: +(document.body.dataset.tracks || 0), rows: document.querySelectorAll('#counts tbody td.num').length,"
                    " live: document.getElementById('live').naturalWidth, status: document.getElementById('status').textContent,"
                    f" listed: document.querySelector('#cameras li[data-camera=\"{camera}\"]').className,"
                    # A keyboard user picks a camera with a button (a bare clickable <li> took no focus).
                    f" picked: document.querySelector('#cameras li[data-camera=\"{camera}\"] > button')?.ariaCurrent,"
                    " shown: getComputedStyle(document.getElementById('live')).visibility})"
                )
                if (seen["counts"] >= 1 and seen["frames"] >= 20 and seen["live"] > 0 and seen["status"].startswith("system ready")
                        and "live" in seen["listed"].split()):
                    break
                await asyncio.sleep(0.2)
            # A worker fell behind and shed live frames: the camera is listed live and shedding, the flow chart
            # marks that minute's count as short (below), the badge says the system is short of capacity.
            shed = CameraEvent(camera_id=camera, kind="frames_shed", at=time.time(), reason="40 live frame(s) shed",
                               frames_shed=40)
            await produce(stack.bootstrap, stack.settings.topic(CAMERA_EVENTS), [shed])
            for _ in range(50):  # the page looks at the cameras every 5 s; the camera is live for 10 s after its last frame
                seen["listed shedding"] = await tools.value(
                    f"[...document.querySelectorAll('#cameras li[data-camera=\"{camera}\"]')].map((li) => [li.className, li.textContent])[0]")
                if "shedding" in seen["listed shedding"][0]:
                    break
                await asyncio.sleep(0.2)
            await running
            await asyncio.sleep(1.5)  # let the flow chart and the last counts land
            for _ in range(50):  # the camera's "finished" event, after its "started"
                seen["camera_events"] = await tools.value(
                    "[...document.querySelectorAll('#camera-events li strong')].map((e) => e.textContent)")
                if len(seen["camera_events"]) >= 3:
                    break
                await asyncio.sleep(0.2)
            for _ in range(50):
                seen["flow note"] = await tools.value("document.getElementById('flow-note').textContent")
                if seen["flow note"]:
                    break
                await asyncio.sleep(0.2)
            for _ in range(50):  # the badge: ready, but short of capacity (it reads /api/v1/ready every 5 s)
                seen["status shedding"] = await tools.value(
                    "[document.getElementById('status').textContent, document.getElementById('status').className]")
                if "live frames shed lately" in seen["status shedding"][0]:
                    break
                await asyncio.sleep(0.2)
            # The flow chart counts the camera's one line (vehicles over it), with nothing to choose.
            seen["flow line"] = await tools.value(
                "[document.body.dataset.flowLine, document.getElementById('flow-line').hidden]")
            # Drawn at the size it is shown: at a phone's width its labels stay 11 px (scaled down from 640, 6 px).
            await tools.value("document.getElementById('flow').style.width = '340px'")
            for _ in range(25):  # redrawn by its ResizeObserver, at the next frame
                await asyncio.sleep(0.2)
                seen["flow at 340 px"] = await tools.value(
                    "(() => { const c = document.getElementById('flow');"
                    " return [c.width / devicePixelRatio, c.height / devicePixelRatio, c.clientHeight]; })()")
                if seen["flow at 340 px"][0] == 340:
                    break
            await tools.value("document.getElementById('flow').style.width = ''")
            seen["zones"] = await tools.value(
                "[...document.querySelectorAll('#zones tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent))")
            await produce(stack.bootstrap, stack.settings.topic(ALERTS), [alert("zz-alerts-cam", 2)])
            for _ in range(50):
                seen["alerts"] = await tools.value("[...document.querySelectorAll('#alerts li')].map((li) => li.textContent)")
                if len(seen["alerts"]) >= 2:
                    break
                await asyncio.sleep(0.2)
            seen["alerts title"] = await tools.value("document.getElementById('alerts-title').textContent")
            # The first alert clears: its raised entry is over (dimmed), the count of active ones goes down.
            cleared = alert("zz-alerts-cam", 1).model_copy(update={"state": "cleared"})
            await produce(stack.bootstrap, stack.settings.topic(ALERTS), [cleared])
            for _ in range(50):
                seen["alerts over"] = await tools.value(
                    "[...document.querySelectorAll('#alerts li.raised.over')].map((li) => li.dataset.alert)")
                if seen["alerts over"]:
                    break
                await asyncio.sleep(0.2)
            seen["alerts title after"] = await tools.value("document.getElementById('alerts-title').textContent")
            # Announced to screen readers together, every 5 s at most (the list, a live region, announced each one).
            for _ in range(50):
                seen["announced"] = await tools.value(
                    "[document.getElementById('alerts-announcer').textContent, document.getElementById('alerts').getAttribute('aria-live')]")
                if "test 2" in seen["announced"][0]:
                    break
                await asyncio.sleep(0.2)
            # The camera's line is removed: its rows leave the counts table (the feeds only ever add rows).
            await send_commands(stack.bootstrap, stack.settings, [command(camera, RemoveLine(name="y120"))])
            for _ in range(150):  # the page looks at the cameras' configurations every 5 s
                seen["rows after removal"] = await tools.value("document.querySelectorAll('#counts tbody td.num').length")
                if seen["rows after removal"] == 0:
                    break
                await asyncio.sleep(0.2)
            seen["workers"] = await tools.value(  # the module's one worker, as it reports itself
                "[...document.querySelectorAll('#workers li.worker')].map((li) => li.className + ' ' + li.textContent)")
            seen["idle zones"] = idle_zones
            shot = await tools.call("Page.captureScreenshot", format="png")
            # The API's own docs render with nothing from the internet (Swagger UI served by the API).
            await tools.call("Page.navigate", url=f"{api.base}/docs")
            for _ in range(100):
                seen["docs operations"] = await tools.value("document.querySelectorAll('.opblock').length")
                if seen["docs operations"] >= 20:
                    break
                await asyncio.sleep(0.2)
            return seen, base64.b64decode(shot["data"])

    try:
        seen, png = asyncio.run(go())
    finally:
        browser.terminate()
        browser.wait(10)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(png)
    assert seen["status"].startswith("system ready"), seen
    assert seen["picked"] == "true", seen
    assert seen["docs operations"] >= 20, seen
    assert "the workers shed 40 live frames" in seen["flow note"], seen
    assert "live" in seen["listed shedding"][0].split() and "40 frames shed lately" in seen["listed shedding"][1], seen
    status, status_class = seen["status shedding"]
    assert status.startswith("system ready · ") and "live frames shed lately" in status and "warn" in status_class, seen
    assert seen["flow line"] == ["y120", True], seen
    assert seen["flow at 340 px"] == [340, 160, 160], seen
    assert seen["counts"] >= 1 and seen["rows"] >= 3, seen  # live counts in the table
    assert seen["frames"] >= 20 and seen["live"] == 640, seen  # track updates, and the annotated live view
    # The camera's events, newest first: its start, then its end and the shed report in either order (the camera may
    # have sent its last frame before the page saw it live).
    assert seen["camera_events"][-1] == "started" and sorted(seen["camera_events"][:2]) == ["finished", "frames shed"], seen
    assert seen["idle zones"] == [["near-road", "0", "0", "0", "–", "–"]], seen
    # The zone's row: name, in it now, entries, exits (entries - exits = in it now).
    assert [row[0] for row in seen["zones"]] == ["near-road"], seen
    _, now, entries, exits = seen["zones"][0][:4]
    assert int(entries) >= 2 and int(entries) - int(exits) == int(now), seen
    # Newest first: the one raised while the page was open, then the one from before; each once.
    assert [a.split(" · ")[0] for a in seen["alerts"]] == ["congestion raised"] * 2, seen
    assert "test 2" in seen["alerts"][0] and "test 1" in seen["alerts"][1], seen
    assert seen["alerts title"] == "Alerts · 2 active" and seen["alerts title after"] == "Alerts · 1 active", seen
    assert seen["alerts over"] == ["zz-alerts-cam:test:1"], seen
    # (alert 1, raised before the page opened, is listed but not announced: only alert 2 is new)
    assert seen["announced"] == ["info alert, congestion, zz-alerts-cam: test 2", None], seen
    assert seen["rows after removal"] == 0, seen
    assert seen["shown"] == "visible", seen  # the picture, once the camera's frames came
    assert len(seen["workers"]) == 1 and seen["workers"][0].startswith("worker running"), seen
    every = ", ".join(map(str, range(stack.settings.partitions)))
    assert f"fps · partitions {every}" in seen["workers"][0], seen
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
