// ITS Faust dashboard: plain JS, fed by the API's SSE feeds (EventSource reconnects by itself
// and resumes with Last-Event-ID). State the page shows is mirrored on <body data-*> for tests.
"use strict";
const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const state = { camera: null, counts: new Map(), zones: new Map(), zonesLoaded: null, stream: null, alertsPosition: null, cameras: new Set(), names: new Map(), selection: 0,
  activity: new Map(), configs: new Map(), activeAlerts: new Set(), lastFrame: null, silentSince: null, startedAt: new Map(),
  runs: new Map(), camerasReadAt: null, camerasStale: false, workersReadAt: null, reloadDue: null, figuresUnknown: null,
  flowWindows: [] };
// One time format on the whole page (24 h, as the video's overlay and the flow chart's axis).
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hourCycle: "h23" });

// The badge: "system ready" only when the page's feeds are connected and the system is ready (/api/v1/ready:
// a worker doing the work); a page whose feeds are up but whose workers are gone shows nothing new. (It said
// "live", which read as the cameras' state: each camera's is in the list.)
const health = { feeds: null, ready: null };
function renderStatus() {
  const s = $("status");
  let text = "connecting…", cls = "";
  if (health.feeds === false) [text, cls] = ["reconnecting…", "down"];
  else if (health.ready && !health.ready.ok) [text, cls] = [`not ready: ${health.ready.why}`, "warn"];
  else if (health.feeds && health.ready && (health.ready.shed || health.ready.broker || health.ready.lost)) {
    // Ready, but short of capacity: live frames shed lately (a many-cameras trial: the badge said "system ready"
    // while 53-92% of frames were shed, and only the tracked rates showed it), or the embedded broker filling up.
    const parts = ["system ready"];
    if (health.ready.shed) {
      const { frames, cameras } = health.ready.shed;
      parts.push(`${frames} live frames shed lately (${cameras} camera${cameras > 1 ? "s" : ""})`);
    }
    if (health.ready.broker) parts.push(`embedded broker holds ${(health.ready.broker / 1000).toFixed(1)} GB: it slows as it fills`);
    // (the cameras' configurations went with the broker's logs: without this the list was just empty)
    if (health.ready.lost) parts.push("the broker lost its logs: add the cameras again (hover for more)");
    [text, cls] = [parts.join(" · "), "warn"];
  }
  else if (health.feeds) [text, cls] = ["system ready", "live"];
  if (s.textContent !== text) s.textContent = text;  // a status region: rewritten, it is announced again
  s.className = "status " + cls;
  // Feeds down (the API stopped, the network): what the page shows is as of then, not now.
  document.body.classList.toggle("offline", health.feeds === false);
  s.title = health.ready ? health.ready.detail : "";
}

async function loadReady() {
  try {
    const res = await fetch(`${api}/ready`);
    const body = await res.json();
    const why = res.ok ? "" : (String(body.broker).startsWith("reachable") ? `workers ${body.workers}` : `broker ${body.broker}`);
    const shed = Object.values(body.frames_shed || {});
    const frames = shed.reduce((sum, n) => sum + n, 0);
    health.ready = { ok: res.ok, why, detail: JSON.stringify(body), shed: frames ? { frames, cameras: shed.length } : null,
                     broker: (body.warnings || []).length && body.embedded_broker_mb ? body.embedded_broker_mb : null,
                     lost: body.logs_lost_at || null };
  } catch (e) { health.ready = null; }  // the API itself is down: the feeds say so
  renderStatus();
}

// One stream for every feed the page shows (/api/v1/stream): a browser opens at most six connections to
// a host, and a stream per feed, with the live view, left none for the page's requests. Every camera's
// alerts, and the selected camera's tracks, counts, zone figures and events. Its event ids hold each
// feed's position, so EventSource's reconnects resume them all; the alerts' is kept across selections.
const HANDLERS = { alert: onAlert, track: onTracks, count: onCount, "zone-stats": onZoneStats, "camera-event": onCameraEvent };

