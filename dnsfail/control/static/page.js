// The dnsfail status page: /v1/status and /v1/events, kept live by /v1/events/stream.
// Plain DOM (textContent only: nothing the server sends is parsed as HTML), no build step.
"use strict";

const POLL_MS = 10000;          // status refresh without events (probe results, latencies)
const POLL_FALLBACK_MS = 3000;  // when the live stream cannot be kept open
const REFRESH_DEBOUNCE_MS = 200;
const EVENTS_SHOWN = 100;       // in "Recent events"
const TIMELINE = 12;            // transitions shown per target
const PROBLEMS_SHOWN = 5;       // lines of each kind in "Problems"
const KINDS = ["transition", "drain", "undrain", "expired", "reload"];
const RANK = { down: 0, mixed: 1, unknown: 2, up: 3 };
const SERVING_RANK = { all_down: 0, backup: 1, fallback: 2, pools: 3 };

const state = { status: null, events: [], lastId: 0, byTarget: new Map(), stream: null,
                polling: null, refreshTimer: null, fetching: false, again: false };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "title") node.title = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function bare(name) { return name.endsWith(".") && name !== "." ? name.slice(0, -1) : name; }

function badge(text, cls) { return el("span", { class: "badge " + (cls || text) }, text); }

function span(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 120) return seconds + "s";
  if (seconds < 7200) return Math.floor(seconds / 60) + "m" + String(seconds % 60).padStart(2, "0") + "s";
  const h = Math.floor(seconds / 3600);
  return h + "h" + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m";
}

function ago(ts) { return ts ? span(Date.now() / 1000 - ts) + " ago" : "-"; }

async function getJSON(path) {
  const resp = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (resp.status === 401) { window.location.assign("/"); throw new Error("session ended"); }
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
  return resp.json();
}

// --- events ------------------------------------------------------------------------------

function addEvent(e) {
  if (e.id <= state.lastId) return false;
  state.lastId = e.id;
  state.events.push(e);
  if (state.events.length > 5000) state.events.splice(0, state.events.length - 5000);
  if (e.kind === "transition") {
    const list = state.byTarget.get(e.target) || [];
    list.push(e);
    if (list.length > TIMELINE) list.shift();
    state.byTarget.set(e.target, list);
  }
  return true;
}

async function loadHistory() {
  for (let page = 0; page < 10; page++) {
    const body = await getJSON("/v1/events?after=" + state.lastId);
    body.events.forEach(addEvent);
    if (!body.events.length || body.next >= body.last_id) break;
  }
}

function live(text, cls) { const b = $("live"); b.textContent = text; b.className = "badge " + cls; }

function openStream() {
  if (!window.EventSource) { startPolling("no EventSource"); return; }
  const es = new EventSource("/v1/events/stream?after=" + state.lastId);
  state.stream = es;
  es.onopen = () => { live("live", "ok"); stopPolling(); };
  for (const kind of KINDS) {
    es.addEventListener(kind, (msg) => {
      if (addEvent(JSON.parse(msg.data))) { renderEvents(); scheduleRefresh(); }
    });
  }
  es.addEventListener("missed", () => scheduleRefresh());
  es.addEventListener("reconnect", () => { es.close(); setTimeout(openStream, 1000); });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) { startPolling("stream closed"); setTimeout(openStream, 5000); }
    else live("reconnecting", "polling");
  };
}

function startPolling(why) {
  live("polling (" + why + ")", "polling");
  if (state.polling) return;
  state.polling = setInterval(async () => {
    try { await loadHistory(); renderEvents(); await refresh(); } catch (err) { live("error: " + err.message, "error"); }
  }, POLL_FALLBACK_MS);
}

function stopPolling() { if (state.polling) { clearInterval(state.polling); state.polling = null; } }

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, REFRESH_DEBOUNCE_MS);
}

async function refresh() {
  if (state.fetching) { state.again = true; return; }
  state.fetching = true;
  try {
    state.status = await getJSON("/v1/status");
    render();
  } catch (err) {
    live("error: " + err.message, "error");
  } finally {
    state.fetching = false;
    if (state.again) { state.again = false; scheduleRefresh(); }
  }
}

// --- rendering ---------------------------------------------------------------------------

function render() {
  const t0 = performance.now();
  const s = state.status;
  $("identity").textContent = s.identity;
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "NOT READY";
  ready.className = "badge " + (s.ready ? "ok" : "error");
  $("updated").textContent = "generation " + s.generation + ", updated " + new Date().toLocaleTimeString();
  renderReload(s.reload);
  const problems = [];
  renderRecords(s.records || [], problems);
  renderDrains(s.overrides || []);
  renderTargets(s.targets || [], s.cluster, problems);
  renderCluster(s.cluster);
  renderWebhooks(s.webhooks || [], problems);
  if (s.reload && !s.reload.ok) problems.unshift("last reload REJECTED: " + s.reload.problems.length + " problem(s)");
  if (s.cluster && s.cluster.degraded) problems.unshift("this instance is DEGRADED");
  $("problems").replaceChildren(...summarise(problems));
  applyFilter();
  document.body.dataset.generation = String(s.generation);
  window.dnsfailRenderMs = performance.now() - t0;
  if (window.dnsfailFirstRender === undefined) window.dnsfailFirstRender = performance.now();
}

