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

// The user's own data (uploaded or drawn): the data spec the lab's POST /api/data answered,
// in place of the config's whole data mapping.
// Regression data trains with train.loss: mse (the default, cross_entropy, needs classes).
function dataSets() {
  if (!lab.dataSpec) return [];
  return [`data=${JSON.stringify(lab.dataSpec)}`].concat(lab.dataTask === "regression" ? ["train.loss=mse"] : []);
}

function trainBody() {
  if (lab.example) return { yaml: lab.example, sets: knobSets().concat(dataSets(), sets()) };
  const c = controlsConfig();
  if (lab.dataSpec) c.data = { ...lab.dataSpec };
  if (lab.dataSpec && lab.dataTask === "regression") c.train.loss = "mse";
  return { config: c, sets: sets() };
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
    el.title = v === undefined ? "this config has no such key: its YAML (below) says what trains" : LIVE[key] ? "changes the running run at once (marked on its loss curves)" : "";
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
    if (!st || (st.preview && !st.replay)) preview(slot(), r.data.network);
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

// A new run in slot s (the one the radio picks) of body (what the knobs train); its body is
// kept on the slot (a fix starts run B from it).
function start(play, s = slot(), body = trainBody()) {
  return api("/api/runs", { session, slot: s, ...body, play }).then((r) => {
    if (!r.ok) { showProblems(r.data); return null; }
    checkSeq++;  // an older check's answer is about an older edit
    showProblems(null);
    showConfig(r.data);  // the knobs show what this run trains
    lab.checked = r.data;
    const st = listen(s, r.data.run, r.data.network);
    st.body = body;
    st.config = r.data.config;
    return st;
  });
}

function control(action) {
  const st = lab.slots[slot()];
  // Play or step after an edit trains the edited config (a new run replaces this one): a
  // knob changed while a net trains is never silently ignored.
  const fresh = !st || st.done || st.preview || st.replay || (lab.edited && (action === "play" || action === "step"));
  if (fresh) { if (action === "play" || action === "step") start(action === "play").then(() => { if (action === "step") control("step"); }); return; }
  api(`/api/runs/${st.run}/${action}`, {});
}

function edited() {
  lab.edited = true;
  checkSeq++;  // a check already asked is about the config before this edit: its answer is dropped
  const st = lab.slots[slot()];
  if (st && !st.preview && !st.replay) st.el.querySelector(".pending").textContent = "the knobs changed since this run started: play (or step) trains them, reset starts them paused";
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
  const st = {
    name: s, run, el, steps: [], train: [], test: [], grad: [], events: 0, done: false, last: null, verdict: null, preview: !run,
    network, net: null, selected: null, changes: [], phases: null, fix: null,
  };
  lab.slots[s] = st;
  drawNetwork(st, network);
  buildNetView(st, network);
  drawCurves(st);
  const weights = el.querySelector(".weights");
  weights.hidden = !run;
  weights.onclick = () => downloadWeights(st);
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
  st.source.addEventListener("end", () => { drawPictures(st); st.done = true; st.source.close(); });
  return st;
}

function onEvent(st, ev) {
  if (ev.t != null) lab.latency.push(Date.now() - ev.t * 1000);
  st.events += 1;
  if (ev.total != null) st.total = ev.total;
  if (ev.step != null) st.step = ev.step;
  st.last = ev;
  if (ev.error) { st.el.querySelector(".status").textContent = "failed: " + ev.error; st.done = true; return; }
  st.el.querySelector(".status").textContent = `step ${st.step} of ${st.total ?? "?"}` + (ev.status ? ` — ${ev.status}` : "");
  if (ev.metrics) {
    st.steps.push(ev.step);
    st.train.push(ev.metrics.train_loss);
    st.test.push(ev.metrics.test_loss);
    drawCurves(st);
  }
  if (ev.grad) { st.grad.push(ev.grad); drawHeat(st); }
  if (ev.change) addChange(st, ev);
  // Pictures are drawn at the next frame, the newest only: a page that falls behind skips
  // pictures, never the events (the last event's are drawn at once: the run's final state).
  const pics = PICTURES.filter((k) => ev[k] !== undefined);
  if (pics.length) {
    st.pics = st.pics || {};
    for (const k of pics) st.pics[k] = ev[k];
    if (ev.final || ev.replay) drawPictures(st);
    else schedulePictures(st);
  }
  if (ev.phases) drawPhases(st, ev.phases);
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
    if (ev.verdict.final && ev.verdict.kind && ev.verdict.kind !== "healthy" && st.run && !st.fixAsked) offerFix(st);
  }
  if (ev.final) st.done = true;
}

// Pictures at most every PICTURE_MIN_MS, at a frame: a page behind its stream (a slow
// machine, a big net) catches up on the events first and draws the newest pictures once.
const PICTURES = ["surface", "net", "net_summary", "units", "hist"], PICTURE_MIN_MS = 300;
function schedulePictures(st) {
  if (st.frame) return;
  const wait = Math.max(0, (st.drawnAt || 0) + PICTURE_MIN_MS - performance.now());
  st.frame = setTimeout(() => requestAnimationFrame(() => { st.frame = 0; drawPictures(st); }), wait);
}
function drawPictures(st) {
  if (st.frame) { clearTimeout(st.frame); st.frame = 0; }
  const p = st.pics;
  st.pics = null;
  if (!p) return;
  if (p.surface) drawSurface(st, p.surface);
  if (p.net || p.net_summary || p.units || p.surface) updateNetView(st, p);
  if (p.units && !st.nv) drawUnits(st, p.units);  // the network view draws them otherwise
  if (p.hist) drawHists(st, p.hist);
  const tip = document.getElementById("tip");
  if (!tip.hidden && lab.tipOn && lab.tipOn.st === st && lab.tipOn.el.isConnected) tip.textContent = tipText(st, lab.tipOn.el);
  st.drawnAt = performance.now();
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
  const total = Math.max(st.total || 0, st.steps.length ? st.steps[st.steps.length - 1] : 0, 1);
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
  // A knob changed while it trained: a dashed vertical line at that step, labelled.
  g.setLineDash([3, 2]); g.strokeStyle = "#7b3fb0"; g.fillStyle = "#7b3fb0"; g.lineWidth = 1; g.textAlign = "left"; g.textBaseline = "top";
  st.changes.forEach((ch, i) => {
    const x = X(Math.min(ch.step, total));
    g.beginPath(); g.moveTo(x, T); g.lineTo(x, T + h); g.stroke();
    g.fillText(changeText(ch.change, true), Math.min(x + 2, L + w - 40), T + 2 + 11 * (i % 4));
  });
  g.setLineDash([]);
  // The axes as data (the end-to-end test reads them).
  Object.assign(c.dataset, {
    xLabel: "step", yLabel: "loss", yScale: axis.scale,
    xTicks: JSON.stringify(xs), yTicks: JSON.stringify(axis.ticks), yTickLabels: JSON.stringify(axis.ticks.map(fmtTick)),
    changes: JSON.stringify(st.changes.map((ch) => ch.step)),
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
        const c = diverging(t);  // as the network view: blue positive, orange negative
        img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2]; img.data[p + 3] = 255;
      });
      g.putImageData(img, 0, 0); cv.title = "a unit's output over the input plane (blue positive, orange negative, white 0); hover to enlarge"; grid.appendChild(cv);
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
    cv.title = `${h.layer}: its activations over a batch of training inputs, a histogram from ${h.lo.toPrecision(2)} (left) to ${h.hi.toPrecision(2)} (right)`;
    const g = cv.getContext("2d"), m = Math.max(...h.counts, 1), w = cv.width / h.counts.length;
    g.fillStyle = "#3b528b";
    h.counts.forEach((v, i) => g.fillRect(i * w, cv.height * (1 - v / m), w - 1, cv.height * v / m));
    wrap.appendChild(document.createElement("br")); wrap.appendChild(cv); box.appendChild(wrap);
  }
}

