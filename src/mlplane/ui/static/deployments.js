/* A deployment's live charts: every data-refresh-ms, fetch the timeline's chart specs
 * (the same the page was drawn with) from data-timeline and redraw each chart in place.
 * A failed fetch (a network blip, a signed-out session) leaves the last drawing up and
 * says so on the grid; the next tick tries again. */
(function () {
  "use strict";

  function redraw(el, spec) {
    if (el._chart) { el._chart.destroy(); el._chart = null; }
    el.innerHTML = "";
    MLP.chart(el, spec);
  }

  function refresh(grid) {
    return fetch(grid.dataset.timeline, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("timeline answered " + r.status);
        return r.json();
      })
      .then(function (body) {
        grid.querySelectorAll("[data-key]").forEach(function (el) {
          const spec = body.charts[el.dataset.key];
          if (spec) redraw(el, spec);
        });
        grid.dataset.refreshed = String(Date.now());
        delete grid.dataset.stale;
      })
      .catch(function (err) {
        grid.dataset.stale = String(err);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const grid = document.getElementById("live-charts");
    if (!grid || !grid.dataset.timeline) return;
    const every = +(grid.dataset.refreshMs || 10000);
    window.setInterval(function () { refresh(grid); }, every);
  });
})();
