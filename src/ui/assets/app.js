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

  // Numbers as the server prints them (page.rs: number).
  function num(v) {
    if (typeof v !== "number" || !isFinite(v) || Math.abs(v) >= 1e300) {
      return v < 0 ? "−∞" : "∞";
    }
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a < 1e-3 || a >= 1e6) return v.toExponential(3).replace("e+", "e");
    let s = v.toFixed(Math.max(0, 4 - Math.floor(Math.log10(a))));
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
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
  // The state badge (page.rs: state_badge).
  function badge(r) {
    const sev = r.severity || "";
    if (r.state === "firing") return el("span", "badge firing " + sev, sev);
    if (r.state === "recent") return el("span", "badge recent " + sev, "resolved");
    return el("span", "badge quiet", r.warming ? "warm-up" : "ok");
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
    const labels = el("td", "labels");
    for (const [k, v] of Object.entries(r.labels)) {
      labels.append(link(filterHref(k, v), visible(k) + "=" + visible(v), "chip"), " ");
    }
    tr.append(
      state,
      name,
      labels,
      el("td", "num", num(r.value)),
      el("td", "num", num(r.expected)),
      el("td", "num band", "[" + num(r.lower) + ", " + num(r.upper) + "]"),
      el("td", "num score", r.score.toFixed(3)),
      el("td", "num", r.peak_score.toFixed(3)),
      el("td", "time", when(r.ts))
    );
    return tr;
  }
  async function refreshIndex() {
    const list = await getJson(body.dataset.api);
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
  function unit(d) {
    return d.unit ? " " + d.unit : "";
  }
  function updateStats(d) {
    const set = (id, text) => {
      const e = document.getElementById("stat-" + id);
      if (e) e.textContent = text;
    };
    const state = document.getElementById("stat-state");
    if (state) state.replaceChildren(badge(d));
    set("value", num(d.value) + unit(d));
    set("expected", num(d.expected) + unit(d));
    set("band", "[" + num(d.lower) + ", " + num(d.upper) + "]");
    set("score", d.score.toFixed(3) + " (peak " + d.peak_score.toFixed(3) + ")");
    set("ts", when(d.ts));
    set("points", String(d.points));
    const rows = d.alerts.slice().reverse().map((a) => {
      const tr = el("tr");
      const sev = el("td");
      sev.append(el("span", "badge firing " + a.severity, a.severity));
      tr.append(
        sev,
        el("td", "", when(a.from)),
        el("td", "", a.ongoing ? "ongoing" : when(a.to)),
        el("td", "num", a.peak_score.toFixed(3))
      );
      return tr;
    });
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
    let text = when(new Date(p.ts_ms).toISOString()) + " UTC · value " + num(p.value) + unit(detail) +
      " · expected " + num(p.expected) + " · band [" + num(p.lower) + ", " + num(p.upper) + "]" +
      " · score " + p.score.toFixed(3);
    if (p.alert) text += " · " + p.alert + " alert";
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