// ---------------------------------------------------------------- the network view
// TensorFlow Playground's picture of a dense net, in an SVG: the inputs, every hidden unit
// as a small map of what it computes over the input plane (2-D data), a line per weight
// coloured by its sign (blue positive, orange negative) and as thick and deep as |w| is
// large in its layer, then the outputs and the decision surface. One <g data-unit=
// "LAYER:INDEX"> per hidden unit, one <line data-edge="LAYER:OUT:IN"> per weight (LAYER as
// the network payload names it). Drawn before play from the network's shape; the weights
// come with the run's events ("net"). A net too big to draw unit by unit gets a summary per
// layer instead ("net_summary").
const SVG = "http://www.w3.org/2000/svg";
const POS = [31, 119, 180], NEG = [255, 127, 14];
const MAX_DRAWN_UNITS = 128, MAX_DRAWN_INPUTS = 64, MAX_DRAWN_EDGES = 40000;

function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// A value in [-1, 1] as a colour: orange negative, white zero, blue positive.
function diverging(t) {
  const c = t >= 0 ? POS : NEG, a = Math.min(1, Math.abs(t) || 0);
  return c.map((v) => Math.round(255 + a * (v - 255)));
}
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;

// Numbers as the formulas show them: two significant digits, a negative one in brackets.
function f2(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return a >= 10 ? String(Math.round(v * 10) / 10) : v.toPrecision(2);
}
const par = (v) => (typeof v === "number" && v < 0 ? `(${f2(v)})` : f2(v));
function vec(v, n = 6) {
  if (!Array.isArray(v)) return f2(v);
  if (v.length && Array.isArray(v[0])) return `${vec(v[0], n)} (the first of ${v.length})`;
  return `[${v.slice(0, n).map(f2).join(", ")}${v.length > n ? `, … ${v.length - n} more` : ""}]`;
}

// The layers a network view draws: the dense ones (norm layers are counted, not drawn);
// null for a net with other layers (a CNN, an RNN: the strip above and a summary per layer).
function denseLayers(network) {
  if (!network || !network.layers) return null;
  const ls = network.layers.filter((l) => !/Norm/.test(l.kind));
  if (!ls.length || !ls.every((l) => /Linear/.test(l.kind) && l.shape.length === 2)) return null;
  return ls;
}
const is2d = (network) => !!network && network.input.length === 1 && network.input[0] === 2;
const inputs = (network) => network.input.reduce((a, b) => a * b, 1);