function openStream(id, positions) {
  if (state.stream) state.stream.close();
  const feeds = ["alerts", ...(id ? ["tracks", "counts", "zone-stats", "camera-events"].map((f) => `${f}:${id}`) : [])];
  const from = Object.entries(positions).filter(([, p]) => p).map(([name, p]) => `${name}=${p}`).join(";");
  const source = new EventSource(`${api}/stream?feeds=${encodeURIComponent(feeds.join(","))}`
    + (from ? `&last_event_id=${encodeURIComponent(from)}` : ""));
  source.onopen = () => {
    health.feeds = true;
    renderStatus();
    if (state.figuresUnknown && state.camera) reloadFigures(state.camera);  // the API is back: its figures now
  };
  source.onerror = () => { health.feeds = false; renderStatus(); };
  const remember = (e) => {
    const part = e.lastEventId.split(";").find((p) => p.startsWith("alerts="));
    if (part) state.alertsPosition = part.slice("alerts=".length);
  };
  for (const name of ["hello", "dropped"]) source.addEventListener(name, remember);
  for (const [name, fn] of Object.entries(HANDLERS)) {
    source.addEventListener(name, (e) => { remember(e); fn(JSON.parse(e.data)); });
  }
  state.stream = source;
}

async function loadCameras() {
  try {
    const [configs, activity] = await Promise.all([fetch(`${api}/cameras`), fetch(`${api}/camera-activity`)]
      .map((p) => p.then((res) => (res.ok ? res.json() : []))));
    for (const c of configs) {
      state.cameras.add(c.camera_id);
      if (c.name && c.name !== c.camera_id) state.names.set(c.camera_id, c.name);
      // A line or zone removed (or added) changes the configuration: the selected camera's tables start again
      // from the API's figures, which hold only what the camera has now (the feeds only ever add rows).
      const before = state.configs.get(c.camera_id);
      state.configs.set(c.camera_id, c);
      const changed = before !== undefined && (before.version !== c.version || state.reloadDue === c.camera_id);
      if (c.camera_id === state.camera && changed) reloadFigures(c.camera_id);
    }
    state.activity = new Map(activity.map((a) => [a.camera_id, a]));
    for (const a of activity) state.cameras.add(a.camera_id);
    [state.camerasReadAt, state.camerasStale] = [Date.now() / 1000, false];
  } catch (e) { state.camerasStale = true; }  // the last list stays, marked as of when it was read
  renderCameras();
}

// A list the API no longer answers for: as of when it was last read.
function staleNote(readAt) {
  const note = document.createElement("li");
  note.className = "muted stale-note";
  note.textContent = `as of ${clock(readAt)}: the API does not answer`;
  return note;
}

function reloadFigures(id) {
  const current = () => id === state.camera;
  const again = () => { state.reloadDue = id; };  // at the next look at the cameras
  state.reloadDue = null;
  Promise.all([loadCounts(id, current, true), loadZones(id, current, true)]).then((loaded) => {
    if (loaded.includes(false)) return again();
    if (!current()) return;
    state.figuresUnknown = null;
    state.zonesLoaded = id;
    renderCounts();
    renderZones();
    loadHistory();
  }, again);
}

