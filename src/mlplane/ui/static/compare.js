/* The compare page: metric curves fetched per chart, and the parallel coordinates.
 *
 * Curves are not in the page (a hundred runs of long histories would be megabytes of JSON
 * to parse before anything shows): each <div class="chart" data-metric="KEY"> asks
 * /ui/api/compare/metrics?runs=...&key=KEY for its "lines" spec, a few at a time (those
 * behind "more" once they come into view), and app.js draws it. The
 * note under a chart (data-note-for="KEY") says when curves were downsampled.
 *
 * <div id="parallel"> draws #compare-parallel ({"axes": [{"label", "values", "categories",
 * "log"}], "runs": [labels]}) as SVG: an axis per differing param then the metric, a line
 * per run in its colour (app.js's MLP.color, as its swatch).
 */
(function () {
  "use strict";

  const PARALLEL_FETCHES = 3;
  const SVG = "http://www.w3.org/2000/svg";

  function fmt(n) {
    return n.toLocaleString("en");
  }

  function note(key, spec) {
    const el = document.querySelector('[data-note-for="' + CSS.escape(key) + '"]');
    if (!el) return;
    const runs = window.MLP.data("compare-runs") || [];
    const parts = [];
    const logged = spec.runs_logged != null ? spec.runs_logged : spec.series.length;
    if (logged < runs.length) {
      parts.push((runs.length - logged) + " of " + runs.length + " runs did not log " + key + ".");
    }
    if (spec.downsampled) {
      parts.push(spec.downsampled + " of " + spec.series.length + " curves downsampled to at most " +
        fmt(spec.max_points) + " points (lowest and highest value of each stretch kept).");
    }
    el.textContent = parts.join(" ");
  }

  function charts() {
    const runs = window.MLP.data("compare-runs");
    if (!runs) return;
    const queue = [];
    let active = 0;

    function load(el) {
      const key = el.dataset.metric;
      const url = "/ui/api/compare/metrics?runs=" + encodeURIComponent(runs.join(",")) +
        "&key=" + encodeURIComponent(key);
      active++;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          return r.json().then(function (body) {
            if (!r.ok) throw new Error(body.detail || body.message || ("HTTP " + r.status));
            return body;
          });
        })
        .then(function (spec) {
          spec.title = "";
          el.innerHTML = "";
          window.MLP.chart(el, spec);
          note(key, spec);
        })
        .catch(function (err) {
          el.dataset.error = String(err.message || err);
          el.innerHTML = "";
          const p = document.createElement("p");
          p.className = "error";
          p.textContent = "These curves could not be loaded: " + el.dataset.error;
          el.appendChild(p);
        })
        .then(function () { active--; next(); });
    }

    function next() {
      while (active < PARALLEL_FETCHES && queue.length) load(queue.shift());
    }

    function want(el) {
      if (el.dataset.queued) return;
      el.dataset.queued = "1";
      queue.push(el);
      next();
    }

    // The first charts load at once (they are what the page is for); those behind "more"
    // when they come into view, i.e. once it is opened.
    const later = document.querySelectorAll(".more-charts .chart[data-metric]");
    document.querySelectorAll(".chart[data-metric]").forEach(function (el) {
      if (!el.closest(".more-charts")) want(el);
    });
    if (!("IntersectionObserver" in window)) { later.forEach(want); return; }
    const seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { seen.unobserve(e.target); want(e.target); }
      });
    }, { rootMargin: "200px" });
    later.forEach(function (el) { seen.observe(el); });
  }

  /* -- parallel coordinates ------------------------------------------------------------ */

  function node(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function text(parent, x, y, value, anchor, cls) {
    const t = node("text", { x: x, y: y, "text-anchor": anchor || "middle" }, parent);
    if (cls) t.setAttribute("class", cls);
    t.textContent = value;
    return t;
  }

  /* A function from an axis's values to [0, 1] (0 at the bottom), and its tick labels. */
  function scale(axis) {
    if (axis.categories) {
      const n = Math.max(1, axis.categories.length - 1);
      return {
        at: function (v) { return axis.categories.length === 1 ? 0.5 : v / n; },
        ticks: axis.categories.map(function (c, i) { return [i, c]; }),
      };
    }
    const vs = axis.values.filter(function (v) { return v != null; });
    const f = axis.log ? Math.log10 : function (v) { return v; };
    let lo = Math.min.apply(null, vs.map(f)), hi = Math.max.apply(null, vs.map(f));
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const label = function (v) { return +v.toPrecision(4) + ""; };
    const raw = axis.log ? [Math.pow(10, lo), Math.pow(10, hi)] : [lo, hi];
    return {
      at: function (v) { return (f(v) - lo) / (hi - lo); },
      ticks: [[raw[0], label(raw[0])], [raw[1], label(raw[1])]],
    };
  }

  function parallel() {
    const el = document.getElementById("parallel");
    const spec = window.MLP.data("compare-parallel");
    if (!el || !spec || spec.axes.length < 2) return;
    const w = Math.max(360, el.clientWidth || 600), h = 300;
    const pad = { left: 60, right: 60, top: 34, bottom: 28 };
    const svg = node("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img",
      "aria-label": "parallel coordinates" });
    const n = spec.axes.length;
    const xAt = function (i) { return pad.left + i * (w - pad.left - pad.right) / (n - 1); };
    const yAt = function (u) { return pad.top + (1 - u) * (h - pad.top - pad.bottom); };
    const scales = spec.axes.map(scale);

    const lines = node("g", { class: "lines" }, svg);
    spec.runs.forEach(function (name, r) {
      let d = "", pen = "M";
      spec.axes.forEach(function (axis, i) {
        const v = axis.values[r];
        if (v == null || (axis.log && !(v > 0))) { pen = "M"; return; }
        d += pen + xAt(i).toFixed(1) + "," + yAt(scales[i].at(v)).toFixed(1) + " ";
        pen = "L";
      });
      if (!d) return;
      const path = node("path", { d: d, fill: "none", stroke: window.MLP.color(r),
        "stroke-width": 2, "stroke-opacity": 0.8, "data-run": name }, lines);
      node("title", {}, path).textContent = name;
    });

    spec.axes.forEach(function (axis, i) {
      const g = node("g", { class: "axis" }, svg);
      node("line", { x1: xAt(i), x2: xAt(i), y1: pad.top, y2: h - pad.bottom, stroke: "#667085" }, g);
      const anchor = i === 0 ? "start" : (i === n - 1 ? "end" : "middle");
      text(g, xAt(i) + (i === 0 ? -pad.left + 4 : (i === n - 1 ? pad.right - 4 : 0)), 14,
        axis.label, anchor, "axis-label");
      scales[i].ticks.forEach(function (t) {
        const y = yAt(scales[i].at(t[0]));
        node("line", { x1: xAt(i) - 4, x2: xAt(i), y1: y, y2: y, stroke: "#667085" }, g);
        text(g, xAt(i) - 6, y + 4, t[1], "end", "tick");
      });
    });
    el.innerHTML = "";
    el.appendChild(svg);
    el.dataset.rendered = "1";
    el.dataset.axes = JSON.stringify(spec.axes.map(function (a) { return a.label; }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    charts();
    parallel();
  });
})();
