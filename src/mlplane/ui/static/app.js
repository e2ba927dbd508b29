/* mlplane UI: the little JavaScript every page shares, and the charts (uPlot).
 *
 * Pages never carry inline script (the Content-Security-Policy forbids it): data reaches
 * this file as <script type="application/json" id="..."> blocks, and elements opt in with
 * data- attributes:
 *   <div class="chart" data-chart="SPEC_ID">   draws the chart SPEC_ID describes
 *   <table class="sortable">                   sorts by a clicked header, in the browser
 *   <form data-confirm="Really?">              asks before posting
 *   <span data-width="42.5">                   sets its width in percent
 *   <input type="checkbox" data-select="run">  with <a data-selected="run" data-href="/x?runs=">
 *                                              keeps a link to the checked rows
 *
 * A chart spec:
 *   {"kind": "lines", "title": "loss", "x": "step" | "time" | "relative",
 *    "log": false, "smooth": 0, "controls": true, "y_label": "",
 *    "series": [{"label": "run-1", "step": [...], "time": [...], "y": [...]}]}
 *   {"kind": "scatter", "x_label": "lr", "y_label": "acc", "log_x": false,
 *    "x_labels": ["adam", "sgd"], "y_labels": [...],   (optional: categories, plotted at
 *                                                       their index, ticks show the names)
 *    "series": [{"label": "runs", "x": [...], "y": [...], "names": [...]}]}
 *   {"kind": "bars", "labels": ["0-1", ...] or "x": [...], "series": [{"label": "count", "y": [...]}]}
 *   {"kind": "time", "series": [{"label": "req/s", "time": [ms...], "y": [...]}], "y_label": ""}
 * Any series may carry "color": N, the palette index to draw it in (default: its position),
 * so a chart missing some series keeps each one's colour (e.g. a run's colour across charts).
 * Lines and scatters of more than 12 series leave the legend out. Extra fields are ignored.
 * Lines whose series share too few x values to align in one table (many runs on wall
 * time) are drawn each on its own x (uPlot's mode 2), without the live legend.
 * A drawn chart's element gets data-rendered="1" and data-series='["run-1", ...]';
 * window.MLP.chart(el, spec) draws one chart later (data fetched by a page's own script).
 */