function buildNetView(st, network) {
  const box = st.el.querySelector(".netview"), fig = st.el.querySelector(".netfig");
  box.innerHTML = "";
  st.nv = null;
  const layers = denseLayers(network);
  if (!network) { fig.hidden = true; return; }
  const edges = layers ? layers.reduce((a, l) => a + l.shape[0] * l.shape[1], 0) : 0;
  if (!layers || inputs(network) > MAX_DRAWN_INPUTS || layers.some((l) => l.shape[0] > MAX_DRAWN_UNITS) || edges > MAX_DRAWN_EDGES) {
    fig.hidden = true;  // too many units (or not a dense net): a summary per layer
    drawNetSummary(st, network.layers.filter((l) => !/Norm/.test(l.kind)).map((l) => ({ name: l.name, units: l.shape[0] })));
    return;
  }
  fig.hidden = false;
  const plane = is2d(network), surf = plane && network.task === "classification";
  const cols = [{ kind: "input", n: inputs(network), name: "input" }];
  layers.forEach((l, i) => cols.push({ kind: i === layers.length - 1 ? "output" : "hidden", n: l.shape[0], name: l.name, layer: l, li: i }));
  const maxN = Math.max(...cols.map((c) => c.n));
  const VW = 520, top = 28, H = Math.max(150, Math.min(maxN * 30, 380)), right = surf ? 100 : 12, gap = 3;
  // A tall column wraps into sub-columns: the largest units that fit its share of the width.
  const budget = (VW - 30 - right) / cols.length - 8;
  for (const c of cols) {
    let best = null;
    for (let k = 1; k <= 8; k++) {
      const rows = Math.ceil(c.n / k), s = Math.max(3, Math.min(26, H / rows - gap)), w = Math.ceil(c.n / rows) * (s + gap) - gap;
      if (!best || (w <= budget && s > best.s)) best = { s, rows, w };
    }
    Object.assign(c, best);
  }
  const x0 = 26 + cols[0].w / 2, x1 = VW - right - cols[cols.length - 1].w / 2;
  cols.forEach((c, i) => {
    c.x = cols.length > 1 ? x0 + (x1 - x0) * i / (cols.length - 1) : x0;
    const hgt = c.rows * (c.s + gap) - gap, y0 = top + (H - hgt) / 2;
    c.pos = Array.from({ length: c.n }, (_, j) => [c.x - c.w / 2 + Math.floor(j / c.rows) * (c.s + gap), y0 + (j % c.rows) * (c.s + gap)]);
  });
  const VH = top + H + 30, pct = (v, of) => `${(100 * v / of).toFixed(3)}%`;
  const root = svg("svg", { viewBox: `0 0 ${VW} ${VH}`, class: "nv", role: "img", "aria-label": "the network: inputs, hidden units, weights and outputs" }, box);
  const gEdges = svg("g", { class: "edges", "aria-label": "one line per weight: blue positive, orange negative, thicker and deeper for a larger |w| in its layer; hover one for its value" }, root), gUnits = svg("g", { class: "nodes" }, root);
  const nv = { cols, layers, edges: [], units: {}, outs: [], surf: null, root, labels: [] };
  st.nv = nv;
  layers.forEach((l, li) => {
    const a = cols[li], b = cols[li + 1], lines = [];
    if (a.n === l.shape[1]) {
      for (let j = 0; j < b.n; j++) for (let i = 0; i < a.n; i++) {
        const [xa, ya] = a.pos[i], [xb, yb] = b.pos[j];
        lines.push(svg("line", {
          x1: (xa + a.s).toFixed(1), y1: (ya + a.s / 2).toFixed(1), x2: xb.toFixed(1), y2: (yb + b.s / 2).toFixed(1),
          stroke: "#c9d1db", "stroke-width": "0.5", "data-edge": `${l.name}:${j}:${i}`,
        }, gEdges));
      }
    }
    nv.edges.push(lines);
  });
  cols.forEach((c, ci) => {
    // Above a column: its layer's name and units, and its activation; under it: the largest |w| into it.
    const t = svg("text", { x: c.x.toFixed(1), y: top - 17, class: "collabel" }, root);
    t.textContent = c.kind === "input" ? "input" : c.name;
    const t2 = svg("text", { x: c.x.toFixed(1), y: top - 7, class: "colnote" }, root);
    nv.narrow = cols.length > 1 && (x1 - x0) / (cols.length - 1) < 58;  // no room for the activation's name
    t2.textContent = c.kind === "input" ? `${c.n}` : c.kind === "output" ? `${c.n} out` : nv.narrow ? `${c.n}` : `${c.n} ${((st.config || (lab.checked && lab.checked.config) || {}).activation || {}).name || ""}`;
    const under = svg("text", { x: c.x.toFixed(1), y: top + H + 14, class: "colnote" }, root);
    nv.labels[ci] = { under, t2 };
    c.pos.forEach(([x, y], j) => {
      if (c.kind === "input") {
        const g = svg("g", { class: "input", "data-input": String(j), "aria-label": plane ? `input x${j + 1}: its value over the plane (orange low, blue high)` : `input feature x${j + 1}` }, gUnits);
        if (plane) svg("image", { x, y, width: c.s, height: c.s, preserveAspectRatio: "none", href: inputMap(j) }, g);
        else svg("rect", { x, y, width: c.s, height: c.s, class: "feature" }, g);
        if (c.n <= 16) { const lbl = svg("text", { x: x - 3, y: y + c.s / 2 + 3, class: "inlabel" }, g); lbl.textContent = `x${j + 1}`; }
      } else if (c.kind === "hidden") {
        // A unit's map: a canvas laid over the SVG where its square is (drawn pixel by
        // pixel at each picture: far cheaper than an SVG image per unit).
        const key = `${c.name}:${j}`, cv = document.createElement("canvas");
        cv.width = cv.height = 16; cv.className = "unitmap"; cv.dataset.unit = key; cv.tabIndex = 0;
        cv.setAttribute("aria-label", `${c.name} unit ${j}: its output over the input plane (orange negative, white 0, blue positive); hover for its value and formula, click for its gradient and histogram`);
        Object.assign(cv.style, { left: pct(x, VW), top: pct(y, VH), width: pct(c.s, VW), height: pct(c.s, VH) });  // CSSOM: allowed by the CSP
        box.appendChild(cv);
        nv.units[key] = { el: cv, li: c.li, j, col: ci };
        cv.addEventListener("click", () => selectUnit(st, key));
        cv.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") selectUnit(st, key); });
      } else {
        const cls = network.task === "classification";
        const g = svg("g", { class: "out", "data-out": String(j), "aria-label": cls ? `output ${j}: class ${j}'s score (logit), in its class colour` : `output ${j}: the prediction` }, gUnits);
        svg("rect", { x, y, width: c.s, height: c.s, class: "outunit", fill: cls ? CLASS[j % CLASS.length] : "#b8c2cf" }, g);
        nv.outs.push(g);
      }
    });
  });
  if (surf) {
    const s = 84, x = VW - right + 12, y = top + H / 2 - s / 2;
    const g = svg("g", { class: "outsurface", "aria-label": "the output: the class the net predicts over the input plane (class colours, paler where less sure)" }, root);
    svg("rect", { x: x - 1, y: y - 1, width: s + 2, height: s + 2, class: "frame" }, g);
    nv.surf = svg("image", { x, y, width: s, height: s, preserveAspectRatio: "none" }, g);
    const t = svg("text", { x: x + s / 2, y: y - 6, class: "collabel" }, root); t.textContent = "decision";
  }
  box.addEventListener("mouseover", (e) => showTip(st, e));
  box.addEventListener("mousemove", moveTip);
  box.addEventListener("mouseleave", hideTip);
  box.addEventListener("focusin", (e) => showTip(st, e));
  box.addEventListener("focusout", hideTip);
  if (st.net) colourNet(st);
}

// Input xi over the plane: orange at its low end, blue at its high end (x1 left to right, x2 bottom to top).
function inputMap(i) {
  const n = 16, cv = document.createElement("canvas"); cv.width = n; cv.height = n;
  const g = cv.getContext("2d"), img = g.createImageData(n, n);
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) {
    const t = i === 0 ? (2 * k) / (n - 1) - 1 : 1 - (2 * r) / (n - 1), c = diverging(t), p = (r * n + k) * 4;
    img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2]; img.data[p + 3] = 255;
  }
  g.putImageData(img, 0, 0);
  return cv.toDataURL();
}

// A unit's map (row 0 at the bottom of the plane), m its colour scale's end.
const RAMP = Array.from({ length: 257 }, (_, i) => diverging((i - 128) / 128));  // t in [-1, 1] by 1/128
function drawMap(cv, map, m) {
  const n = Math.round(Math.sqrt(map.length));
  if (cv.width !== n) { cv.width = n; cv.height = n; }
  const g = cv.getContext("2d"), img = g.createImageData(n, n), d = img.data;
  for (let i = 0; i < map.length; i++) {
    const r = (i / n) | 0, p = ((n - 1 - r) * n + (i % n)) * 4, c = RAMP[128 + Math.max(-128, Math.min(128, Math.round((128 * map[i]) / m)))] || RAMP[128];
    d[p] = c[0]; d[p + 1] = c[1]; d[p + 2] = c[2]; d[p + 3] = 255;
  }
  g.putImageData(img, 0, 0);
  cv.dataset.drawn = String((+cv.dataset.drawn || 0) + 1);
}
const mapCanvas = document.createElement("canvas");

function surfaceURL(s) {
  const n = s.n;
  mapCanvas.width = n; mapCanvas.height = n;
  const g = mapCanvas.getContext("2d"), img = g.createImageData(n, n);
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) {
    const i = r * n + k, a = 0.15 + 0.75 * Math.max(0, (s.conf[i] - 1 / s.classes) / (1 - 1 / s.classes));
    const hex = CLASS[s.pred[i] % CLASS.length], p = ((n - 1 - r) * n + k) * 4;
    [1, 3, 5].forEach((o, q) => { img.data[p + q] = Math.round(255 + a * (parseInt(hex.slice(o, o + 2), 16) - 255)); });
    img.data[p + 3] = 255;
  }
  g.putImageData(img, 0, 0);
  return mapCanvas.toDataURL();
}

