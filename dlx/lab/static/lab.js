// dlx lab: the page. Plain JS, no library: controls -> config -> POST /api/runs; the run's
// events arrive by server-sent events and are drawn on canvases. window.dlxLab holds the
// state (the end-to-end test reads it).
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token");
const session = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^a-zA-Z0-9-]/g, "");
const CLASS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const lab = { slots: {}, latency: [], session, changed: new Set(), edited: false, example: null, checked: null };
window.dlxLab = lab;

// Every call carries the server's token (from the URL dlx lab printed) in a header; a
// state-changing one is a JSON body, which another site's page cannot send without the
// lab's consent (the server refuses it otherwise).
function api(path, body) {
  const headers = { "X-DLX-Token": token || "" };
  const opts = body === undefined ? { headers } : { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  return fetch(path, opts).then(async (r) => ({ ok: r.ok, status: r.status, data: await r.json().catch(() => ({})) }));
}

function slot() { return document.querySelector("input[name=slot]:checked").value; }

function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) { o = o[k] = o[k] || {}; }
  o[keys[keys.length - 1]] = value;
}

function knobValue(el) {
  if (el.type === "checkbox") return el.checked;
  if (el.type === "number") return el.value === "" ? null : Number(el.value);
  return el.value;
}

function controlsConfig() {
  const c = { seed: 0, data: {}, model: {}, optimizer: {}, train: { log_every: 10, eval_every: 100 }, regularization: {} };
  let depth = 3, width = 32, residual = false;
  for (const el of document.querySelectorAll("[data-key]")) {
    if (el.disabled) continue;  // a knob this config has no key for
    const key = el.dataset.key;
    const v = knobValue(el);
    if (v === null) continue;
    if (key === "model.depth") depth = v;
    else if (key === "model.width") width = v;
    else if (key === "residual") residual = v;
    else setPath(c, key, v);
  }
  c.model = residual ? { name: "resnet", kind: "mlp", blocks: depth, width, residual: true } : { name: "mlp", depth, width };
  return c;
}

function sets() { return document.getElementById("sets").value.split("\n").map((s) => s.trim()).filter(Boolean); }

// What the page trains: from scratch, the knobs are the config; from an example (or `dlx lab
// CONFIG`), its own YAML plus each knob changed since, as a --set on top of it (so its other
// keys stay), then the advanced lines. Every knob then shows what the server resolved.
function knobSets() {
  const out = [], el = (k) => document.querySelector(`[data-key="${k}"]`), family = lab.family;
  for (const key of lab.changed) {
    if (key.startsWith("model.") || key === "residual") continue;
    const v = knobValue(el(key));
    if (v !== null) out.push(`${key}=${v}`);
  }
  if (["model.depth", "model.width", "residual"].some((k) => lab.changed.has(k))) {
    const depth = knobValue(el("model.depth")), width = knobValue(el("model.width")) ?? lab.firstWidth, residual = el("residual").checked;
    if (family === "mlp" && residual) out.push(`model={name: resnet, kind: mlp, blocks: ${depth}, width: ${width}, residual: true}`);
    else if (family === "resnet" && !residual) out.push(`model={name: mlp, depth: ${depth}, width: ${width}}`);
    else if (family === "mlp") out.push(`model.depth=${depth}`, `model.width=${width}`, "model.widths=null");
    else if (family === "resnet") out.push(`model.blocks=${depth}`, `model.width=${width}`);
    else if (["rnn", "lstm", "gru"].includes(family)) out.push(`model.layers=${depth}`, `model.hidden=${width}`);
  }
  return out;
}

function trainBody() {
  if (lab.example) return { yaml: lab.example, sets: knobSets().concat(sets()) };
  return { config: controlsConfig(), sets: sets() };
}

