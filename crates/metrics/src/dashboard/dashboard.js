// The live dashboard: polls /metrics (the OpenMetrics text Prometheus scrapes) once a
// second and renders one row per app and component. No dependencies.
"use strict";

const POLL_MS = 1000;
const WINDOW_MS = 10000;
const FAULT_OUTCOMES = ["trap", "deadline", "memory_limit", "refused"];
// On a node the page is served beside the admin API, which wants its token; it is kept
// in this tab only (sessionStorage), taken from the URL fragment `#token=...`.
const token = (() => {
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) { sessionStorage.setItem("wisp-token", fragment); history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem("wisp-token");
})();

/** Parses the text format into [{name, labels, value}]. */
function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let label;
    while ((label = re.exec(match[3] || ""))) labels[label[1]] = label[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

/** Per app/component: the counters and histograms the table shows. */
function summarise(samples) {
  const rows = new Map();
  const row = (l) => {
    const key = `${l.app}\u0000${l.component}`;
    if (!rows.has(key)) rows.set(key, { app: l.app, component: l.component, requests: 0, outcomes: {}, buckets: new Map(), cpu: 0, active: 0, memory: new Map(), memoryCount: 0, outbound: 0, denied: 0 });
    return rows.get(key);
  };
  // A node's worker process labels its samples process="worker": its requests add to
  // the node's, and its process figures are shown apart.
  const process = {};
  const worker = {};
  for (const s of samples) {
    const l = s.labels;
    if (s.name.startsWith("process_")) { (l.process === "worker" ? worker : process)[s.name] = s.value; continue; }
    if (l.app === undefined || l.component === undefined) continue;
    const r = row(l);
    switch (s.name) {
      case "wisp_requests_total":
        r.requests += s.value;
        r.outcomes[l.outcome] = (r.outcomes[l.outcome] || 0) + s.value;
        break;
      case "wisp_request_duration_seconds_bucket":
        r.buckets.set(l.le, (r.buckets.get(l.le) || 0) + s.value);
        break;
      case "wisp_cpu_seconds_total": r.cpu += s.value; break;
      case "wisp_instances_active": r.active += s.value; break;
      case "wisp_instance_memory_peak_bytes_bucket": r.memory.set(l.le, (r.memory.get(l.le) || 0) + s.value); break;
      case "wisp_instance_memory_peak_bytes_count": r.memoryCount += s.value; break;
      case "wisp_outbound_requests_total":
        r.outbound += s.value;
        if (l.outcome === "denied") r.denied += s.value;
        break;
    }
  }
  return { rows, process, worker };
}

/** The upper bound of the bucket holding quantile q of the difference of two cumulative bucket maps. */
function quantile(q, now, before) {
  const bounds = [...now.keys()].sort((a, b) => Number(a) - Number(b));
  const total = (now.get("+Inf") || 0) - ((before && before.get("+Inf")) || 0);
  if (total <= 0) return null;
  for (const le of bounds) {
    const count = now.get(le) - ((before && before.get(le)) || 0);
    if (count >= q * total) return Number(le);
  }
  return Infinity;
}

/** The smallest bucket bound that holds every observation: the peak, rounded up. */
function peak(buckets, count) {
  const bounds = [...buckets.keys()].sort((a, b) => Number(a) - Number(b));
  for (const le of bounds) if (count > 0 && buckets.get(le) >= count) return Number(le);
  return null;
}

const seconds = (s) => s === null ? "–" : s === Infinity ? "> 60 s" : s < 0.001 ? `${(s * 1e6).toFixed(0)} µs` : s < 1 ? `${(s * 1e3).toFixed(s < 0.01 ? 2 : 1)} ms` : `${s.toFixed(2)} s`;
const bytes = (b) => b === null ? "–" : b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`;

const polls = []; // [{at, rows}], the last WINDOW_MS
let appStates = new Map(); // node only: app name -> idle/loaded

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.appendChild(td);
  return td;
}

function render(summary, at) {
  polls.push({ at, rows: summary.rows });
  while (polls.length > 1 && at - polls[0].at > WINDOW_MS) polls.shift();
  const oldest = polls[0];
  const previous = polls.length > 1 ? polls[polls.length - 2] : null;
  const tbody = document.querySelector("#components tbody");
  const keys = [...summary.rows.keys()].sort();
  // Apps the node knows with no metrics yet (deployed, never loaded) get a row too.
  for (const [app, state] of appStates) {
    if (![...summary.rows.values()].some((r) => r.app === app)) keys.push(`${app}\u0000`);
  }
  tbody.replaceChildren();
  for (const key of keys) {
    const r = summary.rows.get(key) || { app: key.split("\u0000")[0], component: "", requests: 0, outcomes: {}, buckets: new Map(), cpu: 0, active: 0, memory: new Map(), memoryCount: 0, outbound: 0, denied: 0 };
    const then = oldest.rows.get(key);
    const span = (at - oldest.at) / 1000;
    const rate = then && span > 0 ? (r.requests - then.requests) / span : null;
    const tr = document.createElement("tr");
    tr.dataset.app = r.app;
    tr.dataset.component = r.component;
    tr.dataset.requests = String(r.requests);
    cell(tr, r.app);
    cell(tr, r.component || "(not loaded)");
    const state = appStates.get(r.app) || (r.active > 0 ? "busy" : "ready");
    cell(tr, state, state === "idle" ? "idle" : "");
    cell(tr, r.requests.toFixed(0), "n requests");
    cell(tr, rate === null ? "–" : rate.toFixed(1), "n rate");
    const before = then && then !== r ? then.buckets : null;
    cell(tr, seconds(quantile(0.5, r.buckets, before) ?? quantile(0.5, r.buckets, null)), "n p50");
    cell(tr, seconds(quantile(0.99, r.buckets, before) ?? quantile(0.99, r.buckets, null)), "n p99");
    const errors = FAULT_OUTCOMES.map((o) => [o, r.outcomes[o] || 0]).filter(([, n]) => n > 0);
    cell(tr, errors.length ? errors.map(([o, n]) => `${o} ${n}`).join(", ") : "0", errors.length ? "n errors bad" : "n errors");
    cell(tr, seconds(r.cpu), "n cpu");
    cell(tr, bytes(peak(r.memory, r.memoryCount)), "n memory");
    cell(tr, r.active.toFixed(0), "n instances");
    const out = cell(tr, `${r.outbound}`, "n outbound");
    if (r.denied > 0) { out.textContent = `${r.outbound} (${r.denied} denied)`; out.classList.add("bad"); }
    tbody.appendChild(tr);
    // Faults that happened since the last poll.
    const last = previous && previous.rows.get(key);
    if (last) {
      for (const outcome of FAULT_OUTCOMES) {
        const added = (r.outcomes[outcome] || 0) - (last.outcomes[outcome] || 0);
        if (added > 0) fault(`${new Date(at).toLocaleTimeString()}  ${r.app}/${r.component}  ${outcome} ×${added}`);
      }
      if (r.denied > last.denied) fault(`${new Date(at).toLocaleTimeString()}  ${r.app}/${r.component}  outbound denied ×${r.denied - last.denied}`);
    }
  }
  const p = summary.process;
  if (p.process_resident_memory_bytes !== undefined) {
    const figures = (p) => `${bytes(p.process_resident_memory_bytes)} resident, ${(p.process_cpu_seconds_total || 0).toFixed(1)} s CPU, ${p.process_threads || 0} threads`;
    const w = summary.worker;
    document.getElementById("process").textContent = `process: ${figures(p)}` + (w.process_resident_memory_bytes !== undefined ? `; worker process: ${figures(w)}` : "");
  }
}

function fault(text) {
  const list = document.getElementById("faults");
  list.querySelector(".none")?.remove();
  const li = document.createElement("li");
  li.textContent = text;
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

async function get(path) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Error("the node wants its admin token: open /dashboard#token=<token>");
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const text = await (await get("metrics")).text();
    if (token) {
      const apps = await (await get("v1/apps")).json();
      appStates = new Map(apps.map((a) => [a.name, a.state]));
    }
    render(summarise(parse(text)), Date.now());
    status.textContent = `live, updated ${new Date().toLocaleTimeString()}`;
    status.className = "status";
  } catch (error) {
    status.textContent = `not updating: ${error.message}`;
    status.className = "status down";
  }
}

poll();
setInterval(poll, POLL_MS);
