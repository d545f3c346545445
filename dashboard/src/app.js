// bp-monitoring dashboard. Plain JavaScript, no framework; charts by uPlot.
// Every name that comes from the data (nodes, rules, fields) is put in the
// page with textContent or as a uPlot series label (also textContent), never
// as HTML.
//
// Writes (silences, acknowledgements) need a write token: asked in the page
// on the first write, kept in this tab's sessionStorage only (never in
// localStorage, never in a URL), sent as `Authorization: Bearer`; forgotten
// on a 401 and asked again.
"use strict";

(function () {
  const DUR = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };
  const REFRESH_MS = 10000;
  const COUNTERS = [
    ["requests.count", "Requests", true],
    ["eventsIn.count", "Events in", true],
    ["eventsOut.count", "Events out", true],
    ["warnings.count", "Warnings", false],
    ["errors.count", "Errors", false],
    ["criticals.count", "Criticals", false],
  ];
  const COUNTER_COLORS = ["#2563eb", "#16a34a", "#0d9488", "#d97706", "#dc2626", "#7c2d12"];

  const state = {
    nodes: [],            // [{node, lastSeen, stale}]
    selected: null,       // null: all nodes; else a Set of names
    charts: {},           // name -> uPlot
    data: {},             // name -> last /series response (merged)
    key: null,            // what the loaded data is for
    timer: null,
    loading: false,
    again: null,          // a refresh asked for while one was under way
    skew: 0,              // server clock minus this browser's (from /silences)
    silences: [],         // the last /silences list
  };
  // For tests and debugging.
  window.bpDashboard = state;

  const $ = (id) => document.getElementById(id);

  function el(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") e.textContent = v;
        else if (k === "className") e.className = v;
        else if (k === "style") Object.assign(e.style, v);
        else e.setAttribute(k, v);
      }
    }
    for (const c of children || []) if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }

  function parseDur(text) {
    const m = /^(\d+)([smhd])$/.exec(text);
    return m ? Number(m[1]) * DUR[m[2]] : NaN;
  }

  function fmtDur(ms) {
    if (ms == null || !isFinite(ms)) return "–";
    let s = Math.max(0, Math.round(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const parts = [];
    if (d) parts.push(d + "d");
    if (h) parts.push(h + "h");
    if (m && !d) parts.push(m + "m");
    if (!d && !h) parts.push(s + "s");
    return parts.join(" ");
  }

  function pad(n) { return String(n).padStart(2, "0"); }
  function fmtTime(ms) {
    if (ms == null) return "–";
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtNum(v, digits) {
    if (v == null || !isFinite(v)) return "–";
    if (digits != null) return v.toFixed(digits);
    return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(2);
  }

  // Bytes in binary units (1 KB = 1024 bytes, as the fields count them).
  const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
  function fmtBytes(v) {
    if (v == null || !isFinite(v)) return "–";
    let x = Math.abs(v), i = 0;
    while (x >= 1024 && i < BYTE_UNITS.length - 1) { x /= 1024; i++; }
    const n = i === 0 || x >= 100 ? String(Math.round(x)) : x.toFixed(1);
    return (v < 0 ? "-" : "") + n + " " + BYTE_UNITS[i];
  }
  function fmtRate(v) { return v == null || !isFinite(v) ? "–" : fmtBytes(v) + "/s"; }
  function fmtPct(v) { return v == null || !isFinite(v) ? "–" : fmtNum(v, 1) + " %"; }
  // Disk usage as a level: the row or cell is coloured from a fixed list.
  function usageClass(v) { return v == null ? "" : v >= 90 ? "level-bad" : v >= 80 ? "level-warn" : ""; }

  function nodeColor(name) {
    const i = state.nodes.findIndex((n) => n.node === name);
    const hue = (Math.max(i, 0) * 137.508) % 360;
    return "hsl(" + hue.toFixed(0) + ", 65%, 42%)";
  }

  function setBanner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  async function api(path, params) {
    const q = new URLSearchParams(params || {});
    const url = "api/v1/" + path + (q.toString() ? "?" + q : "");
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); if (j && j.error) msg = j.error; } catch (_) { /* not JSON */ }
      if (r.status === 401) msg = "access token required or wrong: " + msg;
      throw new Error(path + ": " + msg);
    }
    return r.json();
  }

  function selectedNodes() {
    const all = state.nodes.map((n) => n.node);
    return state.selected ? all.filter((n) => state.selected.has(n)) : all;
  }

  // ---- node filter -------------------------------------------------------

  function renderNodeList() {
    const ul = $("node-list");
    const filter = $("node-search").value.trim().toLowerCase();
    ul.replaceChildren();
    for (const n of state.nodes) {
      if (filter && !n.node.toLowerCase().includes(filter)) continue;
      const cb = el("input", { type: "checkbox", "data-node": n.node });
      cb.checked = !state.selected || state.selected.has(n.node);
      cb.addEventListener("change", () => {
        const set = state.selected ? new Set(state.selected) : new Set(state.nodes.map((x) => x.node));
        if (cb.checked) set.add(n.node); else set.delete(n.node);
        state.selected = set.size === state.nodes.length ? null : set;
        reload();
      });
      const label = el("label", { title: n.node }, [
        cb,
        el("span", { className: "swatch", style: { background: nodeColor(n.node) } }),
        el("span", { text: n.node }),
        n.stale ? el("span", { className: "badge stale", text: "stale" }) : null,
      ]);
      ul.appendChild(el("li", null, [label]));
    }
    const sel = selectedNodes().length;
    $("node-count").textContent = "(" + sel + " of " + state.nodes.length + ")";
  }

  // ---- charts --------------------------------------------------------------

  function chartWidth(id) {
    return Math.max(300, $(id).clientWidth - 4);
  }

  function makeChart(name, id, opts, data) {
    const box = $(id);
    if (state.charts[name]) state.charts[name].destroy();
    box.replaceChildren();
    opts.width = chartWidth(id);
    opts.height = 240;
    const u = new uPlot(opts, data, box);
    state.charts[name] = u;
    box.dataset.series = String(opts.series.length - 1);
    return u;
  }

  function avgAcross(arrays, n) {
    const out = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      let s = 0, k = 0;
      for (const a of arrays) { const v = a[i]; if (v != null) { s += v; k++; } }
      out[i] = k ? s / k : null;
    }
    return out;
  }
  function sumAcross(arrays, n) {
    const out = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      let s = 0, k = 0;
      for (const a of arrays) { const v = a[i]; if (v != null) { s += v; k++; } }
      out[i] = k ? s : null;
    }
    return out;
  }

  function seriesOf(resp, field, stat) {
    return resp.series.filter((s) => s.field === field).map((s) => ({ node: s.node, values: s[stat] }));
  }

  function xs(resp) { return resp.t.map((t) => t / 1000); }

  function timeAxis() { return { stroke: "#555", grid: { stroke: "#eee" } }; }

  function drawCpu(resp) {
    const n = resp.t.length;
    const cpu = seriesOf(resp, "cpu.usage", "avg");
    const mem = seriesOf(resp, "mem.usage", "avg");
    const data = [xs(resp), avgAcross(cpu.map((s) => s.values), n), avgAcross(mem.map((s) => s.values), n)];
    const series = [{},
      { label: "CPU (avg of nodes) %", stroke: "#1d4ed8", width: 2.5, value: (u, v) => fmtNum(v, 1) },
      { label: "Memory (avg of nodes) %", stroke: "#7c3aed", width: 2.5, dash: [6, 3], value: (u, v) => fmtNum(v, 1) }];
    for (const s of cpu) {
      series.push({ label: s.node + " CPU %", stroke: nodeColor(s.node), width: 1, value: (u, v) => fmtNum(v, 1) });
      data.push(s.values);
    }
    for (const s of mem) {
      series.push({ label: s.node + " memory %", stroke: nodeColor(s.node), width: 1, dash: [4, 3], value: (u, v) => fmtNum(v, 1) });
      data.push(s.values);
    }
    makeChart("cpu", "chart-cpu", {
      series, scales: { y: { range: [0, 100] } },
      axes: [timeAxis(), { label: "%", stroke: "#555", grid: { stroke: "#eee" } }],
      legend: { live: true },
    }, data);
  }

  function drawMetrics(resp) {
    const n = resp.t.length;
    const data = [xs(resp)];
    const series = [{}];
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
    COUNTERS.forEach(([field, label, isBar], i) => {
      data.push(sumAcross(seriesOf(resp, field, "sum").map((s) => s.values), n));
      const s = { label, stroke: COUNTER_COLORS[i], width: isBar ? 1 : 2, scale: isBar ? "count" : "problems", value: (u, v) => fmtNum(v, 0) };
      if (isBar) { s.paths = bars; s.fill = COUNTER_COLORS[i] + "55"; }
      series.push(s);
    });
    makeChart("metrics", "chart-metrics", {
      series,
      scales: { count: { range: (u, min, max) => [0, Math.max(1, max)] }, problems: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [timeAxis(),
        { scale: "count", label: "requests / events", stroke: "#555", grid: { stroke: "#eee" } },
        { scale: "problems", side: 1, label: "warnings / errors / criticals", stroke: "#b91c1c", grid: { show: false } }],
    }, data);
  }

  function drawLatency(resp) {
    const n = resp.t.length;
    const lat = seriesOf(resp, "requests.latency_avg", "avg");
    const data = [xs(resp), avgAcross(lat.map((s) => s.values), n)];
    const series = [{}, { label: "Latency (avg of nodes) ms", stroke: "#0f172a", width: 2.5, value: (u, v) => fmtNum(v, 1) }];
    for (const s of lat) {
      series.push({ label: s.node + " ms", stroke: nodeColor(s.node), width: 1, value: (u, v) => fmtNum(v, 1) });
      data.push(s.values);
    }
    makeChart("latency", "chart-latency", {
      series, scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [timeAxis(), { label: "ms", stroke: "#555", grid: { stroke: "#eee" } }],
    }, data);
  }

  const CHARTS = {
    cpu: { fields: "cpu.usage,mem.usage", stats: "avg", draw: drawCpu },
    metrics: { fields: COUNTERS.map((c) => c[0]).join(","), stats: "sum", draw: drawMetrics },
    latency: { fields: "requests.latency_avg", stats: "avg", draw: drawLatency },
  };

  // Appends an incremental response to the loaded one (same grid and series).
  function merge(old, inc, rangeMs) {
    if (!old || old.step !== inc.step || old.series.length !== inc.series.length) return null;
    for (let i = 0; i < inc.series.length; i++) {
      if (old.series[i].node !== inc.series[i].node || old.series[i].field !== inc.series[i].field) return null;
    }
    const first = inc.t.length ? inc.t[0] : Infinity;
    let keep = old.t.findIndex((t) => t >= first);
    if (keep < 0) keep = old.t.length;
    let drop = 0;
    const horizon = inc.to - rangeMs - inc.step;
    while (drop < keep && old.t[drop] < horizon) drop++;
    const out = { from: old.from, to: inc.to, step: inc.step, t: old.t.slice(drop, keep).concat(inc.t), series: [] };
    old.series.forEach((s, i) => {
      const m = { node: s.node, field: s.field };
      for (const k of Object.keys(inc.series[i])) {
        if (k === "node" || k === "field") continue;
        m[k] = (s[k] || []).slice(drop, keep).concat(inc.series[i][k]);
      }
      out.series.push(m);
    });
    return out;
  }

  async function loadCharts(full) {
    const range = $("timeframe").value;
    const rangeMs = parseDur(range);
    const res = $("resolution").value;
    const nodes = selectedNodes();
    const key = [range, res, nodes.join(",")].join("|");
    if (key !== state.key) full = true;
    if (!nodes.length) {
      for (const name of Object.keys(CHARTS)) {
        if (state.charts[name]) { state.charts[name].destroy(); delete state.charts[name]; }
        const box = $("chart-" + name);
        box.dataset.series = "0";
        box.replaceChildren(el("div", { className: "empty", text: "No node selected." }));
      }
      state.key = key;
      state.data = {};
      return;
    }
    await Promise.all(Object.entries(CHARTS).map(async ([name, c]) => {
      const params = { fields: c.fields, stats: c.stats, step: res, nodes: nodes.join(",") };
      const old = state.data[name];
      let resp;
      if (!full && old && old.t.length) {
        params.from = String(old.t[old.t.length - 1]);
        resp = merge(old, await api("series", params), rangeMs);
      }
      if (!resp) {
        delete params.from;
        params.range = range;
        resp = await api("series", params);
      }
      state.data[name] = resp;
      c.draw(resp);
    }));
    state.key = key;
  }

  // ---- tables --------------------------------------------------------------

  function td(text, className) { return el("td", className ? { className, text } : { text }); }

  function nodeCell(node) {
    return el("td", null, [el("span", { className: "swatch", style: { background: nodeColor(node) } }), " ", node]);
  }

  // The highest disk usage over the time frame, with its mount.
  function diskPeakCell(peak) {
    if (!peak) return td("–", "num");
    const cell = el("td", { className: "num peak-disk " + usageClass(peak.usage) }, [fmtPct(peak.usage) + " "]);
    const mount = peak.mount == null ? "?" : peak.mount;
    cell.appendChild(el("span", { className: "instance", title: mount, text: mount }));
    return cell;
  }

  // Watched processes: a green badge per running name (with the count when
  // more than one runs), a red "name ✕" for one with none running.
  function processesCell(list, more) {
    const cell = el("td", { className: "procs" });
    if (!list || !list.length) { cell.textContent = "–"; return cell; }
    for (const p of list) {
      const down = p.count === 0;
      const known = p.count != null;
      let text = p.name;
      if (down) text += " ✕";
      else if (known && p.count !== 1) text += " ×" + fmtNum(p.count, 0);
      const title = down ? "not running" :
        (known ? fmtNum(p.count, 0) + " running" : "count not reported") +
        (p.cpu != null ? ", CPU " + fmtNum(p.cpu, 1) + " %" : "") +
        (p.mem != null ? ", memory " + fmtBytes(p.mem * 1024) : "");
      cell.appendChild(el("span", {
        className: "badge proc " + (down ? "down" : known ? "up" : "unknown"),
        "data-process": p.name, title, text,
      }));
      cell.appendChild(document.createTextNode(" "));
    }
    if (more) cell.appendChild(el("span", { className: "muted", text: "+" + more + " more" }));
    return cell;
  }

  function renderOverview(resp) {
    const body = $("overview").querySelector("tbody");
    body.replaceChildren();
    renderNetwork(resp);
    if (!resp.nodes.length) {
      body.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "15", text: "No node has reported yet." })]));
      return;
    }
    for (const r of resp.nodes) {
      const age = resp.now - r.lastSeen;
      const last = el("td", null, [fmtTime(r.lastSeen) + " (" + fmtDur(age) + " ago) "]);
      if (r.stale) last.appendChild(el("span", { className: "badge stale", text: "STALE" }));
      body.appendChild(el("tr", { className: r.stale ? "stale" : "", "data-node": r.node }, [
        el("td", null, [el("span", { className: "swatch", style: { background: nodeColor(r.node) } }), " ", r.node]),
        td(r.uptime == null ? "–" : fmtDur(r.uptime * 1000)),
        last,
        td(fmtNum(r.cpu, 1) + " %", "num"), td(fmtNum(r.cpuPeak, 1) + " %", "num"),
        td(fmtNum(r.mem, 1) + " %", "num"), td(fmtNum(r.memPeak, 1) + " %", "num"),
        diskPeakCell(r.diskPeak),
        td(fmtNum(r.requests, 0), "num"), td(fmtNum(r.eventsIn, 0), "num"), td(fmtNum(r.eventsOut, 0), "num"),
        td(fmtNum(r.warnings, 0), "num"), td(fmtNum(r.errors, 0), "num"), td(fmtNum(r.criticals, 0), "num"),
        processesCell(r.processes, r.processesMore),
      ]));
    }
  }

  // The Disks panel: the worst mounts of the selected nodes (the server
  // sorts and caps them), with how many more there are.
  const DISKS_SHOWN = 50;
  function renderDisks(resp) {
    const body = $("disks").querySelector("tbody");
    body.replaceChildren();
    $("disks-count").textContent = "(" + resp.total + (resp.total === 1 ? " mount)" : " mounts)");
    const more = $("disks-more");
    more.hidden = resp.total <= resp.disks.length;
    more.textContent = more.hidden ? "" : "Showing the fullest " + resp.disks.length + " of " + resp.total +
      " mounts; " + (resp.total - resp.disks.length) + " more.";
    if (!resp.disks.length) {
      body.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "5", text: "No disk reported in this time frame." })]));
      return;
    }
    for (const d of resp.disks) {
      body.appendChild(el("tr", { "data-node": d.node, className: usageClass(d.usage) }, [
        nodeCell(d.node), td(d.mount, "instance"), td(fmtPct(d.usage), "num"),
        td(d.free == null ? "–" : fmtBytes(d.free * 1024), "num"),
        td(d.inodes == null ? "" : fmtPct(d.inodes), "num"),
      ]));
    }
  }

  // The Network panel, from the overview rows: one row per node with an
  // interface in the time frame.
  function renderNetwork(resp) {
    const body = $("network").querySelector("tbody");
    body.replaceChildren();
    const rows = resp.nodes.filter((r) => r.network);
    if (!rows.length) {
      body.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "7", text: "No interface reported in this time frame." })]));
      return;
    }
    for (const r of rows) {
      const n = r.network;
      const ifaces = el("td", { className: "ifaces" });
      for (const i of n.interfaces) {
        ifaces.appendChild(el("span", { className: "iface", "data-interface": i.name }, [
          el("span", { className: "instance", text: i.name }), " ↓" + fmtRate(i.rx) + " ↑" + fmtRate(i.tx),
        ]));
        ifaces.appendChild(document.createTextNode(" "));
      }
      if (n.interfacesMore) ifaces.appendChild(el("span", { className: "muted", text: "+" + n.interfacesMore + " more" }));
      body.appendChild(el("tr", { "data-node": r.node }, [
        nodeCell(r.node), td(fmtRate(n.rx), "num"), td(fmtRate(n.tx), "num"),
        td(fmtRate(n.rxPeak), "num"), td(fmtRate(n.txPeak), "num"),
        td(n.errors == null ? "–" : fmtNum(n.errors, 0), n.errors ? "num level-bad" : "num"),
        ifaces,
      ]));
    }
  }

  // Severity as a coloured badge: the class comes from a fixed list, the
  // text (1-32 of a-z 0-9 _ -) is put in with textContent like every name.
  const SEVERITY_CLASS = { critical: "sev-critical", error: "sev-critical", page: "sev-critical",
    warning: "sev-warning", warn: "sev-warning", info: "sev-info", notice: "sev-info" };
  function severityCell(sev) {
    if (!sev) return td("–");
    return el("td", null, [el("span", { className: "badge sev " + (SEVERITY_CLASS[sev] || "sev-other"), text: sev })]);
  }
  function instanceCell(inst) { return inst == null ? td("–") : el("td", { className: "instance", title: inst, text: inst }); }

  // What mutes or marks an incident: "silenced" (what mutes it now, in the
  // tooltip), "held" (muted when it opened, not notified yet),
  // "acknowledged by X" (when and why in the tooltip).
  function flagsCell(i) {
    const cell = el("td", { className: "flags" });
    const add = (className, text, title) => {
      cell.appendChild(el("span", { className: "badge " + className, text, title }));
      cell.appendChild(document.createTextNode(" "));
    };
    if (i.silencedBy && i.silencedBy.length) {
      const by = i.silencedBy.map((m) => m.maintenance != null ? "maintenance window '" + m.maintenance + "'" : "silence " + m.silence);
      add("silenced", "silenced", "muted now by " + by.join(", "));
    }
    if (i.held) add("held", "held", "muted when it opened: not notified yet (notified when nothing mutes it any more)");
    if (i.acknowledged) {
      const a = i.acknowledged;
      add("acked", "acknowledged by " + a.by, "at " + fmtTime(Date.parse(a.at)) + (a.comment ? ": " + a.comment : ""));
    }
    if (!cell.childNodes.length) cell.textContent = "–";
    return cell;
  }

  function actionsCell(i) {
    const silence = el("button", { type: "button", "data-action": "silence", text: "Silence", title: "Create a silence for this incident" });
    silence.addEventListener("click", () => openSilenceForm(i));
    const ack = el("button", { type: "button", "data-action": "ack", text: "Ack", title: "Acknowledge this incident" });
    ack.addEventListener("click", () => openAck(i));
    return el("td", { className: "actions" }, [silence, " ", ack]);
  }

  function renderIncidents(resp) {
    const active = $("incidents-active").querySelector("tbody");
    const resolved = $("incidents-resolved").querySelector("tbody");
    active.replaceChildren();
    resolved.replaceChildren();
    $("active-count").textContent = "(" + resp.open.length + ")";
    $("resolved-count").textContent = "(" + resp.resolved.length + ")";
    if (!resp.open.length) active.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "9", text: "No active incident." })]));
    for (const i of resp.open) {
      active.appendChild(el("tr", { "data-incident": i.id }, [
        td(i.ruleName), td(i.hostName), instanceCell(i.instance), severityCell(i.severity),
        td(fmtTime(Date.parse(i.startTime))),
        td(fmtDur(i.durationMs)), td(fmtNum(i.triggerValue), "num"),
        flagsCell(i), actionsCell(i),
      ]));
    }
    if (!resp.resolved.length) resolved.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "9", text: "No incident resolved in this time frame." })]));
    for (const i of resp.resolved) {
      resolved.appendChild(el("tr", { "data-incident": i.id }, [
        td(i.ruleName), td(i.hostName), instanceCell(i.instance), severityCell(i.severity),
        td(fmtTime(Date.parse(i.startTime))),
        td(fmtTime(Date.parse(i.endTime))), td(fmtDur(i.durationMs)), td(fmtNum(i.triggerValue), "num"),
        flagsCell(i),
      ]));
    }
    highlightLinked();
  }

  // A notifier's link (`externalUrl/#incident=<id>`): that incident's row is
  // marked, and scrolled to the first time it is shown.
  function highlightLinked() {
    const m = /^#incident=([0-9a-fA-F-]{36})$/.exec(location.hash);
    for (const row of document.querySelectorAll("tr.linked")) row.classList.remove("linked");
    if (!m) return;
    const row = document.querySelector('tr[data-incident="' + m[1].toLowerCase() + '"]');
    if (!row) return;
    row.classList.add("linked");
    if (state.linkedShown !== m[1]) {
      state.linkedShown = m[1];
      row.scrollIntoView({ block: "center" });
    }
  }
  window.addEventListener("hashchange", highlightLinked);

  // ---- silences ------------------------------------------------------------

  const MATCHER_KEYS = ["rule", "host", "instance", "severity"];
  const SILENCE_STATUS = { active: "st-active", pending: "st-pending", expired: "st-expired" };
  const EXPIRED_SHOWN = 20;

  // A literal text as a glob matching only itself: `*`, `?` and `\` escaped.
  function globEscape(text) { return String(text).replace(/[\\*?]/g, "\\$&"); }

  // "rule=… host=…" with each pattern as text; "(everything)" when none.
  function matchersNode(m, skip) {
    const span = el("span", { className: "matchers" });
    for (const k of MATCHER_KEYS) {
      if (!m || m[k] == null || k === skip) continue;
      if (span.childNodes.length) span.appendChild(document.createTextNode(" "));
      span.appendChild(el("span", { className: "matcher", "data-key": k }, [k + "=", el("code", { text: m[k] })]));
    }
    if (!span.childNodes.length && !skip) span.textContent = "(everything)";
    return span;
  }

  function renderSilences(resp) {
    state.skew = resp.now - Date.now();
    state.silences = resp.silences;
    const body = $("silences").querySelector("tbody");
    body.replaceChildren();
    const count = { active: 0, pending: 0, expired: 0 };
    for (const s of resp.silences) count[s.status] = (count[s.status] || 0) + 1;
    $("silences-count").textContent = "(" + count.active + " active, " + count.pending + " pending, " + count.expired + " expired)";
    // Active, then pending, then the most recently expired (the server's order).
    const live = resp.silences.filter((s) => s.status !== "expired");
    const expired = resp.silences.filter((s) => s.status === "expired");
    const shown = live.concat(expired.slice(0, EXPIRED_SHOWN));
    const more = $("silences-more");
    const notes = [];
    if (expired.length > EXPIRED_SHOWN) notes.push("Showing the " + EXPIRED_SHOWN + " most recently expired of " + expired.length + ".");
    if (resp.unreadableRecords) notes.push(resp.unreadableRecords + " stored silence(s) cannot be read.");
    more.hidden = !notes.length;
    more.textContent = notes.join(" ");
    if (!shown.length) {
      body.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "7", text: "No silence." })]));
      return;
    }
    for (const s of shown) {
      const actions = el("td", { className: "actions" });
      if (s.status === "active" || s.status === "pending") {
        const b = el("button", { type: "button", "data-action": "expire", text: "Expire", title: "End this silence now" });
        b.addEventListener("click", () => expireSilence(s, b));
        actions.appendChild(b);
      }
      const ends = Date.parse(s.endsAt);
      const endsCell = td(fmtTime(ends));
      if (s.status === "active") endsCell.appendChild(el("span", { className: "muted", text: " (in " + fmtDur(ends - resp.now) + ")" }));
      body.appendChild(el("tr", { "data-silence": s.id, className: "silence " + (SILENCE_STATUS[s.status] || "") }, [
        el("td", null, [el("span", { className: "badge silence-status " + (SILENCE_STATUS[s.status] || ""), text: s.status })]),
        el("td", null, [matchersNode(s.matchers)]),
        td(fmtTime(Date.parse(s.startsAt))), endsCell,
        td(s.createdBy), td(s.comment, "comment"),
        actions,
      ]));
    }
  }

  // Durations such as 90s, 30m, 2h, 1d, 1h30m.
  function parseSpan(text) {
    const t = String(text).trim();
    if (!/^(\d+[smhdw])+$/.test(t)) return NaN;
    let ms = 0;
    for (const [, n, u] of t.matchAll(/(\d+)([smhdw])/g)) ms += Number(n) * (u === "w" ? 7 * DUR.d : DUR[u]);
    return ms;
  }

  function formError(id, message, parameter, form) {
    const p = $(id);
    p.textContent = message || "";
    p.hidden = !message;
    if (form) {
      for (const input of form.querySelectorAll("input")) {
        const param = input.dataset.param;
        input.classList.toggle("invalid", !!parameter && !!param && (param === parameter || parameter.startsWith(param + ".")));
      }
    }
  }

  // Opens the create form, pre-filled from `incident` when given (its rule,
  // host and instance as literal globs).
  function openSilenceForm(incident) {
    const form = $("silence-form");
    form.reset();
    formError("silence-error", "", null, form);
    if (incident) {
      form.elements.rule.value = globEscape(incident.ruleName);
      form.elements.host.value = globEscape(incident.hostName);
      if (incident.instance != null) form.elements.instance.value = globEscape(incident.instance);
    }
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
    (incident ? form.elements.comment : form.elements.rule).focus({ preventScroll: true });
  }

  function closeSilenceForm() {
    const form = $("silence-form");
    form.reset();
    formError("silence-error", "", null, form);
    form.hidden = true;
  }

  // The request body the form describes; throws (with the field) when a
  // value cannot be read.
  function silenceBody(form) {
    const f = form.elements;
    const bad = (parameter, message) => { const e = new Error(message); e.parameter = parameter; return e; };
    const matchers = {};
    for (const k of MATCHER_KEYS) if (f[k].value !== "") matchers[k] = f[k].value;
    if (!Object.keys(matchers).length) throw bad("matchers.rule", "Set at least one matcher (a rule of * mutes every incident).");
    const body = { matchers };
    const now = Date.now() + state.skew;
    let starts = now;
    if (f.startsAt.value) {
      starts = new Date(f.startsAt.value).getTime();
      if (!isFinite(starts)) throw bad("startsAt", "Starts: not a date and time.");
      body.startsAt = starts;
    }
    if (f.endsAt.value) {
      const ends = new Date(f.endsAt.value).getTime();
      if (!isFinite(ends)) throw bad("endsAt", "Ends at: not a date and time.");
      body.endsAt = ends;
    } else {
      const d = parseSpan(f.duration.value);
      if (!(d > 0)) throw bad("endsAt", "Duration: expected a duration such as 30m, 2h, 1d or 1h30m (or give an end time).");
      body.endsAt = Math.max(starts, now) + d;
    }
    body.comment = f.comment.value;
    if (f.createdBy.value.trim()) body.createdBy = f.createdBy.value.trim();
    return body;
  }

  async function submitSilence(ev) {
    ev.preventDefault();
    const form = $("silence-form");
    const button = $("silence-submit");
    let body;
    try {
      body = silenceBody(form);
    } catch (e) {
      formError("silence-error", e.message, e.parameter, form);
      return;
    }
    formError("silence-error", "", null, form);
    button.disabled = true;
    try {
      const s = await write("silences", body);
      closeSilenceForm();
      notify("Silence " + s.id + " created (" + s.status + ").", "ok");
      reload();
    } catch (e) {
      formError("silence-error", "Not created: " + e.message, e.parameter, form);
    } finally {
      button.disabled = false;
    }
  }

  async function expireSilence(s, button) {
    button.disabled = true;
    try {
      await write("silences/" + encodeURIComponent(s.id) + "/expire", { version: s.version });
      notify("Silence " + s.id + " expired.", "ok");
      reload();
    } catch (e) {
      notify("Silence " + s.id + " not expired: " + e.message, "bad");
      button.disabled = false;
    }
  }

  // ---- acknowledgements ----------------------------------------------------

  let acking = null;  // the incident the dialog is for

  function openAck(incident) {
    acking = incident;
    $("ack-what").textContent = incident.ruleName + " on " + incident.hostName +
      (incident.instance != null ? " (" + incident.instance + ")" : "") + ", since " + fmtTime(Date.parse(incident.startTime));
    $("ack-comment").value = "";
    $("ack-by").value = "";
    formError("ack-error", "", null, $("ack-form"));
    $("ack-dialog").showModal();
    $("ack-comment").focus();
  }

  async function submitAck(ev) {
    ev.preventDefault();
    if (!acking) return;
    const body = { comment: $("ack-comment").value };
    if ($("ack-by").value.trim()) body.by = $("ack-by").value.trim();
    const button = $("ack-submit");
    button.disabled = true;
    try {
      const a = await write("incidents/" + encodeURIComponent(acking.id) + "/ack", body);
      $("ack-dialog").close();
      acking = null;
      notify("Acknowledged by " + a.by + ".", "ok");
      reload();
    } catch (e) {
      formError("ack-error", "Not acknowledged: " + e.message, e.parameter, $("ack-form"));
    } finally {
      button.disabled = false;
    }
  }

  // ---- writes and the write token -----------------------------------------

  const TOKEN_KEY = "bp-monitoring.writeToken";
  let memoryToken = null;  // when this browser refuses sessionStorage

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return memoryToken; }
  }
  function setToken(t) {
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (_) { memoryToken = t; }
    $("token-forget").hidden = false;
  }
  function forgetToken() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* not stored there */ }
    memoryToken = null;
    $("token-forget").hidden = true;
  }

  let tokenAsk = null;  // {resolve, reject} while the dialog is open

  // Asks for the write token in the page (`why`: the server's refusal of
  // the last one); resolves with it, rejects when cancelled.
  function askToken(why) {
    $("token-error").textContent = why ? "The write token was refused: " + why : "";
    $("token-error").hidden = !why;
    if (tokenAsk) return tokenAsk.promise;
    const d = $("token-dialog");
    $("token-input").value = "";
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    tokenAsk = { promise, resolve, reject };
    d.showModal();
    $("token-input").focus();
    return promise;
  }

  function tokenDone(token) {
    const ask = tokenAsk;
    tokenAsk = null;
    $("token-input").value = "";
    if ($("token-dialog").open) $("token-dialog").close();
    if (!ask) return;
    if (token) ask.resolve(token);
    else ask.reject(new Error("no write token given"));
  }

  // POSTs `body` to api/v1/`path` with the write token (asked when there is
  // none); answers the response's JSON, or throws with the server's `error`
  // (and `parameter`). A 401 forgets the token and asks again.
  async function write(path, body) {
    let why = null;
    for (;;) {
      const token = getToken() || await askToken(why);
      // credentials "omit": no cookie or cached basic auth, and no browser
      // login prompt on a 401 (writes check only the write token).
      const r = await fetch("api/v1/" + path, {
        method: "POST", credentials: "omit", cache: "no-store",
        headers: { Accept: "application/json", "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify(body),
      });
      let j = null;
      try { j = await r.json(); } catch (_) { /* not JSON */ }
      const msg = j && typeof j.error === "string" ? j.error : r.status + " " + r.statusText;
      if (r.status === 401) {
        forgetToken();
        why = msg;
        continue;
      }
      if (!r.ok) {
        const e = new Error(msg);
        e.status = r.status;
        e.parameter = j && typeof j.parameter === "string" ? j.parameter : null;
        throw e;
      }
      return j;
    }
  }

  const NOTIFY_CLASS = { ok: "toast ok", bad: "toast bad" };
  let notifyTimer = null;
  // A message about a write (set as text); errors stay until dismissed.
  function notify(text, kind) {
    const b = $("write-banner");
    $("write-message").textContent = text;
    b.className = NOTIFY_CLASS[kind] || "toast";
    b.dataset.kind = kind;
    b.hidden = false;
    clearTimeout(notifyTimer);
    if (kind === "ok") notifyTimer = setTimeout(() => { b.hidden = true; }, 6000);
  }

  function renderRules(resp) {
    const body = $("rules").querySelector("tbody");
    body.replaceChildren();
    $("rules-at").textContent = resp.evaluatedAt ? "(as of " + fmtTime(resp.evaluatedAt) + ")" : "";
    const nodes = new Set(selectedNodes());
    let rows = 0;
    for (const r of resp.rules) {
      const rule = r.rule;
      const cond = rule.aggregation + "(" + rule.field + ") over " + rule.timeframe + " " +
        (rule.operand === "equalOrMoreThan" ? "≥ " : "≤ ") + rule.value;
      // A cluster-wide rule's one row per series is node "*": always shown.
      const shown = r.nodes.filter((n) => n.node === "*" || nodes.has(n.node));
      if (!shown.length) {
        body.appendChild(el("tr", null, [td(rule.name), td(cond), el("td", { className: "empty", colspan: "6", text: "no data from the selected nodes" }), maintenanceCell(r.maintenance)]));
        rows++;
        continue;
      }
      for (const n of shown) {
        body.appendChild(el("tr", null, [
          td(rule.name), td(cond), td(n.node), instanceCell(n.instance), severityCell(rule.severity),
          td(fmtNum(n.value), "num"),
          el("td", null, [el("span", { className: n.holds ? "badge holds" : "badge ok", text: n.holds ? "holds" : "no" })]),
          el("td", null, [n.openIncident ? el("span", { className: "badge open", text: "open" }) : "–"]),
          maintenanceCell(r.maintenance),
        ]));
        rows++;
      }
    }
    if (!rows) body.appendChild(el("tr", null, [el("td", { className: "empty", colspan: "9", text: "No rule is configured." })]));
  }

  // The maintenance windows that may mute a rule's incidents, each with its
  // current opening ("open until …") or its next one ("next: … – …"), and
  // its matchers other than the rule.
  function maintenanceCell(list) {
    if (!list || !list.length) return td("–");
    const cell = el("td", { className: "maintenance" });
    for (const w of list) {
      let text = "maintenance '" + w.name + "'";
      if (w.open && w.endsAt) text += " open until " + fmtTime(Date.parse(w.endsAt));
      else if (w.startsAt) text += " next: " + fmtTime(Date.parse(w.startsAt)) + " – " + fmtTime(Date.parse(w.endsAt));
      else text += ": no opening within a week";
      const span = el("span", { className: "window" + (w.open ? " open" : ""), "data-window": w.name, text });
      const others = matchersNode(w.matchers, "rule");
      if (others.childNodes.length) span.append(" (", others, ")");
      cell.appendChild(span);
    }
    return cell;
  }

  // ---- refresh loop ----------------------------------------------------------

  async function refresh(full) {
    if (state.loading) {
      // Run again once the refresh under way ends (a full one if asked).
      state.again = state.again || (full ? "full" : "inc");
      return;
    }
    state.loading = true;
    const started = performance.now();
    try {
      const nodes = await api("nodes");
      const before = state.nodes.map((n) => n.node).join(",");
      state.nodes = nodes.nodes;
      if (state.selected) {
        const names = new Set(state.nodes.map((n) => n.node));
        state.selected = new Set([...state.selected].filter((n) => names.has(n)));
      }
      if (before !== state.nodes.map((n) => n.node).join(",")) full = true;
      renderNodeList();
      const sel = selectedNodes();
      const range = $("timeframe").value;
      const overviewParams = { range };
      if (state.selected) overviewParams.nodes = sel.join(",");
      const disksParams = Object.assign({ limit: String(DISKS_SHOWN) }, overviewParams);
      const [overview, disks, incidents, rules, silences] = await Promise.all([
        sel.length ? api("overview", overviewParams) : Promise.resolve({ nodes: [], now: Date.now() }),
        sel.length ? api("disks", disksParams) : Promise.resolve({ disks: [], total: 0 }),
        api("incidents", { range: $("incident-frame").value }),
        api("rules"),
        api("silences"),
        loadCharts(full),
      ]);
      renderOverview(overview);
      renderDisks(disks);
      renderIncidents(incidents);
      renderRules(rules);
      renderSilences(silences);
      setBanner("");
      $("status").textContent = "updated " + fmtTime(Date.now()) + " in " + Math.round(performance.now() - started) + " ms";
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (e) {
      setBanner("Cannot load data: " + (e && e.message ? e.message : String(e)));
    } finally {
      state.loading = false;
      const again = state.again;
      state.again = null;
      if (again) refresh(again === "full");
    }
  }

  function reload() { refresh(true); }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = $("autorefresh").checked ? setInterval(() => refresh(false), REFRESH_MS) : null;
  }

  function init() {
    if (typeof uPlot === "undefined") {
      setBanner("The chart library did not load.");
      return;
    }
    $("timeframe").addEventListener("change", reload);
    $("resolution").addEventListener("change", reload);
    $("incident-frame").addEventListener("change", reload);
    $("refresh").addEventListener("click", reload);
    $("autorefresh").addEventListener("change", schedule);
    $("node-search").addEventListener("input", renderNodeList);
    $("nodes-all").addEventListener("click", () => { state.selected = null; reload(); });
    $("nodes-none").addEventListener("click", () => { state.selected = new Set(); reload(); });
    $("silence-new").addEventListener("click", () => openSilenceForm(null));
    $("silence-cancel").addEventListener("click", closeSilenceForm);
    $("silence-form").addEventListener("submit", submitSilence);
    $("ack-form").addEventListener("submit", submitAck);
    $("ack-cancel").addEventListener("click", () => { acking = null; $("ack-dialog").close(); });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      if (!t) { $("token-error").textContent = "Enter the write token, or cancel."; $("token-error").hidden = false; return; }
      setToken(t);
      tokenDone(t);
    });
    $("token-cancel").addEventListener("click", () => tokenDone(null));
    // Escape closes the dialog: the write waiting for it is abandoned.
    $("token-dialog").addEventListener("close", () => { if (!$("token-dialog").open) tokenDone(null); });
    $("token-forget").addEventListener("click", () => { forgetToken(); notify("The write token is forgotten.", "ok"); });
    $("token-forget").hidden = !getToken();
    $("write-dismiss").addEventListener("click", () => { $("write-banner").hidden = true; });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const [name, u] of Object.entries(state.charts)) u.setSize({ width: chartWidth("chart-" + name), height: 240 });
      }, 150);
    });
    schedule();
    reload();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