// Every knob set from a resolved config; a knob the config has no key for is cleared and
// disabled (its tooltip says why), so no knob shows a value that does not train.
function syncKnobs(r) {
  const m = r.model || {}, widths = m.widths || null;
  // The model the example itself builds: the knobs' --sets are written against it.
  if (!["model.depth", "model.width", "residual"].some((k) => lab.changed.has(k))) {
    lab.family = m.name;
    lab.firstWidth = widths ? widths[0] : null;
  }
  const uniform = widths && widths.every((w) => w === widths[0]);
  const recurrent = ["rnn", "lstm", "gru"].includes(m.name);  // depth: layers, width: hidden units
  const values = {
    "data.name": r.data && r.data.name,
    "data.noise": r.data && r.data.noise,
    "data.n_train": r.data && r.data.n_train,
    "model.depth": m.name === "mlp" ? (m.depth ?? (widths ? widths.length : undefined)) : m.name === "resnet" ? m.blocks : recurrent ? m.layers : undefined,
    "model.width": m.name === "mlp" ? (m.width ?? (uniform ? widths[0] : undefined)) : m.name === "resnet" ? m.width : recurrent ? m.hidden : undefined,
    activation: r.activation && r.activation.name,
    init: r.init && r.init.name,
    "regularization.norm": r.regularization && r.regularization.norm,
    residual: m.name === "resnet" ? true : m.name === "mlp" ? false : undefined,
    "optimizer.name": r.optimizer && r.optimizer.name,
    "optimizer.lr": r.optimizer && r.optimizer.lr,
    "train.batch_size": r.train && r.train.batch_size,
    "train.steps": r.train && (r.train.steps ?? null),
    "regularization.dropout": r.regularization && r.regularization.dropout,
    "regularization.l2": r.regularization && r.regularization.l2,
  };
  for (const el of document.querySelectorAll("[data-key]")) {
    const key = el.dataset.key, v = values[key];
    el.disabled = v === undefined;
    el.title = v === undefined ? "this config has no such key: its YAML (below) says what trains" : "";
    el.placeholder = "";
    if (el.type === "checkbox") { el.checked = v === true; continue; }
    if (v === undefined) { el.value = ""; continue; }
    if (v === null) {  // steps by epochs: the knob is empty, and says so
      el.value = "";
      if (key === "train.steps" && r.train.epochs != null) el.placeholder = `${r.train.epochs} epochs`;
      continue;
    }
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === String(v))) {
      const o = document.createElement("option"); o.textContent = String(v); el.appendChild(o);
    }
    if (el.type === "number" && el.value !== "" && Number(el.value) === v) continue;  // as typed: keep the typing
    el.value = String(v);
  }
  if (!uniform && widths) {
    const w = document.querySelector('[data-key="model.width"]');
    w.value = ""; w.placeholder = `widths ${widths.join(", ")}`; w.disabled = false; w.title = "a width here makes every layer that wide";
  }
}

// Each edit is checked by the server (a moment after the last keystroke); only the answer
// to the newest check is shown, so a slow answer never overwrites a newer edit.
let checkSeq = 0, checkTimer = null;
function checkSoon() { clearTimeout(checkTimer); checkTimer = setTimeout(check, 150); }
function check() {
  const seq = ++checkSeq;
  return api("/api/check", { ...trainBody(), report: true }).then((r) => {
    if (seq !== checkSeq) return;
    if (!r.ok || !r.data.ok) { showProblems(r.data); return; }
    showProblems(null);
    showConfig(r.data);
    lab.checked = r.data;
    const st = lab.slots[slot()];
    if (!st || st.preview) preview(slot(), r.data.network);
  });
}

function showConfig(data) {
  syncKnobs(data.config);
  document.getElementById("yaml").textContent = data.yaml;
  document.getElementById("download").href = URL.createObjectURL(new Blob([data.yaml], { type: "text/yaml" }));
}

function showProblems(data) {
  const box = document.getElementById("problems");
  document.querySelectorAll(".bad").forEach((el) => el.classList.remove("bad"));
  document.querySelectorAll(".err").forEach((el) => el.remove());
  if (!data) { box.textContent = ""; return; }
  const lines = [data.error || "error"];
  for (const p of data.problems || []) {
    const el = document.querySelector(`[data-key="${p.key}"]`) || (p.key.startsWith("model") ? document.querySelector('[data-key="model.width"]') : null);
    if (el) {  // the message next to the control it is about
      el.classList.add("bad");
      const span = document.createElement("span"); span.className = "err"; span.textContent = p.message;
      el.insertAdjacentElement("afterend", span);
    } else lines.push(`${p.key}: ${p.message}`);
  }
  box.textContent = lines.join("\n");
}