// At most PROBLEMS_SHOWN lines of each kind (record, target, ...), then a count: at 1,000
// targets down the list must not push the tables off the screen.
function summarise(problems) {
  if (!problems.length) return [el("li", { class: "muted" }, "none")];
  const groups = new Map();
  for (const p of problems) {
    const kind = p.split(" ", 1)[0];
    if (!groups.has(kind)) groups.set(kind, []);
    groups.get(kind).push(p);
  }
  const out = [];
  for (const [kind, list] of groups) {
    out.push(...list.slice(0, PROBLEMS_SHOWN).map((p) => el("li", {}, p)));
    if (list.length > PROBLEMS_SHOWN) {
      out.push(el("li", { class: "more" }, "... and " + (list.length - PROBLEMS_SHOWN) + " more " +
                  kind + " problem(s) (" + list.length + " in all; the tables list them first)"));
    }
  }
  return out;
}

function renderReload(r) {
  const p = $("reload");
  if (!r) { p.textContent = "no reload since start"; $("reload-problems").replaceChildren(); return; }
  p.replaceChildren(badge(r.ok ? "ok" : "REJECTED", r.ok ? "ok" : "error"), " ", ago(r.at),
                    r.trigger ? " (" + r.trigger + ")" : "");
  $("reload-problems").replaceChildren(...(r.problems || []).map((x) => el("li", {}, x)));
}

function renderRecords(records, problems) {
  const rows = [];
  for (const r of records) {
    for (const rule of r.rules) {
      rows.push({ r, rule, rank: SERVING_RANK[rule.serving] ?? 9 });
      if (rule.serving !== "pools") {
        problems.push("record " + bare(r.name) + " " + r.type + (r.rules.length > 1 ? " rule " + rule.rule : "") +
                      " answers " + (rule.pool ? "fallback pool " + rule.pool : rule.serving.replace("_", " ")));
      }
    }
  }
  rows.sort((a, b) => a.rank - b.rank || a.r.name.localeCompare(b.r.name) || a.rule.rule - b.rule.rule);
  const frag = document.createDocumentFragment();
  for (const { r, rule } of rows) {
    const answers = rule.servfail ? "SERVFAIL" : rule.addresses.join(", ");
    const cls = rule.serving === "pools" ? "" : (rule.serving === "fallback" ? "warn" : "problem");
    frag.append(el("tr", { class: cls, "data-record": bare(r.name) + " " + r.type,
                           "data-serving": rule.serving },
      el("td", {}, bare(r.name) + " " + r.type),
      el("td", {}, r.rules.length > 1 ? rule.rule + ": " + rule.matches : rule.matches),
      el("td", {}, badge(rule.serving)),
      el("td", {}, rule.pool || "-"),
      el("td", {}, answers),
      el("td", {}, rule.ttl),
      el("td", { class: "why" }, rule.why)));
  }
  $("records").replaceChildren(frag);
}

function renderDrains(overrides) {
  const frag = document.createDocumentFragment();
  for (const o of overrides) {
    frag.append(el("tr", { class: o.state === "down" ? "warn" : "", "data-selector": o.selector },
      el("td", {}, o.selector),
      el("td", {}, badge(o.state.toUpperCase(), o.state)),
      el("td", {}, o.by || "-"),
      el("td", {}, o.reason),
      el("td", { class: "countdown", "data-until": o.expires }, "in " + span(o.expires - Date.now() / 1000)),
      el("td", { class: "countdown", "data-until": o.complete_at, "data-done": "yes" },
         o.complete ? "yes" : "in " + span(o.complete_at - Date.now() / 1000)),
      el("td", {}, o.matches + " value(s)")));
  }
  $("drains").replaceChildren(frag);
  $("no-drains").hidden = overrides.length > 0;
}

function timeline(label) {
  const box = el("span", { class: "timeline" });
  for (const e of state.byTarget.get(label) || []) {
    box.append(el("span", { class: e.to, title: e.at_iso + ": " + e.from + " -> " + e.to + " (" + e.detail + ")" }));
  }
  return box;
}

