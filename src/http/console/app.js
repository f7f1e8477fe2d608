// sse-bridge console: lists the routes, and shows one route's events live. The stream is
// read with the bridge's own client (/client/sse-bridge-client.js): fetch streaming, so
// every event name and every heartbeat id shows and the token goes in an Authorization
// header; it reconnects after any error with Last-Event-ID.
import { connect as subscribe } from "/client/sse-bridge-client.js";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 500;
let routes = [];
let last = new Map(); // route -> {records, at} for events/s
let current = null; // {route, sub, lastId, paused, count, series}

const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("sse-bridge-token") || "";
tokenInput.addEventListener("change", () => {
  sessionStorage.setItem("sse-bridge-token", tokenInput.value);
  if (current) reconnect();
});

async function loadRoutes() {
  try {
    const r = await fetch("/console/api/routes", { cache: "no-store" });
    const body = await r.json();
    routes = body.routes;
    renderList();
    $("list-status").textContent = `${routes.length} route(s)`;
  } catch (e) {
    $("list-status").textContent = `Cannot load routes: ${e}`;
  }
}

function renderList() {
  const now = performance.now();
  const tbody = $("routes").tBodies[0];
  tbody.replaceChildren(...routes.map((r) => {
    const prev = last.get(r.name);
    const rate = prev ? ((r.records - prev.records) * 1000) / Math.max(1, now - prev.at) : 0;
    last.set(r.name, { records: r.records, at: now });
    const tr = document.createElement("tr");
    const a = document.createElement("a");
    a.href = `#route=${encodeURIComponent(r.name)}`;
    a.textContent = r.name;
    const cells = [a, `${r.kind}: ${r.source}`, String(r.connections), rate.toFixed(1), r.ready ? "ready" : "not ready"];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      if (i === 2 || i === 3) td.className = "num";
      if (i === 4) td.className = r.ready ? "ready" : "down";
      tr.appendChild(td);
    });
    return tr;
  }));
}

function streamUrl(r) {
  const q = new URLSearchParams();
  for (const input of $("filters").querySelectorAll("input")) {
    if (input.value) q.set(input.name, input.value);
  }
  const s = q.toString();
  return s ? `${r.path}?${s}` : r.path;
}

function setState(s) { $("state").textContent = s; }

function setLastId(c, id) {
  c.lastId = id;
  $("last-id").textContent = id || "—";
}

// Open the current route's stream from `fromId` (the live head when empty); the client
// keeps it open through errors, showing why it retries.
function connect(fromId) {
  const c = current;
  if (c.sub) c.sub.close();
  setLastId(c, fromId || "");
  let refused = null;
  const sub = subscribe(new URL(streamUrl(c.route), location.href), {
    lastEventId: fromId || undefined,
    transport: "fetch",
    getToken: () => tokenInput.value || null,
  });
  c.sub = sub;
  const mine = () => current === c && c.sub === sub;
  sub.on("error", (e) => {
    if (!mine()) return;
    refused = e.status >= 400 ? `refused: ${e.status} ${e.code}` : null;
    setState(refused ?? "reconnecting");
  });
  sub.on("state", (s) => {
    if (!mine()) return;
    if (s === "open") refused = null;
    if (s === "open") setState("open");
    else if (s === "retrying") setState(refused ?? "reconnecting");
    else if (s === "failed") setState(refused ?? "failed");
    else if (s === "connecting" && !refused) setState(sub.stats.reconnects ? "reconnecting" : "connecting");
  });
  sub.on("id", (id) => { if (mine()) setLastId(c, id); });
  sub.on("event", (e) => {
    if (!mine()) return;
    c.count++;
    if (!c.paused) show(e);
  });
}

function reconnect() {
  if (!current) return;
  connect(current.lastId);
}

function show(e) {
  const li = document.createElement("li");
  const head = document.createElement("div");
  head.className = "head";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = e.type;
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = `id ${e.id || "—"}`;
  const at = document.createElement("span");
  at.textContent = new Date().toLocaleTimeString();
  head.append(name, at, id);
  const pre = document.createElement("pre");
  pre.className = "data";
  try { pre.textContent = JSON.stringify(JSON.parse(e.data), null, 2); } catch { pre.textContent = e.data; }
  pre.dataset.raw = e.data;
  li.append(head, pre);
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function openRoute(name) {
  const r = routes.find((x) => x.name === name);
  if (!r) return;
  closeRoute();
  $("list").hidden = true;
  $("route").hidden = false;
  $("route-title").textContent = r.name;
  $("route-path").textContent = r.path;
  $("route-source").textContent = `${r.kind}: ${r.source}${r.auth ? " · auth" : ""}`;
  const form = $("filters");
  form.replaceChildren(...r.client_filters.map((f) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.name = f;
    input.addEventListener("change", () => reconnect());
    label.append(f, input);
    return label;
  }));
  form.hidden = r.client_filters.length === 0;
  $("events").replaceChildren();
  $("last-id").textContent = "—";
  current = { route: r, sub: null, lastId: "", paused: false, count: 0, series: [] };
  $("pause").setAttribute("aria-pressed", "false");
  $("pause").textContent = "Pause";
  connect("");
}

function closeRoute() {
  if (current && current.sub) current.sub.close();
  current = null;
  $("route").hidden = true;
  $("list").hidden = false;
}

$("pause").addEventListener("click", () => {
  if (!current) return;
  current.paused = !current.paused;
  $("pause").setAttribute("aria-pressed", String(current.paused));
  $("pause").textContent = current.paused ? "Resume" : "Pause";
});
$("clear").addEventListener("click", () => $("events").replaceChildren());
$("drop").addEventListener("click", () => {
  if (!current) return;
  const from = current.lastId;
  current.sub.close();
  setState("dropped");
  $("note").textContent = `Dropped; resuming from ${from || "the live head"} in 1 s…`;
  setTimeout(() => { if (current) { connect(from); $("note").textContent = `Resumed from ${from || "the live head"}.`; } }, 1000);
});
$("filters").addEventListener("submit", (e) => e.preventDefault());

function route() {
  const m = location.hash.match(/^#route=(.+)$/);
  if (m) openRoute(decodeURIComponent(m[1])); else closeRoute();
}
window.addEventListener("hashchange", route);

function drawChart() {
  if (!current) return;
  current.series.push(current.count);
  current.count = 0;
  if (current.series.length > 60) current.series.shift();
  $("rate").textContent = String(current.series[current.series.length - 1]);
  const cv = $("chart");
  const ctx = cv.getContext("2d");
  const w = cv.width, h = cv.height, max = Math.max(1, ...current.series);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#0b57d0";
  const bw = w / 60;
  current.series.forEach((v, i) => {
    const bh = (v / max) * (h - 4);
    ctx.fillRect(i * bw + 1, h - bh, bw - 2, bh);
  });
}

loadRoutes().then(route);
setInterval(loadRoutes, 2000);
setInterval(drawChart, 1000);