function start(play) {
  const s = slot();
  return api("/api/runs", { session, slot: s, ...trainBody(), play }).then((r) => {
    if (!r.ok) { showProblems(r.data); return; }
    checkSeq++;  // an older check's answer is about an older edit
    showProblems(null);
    showConfig(r.data);  // the knobs show what this run trains
    lab.checked = r.data;
    listen(s, r.data.run, r.data.network);
  });
}

function control(action) {
  const st = lab.slots[slot()];
  // Play or step after an edit trains the edited config (a new run replaces this one): a
  // knob changed while a net trains is never silently ignored.
  const fresh = !st || st.done || st.preview || (lab.edited && (action === "play" || action === "step"));
  if (fresh) { if (action === "play" || action === "step") start(action === "play").then(() => { if (action === "step") control("step"); }); return; }
  api(`/api/runs/${st.run}/${action}`, {});
}

function edited() {
  lab.edited = true;
  checkSeq++;  // a check already asked is about the config before this edit: its answer is dropped
  const st = lab.slots[slot()];
  if (st && !st.preview) st.el.querySelector(".pending").textContent = "the knobs changed since this run started: play (or step) trains them, reset starts them paused";
  checkSoon();
}

function describe(cfg) {  // the slot's title: what this run trains, in a few words
  if (!cfg) return "";
  const m = cfg.model || {}, size = m.name === "mlp" ? (m.widths ? m.widths.join("-") : `${m.depth}×${m.width}`) : m.name === "resnet" ? `${m.blocks} blocks × ${m.width}` : "";
  return ` — ${cfg.name ? cfg.name + ": " : ""}${cfg.data.name}, ${m.name} ${size}, ${cfg.activation.name}, ${cfg.optimizer.name} lr ${cfg.optimizer.lr}`;
}

function newSlot(s, run, network, cfg) {
  const el = document.getElementById(`slot-${s}`);
  el.innerHTML = "";
  el.appendChild(document.getElementById("slot-template").content.cloneNode(true));
  el.querySelector(".title").textContent = `run ${s}` + describe(cfg);
  const st = { run, el, steps: [], train: [], test: [], grad: [], events: 0, done: false, last: null, verdict: null, preview: !run };
  lab.slots[s] = st;
  drawNetwork(st, network);
  drawCurves(st);
  // The decision surface exists for a 2-D classifier only; until its first picture, it says when it comes.
  const sc = el.querySelector(".surface"), sg = sc.getContext("2d");
  sc.closest("figure").hidden = !!network && !(network.task === "classification" && network.input.length === 1 && network.input[0] === 2);
  sg.fillStyle = "#f3f5f8"; sg.fillRect(0, 0, sc.width, sc.height);
  sg.fillStyle = "#889"; sg.font = "11px sans-serif"; sg.textAlign = "center";
  sg.fillText("drawn once the run starts", sc.width / 2, sc.height / 2);
  return st;
}

// Before play: the network the knobs build, drawn in the slot they edit.
function preview(s, network) {
  const st = newSlot(s, null, network, lab.checked && lab.checked.config);
  st.el.querySelector(".status").textContent = "not started: play trains this network, step trains one log interval";
  st.el.querySelector(".verdict").textContent = "the verdict forms once it trains";
}

function listen(s, run, network) {
  const old = lab.slots[s];
  if (old && old.source) old.source.close();
  lab.edited = false;
  const st = newSlot(s, run, network, lab.checked && lab.checked.config);
  const url = `/api/runs/${run}/events/stream` + (token ? `?token=${encodeURIComponent(token)}` : "");
  st.source = new EventSource(url);
  st.source.onmessage = (m) => onEvent(st, JSON.parse(m.data));
  st.source.addEventListener("end", () => { st.done = true; st.source.close(); });
}