function renderTargets(targets, cluster, problems) {
  const votes = cluster && cluster.votes ? cluster.votes : null;
  $("votes-head").hidden = !votes;
  const sorted = targets.slice().sort((a, b) => (RANK[a.state] ?? 9) - (RANK[b.state] ?? 9) ||
                                                 a.target.localeCompare(b.target));
  const frag = document.createDocumentFragment();
  for (const t of sorted) {
    if (t.state === "down" || t.real_state === "down") {
      const forced = t.state !== t.real_state ? " (forced by an override; probed " + t.real_state + ")" : "";
      problems.push("target " + t.target + " is " + t.state.toUpperCase() + forced +
                    (t.last_probe && !forced ? ": " + t.last_probe.detail : ""));
    }
    const last = t.last_probe;
    const cells = [
      el("td", {}, t.target),
      el("td", {}, badge(t.state.toUpperCase(), t.state)),
      el("td", {}, t.real_state),
      el("td", {}, last ? last.detail : "none yet"),
      el("td", {}, last ? last.latency_ms.toFixed(1) + " ms" : "-"),
      el("td", { class: "ago", "data-at": last ? last.at : "" }, last ? ago(last.at) : "-"),
      el("td", {}, t.since ? ago(t.since) : "-"),
      el("td", {}, t.transitions),
      el("td", {}, timeline(t.target)),
    ];
    if (votes) {
      const v = votes[t.target] || [];
      cells.push(el("td", {}, v.map((x) => x.instance + ": " + x.state + " (" + span(x.age) + ")").join(", ") || "-"));
    }
    cells.push(el("td", { class: "why" }, (t.used_by || []).join("; ")));
    frag.append(el("tr", { class: t.state === "down" ? "problem" : (t.state === "up" ? "" : "warn"),
                           "data-target": t.target, "data-state": t.state }, ...cells));
  }
  $("targets").replaceChildren(frag);
  $("target-count").textContent = "(" + targets.length + ")";
}

function renderCluster(c) {
  $("cluster-box").hidden = !c;
  if (!c) return;
  $("cluster-self").textContent = "this instance " + c.instance + ", epoch " + c.epoch +
    (c.degraded ? ", DEGRADED since " + ago(c.degraded_since) : "");
  const frag = document.createDocumentFragment();
  for (const p of c.peers || []) {
    frag.append(el("tr", { class: p.reachable ? "" : "problem" },
      el("td", {}, p.url), el("td", {}, p.instance || "-"),
      el("td", {}, badge(p.reachable ? "yes" : "no")),
      el("td", {}, p.last_heard_ago === null || p.last_heard_ago === undefined ? "never" : span(p.last_heard_ago) + " ago"),
      el("td", {}, p.epoch ?? "-"), el("td", {}, p.degraded ? badge("DEGRADED", "error") : "no")));
  }
  $("peers").replaceChildren(frag);
}

function renderWebhooks(hooks, problems) {
  const frag = document.createDocumentFragment();
  for (const h of hooks) {
    if (h.failed || h.dropped) problems.push("webhook " + h.url + ": " + h.failed + " failed, " + h.dropped + " dropped");
    frag.append(el("tr", {}, el("td", {}, h.url), el("td", {}, h.format), el("td", {}, h.events.join(",")),
      el("td", {}, h.queued), el("td", {}, h.sent), el("td", {}, h.failed), el("td", {}, h.dropped),
      el("td", { class: "why" }, h.last_error || "-")));
  }
  $("webhooks").replaceChildren(frag);
  $("no-webhooks").hidden = hooks.length > 0;
}

function describe(e) {
  switch (e.kind) {
    case "transition": return "target " + e.target + " " + e.from + " -> " + e.to.toUpperCase() + ": " + e.detail;
    case "drain": return (e.state === "down" ? "drain " : "force up ") + e.selector + " by " + (e.by || "?") + ": " + e.reason;
    case "undrain": return "undrain " + e.selector + " by " + (e.undrain_by || "?");
    case "expired": return "override " + e.selector + " expired";
    case "reload": return e.ok ? "reload ok (config generation " + e.config_generation + ")"
                               : "reload REJECTED: " + (e.problems || []).length + " problem(s)";
    default: return e.kind;
  }
}

function renderEvents() {
  const shown = state.events.slice(-EVENTS_SHOWN).reverse();
  $("events").replaceChildren(...shown.map((e) => el("li", {
    class: "ev-" + e.kind + (e.kind === "transition" ? " ev-" + e.to : "") + (e.kind === "reload" && !e.ok ? " ev-error" : "") },
    e.at_iso + "  " + describe(e))));
  applyFilter();
}

// --- filter and clocks -------------------------------------------------------------------

function applyFilter() {
  const words = $("filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  for (const id of ["records", "targets", "drains", "events"]) {
    if (!words.length) {
      for (const row of $(id).querySelectorAll(".hidden")) row.classList.remove("hidden");
      continue;
    }
    for (const row of $(id).children) {
      const text = row.textContent.toLowerCase();
      row.classList.toggle("hidden", !words.every((w) => text.includes(w)));
    }
  }
}

function tick() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("td.countdown")) {
    const left = Number(cell.dataset.until) - now;
    cell.textContent = left <= 0 ? (cell.dataset.done ? "yes" : "expired") : "in " + span(left);
  }
  for (const cell of document.querySelectorAll("td.ago[data-at]")) {
    if (cell.dataset.at) cell.textContent = ago(Number(cell.dataset.at));
  }
}

async function main() {
  $("filter").addEventListener("input", applyFilter);
  try {
    await loadHistory();
    await refresh();
    renderEvents();
  } catch (err) {
    live("error: " + err.message, "error");
  }
  openStream();
  setInterval(refresh, POLL_MS);
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", main);
