// rollwise dashboard: one model's own page, at #/models/<name>. Live charts per version
// (requests, errors, latency, accuracy, shadow agreement, drift) over a chosen window,
// with every routing change and rollout step drawn as a numbered line and listed as
// text; the model's versions; and, for an operator, a form that sets the routing by
// hand after a confirmation that says what that does to a rollout in progress.
//
// The charts are drawn by the vendored uPlot, on canvas, and it is given numbers only:
// every name and text from the API goes into the page through el() (textContent), so
// a mark's text that looks like HTML is shown as it is written.
"use strict";

(() => {
  const shared = window.rollwiseDashboard;
  if (!shared) return;
  const { api, el, show, format } = shared;

  const WINDOWS = [
    { seconds: 300, text: "5 min" },
    { seconds: 900, text: "15 min" },
    { seconds: 3600, text: "1 h" },
    { seconds: 21600, text: "6 h" },
    { seconds: 86400, text: "24 h" },
  ];
  const DEFAULT_WINDOW_S = 900;
  const ROLES = ["served", "shadow", "preview"];
  // The role of a line is told by its dashes too, not by colour alone.
  const ROLE_DASH = { served: [], shadow: [8, 4], preview: [2, 3] };
  const ROLE_WORDS = { served: "solid", shadow: "dashed", preview: "dotted" };
  // In a latency chart one version's percentiles share its colour: the width tells them
  // apart (and the legend names them).
  const PERCENTILES = [
    { field: "latency_p50_ms", stat: "p50", width: 1.25, words: "thin" },
    { field: "latency_p95_ms", stat: "p95", width: 2.25, words: "medium" },
    { field: "latency_p99_ms", stat: "p99", width: 3.5, words: "thick" },
  ];
  const LINE_WIDTH = 2;
  const MARK_COLOUR = "#5a6675";
  const GRID_COLOUR = "#e3e8ef";
  const AXIS_FONT = "12px system-ui, sans-serif";

  // ---- the page's own DOM, built once ----

  const ids = {
    title: "model-page-title",
    window: "model-window",
    dialogTitle: "model-routing-confirm-title",
    dialogWhat: "model-routing-confirm-what",
  };

  const heading = el("h2", { attrs: { id: ids.title, tabindex: "-1" } });
  const updated = el("p", { className: "muted" });
  const errorLine = el("p", { className: "notice", attrs: { role: "status" } });
  const backLink = el("a", { text: "← Overview", attrs: { href: "#/models" } });
  const rolloutLink = el("a", { className: "rollout-link" });
  const rolloutLine = el("div", { className: "model-rollout" });
  const windowSelect = el(
    "select",
    { attrs: { id: ids.window } },
    WINDOWS.map((w) => el("option", { text: w.text, attrs: { value: String(w.seconds) } })),
  );
  windowSelect.value = String(DEFAULT_WINDOW_S);
  const chartsNote = el("p", { className: "muted charts-note" });
  const chartsGrid = el("div", { className: "charts" });
  const marksList = el("ol", { className: "marks" });
  const versionsBody = el("tbody");
  const routingBox = el("div", { className: "routing-box" });

  const section = el("section", { className: "model-page", attrs: { "aria-labelledby": ids.title } }, [
    el("nav", { className: "crumbs", attrs: { "aria-label": "Model page links" } }, [backLink, rolloutLink]),
    el("div", { className: "overview-head" }, [heading, updated]),
    errorLine,
    rolloutLine,
    el("div", { className: "chart-controls" }, [
      el("label", { text: "Window", attrs: { for: ids.window } }),
      windowSelect,
    ]),
    chartsNote,
    chartsGrid,
    el("h3", { text: "Routing changes and rollout steps" }),
    el("p", {
      className: "muted small",
      text: "Each is a numbered dashed vertical line on every chart above.",
    }),
    marksList,
    el("h3", { text: "Versions" }),
    el("div", { className: "table-wrap" }, [
      el("table", { className: "model-versions" }, [
        el("caption", { className: "visually-hidden", text: "Versions, their traffic and health" }),
        el("thead", {}, [
          el("tr", {}, [
            el("th", { text: "Version", attrs: { scope: "col" } }),
            el("th", { text: "Role", attrs: { scope: "col" } }),
            el("th", { text: "Health", attrs: { scope: "col" } }),
            el("th", { className: "num", text: "Weight", attrs: { scope: "col" } }),
            el("th", { className: "num", text: "Mirror", attrs: { scope: "col" } }),
            el("th", { text: "Fleet", attrs: { scope: "col" } }),
          ]),
        ]),
        versionsBody,
      ]),
    ]),
    routingBox,
  ]);
  show(errorLine, false);

  // ---- what is shown, reset on sign-out or on another model ----

  const state = {
    model: null, // the model's name
    windowS: DEFAULT_WINDOW_S,
    status: null, // GET /api/v1/models/{model}
    charts: new Map(), // by key: a drawn chart
    marks: [],
    range: { from: 0, until: 1 },
    colours: new Map(), // version name -> colour index
    generation: 0, // bumped by reset: a late answer to an old request is dropped
  };

  // ---- colours: the overview's c0..c5, read from its style sheet ----

  let palette = null;

  function colour(index) {
    if (!palette) {
      const style = getComputedStyle(document.documentElement);
      palette = [];
      for (let i = 0; i < shared.colours; i += 1) {
        palette.push(style.getPropertyValue(`--c${i}`).trim() || "#1f77b4");
      }
    }
    return palette[index % palette.length];
  }

  function translucent(hex, alpha) {
    const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
    if (!match) return `rgba(90, 102, 117, ${alpha})`;
    const [r, g, b] = match.slice(1).map((part) => parseInt(part, 16));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  // By the version's place among the model's versions, as the overview colours them;
  // a version the model no longer has (still in the window's data) comes after.
  function colourIndex(version) {
    if (!state.colours.has(version)) state.colours.set(version, state.colours.size);
    return state.colours.get(version) % shared.colours;
  }

  function setColours(versions) {
    const known = versions.map((version) => version.name);
    const extra = [...state.colours.keys()].filter((name) => !known.includes(name));
    state.colours = new Map([...known, ...extra].map((name, index) => [name, index]));
  }

  // ---- numbers ----

  const formats = {
    rate: (value) => (typeof value === "number" ? `${format.figure(value)} req/s` : "—"),
    fraction: (value) => format.percent(value, 1),
    ms: (value) => format.ms(value),
    figure: (value) => (typeof value === "number" ? format.figure(value) : "—"),
  };
  const axisFormats = {
    rate: (value) => format.figure(value),
    fraction: (value) => `${Number((value * 100).toPrecision(3))} %`,
    ms: (value) => `${format.figure(value)} ms`,
    figure: (value) => format.figure(value),
  };

  // Only finite numbers reach the charts; anything else is a step without a value.
  function numbers(values, length) {
    const out = new Array(length).fill(null);
    if (!Array.isArray(values)) return out;
    for (let i = 0; i < length && i < values.length; i += 1) {
      const value = values[i];
      if (typeof value === "number" && Number.isFinite(value)) out[i] = value;
    }
    return out;
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i -= 1) {
      if (values[i] !== null) return i;
    }
    return -1;
  }

  // ---- what each chart draws, from the series answer ----

  // The versions in the model's order, then any other the answer names.
  function versionOrder(series) {
    const names = (state.status && Array.isArray(state.status.versions) ? state.status.versions : []).map(
      (version) => version.name,
    );
    for (const name of Object.keys((series && series.versions) || {})) {
      if (!names.includes(name)) names.push(name);
    }
    return names;
  }

  function roleData(series, version, role) {
    const entry = series.versions && series.versions[version];
    const data = entry && entry[role];
    return data && typeof data === "object" ? data : null;
  }

  // One line per version and role that has `field`, with its band when asked.
  function roleLines(series, length, field, band, roles) {
    const lines = [];
    for (const version of versionOrder(series)) {
      for (const role of roles || ROLES) {
        const data = roleData(series, version, role);
        if (!data || !Array.isArray(data[field])) continue;
        const line = {
          id: `${role}|${field}`,
          version,
          role,
          stat: null,
          width: LINE_WIDTH,
          values: numbers(data[field], length),
        };
        if (band) {
          line.low = numbers(data[band[0]], length);
          line.high = numbers(data[band[1]], length);
        }
        lines.push(line);
      }
    }
    return lines;
  }

  function latencyLines(series, length, version) {
    const lines = [];
    for (const role of ROLES) {
      const data = roleData(series, version, role);
      if (!data) continue;
      for (const p of PERCENTILES) {
        if (!Array.isArray(data[p.field])) continue;
        lines.push({
          id: `${role}|${p.field}`,
          version,
          role,
          stat: p.stat,
          statWords: p.words,
          width: p.width,
          values: numbers(data[p.field], length),
        });
      }
    }
    return lines;
  }

  function driftLines(series, length) {
    const drift = series.drift && typeof series.drift === "object" ? series.drift : {};
    return Object.keys(drift).map((version) => ({
      id: "drift",
      version,
      // Drawn solid, and named by the version alone: drift belongs to no role.
      role: "served",
      plain: true,
      stat: null,
      width: LINE_WIDTH,
      values: numbers(drift[version], length),
    }));
  }

  function chartSpecs(series) {
    const length = series.times.length;
    const specs = [
      {
        key: "requests",
        title: "Requests per second",
        unit: "rate",
        range: "zero",
        lines: roleLines(series, length, "requests_per_s"),
        empty: "No requests in this window yet.",
      },
      {
        key: "errors",
        title: "Error rate",
        unit: "fraction",
        range: "zero",
        lines: roleLines(series, length, "error_rate"),
        empty: "No requests in this window yet.",
      },
    ];
    let latency = 0;
    for (const version of versionOrder(series)) {
      const lines = latencyLines(series, length, version);
      if (!lines.length) continue;
      latency += 1;
      specs.push({
        key: `latency|${version}`,
        title: `Latency of ${version}: p50, p95, p99`,
        unit: "ms",
        range: "zero",
        lines,
        empty: "No answers in this window yet.",
      });
    }
    if (!latency) {
      specs.push({
        key: "latency",
        title: "Latency: p50, p95, p99",
        unit: "ms",
        range: "zero",
        lines: [],
        empty: "No answers in this window yet.",
      });
    }
    // Labels give a classifier its accuracy and a regression its error size.
    const regression = state.status && state.status.task === "regression";
    if (!regression) {
      specs.push({
        key: "accuracy",
        title: "Accuracy from feedback, with its 95 % confidence band",
        unit: "fraction",
        range: "fraction",
        lines: roleLines(series, length, "accuracy", ["accuracy_low", "accuracy_high"]),
        empty: "No labelled feedback in this window: accuracy needs feedback on predictions.",
        band: true,
      });
    }
    const mae = roleLines(series, length, "mae");
    if (regression || hasValues(mae)) {
      specs.push({
        key: "mae",
        title: "Mean absolute error, from feedback",
        unit: "figure",
        range: "zero",
        lines: mae,
        empty: "No labelled feedback in this window: the error needs feedback on predictions.",
      });
    }
    const agreement = roleLines(series, length, "agreement", ["agreement_low", "agreement_high"], ["shadow"]);
    if (agreement.length) {
      specs.push({
        key: "agreement",
        title: "Shadow agreement with the served answers, with its 95 % confidence band",
        unit: "fraction",
        range: "fraction",
        lines: agreement,
        empty: "No shadow answer compared in this window yet.",
        band: true,
      });
    }
    // Drift needs 100 outputs a step on both sides: a chart only once there is some.
    const drift = driftLines(series, length);
    if (hasValues(drift)) {
      specs.push({
        key: "drift",
        title: "Drift of the outputs against the stable version (PSI)",
        unit: "figure",
        range: "zero",
        lines: drift,
        empty: "No drift measured in this window.",
      });
    }
    return specs;
  }

  function hasValues(lines) {
    return lines.some((line) => line.values.some((value) => value !== null));
  }

  function lineLabel(line) {
    if (line.plain) return line.version;
    return `${line.version} ${line.role}` + (line.stat ? ` ${line.stat}` : "");
  }

  // ---- one chart: a figure with its caption, legend, canvas and latest values ----

  function newChart(spec) {
    const host = el("div", { className: "chart-host", attrs: { role: "img" } });
    const chart = {
      key: spec.key,
      spec,
      plot: null,
      layout: "",
      caption: el("figcaption", { className: "chart-title" }),
      legend: el("ul", { className: "chart-legend" }),
      host,
      note: el("p", { className: "muted chart-empty" }),
      readout: el("p", { className: "readout muted", attrs: { "aria-hidden": "true" } }),
      values: el("tbody"),
      tableCaption: el("caption", { className: "visually-hidden" }),
      times: [],
    };
    chart.figure = el("figure", { className: "chart" }, [
      chart.caption,
      chart.legend,
      host,
      chart.note,
      chart.readout,
      el("details", { className: "values" }, [
        el("summary", { text: "Latest values" }),
        el("div", { className: "table-wrap" }, [
          el("table", {}, [
            chart.tableCaption,
            el("thead", {}, [
              el("tr", {}, [
                el("th", { text: "Series", attrs: { scope: "col" } }),
                el("th", { className: "num", text: "Latest", attrs: { scope: "col" } }),
                el("th", { text: "At", attrs: { scope: "col" } }),
              ]),
            ]),
            chart.values,
          ]),
        ]),
      ]),
    ]);
    return chart;
  }

  function updateChart(chart, spec, times) {
    chart.spec = spec;
    chart.times = times;
    chart.caption.textContent = spec.title;
    const windowText = format.windowText(state.windowS);
    drawLegend(chart, spec);
    // How many steps hold a value: what a test (or a curious person) can watch grow.
    let points = 0;
    for (let i = 0; i < times.length; i += 1) {
      if (spec.lines.some((line) => line.values[i] !== null)) points += 1;
    }
    chart.figure.dataset.points = String(points);
    chart.figure.dataset.series = String(spec.lines.length);
    chart.note.textContent = points ? "" : spec.empty;
    show(chart.note, !points);

    const latest = [];
    const rows = [];
    for (const line of spec.lines) {
      const at = lastValue(line.values);
      const shown = at >= 0 ? formats[spec.unit](line.values[at]) : "—";
      if (at >= 0) latest.push(`${lineLabel(line)} ${shown}`);
      rows.push(
        el("tr", {}, [
          el("th", { text: lineLabel(line), attrs: { scope: "row" } }),
          el("td", { className: "num", text: shown }),
          el("td", { text: at >= 0 ? format.clock(new Date(times[at] * 1000)) : "—" }),
        ]),
      );
    }
    if (!rows.length) {
      rows.push(el("tr", {}, [el("td", { className: "muted", text: spec.empty, attrs: { colspan: "3" } })]));
    }
    chart.values.replaceChildren(...rows);
    chart.tableCaption.textContent = `${spec.title}: latest values`;
    const summary = latest.length ? `Latest: ${latest.join("; ")}.` : spec.empty;
    chart.host.setAttribute(
      "aria-label",
      `${spec.title}, over the last ${windowText}, one line per version and role. ${summary}`,
    );
    drawPlot(chart, spec, times);
  }

  function drawLegend(chart, spec) {
    const items = spec.lines.map((line) => {
      const how = line.plain ? [] : [ROLE_WORDS[line.role]];
      if (line.statWords) how.push(line.statWords);
      return el("li", {}, [
        el("span", {
          className: `line c${colourIndex(line.version)} ${line.role} ${line.stat || ""}`,
          attrs: { "aria-hidden": "true" },
        }),
        el("span", { text: lineLabel(line) }),
        // Spaces as text, not only as the flex gap: a screen reader reads the words apart.
        how.length ? " " : null,
        how.length ? el("span", { className: "muted", text: `(${how.join(", ")})` }) : null,
      ]);
    });
    if (spec.band && spec.lines.length) {
      items.push(el("li", { className: "muted", text: "shaded: confidence band" }));
    }
    // Drawn anew only when it says something else, so it does not flicker.
    const text =
      items.map((item) => item.textContent).join("\n") +
      spec.lines.map((line) => colourIndex(line.version)).join();
    if (chart.legend.dataset.text === text) return;
    chart.legend.dataset.text = text;
    chart.legend.replaceChildren(...items);
  }

  // uPlot's data: the times, then each line, each followed by its band's low and high.
  function plotData(spec, times) {
    const data = [times];
    for (const line of spec.lines) {
      data.push(line.values);
      if (line.low) data.push(line.low, line.high);
    }
    return data;
  }

  // What decides the plot's series; another layout needs a new plot.
  function layoutOf(spec) {
    return (
      spec.unit +
      "\n" +
      spec.lines
        .map((line) => `${line.version}|${line.id}|${colourIndex(line.version)}|${Boolean(line.low)}`)
        .join("\n")
    );
  }

  function chartHeight(width) {
    return width < 500 ? 170 : 210;
  }

  function drawPlot(chart, spec, times) {
    const data = plotData(spec, times);
    const width = chart.host.clientWidth;
    if (typeof window.uPlot !== "function" || width <= 0) return;
    const layout = layoutOf(spec);
    if (chart.plot && chart.layout === layout) {
      chart.plot.setData(data);
      return;
    }
    if (chart.plot) chart.plot.destroy();
    chart.layout = layout;
    chart.plot = new window.uPlot(plotOptions(chart, spec, width), data, chart.host);
  }

  function yRange(kind) {
    return (u, min, max) => {
      if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) {
        return [0, 1];
      }
      if (kind === "fraction") {
        // Fractions: whole 5 % steps around the data, within 0..1.
        const low = Math.max(0, Math.floor((min - 0.02) * 20) / 20);
        const high = Math.min(1, Math.ceil((max + 0.02) * 20) / 20);
        return [low, high > low ? high : Math.min(1, low + 0.05)];
      }
      return [Math.min(0, min), max > 0 ? max * 1.15 : 1];
    };
  }

  function plotOptions(chart, spec, width) {
    const series = [{}];
    const bands = [];
    for (const line of spec.lines) {
      const stroke = colour(colourIndex(line.version));
      series.push({
        stroke,
        width: line.width,
        dash: ROLE_DASH[line.role],
        spanGaps: false,
        points: { size: line.width * 2 + 2 },
      });
      if (line.low) {
        const low = series.length;
        series.push({ stroke, width: 0, points: { show: false } });
        series.push({ stroke, width: 0, points: { show: false } });
        bands.push({ series: [low + 1, low], fill: translucent(stroke, 0.15) });
      }
    }
    const axis = {
      stroke: MARK_COLOUR,
      font: AXIS_FONT,
      grid: { stroke: GRID_COLOUR, width: 1 },
      ticks: { stroke: GRID_COLOUR },
    };
    return {
      width,
      height: chartHeight(width),
      series,
      bands,
      // uPlot's own legend is off: the legend above the chart is built with el().
      legend: { show: false },
      // Dragging would zoom, but the window selector is what sets the time span.
      cursor: { drag: { x: false, y: false, setScale: false } },
      scales: {
        x: { time: true, range: () => [state.range.from, state.range.until] },
        y: { range: yRange(spec.range) },
      },
      axes: [
        axis,
        { ...axis, size: 64, values: (u, splits) => splits.map((value) => axisFormats[spec.unit](value)) },
      ],
      hooks: {
        draw: [(u) => drawMarks(u)],
        setCursor: [(u) => readCursor(u, chart)],
      },
    };
  }

  // Every routing change and rollout step as a dashed vertical line with its number in
  // the list below the charts (the canvas gets a number, never the mark's text).
  function drawMarks(u) {
    const ratio = window.uPlot.pxRatio || 1;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = MARK_COLOUR;
    ctx.fillStyle = MARK_COLOUR;
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    state.marks.forEach((mark, index) => {
      if (mark.at_s < state.range.from || mark.at_s > state.range.until) return;
      const x = Math.round(u.valToPos(mark.at_s, "x", true));
      if (x < left || x > left + width) return;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.fillText(String(index + 1), x + 3 * ratio, top + 11 * ratio);
    });
    ctx.restore();
  }

  // What the pointer is over, in words under the chart (the cursor itself is mouse-only;
  // the table of latest values is there for everyone).
  function readCursor(u, chart) {
    const index = u.cursor.idx;
    if (index === null || index === undefined || !chart.times.length) {
      chart.readout.textContent = "";
      return;
    }
    const at = format.clock(new Date(chart.times[index] * 1000));
    const parts = chart.spec.lines
      .filter((line) => line.values[index] !== null)
      .map((line) => `${lineLabel(line)} ${formats[chart.spec.unit](line.values[index])}`);
    chart.readout.textContent = `${at}: ${parts.length ? parts.join("; ") : "no value"}`;
  }

  function drawCharts(series) {
    const specs = chartSpecs(series);
    const wanted = new Set(specs.map((spec) => spec.key));
    for (const [key, chart] of state.charts) {
      if (!wanted.has(key)) {
        if (chart.plot) chart.plot.destroy();
        chart.figure.remove();
        state.charts.delete(key);
      }
    }
    const figures = [];
    for (const spec of specs) {
      let chart = state.charts.get(spec.key);
      if (!chart) {
        chart = newChart(spec);
        state.charts.set(spec.key, chart);
      }
      figures.push(chart.figure);
    }
    // Moved only when the order changed: moving a node takes the focus out of it.
    const current = Array.from(chartsGrid.children);
    if (current.length !== figures.length || current.some((node, i) => node !== figures[i])) {
      chartsGrid.replaceChildren(...figures);
    }
    for (const spec of specs) updateChart(state.charts.get(spec.key), spec, series.times);
  }

  function clearCharts() {
    for (const chart of state.charts.values()) {
      if (chart.plot) chart.plot.destroy();
    }
    state.charts.clear();
    chartsGrid.replaceChildren();
  }

  // The charts follow their container's width, on a phone as on a wide screen.
  const resizer =
    typeof ResizeObserver === "function"
      ? new ResizeObserver(() => window.requestAnimationFrame(resizeCharts))
      : null;
  if (resizer) resizer.observe(chartsGrid);
  else window.addEventListener("resize", resizeCharts);

  function resizeCharts() {
    for (const chart of state.charts.values()) {
      const width = chart.host.clientWidth;
      if (width <= 0) continue;
      if (!chart.plot) {
        // Shown only now (the page was hidden when the data came): draw it.
        drawPlot(chart, chart.spec, chart.times);
      } else if (Math.abs(chart.plot.width - width) >= 1) {
        chart.plot.setSize({ width, height: chartHeight(width) });
      }
    }
  }

  // ---- the marks, as text ----

  function cleanMarks(series) {
    const marks = Array.isArray(series.marks) ? series.marks : [];
    return marks
      .filter((mark) => mark && typeof mark.at_s === "number" && Number.isFinite(mark.at_s))
      .slice()
      .sort((a, b) => a.at_s - b.at_s);
  }

  function drawMarksList() {
    if (!state.marks.length) {
      marksList.replaceChildren(
        el("li", { className: "muted none", text: "No routing change or rollout step in this window." }),
      );
      return;
    }
    marksList.replaceChildren(
      ...state.marks.map((mark) => {
        const when = new Date(mark.at_s * 1000);
        return el("li", { attrs: { "data-kind": String(mark.kind || "") } }, [
          el("time", { text: format.clock(when), attrs: { datetime: when.toISOString() } }),
          " ",
          el("span", { className: "mark-text", text: mark.text === undefined ? "" : mark.text }),
          mark.kind ? el("span", { className: "muted mark-kind", text: ` (${mark.kind})` }) : null,
        ]);
      }),
    );
  }

  // ---- the model's versions ----

  function roleOf(status, version) {
    const rollout = activeRollout(status);
    if (version.name === status.stable) return "stable";
    if (rollout && version.name === rollout.candidate) return "candidate";
    if (version.weight > 0) return "serving";
    if (version.mirror > 0) return "shadow";
    return "idle";
  }

  function activeRollout(status) {
    const rollout = status && status.rollout;
    return rollout && shared.activePhases.has(rollout.phase) ? rollout : null;
  }

  function drawVersions(status) {
    const versions = Array.isArray(status.versions) ? status.versions : [];
    const rows = versions.map((version) => {
      const tone = version.health === "ready" ? "ok" : version.health === "failed" ? "bad" : "busy";
      const fleet = version.fleet;
      return el("tr", {}, [
        el("th", { attrs: { scope: "row" } }, [
          el("span", { className: `swatch c${colourIndex(version.name)}`, attrs: { "aria-hidden": "true" } }),
          " ",
          version.name,
        ]),
        el("td", { text: roleOf(status, version) }),
        el("td", {}, [
          el("span", { className: `badge ${tone}`, text: version.health }),
          version.reason ? el("span", { className: "reason", text: version.reason }) : null,
        ]),
        el("td", { className: "num", text: `${format.dash(version.weight)} %` }),
        el("td", { className: "num", text: version.mirror > 0 ? `${version.mirror} %` : "—" }),
        el("td", {}, [
          fleet ? fleet.summary : "—",
          fleet && fleet.why_not ? el("span", { className: "reason", text: fleet.why_not }) : null,
        ]),
      ]);
    });
    if (!rows.length) {
      const none = el("td", { className: "muted", text: "No versions.", attrs: { colspan: "6" } });
      rows.push(el("tr", {}, [none]));
    }
    versionsBody.replaceChildren(...rows);
  }

  function drawRollout(status) {
    const rollout = activeRollout(status);
    if (!rollout) {
      rolloutLine.replaceChildren();
      show(rolloutLine, false);
      return;
    }
    rolloutLine.replaceChildren(
      el("p", {}, [
        el("strong", { text: "Rollout in progress" }),
        `: #${rollout.id}, ${rollout.strategy} ${rollout.stable} → ${rollout.candidate}, ${rollout.phase}, ` +
          `step ${format.dash(rollout.step)} of ${format.dash(rollout.steps)}, candidate at ` +
          `${format.dash(rollout.weight)} %.`,
      ]),
    );
    show(rolloutLine, true);
  }

  // ---- setting the routing by hand (operator) ----

  const form = {
    built: false,
    names: "", // the versions the rows were built for
    dirty: false, // edited: the poll no longer writes the API's routing into it
    sending: false,
    rows: [],
    node: null,
    sum: null,
    error: null,
    outcome: null,
    submit: null,
    pending: null, // the routing the dialog is open for
  };

  const dialog = {
    node: el("dialog", {
      className: "confirm routing-confirm",
      attrs: { "aria-labelledby": ids.dialogTitle, "aria-describedby": ids.dialogWhat },
    }),
    title: el("h2", { attrs: { id: ids.dialogTitle } }),
    what: el("p", { attrs: { id: ids.dialogWhat } }),
    before: el("p", { className: "muted" }),
    warning: el("p", { className: "notice warning" }),
    force: el("input", { attrs: { type: "checkbox", id: "model-routing-force" } }),
    forceLabel: el("label", { className: "check", attrs: { for: "model-routing-force" } }),
    cancel: el("button", { text: "Cancel", attrs: { type: "button" } }),
    ok: el("button", { attrs: { type: "submit" } }),
  };
  const dialogForm = el("form", { attrs: { method: "dialog", autocomplete: "off" } }, [
    dialog.title,
    dialog.what,
    dialog.before,
    dialog.warning,
    el("div", { className: "force-row" }, [dialog.force, dialog.forceLabel]),
    el("div", { className: "dialog-actions" }, [dialog.cancel, dialog.ok]),
  ]);
  dialog.node.append(dialogForm);
  section.append(dialog.node);

  function routingText(weights, mirrors) {
    const shares = Object.entries(weights)
      .filter(([, weight]) => weight > 0)
      .map(([name, weight]) => `${name} ${weight} %`);
    const copies = Object.entries(mirrors).map(([name, percent]) => `${name} ${percent} %`);
    return (shares.join(", ") || "nothing") + (copies.length ? `; mirrored: ${copies.join(", ")}` : "");
  }

  function currentRouting(status) {
    const weights = {};
    const mirrors = {};
    for (const version of status.versions || []) {
      weights[version.name] = Number(version.weight) || 0;
      if (version.mirror > 0) mirrors[version.name] = version.mirror;
    }
    return { weights, mirrors };
  }

  function percentInput(id) {
    return el("input", {
      className: "percent",
      attrs: { id, type: "number", min: "0", max: "100", step: "1", inputmode: "numeric" },
    });
  }

  function buildForm(status) {
    const versions = Array.isArray(status.versions) ? status.versions : [];
    const names = versions.map((version) => version.name).join("\n");
    if (form.built && form.names === names) return;
    form.built = true;
    form.names = names;
    form.dirty = false;
    form.rows = versions.map((version, index) => {
      // By position: a version's name may hold any character, an id should not.
      const weight = percentInput(`model-weight-${index}`);
      const mirror = percentInput(`model-mirror-${index}`);
      const row = el("tr", {}, [
        el("th", { attrs: { scope: "row" } }, [
          el("span", { className: `swatch c${colourIndex(version.name)}`, attrs: { "aria-hidden": "true" } }),
          " ",
          version.name,
        ]),
        el("td", {}, [
          el("label", {
            className: "visually-hidden",
            text: `Weight of ${version.name} (%)`,
            attrs: { for: weight.id },
          }),
          weight,
        ]),
        el("td", {}, [
          el("label", {
            className: "visually-hidden",
            text: `Mirror of ${version.name} (%)`,
            attrs: { for: mirror.id },
          }),
          mirror,
        ]),
      ]);
      return { name: version.name, weight, mirror, row };
    });
    form.sum = el("p", { className: "sum", attrs: { "aria-live": "polite" } });
    form.error = el("p", { className: "error", attrs: { role: "alert" } });
    show(form.error, false);
    form.submit = el("button", {
      className: "primary",
      text: "Review and set routing…",
      attrs: { type: "submit" },
    });
    const resetButton = el("button", { text: "Back to the current routing", attrs: { type: "button" } });
    form.node = el("form", { className: "routing-form", attrs: { autocomplete: "off", novalidate: "" } }, [
      el("div", { className: "table-wrap" }, [
        el("table", {}, [
          el("caption", { className: "visually-hidden", text: "New weights and mirrors per version" }),
          el("thead", {}, [
            el("tr", {}, [
              el("th", { text: "Version", attrs: { scope: "col" } }),
              el("th", { text: "Weight (% of traffic)", attrs: { scope: "col" } }),
              el("th", { text: "Mirror (% copied)", attrs: { scope: "col" } }),
            ]),
          ]),
          el("tbody", {}, form.rows.map((row) => row.row)),
        ]),
      ]),
      form.sum,
      form.error,
      el("div", { className: "form-actions" }, [resetButton, form.submit]),
    ]);
    form.outcome = form.outcome || el("p", { className: "outcome" });
    if (!form.outcome.textContent) show(form.outcome, false);
    form.node.addEventListener("input", () => {
      form.dirty = true;
      show(form.error, false);
      showSum();
    });
    form.node.addEventListener("submit", (event) => {
      event.preventDefault();
      review();
    });
    resetButton.addEventListener("click", () => {
      form.dirty = false;
      show(form.error, false);
      fillForm(state.status);
    });
    routingBox.replaceChildren(
      el("h3", { text: "Set routing by hand" }),
      el("p", {
        className: "muted small",
        text:
          "Weights are whole percents of live traffic and must sum to 100. A mirror copies " +
          "that percent of all requests to a version that serves no traffic (its answers are " +
          "compared, never returned). Nothing is sent before you confirm.",
      }),
      form.node,
      form.outcome,
    );
  }

  function fillForm(status) {
    if (!status || form.dirty) return;
    const { weights, mirrors } = currentRouting(status);
    for (const row of form.rows) {
      row.weight.value = String(weights[row.name] || 0);
      row.mirror.value = String(mirrors[row.name] || 0);
    }
    showSum();
  }

  // A whole percent in 0..100 written in the field, or null.
  function percentOf(input) {
    // A number field gives "" for what is not a number: that is no 0.
    if (input.validity && input.validity.badInput) return null;
    const text = input.value.trim();
    if (text === "") return 0;
    if (!/^\d{1,3}$/.test(text)) return null;
    const value = Number(text);
    return value <= 100 ? value : null;
  }

  function showSum() {
    let total = 0;
    for (const row of form.rows) total += percentOf(row.weight) || 0;
    form.sum.textContent =
      total === 100
        ? "The weights sum to 100 %."
        : `The weights sum to ${total} %: they must sum to 100 % (` +
          (total < 100 ? `${100 - total} % to give).` : `${total - 100} % too many).`);
    form.sum.classList.toggle("bad", total !== 100);
  }

  // The routing the form holds, or the first reason it cannot be sent (and the field).
  function readForm() {
    const weights = {};
    const mirrors = {};
    let total = 0;
    for (const row of form.rows) {
      const weight = percentOf(row.weight);
      if (weight === null) {
        return {
          problem: `The weight of ${row.name} must be a whole number from 0 to 100.`,
          field: row.weight,
        };
      }
      const mirror = percentOf(row.mirror);
      if (mirror === null) {
        return {
          problem: `The mirror of ${row.name} must be a whole number from 0 to 100.`,
          field: row.mirror,
        };
      }
      if (weight > 0 && mirror > 0) {
        return {
          problem:
            `${row.name} cannot both serve traffic and be mirrored: ` +
            "set its weight or its mirror to 0.",
          field: row.mirror,
        };
      }
      weights[row.name] = weight;
      // The API takes mirrors of 1..100 only: 0 means none.
      if (mirror > 0) mirrors[row.name] = mirror;
      total += weight;
    }
    if (total !== 100) {
      return {
        problem: `Not sent: the weights sum to ${total} %, and they must sum to exactly 100 %.`,
        field: form.rows.length ? form.rows[0].weight : null,
      };
    }
    return { weights, mirrors };
  }

  function review() {
    if (form.sending || dialog.node.open || !state.status) return;
    const read = readForm();
    if (read.problem) {
      form.error.textContent = read.problem;
      show(form.error, true);
      if (read.field) read.field.focus();
      return;
    }
    show(form.error, false);
    const status = state.status;
    const rollout = activeRollout(status);
    const now = currentRouting(status);
    form.pending = {
      model: state.model,
      weights: read.weights,
      mirrors: read.mirrors,
      generation: state.generation,
    };
    dialog.title.textContent = `Set the routing of ${state.model} by hand`;
    dialog.what.textContent = `New routing: ${routingText(read.weights, read.mirrors)}.`;
    dialog.before.textContent = `Now: ${routingText(now.weights, now.mirrors)}.`;
    // What the server does (store/routing_rollouts.py, runtime/routing_state.py): a
    // routing set by hand while a rollout is in progress is refused (409) unless forced,
    // and forcing aborts the rollout first, as an operator's abort would.
    if (rollout) {
      dialog.warning.textContent =
        `Warning: rollout #${rollout.id} of ${state.model} (${rollout.strategy} ${rollout.stable} → ` +
        `${rollout.candidate}) is in progress. Setting routing by hand aborts it: its controller ` +
        "owns the routing while it runs, so the API refuses this change (HTTP 409) unless you " +
        "force it below. Forced, the rollout is aborted first: it ends for good, rolled back " +
        `to ${rollout.stable} and recorded in the event log as aborted (routing set by hand); ` +
        "then this routing applies.";
      dialog.forceLabel.textContent = `Abort rollout #${rollout.id} and set this routing (force)`;
    } else {
      dialog.warning.textContent =
        "Warning: setting routing by hand aborts a rollout in progress. None is in progress " +
        `for ${state.model} now; if one has started by the time this is sent, the API refuses ` +
        "the change (HTTP 409) unless forced, and forcing aborts that rollout first (it ends, " +
        "rolled back, recorded in the event log as aborted: routing set by hand).";
      dialog.forceLabel.textContent =
        "Abort a rollout in progress, if one has started, and set this routing (force)";
    }
    dialog.force.checked = false;
    showOk();
    dialog.node.showModal();
    dialog.cancel.focus();
  }

  function showOk() {
    dialog.ok.textContent = dialog.force.checked ? "Abort the rollout and set routing" : "Set routing";
    dialog.ok.className = dialog.force.checked ? "danger" : "primary";
  }

  dialog.force.addEventListener("change", showOk);
  dialog.cancel.addEventListener("click", () => dialog.node.close());
  dialog.node.addEventListener("close", () => {
    // Escape, Cancel or a confirm: the focus goes back to the form's button.
    const left = form.pending;
    form.pending = null;
    if (left && form.submit && document.contains(form.submit)) form.submit.focus();
  });
  dialogForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = form.pending;
    const force = dialog.force.checked;
    form.pending = null;
    dialog.node.close();
    if (chosen) sendRouting(chosen, force);
    if (form.submit) form.submit.focus();
  });

  async function sendRouting(chosen, force) {
    if (chosen.model !== state.model || chosen.generation !== state.generation) return;
    form.sending = true;
    form.submit.disabled = true;
    setOutcome(null, "Sending…");
    let ok = false;
    let text;
    try {
      const path =
        `/api/v1/models/${encodeURIComponent(chosen.model)}/routing` + (force ? "?force=true" : "");
      const body = { weights: chosen.weights, mirrors: chosen.mirrors };
      const routing = await api(path, { method: "PUT", body });
      ok = true;
      const weights = (routing && routing.weights) || {};
      const mirrors = (routing && routing.mirrors) || {};
      text = `Routing set at ${format.clock(new Date())}: ${routingText(weights, mirrors)}.`;
    } catch (error) {
      text = `Routing not set (${format.clock(new Date())}): ${error.message}`;
    }
    // Signed out, or another model shown meanwhile: the answer is not for this page.
    if (chosen.generation !== state.generation || chosen.model !== state.model) return;
    form.sending = false;
    form.submit.disabled = false;
    if (ok) form.dirty = false;
    setOutcome(ok, text);
    shared.announce(text);
    shared.refresh();
  }

  function setOutcome(ok, text) {
    form.outcome.className = `outcome ${ok === null ? "muted" : ok ? "ok" : "bad"}`;
    form.outcome.textContent = text;
    show(form.outcome, true);
  }

  function drawRoutingBox(status) {
    if (shared.role() !== "operator") {
      if (form.built || !routingBox.childElementCount) {
        forgetForm();
        routingBox.replaceChildren(
          el("p", {
            className: "muted small",
            text: "An operator can set this model's routing here by hand.",
          }),
        );
      }
      return;
    }
    buildForm(status);
    fillForm(status);
  }

  function forgetForm() {
    form.built = false;
    form.names = "";
    form.dirty = false;
    form.sending = false;
    form.rows = [];
    form.node = null;
    form.outcome = null;
    form.pending = null;
    if (dialog.node.open) dialog.node.close();
    routingBox.replaceChildren();
  }

  // ---- the page: refresh and reset ----

  function match(hash) {
    const found = /^#\/models\/(.+)$/.exec(hash);
    if (!found) return null;
    try {
      return { name: decodeURIComponent(found[1]) };
    } catch (_) {
      return null;
    }
  }

  function reset() {
    state.generation += 1;
    state.model = null;
    state.status = null;
    state.marks = [];
    state.colours = new Map();
    clearCharts();
    forgetForm();
    marksList.replaceChildren();
    versionsBody.replaceChildren();
    rolloutLine.replaceChildren();
    heading.textContent = "";
    updated.textContent = "";
    chartsNote.textContent = "";
    show(errorLine, false);
  }

  function showModel(name) {
    reset();
    state.model = name;
    heading.textContent = name;
    rolloutLink.textContent = `Rollout of ${name}`;
    rolloutLink.setAttribute("href", shared.pageLink("rollouts", name));
    chartsNote.textContent = "Loading…";
    // A page of its own: a screen reader hears where it now is.
    heading.focus();
  }

  async function refresh(params, isCurrent) {
    if (params.name !== state.model) showModel(params.name);
    const name = state.model;
    const generation = state.generation;
    const windowS = state.windowS;
    const base = `/api/v1/models/${encodeURIComponent(name)}`;
    const fresh = () => isCurrent() && generation === state.generation && windowS === state.windowS;
    const seriesAsk = api(`${base}/series?window_s=${windowS}`).then(
      (series) => ({ series }),
      (error) => ({ error }),
    );
    const status = await api(`${base}?window_s=${windowS}`);
    const answer = await seriesAsk;
    if (!fresh()) return;
    state.status = status;
    setColours(Array.isArray(status.versions) ? status.versions : []);
    drawRollout(status);
    drawVersions(status);
    drawRoutingBox(status);
    if (answer.error) {
      // The page's other parts still show; a refused token signs out as anywhere else.
      if (answer.error.status === 401) throw answer.error;
      chartsNote.textContent = `The charts could not be refreshed: ${answer.error.message}.`;
    } else {
      drawSeries(answer.series);
    }
    updated.textContent = `Updated ${format.clock(new Date())}`;
  }

  function drawSeries(series) {
    const raw = series && Array.isArray(series.times_s) ? series.times_s : [];
    const times = numbers(raw, raw.length);
    const clean = { ...series, times: times.map((t) => (t === null ? 0 : t)) };
    const until = typeof series.until_s === "number" ? series.until_s : Date.now() / 1000;
    const span = typeof series.window_s === "number" ? series.window_s : state.windowS;
    // Steps start on round times: the first may begin a little before the window.
    const first = clean.times.length ? Math.min(clean.times[0], until - span) : until - span;
    state.range = { from: first, until };
    state.marks = cleanMarks(series);
    const step =
      typeof series.step_s === "number" ? ` · one point every ${format.windowText(series.step_s)}` : "";
    chartsNote.textContent =
      `Over the last ${format.windowText(span)}${step}. Lines: solid served, dashed shadow, ` +
      "dotted preview. Numbered dashed vertical lines: the routing changes and rollout steps " +
      "listed under the charts.";
    drawCharts(clean);
    drawMarksList();
  }

  windowSelect.addEventListener("change", () => {
    state.windowS = Number(windowSelect.value) || DEFAULT_WINDOW_S;
    chartsNote.textContent = "Loading…";
    shared.refresh();
  });

  const main = document.getElementById("main") || document.querySelector("main");
  const sharedDialog = document.getElementById("confirm");
  if (sharedDialog && sharedDialog.parentNode === main) main.insertBefore(section, sharedDialog);
  else main.append(section);

  shared.registerPage({
    name: "model",
    tab: "models",
    section,
    errorLine,
    match,
    refresh,
    reset,
  });
})();