function onEvent(st, ev) {
  lab.latency.push(Date.now() - ev.t * 1000);
  st.events += 1;
  st.last = ev;
  if (ev.error) { st.el.querySelector(".status").textContent = "failed: " + ev.error; st.done = true; return; }
  st.el.querySelector(".status").textContent = `step ${ev.step} of ${ev.total}` + (ev.status ? ` — ${ev.status}` : "");
  if (ev.metrics) {
    st.steps.push(ev.step);
    st.train.push(ev.metrics.train_loss);
    st.test.push(ev.metrics.test_loss);
    drawCurves(st);
  }
  if (ev.grad) { st.grad.push(ev.grad); drawHeat(st); }
  if (ev.surface) drawSurface(st, ev.surface);
  if (ev.units) drawUnits(st, ev.units);
  if (ev.hist) drawHists(st, ev.hist);
  if (ev.verdict) {
    // Mid-run: the diagnosis so far, said as such; at the end: summary.json's verdict.
    st.verdict = ev.verdict;
    const v = st.el.querySelector(".verdict");
    v.dataset.kind = ev.verdict.kind || "";
    v.dataset.final = ev.verdict.final ? "true" : "false";
    v.textContent = "";
    const when = document.createElement("b"); when.className = "when";
    when.textContent = ev.verdict.final ? "verdict: " : `so far (step ${ev.step}): `;
    const msg = document.createElement("span"); msg.className = "message"; msg.textContent = ev.verdict.message || "";
    v.append(when, msg);
  }
  if (ev.final) st.done = true;
}

// A tick step of 1, 2 or 5 times a power of ten, giving about n ticks over span.
function niceStep(span, n) {
  const raw = span / Math.max(n, 1), p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

function fmtTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(0).replace("e+", "e") : String(+v.toPrecision(4));
}

// The loss axis: log where the losses span a decade or more (ticks at the decades, and at 2
// and 5 between them when few decades), otherwise linear from zero (or the lowest loss,
// if negative) to a round top, so a flat loss draws flat and never as zig-zags.
function lossAxis(vals) {
  const mn = Math.min(...vals), mx = Math.max(...vals);
  if (mn > 0 && mx / mn >= 10) {
    const lo = Math.floor(Math.log10(mn)), hi = Math.ceil(Math.log10(mx)), ticks = [];
    for (let d = lo; d <= hi; d++) for (const m of hi - lo <= 2 ? [1, 2, 5] : [1]) {
      const t = m * Math.pow(10, d);
      if (t <= Math.pow(10, hi) * 1.0001) ticks.push(+t.toPrecision(6));
    }
    return { scale: "log", ticks, f: (v) => (Math.log10(v) - lo) / (hi - lo) };
  }
  const bottom = Math.min(0, mn), step = niceStep(Math.max(mx - bottom, Math.abs(mx) * 1e-3, 1e-12), 4);
  const lo = Math.floor(bottom / step) * step, hi = Math.max(Math.ceil(mx / step), Math.floor(bottom / step) + 1) * step, ticks = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(+t.toPrecision(6));
  return { scale: "linear", ticks, f: (v) => (v - lo) / (hi - lo) };
}