(function () {
  "use strict";

  const PALETTE = ["#2f6fed", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0b7285",
    "#e67700", "#5c940d", "#a61e4d", "#364fc7", "#087f5b", "#d9480f"];

  function color(i) {
    if (i < PALETTE.length) return PALETTE[i];
    return "hsl(" + ((i * 137.508) % 360).toFixed(0) + ", 62%, 45%)";
  }

  /* A palette colour made translucent: hex gets an alpha byte, hsl() becomes hsla(). */
  function alpha(c, hex) {
    if (c.charAt(0) === "#") return c + hex;
    return c.replace("hsl(", "hsla(").replace(")", ", " + (parseInt(hex, 16) / 255).toFixed(2) + ")");
  }

  function seriesColor(s, i) {
    return color(s.color != null ? +s.color : i);
  }

  /* Axis ticks that show category names at integer positions. */
  function categoryTicks(labels) {
    return function (_, ticks) {
      return ticks.map(function (t) { return Number.isInteger(t) && labels[t] != null ? labels[t] : ""; });
    };
  }

  function data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /* TensorBoard's smoothing: an exponential moving average, debiased at the start. */
  function smooth(ys, weight) {
    if (!weight) return ys;
    const out = new Array(ys.length);
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y == null || !isFinite(y)) { out[i] = y; continue; }
      last = last * weight + (1 - weight) * y;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  function width(el) {
    return Math.max(280, Math.floor(el.clientWidth || el.parentElement.clientWidth || 600));
  }

  function mark(el, chart, labels) {
    el._chart = chart;
    el.dataset.rendered = "1";
    el.dataset.series = JSON.stringify(labels);
  }

  function xValues(s, mode) {
    if (mode === "time") return s.time.map(function (t) { return t / 1000; });
    if (mode === "relative") {
      const t0 = s.time.length ? s.time[0] : 0;
      return s.time.map(function (t) { return (t - t0) / 1000; });
    }
    return s.step;
  }

  const MAX_ALIGNED_CELLS = 2000000;

  /* How many cells joining these [x, y] tables on their x values would take. */
  function alignedCells(tables) {
    let total = 0;
    tables.forEach(function (t) { total += t[0].length; });
    if (total * tables.length <= MAX_ALIGNED_CELLS) return total * tables.length;
    const xs = new Set();
    tables.forEach(function (t) { for (let i = 0; i < t[0].length; i++) xs.add(t[0][i]); });
    return xs.size * tables.length;
  }

  function lines(el, spec) {
    const state = { x: spec.x || "step", log: !!spec.log, smooth: spec.smooth || 0 };
    let chart = null;
    let holder = el;
    if (spec.controls) {
      const bar = document.createElement("div");
      bar.className = "chart-controls";
      bar.innerHTML =
        '<label>x <select data-role="x"><option value="step">step</option>' +
        '<option value="relative">relative time (s)</option><option value="time">wall time</option></select></label>' +
        '<label><input type="checkbox" data-role="log"> log scale</label>' +
        '<label>smoothing <input type="range" min="0" max="0.99" step="0.01" data-role="smooth"> <span data-role="smooth-value"></span></label>';
      el.appendChild(bar);
      holder = document.createElement("div");
      el.appendChild(holder);
      const sel = bar.querySelector('[data-role="x"]');
      const log = bar.querySelector('[data-role="log"]');
      const sm = bar.querySelector('[data-role="smooth"]');
      const smv = bar.querySelector('[data-role="smooth-value"]');
      sel.value = state.x; log.checked = state.log; sm.value = state.smooth; smv.textContent = state.smooth;
      sel.addEventListener("change", function () { state.x = sel.value; draw(); });
      log.addEventListener("change", function () { state.log = log.checked; draw(); });
      sm.addEventListener("input", function () { state.smooth = +sm.value; smv.textContent = sm.value; draw(); });
    }

    function draw() {
      const tables = spec.series.map(function (s) {
        let ys = smooth(s.y, state.smooth);
        if (state.log) ys = ys.map(function (y) { return y > 0 ? y : null; });
        return [xValues(s, state.x), ys];
      });
      // Aligned on one x (what uPlot's cursor and legend need) unless that table would be
      // huge: runs that share no x (wall time) make it unique x's times series cells, so
      // then each series keeps its own x (uPlot's mode 2) and the cursor shows no values.
      const faceted = tables.length > 1 && alignedCells(tables) > MAX_ALIGNED_CELLS;
      const aligned = faceted ? [null].concat(tables) : (tables.length === 1 ? tables[0] : uPlot.join(tables));
      const many = spec.series.length > 12 || faceted;
      const opts = {
        mode: faceted ? 2 : 1,
        width: width(holder),
        height: spec.height || 260,
        title: spec.title || "",
        legend: { show: !many, live: !many },
        cursor: { points: { show: !many }, drag: { x: true, y: false } },
        scales: { x: { time: state.x === "time" }, y: { distr: state.log ? 3 : 1 } },
        axes: [{ label: state.x === "step" ? "step" : (state.x === "relative" ? "seconds" : "") },
          { label: spec.y_label || "", size: 60 }],
        series: [{}].concat(spec.series.map(function (s, i) {
          const line = { label: s.label, stroke: seriesColor(s, i), width: 1.5, spanGaps: true, points: { show: false } };
          if (faceted) line.paths = uPlot.paths.linear();
          return line;
        })),
      };
      if (faceted) opts.legend = { show: false };
      if (chart) chart.destroy();
      holder.innerHTML = "";
      chart = new uPlot(opts, aligned, holder);
      mark(el, chart, spec.series.map(function (s) { return s.label; }));
    }
    draw();
    return { redraw: draw };
  }

  /* uPlot draws no markers in mode 2 on its own: each series paints its points here. */
  function drawPoints(u, seriesIdx) {
    const size = 8 * (window.devicePixelRatio || 1);
    uPlot.orient(u, seriesIdx, function (series, dataX, dataY, scaleX, scaleY, valToPosX, valToPosY,
      xOff, yOff, xDim, yDim, moveTo, lineTo, rect, arc) {
      const d = u.data[seriesIdx];
      const p = new Path2D();
      for (let i = 0; i < d[0].length; i++) {
        const x = d[0][i], y = d[1][i];
        if (x == null || y == null || x < scaleX.min || x > scaleX.max || y < scaleY.min || y > scaleY.max) continue;
        const cx = valToPosX(x, scaleX, xDim, xOff), cy = valToPosY(y, scaleY, yDim, yOff);
        p.moveTo(cx + size / 2, cy);
        arc(p, cx, cy, size / 2, 0, 2 * Math.PI);
      }
      u.ctx.fillStyle = series._fill;
      u.ctx.strokeStyle = series._stroke;
      u.ctx.lineWidth = 1;
      u.ctx.fill(p);
      u.ctx.stroke(p);
    });
    return null;
  }

  /* A category axis spans its categories with half a step either side. */
  function categoryRange(labels) {
    return function () { return [-0.5, Math.max(0, labels.length - 1) + 0.5]; };
  }

  function scatter(el, spec) {
    const tables = spec.series.map(function (s) { return [s.x, s.y]; });
    const xAxis = { label: spec.x_label || "" };
    const yAxis = { label: spec.y_label || "", size: 60 };
    if (spec.x_labels) { xAxis.values = categoryTicks(spec.x_labels); xAxis.incrs = [1]; }
    if (spec.y_labels) { yAxis.values = categoryTicks(spec.y_labels); yAxis.incrs = [1]; yAxis.size = 90; }
    const opts = {
      mode: 2,
      width: width(el),
      height: spec.height || 300,
      title: spec.title || "",
      scales: {
        x: spec.x_labels ? { time: false, range: categoryRange(spec.x_labels) } : { time: false, distr: spec.log_x ? 3 : 1 },
        y: spec.y_labels ? { range: categoryRange(spec.y_labels) } : {},
      },
      axes: [xAxis, yAxis],
      legend: { show: spec.series.length <= 12, live: false },
      series: [{}].concat(spec.series.map(function (s, i) {
        const c = seriesColor(s, i);
        return { label: s.label, stroke: c, fill: alpha(c, "55"),
          _fill: alpha(c, "aa"), _stroke: c, paths: drawPoints, points: { show: false } };
      })),
    };
    const chart = new uPlot(opts, [null].concat(tables), el);
    mark(el, chart, spec.series.map(function (s) { return s.label; }));
  }

  function bars(el, spec) {
    const labels = spec.labels || null;
    const xs = spec.x || (labels ? labels.map(function (_, i) { return i; }) : []);
    const opts = {
      width: width(el),
      height: spec.height || 200,
      title: spec.title || "",
      legend: { show: spec.series.length > 1 },
      // Bars start at zero: a y axis fitted to 94..103 would exaggerate small differences.
      // ... and the outer bars are drawn whole: half a bar's slot of room on each side.
      scales: {
        x: { time: false, range: function (u, min, max) {
          const half = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 0.5;
          return [min - half, max + half];
        } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; } },
      },
      axes: [
        labels ? { values: function (_, ticks) { return ticks.map(function (t) { return labels[t] != null ? labels[t] : ""; }); } } : {},
        { size: 50 },
      ],
      series: [{}].concat(spec.series.map(function (s, i) {
        const c = seriesColor(s, i);
        return { label: s.label, stroke: c, fill: alpha(c, "99"),
          paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } };
      })),
    };
    const chart = new uPlot(opts, [xs].concat(spec.series.map(function (s) { return s.y; })), el);
    mark(el, chart, spec.series.map(function (s) { return s.label; }));
  }

  function timeSeries(el, spec) {
    const tables = spec.series.map(function (s) { return [s.time.map(function (t) { return t / 1000; }), s.y]; });
    const aligned = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const opts = {
      width: width(el),
      height: spec.height || 220,
      title: spec.title || "",
      scales: { x: { time: true } },
      axes: [{}, { label: spec.y_label || "", size: 60 }],
      series: [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: seriesColor(s, i), width: 1.5, spanGaps: false, points: { show: false } };
      })),
    };
    const chart = new uPlot(opts, aligned, el);
    mark(el, chart, spec.series.map(function (s) { return s.label; }));
  }

  const KINDS = { lines: lines, scatter: scatter, bars: bars, time: timeSeries };

  function chart(el, spec) {
    const draw = KINDS[spec.kind];
    if (!draw) throw new Error("unknown chart kind " + spec.kind);
    if (!spec.series || !spec.series.length) {
      el.innerHTML = '<p class="empty">No data to plot.</p>';
      el.dataset.rendered = "1";
      el.dataset.series = "[]";
      return null;
    }
    return draw(el, spec);
  }

  function sortTable(table, index, numeric) {
    const body = table.tBodies[0];
    const rows = Array.prototype.slice.call(body.rows);
    const th = table.tHead.rows[0].cells[index];
    const asc = th.dataset.dir !== "asc";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { delete c.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    rows.sort(function (a, b) {
      const x = a.cells[index].dataset.value != null ? a.cells[index].dataset.value : a.cells[index].textContent.trim();
      const y = b.cells[index].dataset.value != null ? b.cells[index].dataset.value : b.cells[index].textContent.trim();
      let c;
      if (numeric) {
        const fx = parseFloat(x), fy = parseFloat(y);
        c = (isNaN(fx) ? Infinity : fx) - (isNaN(fy) ? Infinity : fy);
      } else {
        c = x.localeCompare(y);
      }
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function selection(group) {
    const boxes = document.querySelectorAll('input[type=checkbox][data-select="' + group + '"]');
    const picked = Array.prototype.filter.call(boxes, function (b) { return b.checked; })
      .map(function (b) { return b.value; });
    document.querySelectorAll('[data-selected="' + group + '"]').forEach(function (a) {
      const min = +(a.dataset.min || 1);
      a.href = a.dataset.href + encodeURIComponent(picked.join(","));
      a.classList.toggle("disabled", picked.length < min);
      a.setAttribute("aria-disabled", picked.length < min ? "true" : "false");
      const count = a.querySelector("[data-count]");
      if (count) count.textContent = picked.length;
    });
  }

  function init(root) {
    root.querySelectorAll("[data-width]").forEach(function (el) { el.style.width = el.dataset.width + "%"; });
    root.querySelectorAll("[data-color]").forEach(function (el) { el.style.background = color(+el.dataset.color); });
    root.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
      sel.addEventListener("change", function () { sel.form.submit(); });
    });
    root.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
    });
    root.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.classList.add("sortable");
        th.addEventListener("click", function () { sortTable(table, i, th.classList.contains("num")); });
      });
    });
    const groups = new Set();
    root.querySelectorAll("input[type=checkbox][data-select]").forEach(function (b) {
      groups.add(b.dataset.select);
      b.addEventListener("change", function () { selection(b.dataset.select); });
    });
    root.querySelectorAll("input[type=checkbox][data-select-all]").forEach(function (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll('input[type=checkbox][data-select="' + all.dataset.selectAll + '"]')
          .forEach(function (b) { b.checked = all.checked; });
        selection(all.dataset.selectAll);
      });
    });
    groups.forEach(selection);
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      try {
        chart(el, data(el.dataset.chart));
      } catch (err) {
        el.dataset.error = String(err);
        el.innerHTML = '<p class="error">This chart could not be drawn: ' + String(err).replace(/</g, "&lt;") + "</p>";
      }
    });
  }

  window.MLP = { data: data, chart: chart, color: color, smooth: smooth, init: init };
  document.addEventListener("DOMContentLoaded", function () { init(document); });
})();