// What each camera is doing, at a glance: live (a frame tracked in the last 10 s; shedding: only some of its frames),
// untracked (its frames come, no worker tracks them), stopped, no frames yet, or unknown (the broker does not answer).
function cameraLine(a) {
  const alerts = a && a.alerts_active ? ` · ${a.alerts_active} alert${a.alerts_active > 1 ? "s" : ""}` : "";
  if (a && a.state === "removed") return ["removed", `removed: its frames are refused${alerts}`];
  if (a && a.state === "unknown") {  // (it read "no frames for 40 s" while the broker was away: it may be live)
    const last = a.last_frame_age_s === null ? "" : `; last frame ${ago(a.last_frame_age_s)} ago`;
    return ["unknown", `not known now: the broker does not answer${last}${alerts}`];
  }
  if (a && a.state === "untracked") {
    const since = a.last_frame_age_s === null ? "none tracked yet" : `none tracked for ${ago(a.last_frame_age_s)}`;
    return ["untracked", `frames arriving, ${since}${alerts}`];
  }
  if (!a || a.last_frame_age_s === null) return ["idle", `no frames yet${alerts}`];
  const shed = a.frames_shed_lately ? ` · ${a.frames_shed_lately} frames shed lately` : "";
  if (a.live) return [shed ? "live shedding" : "live", `${a.objects} in view${shed}${alerts}`];
  return ["stopped", `no frames for ${ago(a.last_frame_age_s)}${alerts}`];
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function renderCameras() {
  const ul = $("cameras");
  // The list is rebuilt every 5 s: the camera a keyboard user is on keeps the focus.
  const focused = ul.contains(document.activeElement) ? document.activeElement.closest("li").dataset.camera : null;
  ul.innerHTML = "";
  if (state.camerasStale && state.camerasReadAt) ul.append(staleNote(state.camerasReadAt));
  if (!state.cameras.size) { ul.innerHTML += '<li class="muted">none yet</li>'; return; }
  for (const id of [...state.cameras].sort()) {
    const li = document.createElement("li");
    const pick = document.createElement("button");
    pick.type = "button";
    const [kind, doing] = cameraLine(state.activity.get(id));
    pick.textContent = id;
    if (state.names.has(id)) {
      const name = document.createElement("span");
      name.className = "muted";
      name.textContent = ` ${state.names.get(id)}`;
      pick.append(name);
    }
    const line = document.createElement("small");
    line.textContent = doing;
    pick.append(document.createElement("br"), line);
    if (id === state.camera) pick.setAttribute("aria-current", "true");
    li.append(pick);
    li.dataset.camera = id;
    li.className = `camera ${kind}` + (id === state.camera ? " selected" : "")
      + ((state.activity.get(id) || {}).alerts_active ? " alerting" : "");
    pick.onclick = () => select(id);
    ul.appendChild(li);
    if (id === focused) pick.focus();
  }
  if (!state.camera) select(firstCamera());
}

// The camera the page opens on: the one in its address (?camera=, kept as the operator chooses: a reload or a
// bookmark comes back to it), else a live one, else the first; a removed one last.
function firstCamera() {
  const asked = new URLSearchParams(location.search).get("camera");
  const ids = [...state.cameras].sort();
  if (asked && state.cameras.has(asked)) return asked;
  const doing = (id) => state.activity.get(id) || {};
  const kept = ids.filter((id) => doing(id).state !== "removed");
  return kept.find((id) => doing(id).live) || kept[0] || ids[0];
}

function select(id) {
  if (id === state.camera) return;
  state.camera = id;
  state.flowWindows = [];  // the last camera's, until this one's history is loaded
  const url = new URL(location.href);
  url.searchParams.set("camera", id);
  history.replaceState(null, "", url);
  // What a load started for an earlier selection brings back is dropped (clicking A, B, A quickly
  // must not show A's events twice, nor open a feed for B while A is shown).
  const selection = ++state.selection;
  const current = () => selection === state.selection;
  if (state.stream) state.stream.close();  // the last camera's feeds; the alerts go on from their position
  state.figuresUnknown = null;  // (the last camera's)
  state.counts.clear();
  renderCounts();
  state.zones.clear();
  renderZones();
  document.body.dataset.camera = id;
  $("camera-title").textContent = `Live view: ${id}` + (state.names.has(id) ? ` (${state.names.get(id)})` : "");
  const activity = state.activity.get(id);
  state.silentSince = activity && activity.last_frame_age_s !== null && !activity.live
    ? Date.now() / 1000 - activity.last_frame_age_s : null;
  $("in-view").textContent = state.silentSince ? silence() : "waiting for this camera's frames…";
  // The last camera's picture stays in the <img> until this one's first frame comes (a camera with none
  // would show another's): hidden until then.
  state.lastFrame = null;
  $("view").classList.add("waiting");
  $("view").classList.remove("stale");
  $("live").src = `${api}/cameras/${encodeURIComponent(id)}/live.mjpg`;
  [...$("cameras").children].forEach((li) => {
    li.classList.toggle("selected", li.dataset.camera === id);
    const pick = li.querySelector("button");
    if (!pick) return;
    if (li.dataset.camera === id) pick.setAttribute("aria-current", "true");  // an empty aria-current reads as false
    else pick.removeAttribute("aria-current");
  });
  loadHistory();
  $("camera-events").innerHTML = '<li class="muted">no events</li>';
  $("camera-events-title").textContent = `Camera events: ${id}`;
  document.body.dataset.cameraEvents = "0";
  const unknown = () => { if (current()) state.figuresUnknown = Date.now() / 1000; };
  Promise.all([loadCounts(id, current).catch(unknown), loadZones(id, current).catch(unknown),
               loadCameraEvents(id, current).catch(() => null)]).then(([, , eventsPosition]) => {
    if (!current()) return;
    state.zonesLoaded = id;  // from now on, no zone listed is "no zones", not "loading…"
    renderCounts();
    renderZones();
    // The camera's events go on exactly where the list ended (X-Feed-Position): none lost or shown twice.
    openStream(id, { alerts: state.alertsPosition, [`camera-events:${id}`]: eventsPosition });
  });
}

async function loadCounts(id, current, afresh = false) {
  const res = await fetch(`${api}/cameras/${encodeURIComponent(id)}/counts`);
  if (afresh && !res.ok) return false;  // the figures shown stay until the API answers (reloadFigures tries again)
  const counts = res.ok ? (await res.json()).counts : [];
  if (!current()) return;
  if (afresh) { state.counts.clear(); renderCounts(); }
  for (const u of counts) onCount(u);
}

let framesSeen = 0;
function onTracks(t) {
  framesSeen += 1;
  if (t.camera_id !== state.camera) return;
  // The camera's scene clock (a file's own time), as of now: what "this minute" means for its figures.
  state.lastFrame = { scene: t.scene_time ?? t.captured_at, wall: Date.now() / 1000 };
  state.silentSince = null;
  $("view").classList.remove("waiting", "stale");
  const labels = {};
  for (const o of t.objects) labels[o.label] = (labels[o.label] || 0) + 1;
  const text = Object.entries(labels).map(([k, v]) => `${v} ${v > 1 ? plural(k) : k}`).join(", ") || "nothing";
  const at = clock(t.scene_time ?? t.captured_at);
  $("in-view").textContent = `in view: ${text}  (${at}, ${t.objects.length} tracks)`;
  document.body.dataset.tracks = String(t.objects.length);
  document.body.dataset.trackFrames = String(framesSeen);
}

const PLURALS = { person: "people", bus: "buses" };
const plural = (label) => PLURALS[label] || `${label}s`;

// Why the selected camera sends no frames, as far as the page knows: its camera said it finished, or not.
function silence() {
  const run = state.runs.get(state.camera);
  const why = run && run.kind === "finished" ? `the camera stopped at ${clock(run.at)}`
    : "the camera stopped, or the pipeline is behind (see its events)";
  return `no frames since ${clock(state.silentSince)}: ${why}`;
}

function onCount(u) {
  if (u.camera_id !== state.camera) return;
  const key = `${u.line}|${u.direction}|${u.label}`;
  const known = state.counts.get(key);
  const version = u.line_version || 0;
  if (known && ((known.line_version || 0) > version || ((known.line_version || 0) === version && known.total > u.total))) return;
  // The line was added again: what it counted before is not its count now.
  for (const [k, v] of state.counts) if (v.line === u.line && (v.line_version || 0) < version) state.counts.delete(k);
  state.counts.set(key, u);
  renderCounts();
  scheduleHistory();
}

// A table row of [text, class] cells. Text, not HTML: any Kafka client may write the topics the page shows.
function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

// The API did not answer when the camera was chosen: its figures are unknown, not 0 (nor "no zones").
function unknownFigures(body) {
  if (!state.figuresUnknown) return false;
  body.innerHTML = "";
  body.appendChild(row([[`unknown: the API did not answer at ${clock(state.figuresUnknown)}`, "muted"]]));
  body.firstChild.firstChild.colSpan = 6;
  return true;
}

function renderCounts() {
  const body = $("counts").querySelector("tbody");
  if (unknownFigures(body)) return;
  body.innerHTML = "";
  let total = 0;
  // A row's minute is that of its last update: one before the camera's current minute had nothing since.
  const newest = currentMinute();
  // By line, then direction, then class (one string of the three interleaved 'y120' and 'Y120', 'l' and 'li').
  const order = (a, b) => a.line.localeCompare(b.line) || a.direction.localeCompare(b.direction)
    || a.label.localeCompare(b.label);
  for (const u of [...state.counts.values()].sort(order)) {
    total += u.total;
    const current = u.minute.start >= newest;
    const speed = current && u.minute.speed ? u.minute.speed.mean_kmh.toFixed(0) : "–";
    body.appendChild(row([[u.line, ""], [`${u.direction} ${travel(u.line, u.direction)}`, ""], [u.label, ""], [u.total, "num"],
                          [current ? u.minute.count : 0, "num"], [speed, "num"]]));
  }
  // The camera's lines that have counted nothing yet are listed too, at 0 (none at all: say how to add one).
  const config = state.configs.get(state.camera);
  const counting = new Set([...state.counts.values()].map((u) => u.line));
  for (const line of config ? config.lines : []) {
    if (!counting.has(line.name)) body.appendChild(row([[line.name, ""], ["no crossings yet", "muted"], ["", ""], [0, "num"], [0, "num"], ["–", "num"]]));
  }
  if (!body.children.length) {
    body.innerHTML = config && !config.lines.length
      ? '<tr><td colspan="6" class="muted">no counting lines: <code>its-faust cameras add-line</code> adds one</td></tr>'
      : '<tr><td colspan="6" class="muted">no crossings yet</td></tr>';
  } else if (config && !config.calibration) {
    body.appendChild(row([["no calibration, so no speeds: its-faust cameras calibrate sets one", "muted"]]));
    body.lastChild.firstChild.colSpan = 6;
  }
  document.body.dataset.countTotal = String(total);
}

// Which way on screen a line's "in" (or "out") is: "in" crosses from the left of the line, as drawn from its
// first end to its second, to its right (y grows downwards): a line drawn left to right counts downward motion.
const ARROWS = ["→", "↘", "↓", "↙", "←", "↖", "↑", "↗"];
function travel(name, direction) {
  const config = state.configs.get(state.camera);
  const line = config && config.lines.find((l) => l.name === name);
  if (!line) return "";
  const [dx, dy] = [line.x2 - line.x1, line.y2 - line.y1];
  const [nx, ny] = direction === "in" ? [-dy, dx] : [dy, -dx];
  const octant = Math.round(Math.atan2(ny, nx) / (Math.PI / 4));
  return ARROWS[(octant + 8) % 8];
}

// The start of the selected camera's current minute, by its scene clock: a file's own time advanced by the
// wall clock since its last frame (a stopped camera's minute moves on); before any frame, the wall clock.
function currentMinute() {
  const f = state.lastFrame;
  const now = f ? f.scene + (Date.now() / 1000 - f.wall) : Date.now() / 1000;
  return Math.floor(now / 60) * 60;
}

async function loadZones(id, current, afresh = false) {
  const res = await fetch(`${api}/cameras/${encodeURIComponent(id)}/zone-stats`);
  if (afresh && !res.ok) return false;
  const { zones, idle } = res.ok ? await res.json() : { zones: [], idle: [] };
  if (!current()) return;
  if (afresh) { state.zones.clear(); renderZones(); }
  // A zone no vehicle has entered yet is shown too, empty (its first event replaces this).
  for (const zone of idle) {
    if (!state.zones.has(zone)) state.zones.set(zone, { zone, camera_id: id, occupancy: 0, entries: 0, exits: 0, minute: null, captured_at: -Infinity });
  }
  for (const z of zones) onZoneStats(z);
}

function onZoneStats(z) {
  if (z.camera_id !== state.camera) return;
  const known = state.zones.get(z.zone);
  // The list and the feed may both bring it; and a zone added again (a higher zone_version) starts afresh:
  // the figures of its earlier adding (its last exits, late) do not replace the new ones.
  const version = z.zone_version || 0, knownVersion = known ? known.zone_version || 0 : -1;
  if (known && (knownVersion > version || (knownVersion === version && known.captured_at > z.captured_at))) return;
  state.zones.set(z.zone, z);
  renderZones();
}

function renderZones() {
  const body = $("zones").querySelector("tbody");
  if (unknownFigures(body)) return;
  body.innerHTML = "";
  if (!state.zones.size) {
    const text = state.zonesLoaded === state.camera ? "no zones" : "loading…";
    body.innerHTML = `<tr><td colspan="6" class="muted">${text}</td></tr>`;
  }
  let inZones = 0;
  // A zone's minute is that of its last event (in scene time, for a file): one before the current minute had none since.
  const newest = currentMinute();
  for (const z of [...state.zones.values()].sort((a, b) => a.zone.localeCompare(b.zone))) {
    inZones += z.occupancy;
    const current = z.minute != null && z.minute.start >= newest;
    const dwell = current && z.minute.mean_dwell_s != null ? `${z.minute.mean_dwell_s.toFixed(1)} s` : "–";
    const speed = current && z.minute.speed ? z.minute.speed.mean_kmh.toFixed(0) : "–";
    body.appendChild(row([[z.zone, ""], [z.occupancy, "num"], [z.entries, "num"], [z.exits, "num"], [dwell, "num"], [speed, "num"]]));
  }
  document.body.dataset.zoneOccupancy = String(inZones);
  document.body.dataset.zones = String(state.zones.size);
}

let historyTimer = null;
function scheduleHistory() { if (!historyTimer) historyTimer = setTimeout(() => { historyTimer = null; loadHistory(); }, 1000); }

async function loadHistory() {
  const id = state.camera;
  if (!id) return;
  let windows;
  try {
    const res = await fetch(`${api}/cameras/${encodeURIComponent(id)}/counts/history?window=1m`);
    if (!res.ok) throw new Error(res.status);
    windows = await res.json();
  } catch (e) {
    if (id === state.camera) {  // the API does not answer: unknown, not an empty chart
      state.flowWindows = null;
      drawFlow(null);
    }
    return;
  }
  if (id === state.camera) {  // another camera selected meanwhile: its own load draws it
    state.flowWindows = windows;
    drawFlow(windows);
  }
}

// The flow chart counts one line (vehicles over it), or every line's crossings together: a vehicle crossing two
// lines on one road is in both, which read as twice the traffic. One line is chosen unless the user picks "all".
function flowLines(windows) {
  const select = $("flow-line");
  const lines = [...new Set(windows.flatMap((w) => w.counts.map((c) => c.line)))].sort();
  const options = [...lines, ""];
  if (select.dataset.camera !== state.camera) delete select.dataset.picked;  // another camera: its first line
  const picked = select.dataset.picked;  // what the user chose, while it is there to choose
  const chosen = picked !== undefined && options.includes(picked) ? picked : (lines[0] ?? "");
  if (select.dataset.options !== options.join("\n") || select.dataset.camera !== state.camera) {
    select.replaceChildren(...options.map((line) => {
      const o = document.createElement("option");
      o.value = line;
      o.textContent = line ? `line ${line}` : "all lines (crossings)";
      return o;
    }));
    select.dataset.options = options.join("\n");
    select.dataset.camera = state.camera;
  }
  select.value = chosen;
  select.hidden = lines.length < 2;  // one line (or none): nothing to choose
  return chosen;
}

const FLOW_MINUTES = 30;
const FLOW_HEIGHT = 160;  // CSS pixels

// The canvas drawn at the size it is shown, in CSS pixels: drawn at 640 wide and scaled to a phone's 340, its
// labels were 6 px high, unreadable (an accessibility check).
function fitCanvas(canvas, height) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640;
  const [w, h] = [Math.round(width * ratio), Math.round(height * ratio)];
  if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  return [g, width, height];
}