function drawCurves(st) {
  const c = st.el.querySelector(".curves"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const L = 44, R = 16, T = 10, B = 34, w = c.width - L - R, h = c.height - T - B;
  const total = Math.max((st.last && st.last.total) || 0, st.steps.length ? st.steps[st.steps.length - 1] : 0, 1);
  const ok = (v) => v != null && Number.isFinite(v);
  const vals = st.train.concat(st.test).filter(ok);
  const axis = vals.length ? lossAxis(vals) : { scale: "linear", ticks: [], f: () => 0 };
  const xs = Array.from({ length: Math.floor(total / niceStep(total, 4)) + 1 }, (_, i) => +(i * niceStep(total, 4)).toPrecision(6));
  const X = (s) => L + w * (s / total), Y = (v) => T + h * (1 - axis.f(v));
  g.font = "10px sans-serif"; g.lineWidth = 1;
  g.strokeStyle = "#e6e9ee"; g.fillStyle = "#445";
  g.textAlign = "right"; g.textBaseline = "middle";
  for (const t of axis.ticks) { g.beginPath(); g.moveTo(L, Y(t)); g.lineTo(L + w, Y(t)); g.stroke(); g.fillText(fmtTick(t), L - 4, Y(t)); }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of xs) g.fillText(fmtTick(t), X(t), T + h + 4);
  g.strokeStyle = "#667"; g.beginPath(); g.moveTo(L, T); g.lineTo(L, T + h); g.lineTo(L + w, T + h); g.stroke();
  g.fillText("step", L + w / 2, T + h + 18);
  g.save(); g.translate(10, T + h / 2); g.rotate(-Math.PI / 2); g.textBaseline = "middle";
  g.fillText(axis.scale === "log" ? "loss (log scale)" : "loss", 0, 0); g.restore();
  if (!vals.length) { g.fillStyle = "#889"; g.fillText("no steps yet", L + w / 2, T + h / 2); }
  const drawable = (v) => ok(v) && (axis.scale !== "log" || v > 0);
  for (const [series, dash, color] of [[st.train, [], "#1f77b4"], [st.test, [4, 3], "#ff7f0e"]]) {
    g.beginPath(); g.setLineDash(dash); g.strokeStyle = color; g.lineWidth = 1.5; let on = false, n = 0;
    series.forEach((v, i) => { if (!drawable(v)) return; n++; if (on) g.lineTo(X(st.steps[i]), Y(v)); else { g.moveTo(X(st.steps[i]), Y(v)); on = true; } });
    g.stroke();
    if (n === 1) { const i = series.findIndex(drawable); g.fillStyle = color; g.fillRect(X(st.steps[i]) - 2, Y(series[i]) - 2, 4, 4); }
  }
  g.setLineDash([]);
  // The axes as data (the end-to-end test reads them).
  Object.assign(c.dataset, {
    xLabel: "step", yLabel: "loss", yScale: axis.scale,
    xTicks: JSON.stringify(xs), yTicks: JSON.stringify(axis.ticks), yTickLabels: JSON.stringify(axis.ticks.map(fmtTick)),
  });
}

// The network as columns, input first: a dense layer's units as circles (at most 8 drawn,
// its count under them), any other layer with parameters as a box naming it; norm layers
// are counted in the caption, not drawn. A deep net keeps its first and last columns.
function drawNetwork(st, net) {
  const c = st.el.querySelector(".net"), cap = st.el.querySelector(".netcap");
  if (!c) return;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!net) { cap.textContent = "the network: drawn when the config checks"; return; }
  const shown = net.layers.filter((l) => !/Norm/.test(l.kind));
  let cols = [{ label: `in ${net.input.join("×")}`, units: net.input.length === 1 ? net.input[0] : null, box: net.input.length === 1 ? null : "input" }];
  for (const l of shown) {
    const dense = l.kind === "Linear";
    cols.push({ label: dense ? String(l.shape[0]) : `${l.shape.join("×")}`, units: dense ? l.shape[0] : null, box: dense ? null : l.kind });
  }
  let hidden = 0;
  if (cols.length > 14) { hidden = cols.length - 12; cols = cols.slice(0, 6).concat([{ label: `+${hidden} layers`, gap: true }], cols.slice(-6)); }
  const T = 8, H = c.height - 24, dx = (c.width - 40) / Math.max(cols.length - 1, 1), X = (i) => 20 + i * dx;
  const nodes = cols.map((col) => {
    if (col.units == null) return [];
    const n = Math.min(col.units, 8), gap = Math.min(12, H / Math.max(n, 1));
    return Array.from({ length: n }, (_, k) => T + H / 2 + (k - (n - 1) / 2) * gap);
  });
  g.strokeStyle = "rgba(80,100,130,0.25)"; g.lineWidth = 0.6;
  for (let i = 0; i + 1 < cols.length; i++) {
    const a = nodes[i].length ? nodes[i] : [T + H / 2], b = nodes[i + 1].length ? nodes[i + 1] : [T + H / 2];
    if (cols[i].gap || cols[i + 1].gap) continue;
    for (const ya of a) for (const yb of b) { g.beginPath(); g.moveTo(X(i), ya); g.lineTo(X(i + 1), yb); g.stroke(); }
  }
  g.font = "10px sans-serif"; g.textAlign = "center"; g.textBaseline = "top";
  cols.forEach((col, i) => {
    if (col.gap) { g.fillStyle = "#667"; g.fillText("…", X(i), T + H / 2 - 6); }
    else if (col.box) {
      g.fillStyle = "#e8eef6"; g.strokeStyle = "#3b528b"; g.lineWidth = 1;
      g.fillRect(X(i) - 16, T + H / 2 - 14, 32, 28); g.strokeRect(X(i) - 16, T + H / 2 - 14, 32, 28);
      g.fillStyle = "#1d2430"; g.fillText(col.box.replace(/\d+d$/i, "").slice(0, 6), X(i), T + H / 2 - 5);
    } else {
      g.fillStyle = i === 0 ? "#8c9bb0" : i === cols.length - 1 ? "#ff7f0e" : "#1f77b4";
      for (const y of nodes[i]) { g.beginPath(); g.arc(X(i), y, 3.2, 0, 2 * Math.PI); g.fill(); }
    }
    g.fillStyle = "#445"; g.fillText(col.label, X(i), T + H + 4);
  });
  const norms = net.layers.length - shown.length;
  cap.textContent = `the network: ${net.parameters.toLocaleString("en")} parameters, ${shown.length} layers with weights` + (norms ? ` (+${norms} norm layers)` : "") + (hidden ? `; ${hidden} middle ones not drawn` : "");
  c.dataset.layers = String(shown.length);
  c.dataset.parameters = String(net.parameters);
}