function updateNetView(st, ev) {
  if (ev.net_summary) {
    drawNetSummary(st, ev.net_summary);
    if (!st.net && st.nv) { st.el.querySelector(".netfig").hidden = true; st.nv = null; }  // the server drew the line: a summary
  }
  const nv = st.nv;
  if (!nv && ev.net && !ev.net_summary) { st.net = ev.net; drawNetSummary(st, summaryOf(ev.net)); }
  if (!nv) return;
  if (ev.net) { st.net = ev.net; colourNet(st); if (!ev.units && !nv.maps) fillByProbe(st); }
  if (ev.units) {
    const hidden = nv.cols.filter((c) => c.kind === "hidden");
    hidden.forEach((c, h) => {
      const u = ev.units.find((x) => x.layer === c.name) || ev.units[h];
      if (!u) return;
      // Each map on its own scale (its shape shows), but never finer than a tenth of its
      // layer's largest output (a nearly silent unit stays pale).
      const own = u.maps.map((map) => { let a = 0; for (const v of map) if (Math.abs(v) > a) a = Math.abs(v); return a; });
      const floor = Math.max(1e-12, 0.1 * Math.max(0, ...own));
      u.maps.forEach((map, j) => { const x = nv.units[`${c.name}:${j}`]; if (x) drawMap(x.el, map, Math.max(own[j], floor)); });
    });
    nv.maps = ev.units;
  }
  if (ev.surface && nv.surf) nv.surf.setAttribute("href", surfaceURL(ev.surface));
  if (st.selected) drawUnitPanel(st);
}

// Each weight's line from the newest "net": its sign's colour, deeper and thicker for a
// larger |w| (relative to the largest |w| of its layer, said under each column).
function colourNet(st) {
  const nv = st.nv, net = st.net;
  if (!nv || !net) return;
  nv.layers.forEach((l, li) => {
    const L = net.layers.find((x) => x.name === l.name);
    const lbl = nv.labels[li + 1], col = nv.cols[li + 1];
    if (L && L.activation && lbl && col.kind === "hidden") lbl.t2.textContent = nv.narrow ? `${col.n}` : `${col.n} ${L.activation}`;
    if (L && L.activation && lbl && col.kind === "hidden") lbl.t2.setAttribute("aria-label", `${col.n} units, ${L.activation}`);
    if (!L || !L.W) return;
    const lines = nv.edges[li], nin = l.shape[1];
    let m = 0;
    for (const row of L.W) for (const w of row) m = Math.max(m, Math.abs(w));
    if (lbl) lbl.under.textContent = `|w| ≤ ${f2(m)}`;
    // |w| / max in LEVELS steps: a line is touched only when its step changes (thousands of
    // lines, a few of them each picture).
    lines.forEach((e, k) => {
      const w = (L.W[Math.floor(k / nin)] || [])[k % nin] || 0, level = m > 0 ? Math.round((LEVELS * Math.abs(w)) / m) : 0;
      const key = w >= 0 ? level : -level;
      if (e.dlxLevel === key) return;
      e.dlxLevel = key;
      e.setAttribute("stroke", EDGE_STROKE[key + LEVELS]);
      e.setAttribute("stroke-width", EDGE_WIDTH[level]);
    });
  });
}

// Without maps (data that is not a 2-D classification): each unit's square is the colour
// of its output at the probe input, on its layer's scale.
function fillByProbe(st) {
  const nv = st.nv, post = st.net && st.net.probe && st.net.probe.post;
  if (!nv || !post) return;
  nv.cols.forEach((c) => {
    if (c.kind !== "hidden") return;
    const li = st.net.layers.findIndex((l) => l.name === c.name), v = post[li] || [];
    const m = Math.max(1e-12, ...v.map((x) => Math.abs(x) || 0));
    v.forEach((x, j) => {
      const u = nv.units[`${c.name}:${j}`];
      if (!u) return;
      const g = u.el.getContext("2d"), col = diverging(x / m);
      g.fillStyle = rgb(col); g.fillRect(0, 0, u.el.width, u.el.height);
      u.el.dataset.drawn = String((+u.el.dataset.drawn || 0) + 1);
      u.el.setAttribute("aria-label", `${c.name} unit ${j}: its output at the probe input, ${f2(x)} (orange negative, white 0, blue positive); hover for its formula, click for its gradient and histogram`);
    });
  });
}

const LEVELS = 24;
const EDGE_STROKE = Array.from({ length: 2 * LEVELS + 1 }, (_, i) => rgb(diverging((i - LEVELS) / LEVELS)));
const EDGE_WIDTH = Array.from({ length: LEVELS + 1 }, (_, l) => (0.3 + (2.4 * l) / LEVELS).toFixed(2));

// ---------------------------------------------------------------- hover: values and formulas

function netLayer(st, name) {
  const net = st.net;
  if (!net) return [null, -1];
  const li = net.layers.findIndex((l) => l.name === name);
  return [li >= 0 ? net.layers[li] : null, li];
}

// The input of layer li and its pre- and post-activations at the probe point.
function probeOf(net, li) {
  const p = net.probe || {};
  return { x: li === 0 ? p.x : (p.post || [])[li - 1], pre: (p.pre || [])[li], post: (p.post || [])[li] };
}

// "z = 0.31·0.52 + (-1.2)·0.10 + 0.05 = 0.09 → relu → 0.09": a unit's sum with the numbers in.
function unitFormula(st, name, j) {
  const [L, li] = netLayer(st, name);
  if (!L || !L.W || !L.W[j]) return "its weights arrive with the run's first event (play or reset)";
  const w = L.W[j], b = L.b ? L.b[j] : 0, p = probeOf(st.net, li);
  if (!p.x) return `z = Σ w·x + b with w = ${vec(w)}, b = ${f2(b)}`;
  const terms = w.slice(0, 6).map((wi, i) => `${par(wi)}·${par(p.x[i])}`);
  if (w.length > 6) terms.push(`… (${w.length - 6} more terms)`);
  const z = p.pre ? p.pre[j] : w.reduce((a, wi, i) => a + wi * p.x[i], b);
  let s = `z = ${terms.join(" + ")} + ${par(b)} = ${f2(z)}`;
  const act = L.activation && L.activation !== "none" ? L.activation : null;
  if (act && p.post && p.post[j] != null) s += ` → ${act} → ${f2(p.post[j])}`;
  return s;
}