function drawFlow(windows) {
  const canvas = $("flow");
  const [g, width, height] = fitCanvas(canvas, FLOW_HEIGHT);
  if (windows === null) {
    g.font = "11px system-ui"; g.fillStyle = "#9aa4b2";
    g.fillText(`${state.camera}: crossings per minute unknown: the API does not answer`, 6, 14);
    return;
  }
  const line = flowLines(windows);
  // The last 30 minutes by the clock, to the newest window: a minute with no crossing is a 0 bar, not left out.
  const newest = windows.length ? windows[windows.length - 1].start : 0;
  const minutes = Array.from({ length: FLOW_MINUTES }, (_, i) => ({ start: newest - (FLOW_MINUTES - 1 - i) * 60, n: 0, shed: 0 }));
  for (const w of windows) {
    const i = FLOW_MINUTES - 1 - Math.round((newest - w.start) / 60);
    if (i < 0) continue;
    minutes[i].n = w.counts.filter((c) => !line || c.line === line).reduce((s, c) => s + c.count, 0);
    minutes[i].shed = w.frames_shed || 0;
  }
  const max = Math.max(1, ...minutes.map((m) => m.n));
  const barW = width / FLOW_MINUTES;
  g.font = "11px system-ui"; g.fillStyle = "#9aa4b2";
  // Over one line, vehicles; over all, crossings: one that crosses two lines is in both.
  const what = line ? `crossings per minute over line ${line}, both directions` : "crossings per minute, all lines";
  g.fillText(`${state.camera}: ${what}` + (windows.length ? ` (max ${max})` : ""), 6, 14);
  canvas.setAttribute("aria-label", `${state.camera}: ${what}, last ${FLOW_MINUTES} minutes: `
    + (windows.length ? `this minute ${minutes[FLOW_MINUTES - 1].n}, most ${max}` : "no crossings yet"));
  if (!windows.length) g.fillText("no crossings yet", 6, 30);
  minutes.forEach((m, i) => {
    const h = (height - 30) * m.n / max;
    g.fillStyle = m.shed ? "#f5a524" : "#3e8ed0";  // amber: frames were shed, the count is short
    g.fillRect(i * barW + 2, height - 12 - h, barW - 4, Math.max(h, m.shed ? 2 : 0));
    g.fillStyle = "#9aa4b2";
    const t = new Date(m.start * 1000);
    if (windows.length && (FLOW_MINUTES - 1 - i) % 5 === 0) {
      const last = i === FLOW_MINUTES - 1;  // the current minute's label ends at the edge, not past it
      g.textAlign = last ? "right" : "left";
      g.fillText(`${t.getHours()}:${String(t.getMinutes()).padStart(2, "0")}`, last ? width - 2 : i * barW + 2, height - 1);
      g.textAlign = "left";
    }
  });
  const shed = minutes.filter((m) => m.shed);
  $("flow-note").textContent = shed.length
    ? `amber: in ${shed.length} of these minutes the workers shed ${shed.reduce((s, m) => s + m.shed, 0)} live frames they `
      + "reached too late (the machine fell behind): those minutes' counts are short" : "";
  document.body.dataset.flowWindows = String(windows.length);
  document.body.dataset.flowLine = line;
  document.body.dataset.shedMinutes = String(shed.length);
}

