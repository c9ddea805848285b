// dlx lab: the page. Plain JS, no library: controls -> config -> POST /api/runs; the run's
// events arrive by server-sent events and are drawn on canvases. window.dlxLab holds the
// state (the end-to-end test reads it).
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token");
const session = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^a-zA-Z0-9-]/g, "");
const CLASS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const lab = { slots: {}, latency: [], session };
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

function controlsConfig() {
  const c = { seed: 0, data: {}, model: {}, optimizer: {}, train: { log_every: 10, eval_every: 100 }, regularization: {} };
  let depth = 3, width = 32, residual = false;
  for (const el of document.querySelectorAll("[data-key]")) {
    const key = el.dataset.key;
    let v = el.type === "checkbox" ? el.checked : el.value;
    if (el.type === "number") { if (v === "") continue; v = Number(v); }
    if (key === "model.depth") depth = v;
    else if (key === "model.width") width = v;
    else if (key === "residual") residual = v;
    else setPath(c, key, v);
  }
  c.model = residual ? { name: "resnet", kind: "mlp", blocks: depth, width, residual: true } : { name: "mlp", depth, width };
  return c;
}

function sets() { return document.getElementById("sets").value.split("\n").map((s) => s.trim()).filter(Boolean); }

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
  const base = lab.example ? { yaml: lab.example } : { config: controlsConfig() };
  return api("/api/runs", { session, slot: s, ...base, sets: sets(), play }).then((r) => {
    if (!r.ok) { showProblems(r.data); return; }
    showProblems(null);
    document.getElementById("yaml").textContent = r.data.yaml;
    document.getElementById("download").href = URL.createObjectURL(new Blob([r.data.yaml], { type: "text/yaml" }));
    listen(s, r.data.run);
  });
}

function control(action) {
  const st = lab.slots[slot()];
  if (!st || st.done) { if (action === "play" || action === "step") start(action === "play").then(() => { if (action === "step") control("step"); }); return; }
  api(`/api/runs/${st.run}/${action}`, {});
}

function newSlot(s, run) {
  const el = document.getElementById(`slot-${s}`);
  el.innerHTML = "";
  el.appendChild(document.getElementById("slot-template").content.cloneNode(true));
  el.querySelector(".title").textContent = `run ${s}`;
  const st = { run, el, steps: [], train: [], test: [], grad: [], events: 0, done: false, last: null, verdict: null };
  lab.slots[s] = st;
  return st;
}

function listen(s, run) {
  const old = lab.slots[s];
  if (old && old.source) old.source.close();
  const st = newSlot(s, run);
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
    st.verdict = ev.verdict;
    const v = st.el.querySelector(".verdict");
    v.dataset.kind = ev.verdict.kind || "";
    v.textContent = ev.verdict.message || "";
  }
  if (ev.final) st.done = true;
}

function drawCurves(st) {
  const c = st.el.querySelector(".curves"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const vals = st.train.concat(st.test).filter((v) => v != null && v > 0);
  if (!vals.length) return;
  const lo = Math.log10(Math.min(...vals)), hi = Math.log10(Math.max(...vals)) + 1e-9;
  const x = (i) => 30 + (c.width - 40) * (st.steps[i] / Math.max(st.steps[st.steps.length - 1], 1));
  const y = (v) => 10 + (c.height - 30) * (1 - (Math.log10(v) - lo) / (hi - lo || 1));
  for (const [series, dash] of [[st.train, []], [st.test, [4, 3]]]) {
    g.beginPath(); g.setLineDash(dash); g.strokeStyle = "#1f77b4"; let on = false;
    series.forEach((v, i) => { if (v == null || v <= 0) return; if (on) g.lineTo(x(i), y(v)); else { g.moveTo(x(i), y(v)); on = true; } });
    g.stroke();
  }
  g.setLineDash([]); g.fillStyle = "#445"; g.font = "10px sans-serif";
  g.fillText(Math.pow(10, hi).toPrecision(2), 0, 12); g.fillText(Math.pow(10, lo).toPrecision(2), 0, c.height - 20);
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
api("/api/initial").then((r) => {
  if (r.ok && r.data.yaml) { lab.example = r.data.yaml; document.getElementById("yaml").textContent = r.data.yaml; document.getElementById("problems").textContent = `starting from ${r.data.name}`; }
});
api("/api/examples").then((r) => {
  const sel = document.getElementById("example");
  for (const ex of r.data || []) { const o = document.createElement("option"); o.value = ex.name; o.textContent = ex.name; o.title = ex.claim; sel.appendChild(o); }
  // An example replaces the controls: its own config file runs (plus the advanced lines).
  sel.onchange = () => {
    if (!sel.value) { lab.example = null; document.getElementById("controls").classList.remove("example"); return; }
    fetch(`/api/examples/${encodeURIComponent(sel.value)}`, { headers: { "X-DLX-Token": token || "" } }).then((r) => r.text()).then((text) => { lab.example = text; document.getElementById("yaml").textContent = text; });
  };
});
for (const el of document.querySelectorAll("[data-key]")) el.addEventListener("change", () => showProblems(null));