function viridis(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2), f = t - i;
  return `rgb(${stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a))).join(",")})`;
}

function drawHeat(st) {
  const c = st.el.querySelector(".heat"), g = c.getContext("2d");
  const cols = st.grad.slice(-120), layers = cols[cols.length - 1].length;
  const flat = cols.flat().filter((v) => v != null);
  const lo = Math.min(...flat), hi = Math.max(...flat);
  const w = (c.width - 10) / Math.max(cols.length, 1), h = c.height / layers;
  g.clearRect(0, 0, c.width, c.height);
  cols.forEach((col, i) => col.forEach((v, j) => {
    g.fillStyle = v == null ? "#d62728" : viridis((v - lo) / (hi - lo || 1));
    g.fillRect(i * w, j * h, Math.ceil(w), Math.ceil(h));
  }));
  c.dataset.last = JSON.stringify(cols[cols.length - 1]);  // log10 norms, input layer first
}

function drawSurface(st, s) {
  const c = st.el.querySelector(".surface"), g = c.getContext("2d");
  const n = s.n, cell = c.width / n;
  g.clearRect(0, 0, c.width, c.height);  // translucent cells: the last picture must not show through
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) {
    const i = r * n + k, conf = s.conf[i], a = 0.12 + 0.58 * Math.max(0, (conf - 1 / s.classes) / (1 - 1 / s.classes));
    g.fillStyle = CLASS[s.pred[i] % CLASS.length]; g.globalAlpha = a;
    g.fillRect(k * cell, c.height - (r + 1) * cell, Math.ceil(cell), Math.ceil(cell));
  }
  g.globalAlpha = 1;
  const [x0, x1, y0, y1] = s.extent;
  for (const [px, py, k] of s.points || []) {
    g.beginPath(); g.fillStyle = CLASS[k % CLASS.length]; g.strokeStyle = "white"; g.lineWidth = 0.6;
    g.arc((px - x0) / (x1 - x0) * c.width, c.height - (py - y0) / (y1 - y0) * c.height, 2.2, 0, 2 * Math.PI);
    g.fill(); g.stroke();
  }
  c.dataset.classes = String(new Set(s.pred).size);
  c.dataset.pred = JSON.stringify(s.pred);
}