function tipText(st, el) {
  const probe = st.net && st.net.probe && st.net.probe.x ? `at the probe point x = ${vec(st.net.probe.x, 4)}` : "";
  if (el.dataset.unit) {
    const [name, j] = [el.dataset.unit.replace(/:\d+$/, ""), +el.dataset.unit.split(":").pop()];
    const [L, li] = netLayer(st, name);
    const lines = [`${name} unit ${j}`];
    if (L) {
      const p = probeOf(st.net, li);
      if (p.post && p.post[j] != null) lines.push(`output ${f2(p.post[j])} ${probe}`);
      lines.push(unitFormula(st, name, j));
      if (L.unit_grad && L.unit_grad[j] != null) lines.push(`gradient ${f2(L.unit_grad[j])} (click for its histogram)`);
    } else lines.push("not trained yet: its value and formula show once the run starts");
    lines.push("map: its output over the input plane (orange negative, white 0, blue positive)");
    return lines.join("\n");
  }
  if (el.dataset.edge) {
    const parts = el.dataset.edge.split(":"), i = +parts.pop(), j = +parts.pop(), name = parts.join(":");
    const [L, li] = netLayer(st, name);
    const from = li <= 0 ? `x${i + 1}` : `${st.net.layers[li - 1].name} unit ${i}`;
    if (!L || !L.W) return `${name}: the weight from ${li < 0 && !st.net ? `input ${i}` : from} to unit ${j}\nits value arrives with the run's first event`;
    const w = L.W[j][i], p = probeOf(st.net, li);
    const lines = [`${name} w[${j}][${i}] = ${f2(w)} (${w >= 0 ? "blue: positive" : "orange: negative"})`, `from ${from} to ${name} unit ${j}`];
    if (p.x && p.x[i] != null) lines.push(`carries w·x = ${par(w)}·${par(p.x[i])} = ${f2(w * p.x[i])} into its z ${probe}`);
    return lines.join("\n");
  }
  if (el.dataset.input) {
    const i = +el.dataset.input, x = st.net && st.net.probe && st.net.probe.x;
    return `input x${i + 1}` + (x ? ` = ${f2(x[i])} ${probe}` : "") + (is2d(st.network) ? "\nmap: its value over the plane (orange low, blue high)" : "");
  }
  if (el.dataset.out) {
    const j = +el.dataset.out, last = st.net ? st.net.layers.length - 1 : -1;
    const lines = [`output ${j}` + (st.network && st.network.task === "classification" ? `: class ${j}'s score (logit), in its colour` : "")];
    if (last >= 0) lines.push(unitFormula(st, st.net.layers[last].name, j));
    return lines.join("\n");
  }
  return el.getAttribute("aria-label") || "";
}