function onAlert(a, announce = true) {
  const ul = $("alerts");
  if (ul.firstElementChild && ul.firstElementChild.classList.contains("muted")) ul.innerHTML = "";
  state.cameras.add(a.camera_id);
  const li = document.createElement("li");
  li.className = `${a.severity} ${a.state}`;
  li.dataset.alert = a.alert_id;
  const when = clock(a.captured_at);
  // A raised alert stays bright while it is active; its entry dims once it has cleared.
  if (a.state === "raised") {
    state.activeAlerts.add(a.alert_id);
    if (announce) announceAlert(a);
  } else state.activeAlerts.delete(a.alert_id);
  const snap = `${api}/cameras/${encodeURIComponent(a.camera_id)}/snapshot.jpg?seq=${a.snapshot.seq}`;
  // Text, not HTML: any Kafka client may write the alerts topic.
  const title = document.createElement("strong");
  title.textContent = a.kind.replaceAll("_", " ");
  const link = document.createElement("a");
  link.href = snap;
  link.target = "_blank";
  link.textContent = "snapshot";
  link.setAttribute("aria-label", `snapshot: ${a.message}, ${when}`);
  li.append(title, ` ${a.state} · ${a.severity} · ${a.camera_id} · ${when}`, document.createElement("br"), `${a.message} `, link);
  ul.prepend(li);
  while (ul.children.length > 100) ul.lastElementChild.remove();
  document.body.dataset.alerts = String(ul.children.length);
  renderActiveAlerts();
}

