// The live page: state every second (GET /api/state), trace rows over a WebSocket into
// uPlot charts, the audit tail, and commands (POST /api/commands with the bearer token).
"use strict";

const $ = (id) => document.getElementById(id);
const live = { rows: 0, state: null, charts: [], replies: [] };  // read by the browser tests
window.furnaceLive = live;

// The token comes in the URL's fragment (never sent to the server) and is kept per tab.
(function keepToken() {
  const m = location.hash.match(/token=([0-9a-fA-F]+)/);
  if (m) { sessionStorage.setItem("furnace-token", m[1]); history.replaceState(null, "", "/"); }
  $("token").value = sessionStorage.getItem("furnace-token") || "";
  $("operator").value = localStorage.getItem("furnace-operator") || "";
})();

function fmt(v, digits = 1, unit = "") {
  return v === null || v === undefined ? "—" : `${Number(v).toFixed(digits)}${unit}`;
}
function hms(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
}
function text(el, value) { el.textContent = value; return el; }
function row(table, cells, cls) {
  const tr = table.insertRow();
  if (cls) tr.className = cls;
  cells.forEach(([v, num]) => { const td = tr.insertCell(); td.textContent = v; if (num) td.className = "num"; });
}

// ------------------------------------------------------------------ state
function renderState(s) {
  live.state = s;
  text($("title"), `${s.sample} — ${s.recipe}`);
  const badge = $("state");
  text(badge, s.state); badge.className = `badge ${s.state}`;
  text($("stage"), s.stage || "—");
  text($("step"), s.step ? `${s.step.index + 1}/${s.step.count} ${s.step.label} (${s.step.kind})` : "—");
  text($("eta"), s.eta_utc ? `${s.eta_utc.replace("T", " ").replace("Z", " UTC")} (${hms(s.remaining_s)} left)` : "—");
  text($("hold"), s.hold || "");
  const now = $("now"); now.replaceChildren();
  row(now, [["process time"], [hms(s.t_s), true]]);
  row(now, [["setpoint"], [fmt(s.setpoint_c, 1, " °C"), true]]);
  row(now, [["furnace"], [fmt(s.furnace_c, 1, " °C"), true]]);
  if (s.sample_c !== null && s.sample_c !== undefined) row(now, [["sample"], [fmt(s.sample_c, 1, " °C"), true]]);
  row(now, [["output"], [fmt(s.output_pct, 1, " %"), true]]);
  for (const [gas, f] of Object.entries(s.flows || {})) {
    row(now, [[`flow ${gas}`], [`${fmt(f.sccm, 0)} / ${fmt(f.setpoint_sccm, 0)} sccm`, true]]);
  }
  if (s.o2_ppm !== null && s.o2_ppm !== undefined) row(now, [["O₂"], [fmt(s.o2_ppm, 1, " ppm"), true]]);
  if (s.mass_pct !== null && s.mass_pct !== undefined) row(now, [["mass"], [fmt(s.mass_pct, 2, " %"), true]]);
  if (s.dtg_pct_per_min !== null && s.dtg_pct_per_min !== undefined) row(now, [["DTG"], [fmt(s.dtg_pct_per_min, 3, " %/min"), true]]);
  if (s.delta_t_c !== null && s.delta_t_c !== undefined) row(now, [["ΔT (exo up)"], [fmt(s.delta_t_c, 2, " °C"), true]]);
  const alarms = $("alarms");
  alarms.replaceChildren(...(s.alarms.length ? s.alarms.map((a) => {
    const d = document.createElement("div"); d.className = "alarm";
    return text(d, `${a.name}: ${a.detail}`);
  }) : [text(document.createElement("span"), "none")]));
  renderWaiting(s.waiting);
  const tl = $("timeline"); tl.replaceChildren();
  row(tl, [["stage"], ["gas"], ["planned"], ["when"]]);
  for (const st of s.timeline || []) {
    const when = st.status === "done" ? "done" : st.status === "current"
      ? `ends ${(st.predicted_end_utc || "").slice(11, 16)}` : st.predicted_start_utc
      ? `${st.predicted_start_utc.slice(11, 16)}–${(st.predicted_end_utc || "").slice(11, 16)}` : st.status;
    row(tl, [[st.stage], [st.atmosphere], [hms(st.planned_s), true], [when]], st.status);
  }
}

let waitingKey = "";
function renderWaiting(w) {
  const box = $("waiting-box");
  box.hidden = !w;
  if (!w) { waitingKey = ""; return; }
  const key = `${w.label}|${w.fields.map((f) => f.name).join(",")}`;
  text($("waiting-message"), w.message);
  if (key === waitingKey) return;  // keep what the operator is typing
  waitingKey = key;
  const form = $("waiting-form"); form.replaceChildren();
  for (const f of w.fields) {
    const label = document.createElement("label");
    label.textContent = f.describe + " ";
    const input = document.createElement("input");
    input.name = f.name; input.dataset.field = f.name;
    input.inputMode = f.kind === "text" ? "text" : "decimal";
    label.appendChild(input); form.appendChild(label);
  }
}