function showTip(st, e) {
  const el = e.target.closest && e.target.closest("[data-unit],[data-edge],[data-input],[data-out],.outsurface");
  if (!el) { hideTip(); return; }
  const tip = document.getElementById("tip");
  tip.textContent = tipText(st, el);
  tip.hidden = false;
  lab.tipOn = { st, el };  // its text follows the run while it shows
  tip.dataset.for = el.dataset.unit || el.dataset.edge || "";
  if (e.clientX != null) moveTip(e);
  else { const r = el.getBoundingClientRect(); moveTip({ clientX: r.right, clientY: r.bottom }); }
}
function moveTip(e) {
  const tip = document.getElementById("tip");
  if (tip.hidden || e.clientX == null) return;
  const x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8), y = Math.min(e.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${Math.max(4, x)}px`; tip.style.top = `${Math.max(4, y)}px`;
}
function hideTip() { document.getElementById("tip").hidden = true; }

// ---------------------------------------------------------------- a chosen unit

function selectUnit(st, key) {
  st.selected = st.selected === key ? null : key;
  if (st.nv) for (const [k, u] of Object.entries(st.nv.units)) u.el.classList.toggle("selected", k === st.selected);
  drawUnitPanel(st);
}

function drawUnitPanel(st) {
  const box = st.el.querySelector(".unitpanel"), key = st.selected;
  box.hidden = !key;
  if (!key) return;
  const name = key.replace(/:\d+$/, ""), j = +key.split(":").pop(), [L] = netLayer(st, name);
  box.innerHTML = "";
  box.dataset.unit = key;
  const head = document.createElement("div"); head.className = "panelhead";
  head.textContent = `${name} unit ${j}`;
  const close = document.createElement("button"); close.type = "button"; close.textContent = "×"; close.title = "close (or click the unit again)";
  close.onclick = () => selectUnit(st, key);
  head.appendChild(close); box.appendChild(head);
  const row = document.createElement("div"); row.className = "panelrow"; box.appendChild(row);
  const unit = st.nv && st.nv.units[key];
  if (unit && unit.el.dataset.drawn) {
    const big = document.createElement("canvas"); big.width = unit.el.width; big.height = unit.el.height; big.className = "bigmap";
    big.getContext("2d").drawImage(unit.el, 0, 0);
    big.title = "its output over the input plane: orange negative, white 0, blue positive (its own scale)";
    row.appendChild(big);
  }
  const right = document.createElement("div"); row.appendChild(right);
  const grad = document.createElement("div"); grad.className = "unitgrad";
  grad.textContent = L && L.unit_grad ? `gradient: ${f2(L.unit_grad[j])} (|dL/d of its output|, over the last interval)` : "gradient: once the run trains";
  right.appendChild(grad);
  const h = L && L.unit_hist && L.unit_hist[j];
  const cv = document.createElement("canvas"); cv.width = 180; cv.height = 54; cv.className = "unithist";
  cv.title = "its activations over a batch of training inputs: a histogram (counts per bin, from lo at left to hi at right)";
  right.appendChild(cv);
  const cap = document.createElement("div"); cap.className = "histcap";
  if (h) {
    const g = cv.getContext("2d"), m = Math.max(...h.counts, 1), w = cv.width / h.counts.length;
    g.fillStyle = "#3b528b";
    h.counts.forEach((v, i) => g.fillRect(i * w, cv.height * (1 - v / m), w - 1, cv.height * v / m));
    cap.textContent = `activations from ${f2(h.lo)} to ${f2(h.hi)}`;
    cv.dataset.counts = JSON.stringify(h.counts);
  } else cap.textContent = "its histogram comes with the run's events";
  right.appendChild(cap);
  const formula = document.createElement("div"); formula.className = "formula"; formula.textContent = unitFormula(st, name, j);
  box.appendChild(formula);
}

// ---------------------------------------------------------------- a net too big to draw

function drawNetSummary(st, rows) {
  const box = st.el.querySelector(".netsummary");
  box.hidden = false;
  box.innerHTML = "";
  const t = document.createElement("table");
  t.innerHTML = "<thead><tr><th>layer</th><th>units</th><th>gradient norm</th><th>dead</th><th>saturated</th></tr></thead>";
  const tb = document.createElement("tbody"); t.appendChild(tb);
  // grad: log10 of the layer's median unit gradient norm (the last step's).
  const logs = rows.map((r) => r.grad).filter((v) => v != null && Number.isFinite(v));
  const lo = Math.min(...logs), hi = Math.max(...logs);
  for (const r of rows) {
    const tr = document.createElement("tr"); tr.dataset.layer = r.name;
    const cell = (text, title) => { const td = document.createElement("td"); td.textContent = text; if (title) td.title = title; tr.appendChild(td); return td; };
    cell(r.name); cell(r.units != null ? String(r.units) : "");
    const g = cell("");
    if (r.grad != null) {
      const bar = document.createElement("span"); bar.className = "gbar";
      const f = hi > lo ? (r.grad - lo) / (hi - lo) : 1, norm = Math.pow(10, r.grad);
      bar.style.width = `${Math.round(8 + 72 * f)}px`;  // CSSOM, not an inline style: the CSP allows it
      bar.title = `median unit gradient norm ${f2(norm)} (bar: log scale, shortest for the layer with the smallest)`;
      g.append(bar, ` ${f2(norm)}`);
    } else if (st.events) {
      g.textContent = "0";
      g.title = "the median unit's gradient is 0 (or not finite): most of this layer's units get no gradient";
    } else g.textContent = "once it trains";
    const trained = !!st.events;
    cell(r.dead != null ? String(r.dead) : trained ? "–" : "", r.dead != null ? "units whose output is 0 for every input of a batch" : "no dead units to count: this activation has no flat zero side");
    cell(r.saturated != null ? String(r.saturated) : trained ? "–" : "", r.saturated != null ? "units stuck at their activation's flat ends" : "no saturated units to count: this activation is unbounded");
    tb.appendChild(tr);
  }
  const cap = document.createElement("div"); cap.className = "netcap";
  cap.textContent = "too big to draw unit by unit: each layer's units, its median unit's gradient norm (bar on a log scale), dead and saturated units";
  box.append(cap, t);
}

// A net the page does not draw unit by unit (over MAX_DRAWN_EDGES lines) but whose weights
// came: its summary read from them (the median unit's gradient; dead: units whose output
// was 0 on every input).
function summaryOf(net) {
  return net.layers.map((l) => {
    const g = (l.unit_grad || []).filter((v) => Number.isFinite(v)).sort((a, b) => a - b), med = g.length ? g[g.length >> 1] : null;
    const dead = (l.unit_hist || []).filter((h) => h.lo === 0 && h.hi === 0).length;
    return { name: l.name, units: l.W ? l.W.length : null, grad: med > 0 ? Math.log10(med) : null, dead: l.unit_hist ? dead : null, saturated: null };
  });
}

// ---------------------------------------------------------------- step mode: the four phases

function firstUnit(st) {
  if (st.nv) { const k = Object.keys(st.nv.units)[0]; if (k) return k; }
  const ls = denseLayers(st.network);
  return ls && ls.length > 1 ? `${ls[0].name}:0` : null;
}

function waitFor(cond, ms = 20000) {
  return new Promise((resolve) => {
    const t0 = Date.now(), tick = () => (cond() || Date.now() - t0 > ms ? resolve(cond()) : setTimeout(tick, 30));
    tick();
  });
}

async function stepPhases() {
  let st = lab.slots[slot()];
  if (!st || st.preview || st.done || st.replay || lab.edited) {
    st = await start(false);  // a new run, paused at step 0
    if (!st) return;
  }
  await waitFor(() => st.events >= 1);
  // Phases are shown on a paused run: pause it first (it stops after its current step).
  let now = await api(`/api/runs/${st.run}`);
  if (now.ok && now.data.status !== "paused") {
    await api(`/api/runs/${st.run}/pause`, {});
    for (let i = 0; i < 200 && now.ok && now.data.status !== "paused" && !st.done; i++) {
      await new Promise((res) => setTimeout(res, 50));
      now = await api(`/api/runs/${st.run}`);
    }
  }
  const unit = st.selected || firstUnit(st);
  if (!unit) { showProblems({ error: "step (phases) shows a unit of a dense net: this network has none to show" }); return; }
  const r = await api(`/api/runs/${st.run}/phases`, { unit });
  if (!r.ok) { showProblems(missingRoute(r, "POST /api/runs/RUN/phases")); return; }
  showProblems(null);
  if (r.data && r.data.phases) drawPhases(st, r.data.phases);
}

function drawPhases(st, ph) {
  const box = st.el.querySelector(".phases");
  box.hidden = false;
  box.innerHTML = "";
  st.phases = ph;
  const head = document.createElement("div"); head.className = "panelhead";
  head.textContent = `one step, four phases, for ${ph.unit}` + (ph.step != null ? ` (step ${ph.step})` : "");
  box.appendChild(head);
  const f = ph.forward || {}, l = ph.loss || {}, b = ph.backward || {}, u = ph.update || {};
  const pairs = (a, c) => (Array.isArray(a) && Array.isArray(c) ? a.slice(0, 4).map((v, i) => `${f2(v)} → ${f2(c[i])}`).join(", ") + (a.length > 4 ? ", …" : "") : `${f2(a)} → ${f2(c)}`);
  const phases = [
    ["forward", "1 forward", [`inputs ${vec(f.inputs)} · weights ${vec(f.weights)} + bias ${f2(f.bias)}`, `= pre ${vec(f.pre)} → ${f.activation || "activation"} → post ${vec(f.post)}`]],
    ["loss", "2 loss", [`loss ${f2(l.value)}`, `recorded (metrics): ${f2(l.recorded)}`]],
    ["backward", "3 backward", [`dL/dpre ${vec(b.dL_dpre)}`, `‖dL/dW‖ of its weights ${f2(b.weight_grad_norm)}`, `layer ‖g‖ ${f2(b.layer_grad_norm)} (recorded: ${f2(b.recorded_layer_grad_norm)})`]],
    ["update", "4 update", [`w before → after: ${pairs(u.w_before, u.w_after)}`, `lr ${f2(u.lr)}` + (u.grad ? `, its gradient ${vec(u.grad, 4)}` : "")]],
  ];
  for (const [key, title, lines] of phases) {
    const d = document.createElement("div"); d.className = "phase"; d.dataset.phase = key;
    const h = document.createElement("b"); h.textContent = title; d.appendChild(h);
    for (const line of lines) { const p = document.createElement("div"); p.textContent = line; d.appendChild(p); }
    box.appendChild(d);
  }
}

// ---------------------------------------------------------------- change while it trains

const LIVE = { "optimizer.lr": "lr", "regularization.l2": "l2", "train.batch_size": "batch_size", "regularization.dropout": "dropout" };

// A live knob changed while its slot's run trains (and the knobs still say what that run
// trains): the run changes at its next step, no new run.
function liveTarget(key) {
  const st = lab.slots[slot()];
  return LIVE[key] && st && st.run && !st.preview && !st.done && !st.replay && !lab.edited ? st : null;
}

let liveTimer = null;
function liveChange(st, key, el) {
  clearTimeout(liveTimer);
  liveTimer = setTimeout(async () => {
    const v = knobValue(el);
    if (v === null || !Number.isFinite(v)) return;
    // Only a new value: the same one again (a blur after typing, a value retyped) is no change.
    st.live = st.live || {};
    const was = key in st.live ? st.live[key] : key.split(".").reduce((o, k) => (o == null ? o : o[k]), st.config);
    if (was === v) return;
    st.live[key] = v;
    const r = await api(`/api/runs/${st.run}/change`, { [LIVE[key]]: v });
    if (!r.ok) delete st.live[key];
    if (!r.ok) { showProblems(missingRoute(r, "POST /api/runs/RUN/change")); return; }
    showProblems(null);
  }, 250);
}

function changeText(change, short) {
  return Object.entries(change || {}).map(([k, v]) => `${short ? k.split(".").pop() : k} → ${v}`).join(", ");
}

function addChange(st, ev) {
  st.changes.push({ step: ev.step, change: ev.change });
  const li = document.createElement("li");
  li.textContent = `step ${ev.step}: ${changeText(ev.change)}`;
  li.title = "changed while it trained (the dashed purple line on the loss curves)";
  st.el.querySelector(".changes").appendChild(li);
  drawCurves(st);
}

// A route the server does not offer (yet): said as such, not as a failure of the config.
function missingRoute(r, route) {
  if (r.status === 404 && /no action|Not Found/i.test(JSON.stringify(r.data) || "") || r.status === 405) {
    return { error: `this lab's server does not offer ${route}` };
  }
  return r.data && (r.data.error || r.data.problems) ? r.data : { error: `${route}: HTTP ${r.status}` };
}