// Raised alerts are announced to screen readers from a hidden live region: the first at once, those that follow
// within ANNOUNCE_EVERY_MS together. The list itself, a live region, had announced each entry of a storm (and of
// the backlog a page opens with, which is not announced now) one by one for minutes.
const ANNOUNCE_EVERY_MS = 5000;
const announcing = { pending: [], timer: null };

function announceAlert(a) {
  announcing.pending.push(a);
  if (announcing.timer === null) flushAnnouncements();
}

function flushAnnouncements() {
  const raised = announcing.pending;
  announcing.pending = [];
  announcing.timer = raised.length ? setTimeout(flushAnnouncements, ANNOUNCE_EVERY_MS) : null;
  if (!raised.length) return;
  const latest = raised[raised.length - 1];
  const said = `${latest.severity} alert, ${latest.kind.replaceAll("_", " ")}, ${latest.camera_id}: ${latest.message}`;
  const critical = raised.filter((a) => a.severity === "critical").length;
  const region = $("alerts-announcer");
  region.textContent = "";  // emptied first: the same words as the last time are announced again
  setTimeout(() => {
    region.textContent = raised.length === 1 ? said
      : `${raised.length} new alerts${critical ? `, ${critical} critical` : ""}; the latest: ${said}`;
  }, 100);
}

