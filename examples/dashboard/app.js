// A dashboard on sse-bridge: order counts by status from a Kafka route, and a live table
// of a MongoDB collection from a change-stream route. It reads both with the bridge's
// own client (loaded from the bridge, no bundler), which never gives up: after a network
// drop, a restart, a drain, a 503 or 429, or an expired token it reconnects and resumes
// exactly after the last event shown. The page keeps what it shows together with the
// position it was built from (sessionStorage), so a reload resumes too.

const params = new URLSearchParams(location.search);
// Where the bridge is (the demo serves this page on another port).
const BRIDGE = params.get("bridge") || `${location.protocol}//${location.hostname}:8080`;
// For routes with `auth`: a fixed token (`?token=`), or better an endpoint of your own
// backend that returns a fresh one (`?token_url=`), asked again whenever one expires.
const TOKEN = params.get("token");
const TOKEN_URL = params.get("token_url");

// The client comes from the bridge itself. A bridge that is down right now (a restart)
// is asked again, with backoff: a page opened at that moment waits instead of dying.
async function loadClient() {
  for (let attempt = 0; ; attempt++) {
    try {
      // A failed import is remembered per URL: each retry asks with a new one.
      return await import(`${BRIDGE}/client/sse-bridge-client.js${attempt ? `?attempt=${attempt}` : ""}`);
    } catch {
      for (const id of ["orders-state", "inventory-state"]) document.getElementById(id).textContent = "waiting for the bridge";
      await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** attempt)));
    }
  }
}
const { connect } = await loadClient();

async function getToken() {
  if (TOKEN_URL) {
    const r = await fetch(TOKEN_URL, { cache: "no-store" });
    if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
    return (await r.text()).trim();
  }
  return TOKEN;
}

// What the page shows of a route and the id it was built from, saved as one value: a
// reload restores both, so the resumed stream adds exactly what the page lacks.
function pageStore(name, state) {
  const key = `dashboard:${BRIDGE}:${name}`;
  return {
    get() {
      const saved = JSON.parse(sessionStorage.getItem(key) || "null");
      if (!saved) return null;
      state.restore(saved.state);
      return saved.id;
    },
    set(_key, id) {
      sessionStorage.setItem(key, JSON.stringify({ id, state: state.save() }));
    },
  };
}

// Open a route and show its connection state: what the client is doing and why.
function open(route, stateId, state, handlers) {
  const el = document.getElementById(stateId);
  const sub = connect(`${BRIDGE}/streams/${route}`, {
    getToken: TOKEN || TOKEN_URL ? getToken : undefined,
    persist: pageStore(route, state),
  });
  let why = "";
  const show = (text) => {
    el.textContent = text;
    el.dataset.state = sub.state;
  };
  sub.on("error", (e) => {
    why = e.status ? `${e.status} ${e.code}` : e.code;
    if (e.fatal) show(`stopped: ${why}`);
    else show(`reconnecting (${why}, retry in ${Math.ceil((e.retryIn ?? 0) / 1000)} s)`);
  });
  sub.on("expired", () => show("renewing token"));
  sub.on("state", (s) => {
    if (s === "open") show("live");
    else if (s === "connecting" && !why) show("connecting");
  });
  sub.on("open", () => {
    why = "";
  });
  // The position moved to the present: what was counted before may be incomplete.
  sub.on("reset", () => show("live (reset: some events were no longer available)"));
  for (const [name, fn] of Object.entries(handlers)) sub.on(name, fn);
  // For tests and the curious: the subscription of each route.
  (window.subscriptions ||= {})[route] = sub;
  state.render();
  return sub;
}

// Orders: the `orders` route sends JSON envelopes named by the record's `type` header
// (created, paid, shipped, delivered); the value holds the order, embedded as JSON
// (`value_format = "json"`; a text-format route sends it as a string, parsed here too).
const orders = {
  status: new Map(),
  total: 0,
  latest: "—",
  save() {
    return { status: [...this.status], total: this.total, latest: this.latest };
  },
  restore(s) {
    this.status = new Map(s.status);
    this.total = s.total;
    this.latest = s.latest;
  },
  render() {
    const counts = { created: 0, paid: 0, shipped: 0, delivered: 0 };
    for (const s of this.status.values()) if (s in counts) counts[s]++;
    for (const [s, n] of Object.entries(counts)) document.getElementById(`count-${s}`).textContent = n;
    document.getElementById("orders-total").textContent = this.total;
    document.getElementById("latest").textContent = this.latest;
  },
};
function onOrder(e) {
  const env = e.json();
  const order = typeof env.value === "string" ? JSON.parse(env.value) : env.value;
  orders.status.set(order.order, order.status);
  orders.total++;
  orders.latest = `order ${order.order} ${order.status} (${order.customer}, ${order.amount})`;
  orders.render();
}
open("orders", "orders-state", orders, { created: onOrder, paid: onOrder, shipped: onOrder, delivered: onOrder });

// Inventory: the `inventory` route sends MongoDB change events (relaxed Extended JSON).
const inventory = {
  docs: new Map(),
  save() {
    return [...this.docs];
  },
  restore(s) {
    this.docs = new Map(s);
  },
  render() {
    const body = document.getElementById("inventory");
    body.replaceChildren(...[...this.docs].reverse().map(([id, doc]) => row(id, doc)));
  },
};
function idOf(change) {
  return change.documentKey._id.$oid || JSON.stringify(change.documentKey._id);
}
function fmtDate(d) {
  return d && d.$date ? new Date(d.$date).toLocaleTimeString() : "";
}
function row(id, doc) {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  for (let i = 0; i < 5; i++) tr.appendChild(document.createElement("td"));
  tr.cells[0].className = "id";
  tr.cells[2].className = tr.cells[3].className = "num";
  tr.cells[0].textContent = id.slice(-6);
  tr.cells[1].textContent = doc.name ?? "";
  tr.cells[2].textContent = doc.qty ?? "";
  tr.cells[3].textContent = doc.price != null ? Number(doc.price).toFixed(2) : "";
  tr.cells[4].textContent = fmtDate(doc.updated);
  return tr;
}
function upsert(e) {
  const change = e.json();
  const doc = change.fullDocument;
  if (!doc) return;
  const id = idOf(change);
  inventory.docs.set(id, doc);
  const tr = row(id, doc);
  const old = document.querySelector(`#inventory tr[data-id="${CSS.escape(id)}"]`);
  if (old) old.replaceWith(tr);
  else document.getElementById("inventory").prepend(tr);
  tr.classList.add("flash");
  setTimeout(() => tr.classList.remove("flash"), 600);
}
function remove(e) {
  const id = idOf(e.json());
  inventory.docs.delete(id);
  document.querySelector(`#inventory tr[data-id="${CSS.escape(id)}"]`)?.remove();
}
open("inventory", "inventory-state", inventory, { insert: upsert, update: upsert, replace: upsert, delete: remove });
