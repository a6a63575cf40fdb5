// The lab overview: /api/fleet (the web server's latest OPC UA reading of each station)
// every few seconds, as a table. Text only through textContent: values come from stations.
"use strict";

const HEAD = ["Station", "State", "Stage", "Step", "Sample", "ETA (UTC)", "Alarms", "Page"];

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function render(stations) {
  const table = document.getElementById("fleet");
  table.replaceChildren();
  const head = table.insertRow();
  for (const h of HEAD) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  for (const s of stations) {
    const row = table.insertRow();
    cell(row, s.name);
    if (!s.reachable) {
      cell(row, "unreachable", "alarm");
      const why = cell(row, s.error);
      why.colSpan = 5;
    } else {
      cell(row, s.state);
      cell(row, s.stage);
      cell(row, s.step);
      cell(row, s.sample);
      cell(row, s.eta_utc);
      cell(row, (s.alarms || []).join("; "), (s.alarms || []).length ? "alarm" : "");
    }
    const link = cell(row, "");
    if (s.dashboard && /^https?:\/\//.test(s.dashboard)) {
      const a = document.createElement("a");
      a.href = s.dashboard;
      a.textContent = "open";
      link.appendChild(a);
    }
  }
}

async function poll() {
  try {
    const r = await fetch("/api/fleet");
    if (r.ok) render(await r.json());
  } catch (e) {
    // the overview server itself is gone: keep the last table
  }
}

poll();
setInterval(poll, 3000);
