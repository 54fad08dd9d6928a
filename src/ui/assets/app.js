// anomalyd live page: keeps the server-rendered page up to date from the
// JSON API and adds the chart's hover read-out. Text from data is only ever
// inserted with textContent (never innerHTML); the chart is the server's
// SVG, parsed as XML.
"use strict";
(function () {
  const body = document.body;
  const REFRESH_MS = Number(body.dataset.refreshMs) || 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  let refreshes = 0;

  // Quantities as the server prints them (units.rs: Unit::format): three
  // significant digits and the unit's SI prefix, from the row's
  // unit_symbol and unit_prefixes.
  const PREFIX = { "-12": "p", "-9": "n", "-6": "µ", "-3": "m", "0": "", "3": "k", "6": "M", "9": "G", "12": "T", "15": "P" };
  function qty(v, r) {
    if (typeof v !== "number" || !isFinite(v) || Math.abs(v) >= 1e300) {
      return v < 0 ? "−∞" : "∞";
    }
    const symbol = r.unit_symbol || "";
    const join = (n, p) => (p === "" && symbol === "" ? n : n + " " + p + symbol);
    const a = Math.abs(v);
    if (a === 0) return join("0", "");
    const range = r.unit_prefixes === "both" ? [-12, 15] : r.unit_prefixes === "none" ? [0, 0] : [0, 15];
    const expOf = (x) => Math.min(Math.max(Math.floor(Math.floor(Math.log10(x)) / 3) * 3, range[0]), range[1]);
    const roundSig = (x) => {
      const mag = Math.pow(10, Math.floor(Math.log10(x)) - 2);
      return Math.round(x / mag) * mag;
    };
    let e = expOf(a);
    let m = v / Math.pow(10, e);
    if (roundSig(Math.abs(m)) >= 1000 && expOf(a * 1000) > e) {
      e += 3;
      m = v / Math.pow(10, e);
    }
    const am = Math.abs(m);
    if (am < 1e-3 || am >= 1e6) {
      let [mant, exp] = v.toExponential(2).split("e");
      if (mant.includes(".")) mant = mant.replace(/0+$/, "").replace(/\.$/, "");
      return join(mant + "e" + exp.replace("+", ""), "");
    }
    let s = m.toFixed(Math.max(0, 2 - Math.floor(Math.log10(am))));
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return join(s, PREFIX[String(e)]);
  }
  // Text from data as the server shows it (chart.rs: escape): control,
  // bidirectional-formatting and zero-width characters become visible
  // \u{…} escapes, so a label cannot hide or disguise itself.
  const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ufffe\uffff]/g;
  function visible(s) {
    return String(s).replace(HIDDEN, (c) => {
      if (c === "\n") return "\\n";
      if (c === "\t") return "\\t";
      if (c === "\r") return "\\r";
      return "\\u{" + c.codePointAt(0).toString(16) + "}";
    });
  }
  function when(iso) {
    return typeof iso === "string" ? iso.slice(0, 19).replace("T", " ") : "";
  }
  // A duration in one unit (incident.rs: duration_text).
  function duration(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 60) return s.toFixed(0) + " s";
    if (s < 3600) return (s / 60).toFixed(0) + " min";
    if (s < 48 * 3600) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function between(from, to) {
    return Date.parse(to) - Date.parse(from);
  }
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function link(href, text, className) {
    const a = el("a", className, text);
    a.href = href;
    return a;
  }
  // The state badge, in the API's words (page.rs: state_badge).
  function badge(r) {
    const sev = r.severity || "";
    if (r.state === "firing") return el("span", "badge firing " + sev, "firing · " + sev);
    if (r.state === "recent") return el("span", "badge recent " + sev, "recent · " + sev);
    return el("span", "badge quiet", r.warming ? "quiet · warming" : "quiet");
  }
  // The since cell: start, and how long (page.rs: since_cell).
  function since(r) {
    if (!r.since) return ["—", ""];
    let how = "";
    if (r.state === "firing") how = "for " + duration(between(r.since, r.ts));
    else if (r.ended_at) {
      how = "lasted " + duration(between(r.since, r.ended_at));
      if (r.resolution) how += ", " + r.resolution;
    }
    return [when(r.since), how];
  }
  function sinceCell(r) {
    const [start, how] = since(r);
    const td = el("td", "since", start);
    td.append(el("span", "sub", how));
    return td;
  }
  function chip(k, v) {
    const text = visible(k) + "=" + visible(v);
    const a = link(filterHref(k, v), text, "chip");
    a.title = text;
    return a;
  }
  function setLive(ok) {
    const live = document.getElementById("updated");
    if (!live) return;
    live.classList.toggle("stale", !ok);
    live.textContent = ok
      ? "live · updated " + new Date().toISOString().slice(11, 19) + " UTC"
      : "not updating: the daemon does not answer";
  }
  function loop(refresh) {
    setTimeout(async function tick() {
      try {
        await refresh();
        refreshes += 1;
        body.dataset.refreshes = String(refreshes);
        setLive(true);
      } catch (e) {
        setLive(false);
      }
      setTimeout(tick, REFRESH_MS);
    }, REFRESH_MS);
  }
  async function getJson(url) {
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) throw new Error(url + ": " + res.status);
    return res.json();
  }

  // ---- index: the table of series --------------------------------------
  function filterHref(name, value) {
    const q = new URLSearchParams(location.search);
    const want = name + "=" + value;
    if (!q.getAll("label").includes(want)) q.append("label", want);
    return "/?" + q.toString();
  }
  function row(r) {
    const tr = el("tr", "row state-" + r.state);
    tr.dataset.fingerprint = r.fingerprint;
    const state = el("td", "state");
    state.append(badge(r));
    const name = el("td", "name");
    name.append(link("/series/" + encodeURIComponent(r.fingerprint), r.rate ? "rate(" + visible(r.name) + ")" : visible(r.name)));
    const labels = el("div", "labels");
    for (const [k, v] of Object.entries(r.labels)) {
      labels.append(chip(k, v), " ");
    }
    name.append(labels);
    const value = el("td", "num value", qty(r.value, r));
    value.append(el("span", "sub", "at " + when(r.ts).slice(11)));
    tr.append(
      state,
      name,
      el("td", "reason", r.reason || "—"),
      sinceCell(r),
      value,
      el("td", "num", qty(r.expected, r)),
      el("td", "num band", "[" + qty(r.lower, r) + ", " + qty(r.upper, r) + "]"),
      el("td", "num score", r.score.toFixed(3)),
      el("td", "num peak", r.alert_peak_score === null ? "—" : r.alert_peak_score.toFixed(3))
    );
    return tr;
  }
  // One incident (page.rs: incident_row).
  function incidentRow(i) {
    const tr = el("tr", "incident status-" + i.status);
    tr.dataset.incident = i.id;
    const state = el("td", "state");
    state.append(el("span", "badge incident " + i.status + " " + i.severity, i.status + " · " + i.severity));
    const where = el("td", "where");
    if (i.scope === "fleet") {
      where.append(el("strong", "", "fleet-wide"), " · " + i.groups + " groups ");
    } else if (Object.keys(i.group).length === 0) {
      where.append("one series ");
    } else {
      for (const [k, v] of Object.entries(i.group)) where.append(chip(k, v), " ");
    }
    where.append(el("span", "sub", i.id));
    const members = el("td", "members");
    members.append(el("span", "count", i.members_total + " series, " + i.firing + " firing"));
    for (const m of i.members.slice(0, 3)) {
      members.append(link("/series/" + encodeURIComponent(m.fingerprint), m.series, "member status-" + m.status));
    }
    if (i.members_total > 3) members.append(el("span", "sub", "and " + (i.members_total - 3) + " more"));
    const top = i.members[0];
    let how = "";
    if (i.status === "firing") how = "for " + duration(between(i.started_at, i.updated_at));
    else if (i.ended_at) how = "lasted " + duration(between(i.started_at, i.ended_at));
    const sinceTd = el("td", "since", when(i.started_at));
    sinceTd.append(el("span", "sub", how));
    tr.append(
      state,
      where,
      members,
      el("td", "reason", top ? top.reason : "—"),
      sinceTd,
      el("td", "num peak", top ? top.peak_score.toFixed(3) : "—")
    );
    return tr;
  }
  async function refreshIndex() {
    const list = await getJson(body.dataset.api);
    // Every open incident, then the newest closed ones (page.rs:
    // CLOSED_SHOWN).
    const open = list.incidents.filter((i) => i.status === "firing").length;
    const shown = open + Math.min(5, list.incidents.length - open);
    document.getElementById("incident-rows").replaceChildren(...list.incidents.slice(0, shown).map(incidentRow));
    const more = document.getElementById("incidents-more");
    more.hidden = list.incidents.length === shown;
    more.firstChild.textContent = (list.incidents.length - shown) + " older incidents of the last " + list.history_minutes + " min are in ";
    document.getElementById("incidents-empty").hidden = list.incidents.length > 0;
    document.getElementById("rows").replaceChildren(...list.series.map(row));
    document.getElementById("empty").hidden = list.series.length > 0;
    document.getElementById("count").textContent =
      list.series.length + " of " + list.matched + " shown";
    document.getElementById("meta").textContent =
      list.retained + " series retained · alerts of the last " +
      list.history_minutes + " min · threshold " + list.threshold;
  }

  // ---- series: the chart, its numbers and the hover read-out -----------
  let detail = null;
  let hoverX = null;
  function chartSvg() {
    return document.querySelector("#chart svg");
  }
  function updateStats(d) {
    const set = (id, text) => {
      const e = document.getElementById("stat-" + id);
      if (e) e.textContent = text;
    };
    const state = document.getElementById("stat-state");
    if (state) state.replaceChildren(badge(d));
    const [start, how] = since(d);
    set("reason", d.reason || "—");
    set("since", how ? start + " · " + how : start);
    set("value", qty(d.value, d));
    set("expected", qty(d.expected, d));
    set("band", "[" + qty(d.lower, d) + ", " + qty(d.upper, d) + "]");
    set("score", d.score.toFixed(3));
    set("peak", d.alert_peak_score === null ? "—" : d.alert_peak_score.toFixed(3));
    set("ts", when(d.ts));
    set("points", String(d.points));
    const rows = d.alerts.slice().reverse().map((a) => {
      const tr = el("tr");
      const sev = el("td");
      sev.append(el("span", "badge firing " + a.severity, a.severity));
      tr.append(
        sev,
        el("td", "", a.stuck ? "stuck (repeated value)" : "value"),
        el("td", "", when(a.from)),
        el("td", "", a.ongoing ? "ongoing" : when(a.to)),
        el("td", "num", a.peak_score.toFixed(3))
      );
      return tr;
    });
    if (rows.length === 0) {
      const tr = el("tr", "empty");
      const td = el("td", "", "No alert in the chart's window.");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    document.querySelector("#alerts tbody").replaceChildren(...rows);
  }
  function nearest(samples, t) {
    let lo = 0;
    let hi = samples.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (samples[mid].ts_ms < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(samples[lo - 1].ts_ms - t) <= Math.abs(samples[lo].ts_ms - t)) lo -= 1;
    return samples[lo];
  }
  function mark(svg, tag, cls, attrs) {
    let e = svg.querySelector(tag + "." + cls);
    if (!e) {
      e = document.createElementNS(SVG_NS, tag);
      e.setAttribute("class", cls);
      e.setAttribute("pointer-events", "none");
      svg.append(e);
    }
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  }
  function showAt(x) {
    const svg = chartSvg();
    const readout = document.getElementById("readout");
    if (!svg || !detail || detail.samples.length === 0) return;
    const g = svg.dataset;
    const [x0, x1, t0, t1] = [+g.x0, +g.x1, +g.t0, +g.t1];
    const [top, bottom, v0, v1] = [+g.top, +g.bottom, +g.v0, +g.v1];
    const p = nearest(detail.samples, t0 + ((x - x0) / (x1 - x0)) * (t1 - t0));
    const px = x0 + ((p.ts_ms - t0) / (t1 - t0)) * (x1 - x0);
    const clamp = (v) => Math.min(Math.max(v, v0), v1);
    const py = bottom - ((clamp(p.value) - v0) / (v1 - v0)) * (bottom - top);
    mark(svg, "line", "cursor", {
      x1: px, x2: px, y1: top, y2: bottom, stroke: "#111827", "stroke-width": 1, "stroke-dasharray": "2 2",
    });
    mark(svg, "circle", "cursor-dot", { cx: px, cy: py, r: 4, fill: "#111827" });
    let text = when(new Date(p.ts_ms).toISOString()) + " UTC · value " + qty(p.value, detail) +
      " · expected " + qty(p.expected, detail) + " · band [" + qty(p.lower, detail) + ", " + qty(p.upper, detail) + "]" +
      " · score " + p.score.toFixed(3);
    if (p.alert && p.stuck) text += " · stuck alert (the value repeats; " + p.alert + ")";
    else if (p.alert) text += " · " + p.alert + " alert";
    if (p.warming) text += " · warm-up";
    readout.textContent = text;
    readout.dataset.ts = String(p.ts_ms);
  }
  function hide() {
    const svg = chartSvg();
    if (svg) svg.querySelectorAll(".cursor, .cursor-dot").forEach((e) => e.remove());
    const readout = document.getElementById("readout");
    readout.textContent = "Point at the chart to read an observation.";
    delete readout.dataset.ts;
  }
  function toSvgX(svg, clientX, clientY) {
    const pt = svg.createSVGPoint();
    pt.x = clientX;
    pt.y = clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
  }
  async function refreshSeries() {
    const [chartRes, d] = await Promise.all([
      fetch(body.dataset.chart, { cache: "no-store" }),
      getJson(body.dataset.api),
    ]);
    if (!chartRes.ok) throw new Error("chart: " + chartRes.status);
    const doc = new DOMParser().parseFromString(await chartRes.text(), "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.namespaceURI !== SVG_NS || svg.localName !== "svg") throw new Error("not an SVG");
    document.getElementById("chart").replaceChildren(document.importNode(svg, true));
    detail = d;
    updateStats(d);
    if (hoverX !== null) showAt(hoverX);
  }

  if (body.dataset.page === "index") {
    loop(refreshIndex);
  } else if (body.dataset.page === "series") {
    const figure = document.getElementById("chart");
    figure.addEventListener("mousemove", (e) => {
      const svg = chartSvg();
      if (!svg) return;
      hoverX = toSvgX(svg, e.clientX, e.clientY);
      showAt(hoverX);
    });
    figure.addEventListener("mouseleave", () => {
      hoverX = null;
      hide();
    });
    // The first read-out needs the samples; load them now, then refresh.
    getJson(body.dataset.api).then((d) => {
      detail = d;
      body.dataset.ready = "1";
      if (hoverX !== null) showAt(hoverX);
    }, () => setLive(false));
    loop(refreshSeries);
  }
})();
