// A dashboard on sse-bridge: order counts by status from a Kafka route, and a live table
// of a MongoDB collection from a change-stream route. Plain EventSource: after a drop it
// reconnects by itself with Last-Event-ID and the bridge resumes exactly there.
"use strict";
const params = new URLSearchParams(location.search);
// Where the bridge is (the demo serves this page on another port) and an optional token
// for routes with `auth` (EventSource cannot send headers, so it goes in the query).
const BRIDGE = params.get("bridge") || `${location.protocol}//${location.hostname}:8080`;
const TOKEN = params.get("token");

function open(route, stateId, handlers) {
  const q = new URLSearchParams();
  if (TOKEN) q.set("access_token", TOKEN);
  const qs = q.toString();
  const es = new EventSource(`${BRIDGE}/streams/${route}${qs ? `?${qs}` : ""}`);
  const state = document.getElementById(stateId);
  es.onopen = () => { state.textContent = "live"; };
  es.onerror = () => { state.textContent = es.readyState === EventSource.CLOSED ? "closed" : "reconnecting"; };
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, fn);
  }
  // The position moved to the present: whatever was counted may be incomplete.
  es.addEventListener("reset", () => { state.textContent = "live (reset)"; });
  return es;
}

// Orders: the `orders` route sends JSON envelopes named by the record's `type` header
// (created, paid, shipped, delivered); the value holds the order, embedded as JSON
// (`value_format = "json"`; a text-format route sends it as a string, parsed here too).
const orderStatus = new Map();
function onOrder(e) {
  const env = JSON.parse(e.data);
  const order = typeof env.value === "string" ? JSON.parse(env.value) : env.value;
  orderStatus.set(order.order, order.status);
  const counts = { created: 0, paid: 0, shipped: 0, delivered: 0 };
  for (const s of orderStatus.values()) if (s in counts) counts[s]++;
  for (const [s, n] of Object.entries(counts)) document.getElementById(`count-${s}`).textContent = n;
  document.getElementById("latest").textContent = `order ${order.order} ${order.status} (${order.customer}, ${order.amount})`;
}
open("orders", "orders-state", { created: onOrder, paid: onOrder, shipped: onOrder, delivered: onOrder });

// Inventory: the `inventory` route sends MongoDB change events (relaxed Extended JSON).
const rows = new Map();
function idOf(change) { return change.documentKey._id.$oid || JSON.stringify(change.documentKey._id); }
function fmtDate(d) { return d && d.$date ? new Date(d.$date).toLocaleTimeString() : ""; }
function upsert(e) {
  const change = JSON.parse(e.data);
  const doc = change.fullDocument;
  if (!doc) return;
  const id = idOf(change);
  let tr = rows.get(id);
  if (!tr) {
    tr = document.createElement("tr");
    for (let i = 0; i < 5; i++) tr.appendChild(document.createElement("td"));
    tr.cells[0].className = "id";
    tr.cells[2].className = tr.cells[3].className = "num";
    rows.set(id, tr);
    document.getElementById("inventory").prepend(tr);
  }
  tr.cells[0].textContent = id.slice(-6);
  tr.cells[1].textContent = doc.name ?? "";
  tr.cells[2].textContent = doc.qty ?? "";
  tr.cells[3].textContent = doc.price != null ? Number(doc.price).toFixed(2) : "";
  tr.cells[4].textContent = fmtDate(doc.updated);
  tr.classList.add("flash");
  setTimeout(() => tr.classList.remove("flash"), 600);
}
function remove(e) {
  const id = idOf(JSON.parse(e.data));
  rows.get(id)?.remove();
  rows.delete(id);
}
open("inventory", "inventory-state", { insert: upsert, update: upsert, replace: upsert, delete: remove });