function renderActiveAlerts() {
  for (const li of $("alerts").querySelectorAll("li.raised")) li.classList.toggle("over", !state.activeAlerts.has(li.dataset.alert));
  const n = state.activeAlerts.size;
  $("alerts-title").textContent = n ? `Alerts · ${n} active` : "Alerts · none active";
  document.body.dataset.activeAlerts = String(n);
}

// What happened to the selected camera's stream: a problem (frames rejected, stream lost) stands out.
const CAMERA_PROBLEMS = new Set(["frame_rejected", "records_rejected", "stream_lost", "gave_up", "frames_shed", "seqs_behind",
  "tracks_restarted", "clock_ahead"]);

async function loadCameraEvents(id, current) {
  const res = await fetch(`${api}/cameras/${encodeURIComponent(id)}/events?limit=20`);
  if (!res.ok) return null;
  const events = await res.json();
  if (current()) for (const e of events.reverse()) onCameraEvent(e);
  return res.headers.get("X-Feed-Position");
}

function onCameraEvent(e) {
  if (e.camera_id !== state.camera) return;
  const ul = $("camera-events");
  if (ul.firstElementChild && ul.firstElementChild.classList.contains("muted")) ul.innerHTML = "";
  const li = document.createElement("li");
  if (e.kind === "started") state.startedAt.set(e.camera_id, e.at);
  if (e.kind === "started" || e.kind === "finished") {
    state.runs.set(e.camera_id, e);
    if (state.silentSince) $("in-view").textContent = silence();
  }
  // A camera that starts again restarts its tracks (the gap since its last run): expected, not a fault.
  const restarted = e.kind === "tracks_restarted" && e.at - (state.startedAt.get(e.camera_id) ?? -Infinity) < 60;
  li.className = CAMERA_PROBLEMS.has(e.kind) && !restarted ? "warning" : "info";
  const title = document.createElement("strong");
  title.textContent = e.kind.replaceAll("_", " ");
  if (li.className === "warning") li.append("⚠ problem: ");  // not the border's colour alone
  li.append(title, ` · ${clock(e.at)}`);
  if (restarted) li.append(" (the camera started again)");
  if (e.reason) li.append(document.createElement("br"), e.reason);  // text, not HTML: reasons carry source URLs
  ul.prepend(li);
  while (ul.children.length > 50) ul.lastElementChild.remove();
  document.body.dataset.cameraEvents = String(ul.children.length);
  document.body.dataset.lastCameraEvent = e.kind;
  if (e.frames_shed) scheduleHistory();  // the flow chart marks the minute
}