// ---------------------------------------------------------------- a verdict is a lesson

function offerFix(st) {
  st.fixAsked = true;
  const box = st.el.querySelector(".fix");
  box.hidden = false;
  box.innerHTML = "";
  const b = document.createElement("button"); b.type = "button"; b.className = "tryfix";
  b.textContent = "try the fix";
  b.title = `ask dlx for this verdict's remedy and train it as run ${st.name === "A" ? "B" : "A"}, beside this one`;
  const say = document.createElement("div"); say.className = "fixsays";
  say.textContent = `not healthy (${st.verdict.kind}): see what dlx would change, and train that beside this run`;
  box.append(say, b);
  b.onclick = () => tryFix(st, b, say);
}

async function tryFix(st, b, say) {
  b.disabled = true;
  const r = await api(`/api/runs/${st.run}/fix`, {});
  b.disabled = false;
  if (!r.ok) { say.textContent = missingRoute(r, "POST /api/runs/RUN/fix").error; return; }
  st.fix = r.data;
  say.textContent = "";
  for (const [label, text] of [["cause", r.data.cause || r.data.message], ["remedy", r.data.remedy], ["sets", (r.data.sets || []).join("  ")]]) {
    if (!text) continue;
    const d = document.createElement("div"); d.className = `fix-${label}`;
    const k = document.createElement("b"); k.textContent = `${label}: `; d.append(k, text); say.appendChild(d);
  }
  const other = st.name === "A" ? "B" : "A", body = st.body || trainBody(), extra = r.data.sets || [];
  const fixed = { ...body, sets: (body.sets || []).concat(extra) };
  // The page's config becomes the fixed one: the same base, its --set lines plus the fix's.
  document.querySelector(`input[name=slot][value=${other}]`).checked = true;
  lab.example = body.yaml || null;
  lab.changed.clear();
  fromSource(body.yaml ? (st.config && st.config.name) || `run ${st.name}` : null);
  document.getElementById("sets").value = fixed.sets.filter((s) => !s.startsWith("data=") || !lab.dataSpec).join("\n");
  const started = await start(true, other, fixed);
  if (started) {
    started.el.querySelector(".title").textContent += ` (the fix of run ${st.name}: ${extra.join(", ")})`;
    b.textContent = `train the fix again (run ${other})`;
  }
}

// ---------------------------------------------------------------- your own data

function showData(reply, from) {
  lab.dataSpec = reply.data;
  const s = reply.summary || {}, n = (v) => (Array.isArray(v) ? v.length : v);
  lab.dataTask = s.task;
  const classes = n(s.classes);
  document.getElementById("datasummary").textContent =
    `your data (${from}): ${s.task || "?"}${classes ? `, ${classes} classes` : ""}, ${n(s.features)} features, ${s.n_train} train and ${s.n_test} test rows`;
  document.getElementById("forget-data").hidden = false;
  edited();
}

function forgetData() {
  lab.dataSpec = null;
  document.getElementById("datasummary").textContent = "";
  document.getElementById("forget-data").hidden = true;
  const sel = document.querySelector('[data-key="data.name"]');
  if (sel.value === "arrays") sel.value = "spirals";
  edited();
}

function base64(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function sendData(body, from) {
  const r = await api("/api/data", body);
  if (!r.ok) { showProblems(missingRoute(r, "POST /api/data")); return false; }
  showProblems(null);
  showData(r.data, from);
  return true;
}

async function uploadFile(file) {
  if (!file) return;
  if (file.size > 2 * 1024 * 1024) { showProblems({ error: `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB: the lab takes files of at most 2 MiB` }); return; }
  const npz = /\.npz$/i.test(file.name);
  const body = npz ? { npz_base64: base64(await file.arrayBuffer()) } : { csv: await file.text() };
  await sendData(body, file.name);
}

// Draw points: click on the square to add one of the chosen class (or value); the axes run
// from -1 to 1.
const drawn = [];
function drawPad() {
  const c = document.getElementById("drawpad"), g = c.getContext("2d"), task = document.getElementById("draw-task").value;
  g.fillStyle = "#fafbfc"; g.fillRect(0, 0, c.width, c.height);
  g.strokeStyle = "#dde3ea"; g.lineWidth = 1;
  for (const t of [0.25, 0.5, 0.75]) { g.beginPath(); g.moveTo(t * c.width, 0); g.lineTo(t * c.width, c.height); g.moveTo(0, t * c.height); g.lineTo(c.width, t * c.height); g.stroke(); }
  const vals = drawn.map((p) => Math.abs(p[2])), m = Math.max(1e-9, ...vals);
  for (const [x, y, v] of drawn) {
    g.beginPath();
    g.fillStyle = task === "classification" ? CLASS[v % CLASS.length] : rgb(diverging(v / m));
    g.strokeStyle = "#333"; g.lineWidth = 0.6;
    g.arc((x + 1) / 2 * c.width, (1 - y) / 2 * c.height, 4, 0, 2 * Math.PI); g.fill(); g.stroke();
  }
  c.dataset.points = String(drawn.length);
  const classes = new Set(drawn.map((p) => p[2])).size;
  document.getElementById("draw-count").textContent = drawn.length
    ? `${drawn.length} points` + (task === "classification" ? ` in ${classes} classes` : "") + " (at least 10; colour: " + (task === "classification" ? "the class" : "the value, orange low, blue high") + ")"
    : "no points yet: click on the square";
}

function drawClassOptions() {
  const sel = document.getElementById("draw-class");
  for (let k = 0; k < 6; k++) { const o = document.createElement("option"); o.value = String(k); o.textContent = `class ${k}`; sel.appendChild(o); }
}


// ---------------------------------------------------------------- round trip

async function downloadWeights(st) {
  const r = await fetch(`/api/runs/${st.run}/weights`, { headers: { "X-DLX-Token": token || "" } });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    showProblems(missingRoute({ ok: false, status: r.status, data }, "GET /api/runs/RUN/weights"));
    return;
  }
  showProblems(null);
  const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1] || `lab-${st.name.toLowerCase()}-weights.pt`;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob()); a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
}

