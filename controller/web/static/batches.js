// The batches page: the list, one batch's summary and report, and the TGA overlay of the
// batches ticked (mass % against temperature), drawn on a canvas; the same data as CSV.
"use strict";

const $ = (id) => document.getElementById(id);
const overlayInfo = { series: 0, points: 0, skipped: [] };  // read by the browser tests
window.furnaceOverlay = overlayInfo;
const COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"];

function hms(s) {
  if (s === null || s === undefined) return "—";
  s = Math.round(s);
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
}

function selected() {
  return Array.from(document.querySelectorAll("input.pick:checked"), (i) => i.value);
}
function query(ids) { return ids.map((i) => `id=${encodeURIComponent(i)}`).join("&"); }
function updateCsv() { $("csv").href = `/api/overlay.csv?${query(selected())}`; }

async function loadList() {
  const list = await (await fetch("/api/batches")).json();
  const t = $("list"); t.replaceChildren();
  const head = t.insertRow();
  for (const h of ["", "batch", "outcome", "planned", "actual"]) head.insertCell().textContent = h;
  for (const b of list) {
    const tr = t.insertRow();
    const pick = document.createElement("input");
    pick.type = "checkbox"; pick.className = "pick"; pick.value = b.id; pick.onchange = updateCsv;
    tr.insertCell().appendChild(pick);
    const a = document.createElement("a"); a.href = "#"; a.textContent = b.id;
    a.onclick = (e) => { e.preventDefault(); show(b.id); };
    tr.insertCell().appendChild(a);
    tr.insertCell().textContent = b.outcome;
    tr.insertCell().textContent = hms(b.planned_s);
    tr.insertCell().textContent = hms(b.actual_s);
  }
  updateCsv();
}

async function show(id) {
  const t = $("summary"); t.replaceChildren();
  const r = await fetch(`/api/batches/${encodeURIComponent(id)}/summary`);
  const s = r.ok ? await r.json() : null;
  const add = (k, v) => { const tr = t.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; };
  if (!s) { add(id, "no summary (running or interrupted)"); }
  else {
    add("batch", s.batch_id); add("sample", s.sample); add("outcome", `${s.outcome} (${s.end_reason})`);
    add("planned / actual", `${hms(s.planned_s)} / ${hms(s.actual_s)}`);
    for (const [gas, l] of Object.entries(s.gas_used_l || {})) add(`${gas} used`, `${l.toFixed(1)} L`);
    if (s.yields && s.yields.final_yield_pct !== undefined) add("yield", `${s.yields.final_yield_pct} %`);
    add("operators", (s.operators || []).join(", "));
  }
  $("report").src = `/api/batches/${encodeURIComponent(id)}/report.png`;
  $("report").alt = `report of ${id}`;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

function drawOverlay(data) {
  const cv = $("overlay-canvas"), ctx = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 60, R = 170, T = 15, B = 45;
  ctx.clearRect(0, 0, W, H);
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity, points = 0;
  for (const s of data.series) {
    for (const x of s.temperature_c) { xmin = Math.min(xmin, x); xmax = Math.max(xmax, x); }
    for (const y of s.mass_pct) { ymin = Math.min(ymin, y); ymax = Math.max(ymax, y); }
  }
  overlayInfo.series = data.series.length; overlayInfo.skipped = data.skipped;
  if (!data.series.length) { $("overlay-note").textContent = "nothing to draw"; overlayInfo.points = 0; return; }
  const pad = (ymax - ymin) * 0.05 || 1; ymin -= pad; ymax += pad;
  const px = (x) => L + (x - xmin) / (xmax - xmin || 1) * (W - L - R);
  const py = (y) => H - B - (y - ymin) / (ymax - ymin) * (H - T - B);
  ctx.strokeStyle = "#ccd"; ctx.fillStyle = "#333"; ctx.font = "12px sans-serif"; ctx.lineWidth = 1;
  for (const v of niceTicks(xmin, xmax, 8)) { ctx.beginPath(); ctx.moveTo(px(v), T); ctx.lineTo(px(v), H - B); ctx.stroke(); ctx.fillText(v.toFixed(0), px(v) - 10, H - B + 15); }
  for (const v of niceTicks(ymin, ymax, 6)) { ctx.beginPath(); ctx.moveTo(L, py(v)); ctx.lineTo(W - R, py(v)); ctx.stroke(); ctx.fillText(v.toFixed(0), L - 30, py(v) + 4); }
  ctx.fillText(`temperature (°C, ${data.series[0].temperature})`, L + (W - L - R) / 2 - 60, H - 10);
  ctx.save(); ctx.translate(14, H / 2 + 40); ctx.rotate(-Math.PI / 2); ctx.fillText("mass (% of loaded)", 0, 0); ctx.restore();
  data.series.forEach((s, i) => {
    ctx.strokeStyle = COLOURS[i % COLOURS.length]; ctx.lineWidth = 1.5; ctx.beginPath();
    s.temperature_c.forEach((x, k) => { const X = px(x), Y = py(s.mass_pct[k]); k ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
    ctx.stroke(); points += s.temperature_c.length;
    ctx.fillStyle = COLOURS[i % COLOURS.length]; ctx.fillRect(W - R + 10, T + 10 + i * 18, 14, 3);
    ctx.fillStyle = "#333"; ctx.fillText(s.sample || s.id, W - R + 30, T + 15 + i * 18);
  });
  overlayInfo.points = points;
  $("overlay-note").textContent = data.skipped.map((s) => `${s.id}: ${s.reason}`).join("; ");
}

$("overlay-btn").onclick = async () => {
  const ids = selected();
  const data = await (await fetch(`/api/overlay?${query(ids)}`)).json();
  drawOverlay(data);
};

loadList();