// The workers as they report themselves: a gone one (silent: killed, cut off, frozen) stands out.
async function loadWorkers() {
  let listed;
  const ul = $("workers");
  try {
    const res = await fetch(`${api}/workers`);
    if (!res.ok) throw new Error(res.status);
    listed = (await res.json()).workers;
  } catch (e) {
    // The last list stays, marked as of when it was read: a worker shown running may have stopped since.
    if (!ul.querySelector(".stale-note") && state.workersReadAt) ul.prepend(staleNote(state.workersReadAt));
    return;
  }
  state.workersReadAt = Date.now() / 1000;
  ul.innerHTML = "";
  if (!listed.length) ul.innerHTML = '<li class="muted">none reporting</li>';
  for (const w of listed) {
    const li = document.createElement("li");
    li.className = `worker ${w.state}`;
    li.dataset.worker = w.worker;
    const title = document.createElement("strong");
    title.textContent = w.worker;
    const doing = w.state === "running" || w.state === "recovering"
      ? `${w.fps.toFixed(1)} fps · partitions ${w.partitions.join(", ") || "none"}`
        + (w.frames_waiting ? ` · ${w.frames_waiting} frames waiting` : "")
      : `${w.state === "gone" ? "silent" : "stopped"} ${Math.round(w.reported_s_ago)} s ago`;
    li.append(title, document.createElement("br"), `${w.state} · ${doing}`);
    ul.appendChild(li);
  }
  document.body.dataset.workersRunning = String(listed.filter((w) => w.state === "running").length);
}

// Alerts raised before the page opened; the stream goes on from exactly there (X-Feed-Position).
async function loadAlerts() {
  try {
    const res = await fetch(`${api}/alerts?limit=100`);
    if (res.ok) {
      const { recent, active } = await res.json();
      for (const a of recent) onAlert(a, false);  // (the backlog: listed, not announced)
      state.activeAlerts = new Set(active.map((a) => a.alert_id));  // the API's word (a silent camera's are over)
      renderActiveAlerts();
      state.alertsPosition = res.headers.get("X-Feed-Position");
    }
  } catch (e) { /* the stream alone, from now on */ }
}

// The alerts listed first, then the cameras: the stream the first selection opens goes on from the list.
loadAlerts().then(loadCameras).then(() => {
  if (!state.camera) openStream(null, { alerts: state.alertsPosition });
  setInterval(loadCameras, 5000);
});
loadWorkers();
loadReady();
// Drawn again at its new size when it is shown at another (a window resized, a phone turned, shown after hidden).
new ResizeObserver(() => { if (state.camera) drawFlow(state.flowWindows); }).observe($("flow"));
$("flow-line").addEventListener("change", (e) => {
  e.target.dataset.picked = e.target.value;
  drawFlow(state.flowWindows);
});
setInterval(loadWorkers, 5000);
setInterval(loadReady, 5000);
setInterval(watchTheClock, 1000);

// The selected camera's picture and figures as time passes without its frames.
let ticks = 0;
function watchTheClock() {
  const f = state.lastFrame;
  if (f && Date.now() / 1000 - f.wall > 10 && !$("view").classList.contains("stale")) {
    $("view").classList.add("stale");
    state.silentSince = f.wall;
    $("in-view").textContent = silence();
  }
  if (++ticks % 5 === 0) { renderCounts(); renderZones(); }  // "this minute" moves on
}
