/* The "Capacity plan" charts of a run report, from the JSON block
   <script type="application/json" id="plan-data"> (runners/report/plan.py):
   predicted req/s against workers (left axis), predicted memory (dashed,
   right axis) and the memory budget (red). Runs once the page is parsed, when
   Chart.js (inlined at the end of the page) is there. */
(function () {
  "use strict";
  function draw() {
    var source = document.getElementById("plan-data");
    if (!source || typeof Chart === "undefined") {
      return;
    }
    var specs = JSON.parse(source.textContent).charts;
    var drawn = 0;
    document.querySelectorAll("canvas[data-plan-chart]").forEach(function (canvas) {
      var spec = specs[canvas.getAttribute("data-plan-chart")];
      if (!spec) {
        throw new Error("plan: no chart data for " + canvas.getAttribute("data-plan-chart"));
      }
      new Chart(canvas, {
        type: "line",
        data: {
          datasets: spec.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data,
              yAxisID: ds.axis,
              borderColor: ds.color,
              backgroundColor: ds.color,
              borderDash: ds.dash ? [6, 4] : ds.budget ? [2, 2] : [],
              borderWidth: ds.budget ? 2.5 : 2,
              pointRadius: 0,
            };
          }),
        },
        options: {
          parsing: true,
          scales: {
            x: { type: "logarithmic", min: 1, title: { display: true, text: "workers (log scale)" } },
            y: { beginAtZero: true, position: "left", title: { display: true, text: "predicted req/s" } },
            memory: {
              beginAtZero: true,
              position: "right",
              grid: { drawOnChartArea: false },
              title: { display: true, text: "predicted summed PSS (GiB)" },
            },
          },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 18 } } },
        },
      });
      drawn += 1;
    });
    document.documentElement.setAttribute("data-plan-charts-drawn", String(drawn));
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