async function pollState() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    if (r.ok) renderState(await r.json());
  } catch (e) { text($("state"), "no connection"); }
}
async function pollAudit() {
  try {
    const r = await fetch("/api/audit?n=15", { cache: "no-store" });
    if (!r.ok) return;
    const recs = await r.json();
    $("audit").textContent = recs.map((rec) => {
      const { event, t_s, wall, ...rest } = rec;
      const extra = Object.entries(rest).filter(([k]) => !["software_version", "recipe_sha256", "station_sha256"].includes(k))
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
      return `${hms(t_s)} ${event} ${extra}`.slice(0, 300);
    }).reverse().join("\n");
  } catch (e) { /* the next poll tries again */ }
}

// ------------------------------------------------------------------ charts
const COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];
const MAX_POINTS = 8000;
let columns = [], xs = [], groups = [];

function buildCharts(cols) {
  columns = cols;
  const has = (c) => cols.includes(c);
  const flows = cols.filter((c) => /^flow_.+_sccm$/.test(c) && !c.endsWith("_setpoint_sccm"));
  const wanted = [
    ["Temperature (°C)", ["setpoint_c", "furnace_c", "sample_c"]],
    ["Output (%)", ["output_pct"]],
    ["Flows (sccm)", flows],
    ["O₂ (ppm)", ["o2_ppm"]],
    ["Mass (%)", ["mass_pct"]],
    ["DTG (%/min)", ["dtg_pct_per_min"]],
    ["ΔT, sample − furnace (°C, exo up)", ["delta_t_c"]],
  ];
  const root = $("charts"); root.replaceChildren();
  const width = Math.max(root.clientWidth - 16, 400);
  xs = []; groups = [];
  for (const [title, names] of wanted) {
    const present = names.filter(has);
    if (!present.length) continue;
    const div = document.createElement("div"); div.className = "chart"; root.appendChild(div);
    const series = [{ label: "process time (h)", value: (u, v) => v === null ? "—" : v.toFixed(3) }]
      .concat(present.map((c, i) => ({ label: c, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true })));
    const g = { idx: present.map((c) => cols.indexOf(c)), ys: present.map(() => []) };
    g.plot = new uPlot({ title, width, height: 170, series, scales: { x: { time: false } },
                         axes: [{ label: "process time (h)" }, {}] }, [[], ...g.ys], div);
    groups.push(g);
  }
  live.charts = groups.map((g) => g.plot.series.map((s) => s.label));
}

function addRows(rows) {
  const t = columns.indexOf("elapsed_s");
  for (const r of rows) {
    xs.push(r[t] / 3600);
    for (const g of groups) g.idx.forEach((ci, k) => g.ys[k].push(typeof r[ci] === "number" ? r[ci] : null));
  }
  live.rows += rows.length;
  if (xs.length > MAX_POINTS) {  // thin the oldest half to keep the page light
    const half = Math.floor(xs.length / 2);
    const thin = (a) => a.slice(0, half).filter((_, i) => i % 2 === 0).concat(a.slice(half));
    xs = thin(xs);
    for (const g of groups) g.ys = g.ys.map(thin);
  }
}

let drawPending = false;
function draw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    for (const g of groups) g.plot.setData([xs, ...g.ys]);
  });
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/trace`);
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.columns) buildCharts(msg.columns);
    addRows(msg.rows || []);
    draw();
  };
  ws.onclose = () => setTimeout(connect, 3000);
}

// ------------------------------------------------------------------ commands
function newId() {
  const b = new Uint8Array(16); crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function send(trigger) {
  const operator = $("operator").value.trim();
  localStorage.setItem("furnace-operator", operator);
  const body = { id: newId(), trigger, operator, reason: $("reason").value.trim() };
  if (trigger === "confirm") {
    const data = {};
    for (const input of $("waiting-form").querySelectorAll("input")) {
      if (input.value.trim() !== "") data[input.dataset.field] = input.value.trim();
    }
    if (Object.keys(data).length) body.data = data;
  }
  if (["stop", "abort"].includes(trigger) && !confirm(`${trigger} the batch?`)) return;
  const reply = $("reply");
  try {
    const r = await fetch("/api/commands", {
      method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "Authorization": `Bearer ${$("token").value.trim()}` },
    });
    const res = await r.json();
    live.replies.push(res);
    reply.className = res.ok ? "" : "refused";
    text(reply, `${trigger}: ${res.status}${res.state ? ` (${res.state})` : ""}: ${res.message}`);
    pollState();
  } catch (e) {
    reply.className = "refused"; text(reply, `${trigger}: no answer (${e})`);
  }
}
for (const b of document.querySelectorAll("button[data-trigger]")) {
  b.addEventListener("click", () => send(b.dataset.trigger));
}

pollState(); pollAudit(); connect();
setInterval(pollState, 1000);
setInterval(pollAudit, 2000);