function drawUnits(st, units) {
  const box = st.el.querySelector(".units");
  box.innerHTML = "";
  for (const layer of units) {
    const div = document.createElement("div"); div.className = "layer";
    div.textContent = `${layer.layer} (${layer.maps.length} of ${layer.total})`;
    const grid = document.createElement("div"); grid.className = "maps";
    for (const map of layer.maps) {
      const n = Math.round(Math.sqrt(map.length)), cv = document.createElement("canvas");
      cv.width = n; cv.height = n;
      const g = cv.getContext("2d"), img = g.createImageData(n, n);
      const m = Math.max(1e-12, ...map.map(Math.abs));
      map.forEach((v, i) => {
        const r = Math.floor(i / n), k = i % n, p = ((n - 1 - r) * n + k) * 4, t = v / m;
        img.data[p] = t > 0 ? 255 : Math.round(255 * (1 + t)); img.data[p + 1] = Math.round(255 * (1 - Math.abs(t)));
        img.data[p + 2] = t < 0 ? 255 : Math.round(255 * (1 - t)); img.data[p + 3] = 255;
      });
      g.putImageData(img, 0, 0); cv.title = "hover to enlarge"; grid.appendChild(cv);
    }
    div.appendChild(grid); box.appendChild(div);
  }
}

function drawHists(st, hists) {
  const box = st.el.querySelector(".hists");
  box.innerHTML = "";
  for (const h of hists) {
    const wrap = document.createElement("div"); wrap.className = "layer"; wrap.textContent = `${h.layer} [${h.lo.toPrecision(2)}, ${h.hi.toPrecision(2)}]`;
    const cv = document.createElement("canvas"); cv.width = 120; cv.height = 50;
    const g = cv.getContext("2d"), m = Math.max(...h.counts, 1), w = cv.width / h.counts.length;
    g.fillStyle = "#3b528b";
    h.counts.forEach((v, i) => g.fillRect(i * w, cv.height * (1 - v / m), w - 1, cv.height * v / m));
    wrap.appendChild(document.createElement("br")); wrap.appendChild(cv); box.appendChild(wrap);
  }
}

document.getElementById("play").onclick = () => control("play");
document.getElementById("pause").onclick = () => control("pause");
document.getElementById("step").onclick = () => control("step");
document.getElementById("reset").onclick = () => start(false);  // same config, same seed: the same init
// `dlx lab CONFIG`: start from that config (its YAML replaces the controls, as an example does).
function fromSource(name) {
  document.getElementById("source").textContent = name ? `config: ${name}'s YAML, plus each knob you change` : "config: the knobs below";
}

// A config to start from (an example, `dlx lab CONFIG`): its YAML is the base, every knob
// shows its values (the server's resolved config), and the knobs changed before are forgotten.
function useBase(yaml, name) {
  lab.example = yaml;
  lab.changed.clear();
  fromSource(name);
  edited();
}

api("/api/initial").then((r) => {
  if (r.ok && r.data.yaml) useBase(r.data.yaml, r.data.name);
  else check();  // the network the default knobs build, drawn before play
});
api("/api/examples").then((r) => {
  const sel = document.getElementById("example");
  for (const ex of r.data || []) { const o = document.createElement("option"); o.value = ex.name; o.textContent = ex.name; o.title = ex.claim; sel.appendChild(o); }
  sel.onchange = () => {
    if (!sel.value) {  // from scratch: the knobs' own defaults again
      lab.example = null; lab.changed.clear(); fromSource(null);
      for (const el of document.querySelectorAll("[data-key]")) {
        el.disabled = false; el.placeholder = "";
        if (el.type === "checkbox") el.checked = el.defaultChecked;
        else if (el.tagName === "SELECT") el.value = ([...el.options].find((o) => o.defaultSelected) || el.options[0]).value;
        else el.value = el.defaultValue;
      }
      edited();
      return;
    }
    const name = sel.value;
    fetch(`/api/examples/${encodeURIComponent(name)}`, { headers: { "X-DLX-Token": token || "" } }).then((r) => r.text()).then((text) => { if (sel.value === name) useBase(text, name); });
  };
});
for (const el of document.querySelectorAll("[data-key]")) {
  const changed = () => { if (lab.example) lab.changed.add(el.dataset.key); edited(); };
  el.addEventListener("input", changed);
  el.addEventListener("change", changed);
}
document.getElementById("sets").addEventListener("input", edited);
for (const el of document.querySelectorAll("input[name=slot]")) el.addEventListener("change", checkSoon);