// `dlx lab RUN`: a scrubber through the run's snapshots, each drawn in slot A as a live event is.
const replay = { n: 0, cache: {}, seq: 0 };
function startReplay(info) {
  const snaps = info.snapshots ?? info.steps, n = Array.isArray(snaps) ? snaps.length : +(snaps ?? info.count ?? info.n ?? 0);
  if (!n) return;
  replay.n = n; replay.info = info;
  replay.steps = Array.isArray(snaps) ? snaps.map((s) => (s && typeof s === "object" ? s.step : s)) : null;
  const bar = document.getElementById("replay"), scrub = document.getElementById("scrub");
  bar.hidden = false;
  document.getElementById("replay-name").textContent = info.name || info.run || info.path || "";
  scrub.max = String(n - 1);
  scrub.value = String(n - 1);
  const st = newSlot("A", null, info.network || null, info.config || null);
  st.replay = true; st.preview = false;
  st.el.querySelector(".status").textContent = "a finished run, replayed: drag the scrubber";
  scrub.addEventListener("input", () => showSnapshot(+scrub.value));
  showSnapshot(n - 1).then(prefetchSnapshots);
}

// The other snapshots, one at a time in the background (at most 200): the loss curves of a
// snapshot are those of every snapshot up to it.
async function prefetchSnapshots() {
  for (let i = 0; i < Math.min(replay.n, 200); i++) {
    if (replay.cache[i]) continue;
    const r = await api(`/api/replay/${i}`);
    if (!r.ok) return;
    replay.cache[i] = r.data.event || r.data;
  }
  showSnapshot(+document.getElementById("scrub").value);
}

async function showSnapshot(i) {
  const seq = ++replay.seq;
  let ev = replay.cache[i];
  if (!ev) {
    const r = await api(`/api/replay/${i}`);
    if (!r.ok) { showProblems(missingRoute(r, "GET /api/replay/I")); return; }
    ev = replay.cache[i] = r.data.event || r.data;
  }
  if (seq !== replay.seq) return;  // an older drag's answer
  const st = lab.slots.A;
  if (ev.network && !st.network) { st.network = ev.network; drawNetwork(st, ev.network); buildNetView(st, ev.network); }
  // The curves up to this snapshot: the metrics it carries, or those of the snapshots seen so far.
  const seen = Object.entries(replay.cache).map(([k, e]) => [+k, e]).filter(([k, e]) => k <= i && e.metrics).sort((a, b) => a[0] - b[0]);
  const hist = ev.history || ev.curve;
  st.steps = []; st.train = []; st.test = []; st.grad = [];
  for (const m of Array.isArray(hist) ? hist : seen.map(([, e]) => ({ step: e.step, ...e.metrics }))) {
    st.steps.push(m.step); st.train.push(m.train_loss); st.test.push(m.test_loss);
  }
  const { metrics, ...pictures } = ev;  // metrics are drawn above, once each
  onEvent(st, pictures);
  drawCurves(st);
  document.getElementById("replay-at").textContent = `snapshot ${i + 1} of ${replay.n}` + (ev.step != null ? `, step ${ev.step}` : "");
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
  if (r.ok && r.data.replay) api("/api/replay").then((rr) => { if (rr.ok) startReplay(rr.data); });
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
  const key = el.dataset.key;
  const changed = () => {
    if (lab.example) lab.changed.add(key);
    if (key === "data.name" && el.value !== "arrays" && lab.dataSpec) { lab.dataSpec = null; document.getElementById("datasummary").textContent = ""; document.getElementById("forget-data").hidden = true; }
    const st = liveTarget(key);
    if (st) { liveChange(st, key, el); checkSoon(); return; }  // the running run changes; the YAML shows the knobs
    edited();
  };
  el.addEventListener("input", changed);
  el.addEventListener("change", changed);
}
document.getElementById("phases").onclick = () => stepPhases();
document.getElementById("datafile").addEventListener("change", (e) => { uploadFile(e.target.files[0]); e.target.value = ""; });
document.getElementById("forget-data").onclick = forgetData;
drawClassOptions();
drawPad();
document.getElementById("draw-task").addEventListener("change", () => {
  const reg = document.getElementById("draw-task").value === "regression";
  document.getElementById("draw-class-label").hidden = reg;
  document.getElementById("draw-value-label").hidden = !reg;
  drawn.length = 0; drawPad();
});
document.getElementById("drawpad").addEventListener("click", (e) => {
  const c = e.currentTarget, r = c.getBoundingClientRect();
  const x = ((e.clientX - r.left) / r.width) * 2 - 1, y = 1 - ((e.clientY - r.top) / r.height) * 2;
  const reg = document.getElementById("draw-task").value === "regression";
  const v = reg ? Number(document.getElementById("draw-value").value || 0) : Number(document.getElementById("draw-class").value);
  drawn.push([+x.toFixed(4), +y.toFixed(4), v]);
  drawPad();
});
document.getElementById("draw-clear").onclick = () => { drawn.length = 0; drawPad(); };
document.getElementById("draw-use").onclick = () => {
  if (drawn.length < 10) { showProblems({ error: `draw at least 10 points (${drawn.length} so far)` }); return; }
  sendData({ points: drawn.map((p) => p.slice()), task: document.getElementById("draw-task").value }, `${drawn.length} drawn points`);
};
document.getElementById("sets").addEventListener("input", edited);
for (const el of document.querySelectorAll("input[name=slot]")) el.addEventListener("change", checkSoon);
